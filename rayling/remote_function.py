"""``@remote`` functions: ``f.remote(...)`` submits a task and returns ObjectRef(s)."""

from __future__ import annotations

import hashlib
from typing import Any

from ._private import ids, protocol as p, serialization
from ._private.strategies import strategy_string
from ._private.task_args import pack_args
from .object_ref import ObjectRef

_TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "memory", "scheduling_strategy", "runtime_env", "max_calls", "accelerator_type",
    "label_selector", "enable_task_events", "_metadata", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "object_store_memory",
}

DEFAULT_TASK_OPTIONS = {"num_cpus": 1, "num_gpus": 0, "num_returns": 1, "max_retries": 3}


def validate_options(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    """Check option names and values; errors name the bad option."""
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"Invalid option {key!r} for {what}. Valid options: "
                             f"{', '.join(sorted(k for k in allowed if not k.startswith('_')))}")
        if key in ("num_cpus", "num_gpus", "memory") and value is not None:
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a non-negative number, got {value!r}")
        if key == "num_returns" and (not isinstance(value, int) or value < 0):
            raise ValueError(f"num_returns must be a non-negative integer, got {value!r}")
        if key == "max_retries" and (not isinstance(value, int) or value < -1):
            raise ValueError(f"max_retries must be an integer >= -1, got {value!r}")
        if key == "resources" and value is not None:
            if not isinstance(value, dict):
                raise TypeError(f"resources must be a dict, got {type(value).__name__}")
            for name, amount in value.items():
                if name in ("CPU", "GPU"):
                    raise ValueError(
                        f"Use num_cpus/num_gpus instead of resources={{{name!r}: ...}}")
                if not isinstance(amount, int | float) or amount < 0:
                    raise ValueError(f"resource {name!r} must be a non-negative number")
        if key == "scheduling_strategy":
            strategy_string(value)  # raises for an unknown strategy
    return options


def resource_request(options: dict[str, Any]) -> dict[str, float]:
    request = {}
    cpus = options.get("num_cpus")
    if cpus:
        request["CPU"] = float(cpus)
    gpus = options.get("num_gpus")
    if gpus:
        request["GPU"] = float(gpus)
    for name, amount in (options.get("resources") or {}).items():
        if amount:
            request[name] = float(amount)
    return request


class RemoteFunction:
    def __init__(self, function, options: dict[str, Any]) -> None:
        validate_options(options, _TASK_OPTIONS, f"remote function {function.__name__}")
        self._function = function
        self._name = getattr(function, "__qualname__", None) or function.__name__
        self._options = {**DEFAULT_TASK_OPTIONS, **options}
        self._request = resource_request(self._options)
        self._prepared: tuple | None = None  # (fid, blob, task name, request)
        self.__doc__ = function.__doc__
        self.__name__ = function.__name__
        self.__qualname__ = self._name
        self.__module__ = function.__module__
        self.__wrapped__ = function

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Remote function {self._name} cannot be called directly. Use "
            f"{self._name}.remote(...) to run it as a task, and rayling.get() on the result.")

    def __reduce__(self):
        return (RemoteFunction, (self._function, self._user_options()))

    def _user_options(self) -> dict[str, Any]:
        return {k: v for k, v in self._options.items() if DEFAULT_TASK_OPTIONS.get(k, ...) != v}

    def options(self, **options) -> _BoundOptions:
        validate_options(options, _TASK_OPTIONS, f"remote function {self._name}")
        return _BoundOptions(self, options)

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options, self._request)

    def _prepare(self):
        blob = serialization.dumps_function(self._function)
        fid = hashlib.blake2b(blob, digest_size=16).digest()
        self._prepared = (fid, blob)
        return self._prepared

    def _submit(self, args: tuple, kwargs: dict, options: dict, request: dict):
        from . import api

        client = api._client_or_auto_init()
        fid, blob = self._prepared or self._prepare()
        name = options.get("name") or self._name
        return submit_task(
            client, self._function, name, args, kwargs, options["num_returns"],
            fid=fid, request=request, max_retries=options["max_retries"],
            retry_exceptions=bool(options.get("retry_exceptions", False)),
            register=client.register_function(fid, blob, self._name),
            strategy=strategy_string(options.get("scheduling_strategy")))


def submit_task(client, fn, name: str, args: tuple, kwargs: dict, num_returns: int, *,
                fid: bytes = b"", request: dict | None = None, max_retries: int = 0,
                retry_exceptions: bool = False, register: list = (), strategy: str = ""):
    """Queue one task and return its ref, refs, or None (num_returns=0)."""
    task_id = ids.new_task_id(client.job_id)
    args_blob, deps, contained, keep = pack_args(client, fn, name, args, kwargs)
    refs = [ObjectRef(task_id + (i + 1).to_bytes(4, "little"), _born=True)
            for i in range(num_returns)]
    client.own_pending.update(r._id for r in refs)
    client.send_soon(*register, p.SubmitTask(
        task_id, fid, name, args_blob, deps, contained, num_returns, request or {},
        max_retries, retry_exceptions, strategy=strategy,
    ))
    del keep  # the refs inside the arguments may go once the submission is queued
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


class _BoundOptions:
    """``f.options(...)``: the same function with some options overridden."""

    def __init__(self, function: RemoteFunction, options: dict[str, Any]) -> None:
        self._function = function
        self._options = {**function._options, **options}
        self._request = resource_request(self._options)

    def remote(self, *args, **kwargs):
        return self._function._submit(args, kwargs, self._options, self._request)

    def options(self, **options) -> _BoundOptions:
        validate_options(options, _TASK_OPTIONS, f"remote function {self._function._name}")
        return _BoundOptions(self._function, {**self._options, **options})

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)
