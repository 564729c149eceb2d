"""``@remote`` functions: ``f.remote(...)`` submits a task and returns ObjectRef(s)."""

from __future__ import annotations

import functools
import hashlib
from typing import Any

import cloudpickle

from ._private import ids, protocol as p, serialization, session, task_context
from ._private.generators import ObjectRefGenerator
from ._private.object_ref import uncounted_refs
from ._private.options import (
    DEFAULT_TASK_OPTIONS,
    TASK_OPTIONS,
    env_vars,
    generator_mode,
    placement,
    resource_request,
    validate_options,
    wire_strategy,
)
from ._private.placement_groups import in_group
from ._private.task_args import SignatureCheck, pack_args


class RemoteFunction:
    def __init__(self, function, options: dict[str, Any]) -> None:
        validate_options(options, TASK_OPTIONS, f"remote function {function.__name__}")
        self._function = function
        self._name = getattr(function, "__qualname__", None) or function.__name__
        self._given = options  # as the user gave them (options() adds to them)
        self._options = {**DEFAULT_TASK_OPTIONS, **options}
        self._request, self._strategy, self._capture = placed_request(self._options)
        self._retry = _retry_policy(self._options)
        self._env = env_vars(self._options.get("runtime_env"))
        self._generator = generator_mode(function, options)
        self._prepared: tuple | None = None  # (fid, blob)
        self._signature: SignatureCheck | None = None  # made on the first call
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
        return (RemoteFunction, (self._function, self._given))

    def options(self, **options) -> _BoundOptions:
        validate_options(options, TASK_OPTIONS, f"remote function {self._name}")
        return _BoundOptions(self, options)

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._options, self._request, self._strategy,
                            self._retry, self._generator, self._capture, self._env)

    def _prepare(self):
        blob = serialization.dumps_function(self._function)
        fid = hashlib.blake2b(blob, digest_size=16).digest()
        self._prepared = (fid, blob)
        return self._prepared

    def _check_signature(self) -> SignatureCheck:
        self._signature = SignatureCheck(self._function)
        return self._signature

    def _submit(self, args: tuple, kwargs: dict, options: dict, request: dict,
                strategy: p.Strategy, retry: tuple[bool, bytes], generator: str,
                capture: bool, env: dict[str, str]):
        if strategy is None and not capture and "placement_group" not in options and \
                "scheduling_strategy" not in options:
            group = task_context.capturing_group()  # (a task in a captured group)
            if group is not None:
                request, capture = in_group(request, group, -1), True
        inherited = task_context.inherited_env()
        if inherited:
            env = {**inherited, **env}
        signature = self._signature or self._check_signature()
        signature.check(self._name, args, kwargs)
        client = session.client_or_start()
        fid, blob = self._prepared or self._prepare()
        name = options.get("name") or self._name
        return submit_task(
            client, self._function, name, args, kwargs,
            1 if generator else options["num_returns"],
            fid=fid, request=request, max_retries=options["max_retries"],
            retry=retry, max_calls=options.get("max_calls") or 0,
            register=(fid, blob, self._name), strategy=strategy, generator=generator,
            backpressure=max(0, options.get("_generator_backpressure_num_objects") or 0),
            capture=capture, env=env, events=options.get("enable_task_events") is not False)


def submit_task(client, fn, name: str, args: tuple, kwargs: dict, num_returns: int, *,
                fid: bytes = b"", request: dict | None = None, max_retries: int = 0,
                retry: tuple[bool, bytes] = (False, b""), max_calls: int = 0,
                register: tuple | None = None, strategy: p.Strategy = None,
                generator: str = "", backpressure: int = 0, capture: bool = False,
                env: dict[str, str] | None = None, events: bool = True):
    """Queue one task and return its ref, refs, None (num_returns=0), or for a streaming
    generator an ObjectRefGenerator. ``register``: (fid, code, name) of the function,
    sent with the first task of it."""
    task_id = ids.new_task_id(task_context.current_job_id(client.job_id))
    args_blob, deps, contained, keep = pack_args(client, fn, name, args, kwargs)
    oids = [ids.object_id_for_return(task_id, i) for i in range(num_returns)]
    refs = uncounted_refs(client, oids)
    client.expect_results(oids)
    if generator == "streaming":  # (tracked first: its values may come at once)
        stream = ObjectRefGenerator(client, task_id, refs[0], backpressure > 0)
        client.track_generator(task_id, stream)
    client.send_soon(p.SubmitTask(
        task_id, fid, name, args_blob, deps, contained, num_returns, request or {},
        max_retries, retry[0], strategy=strategy, retry_on=retry[1], max_calls=max_calls,
        generator=generator, backpressure=backpressure, capture=capture, env=env or {},
        events=events,
    ), register=register)
    del keep  # the refs inside the arguments may go once the submission is queued
    if generator == "streaming":
        return stream
    if num_returns == 1:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


class _BoundOptions:
    """``f.options(...)``: the same function with some options overridden."""

    def __init__(self, function: RemoteFunction, options: dict[str, Any]) -> None:
        self._function = function
        self._given = {**function._given, **options}
        self._options = {**function._options, **options}
        self._request, self._strategy, self._capture = placed_request(self._options)
        self._retry = _retry_policy(self._options)
        self._env = env_vars(self._options.get("runtime_env"))
        self._generator = generator_mode(function._function, self._given)

    def remote(self, *args, **kwargs):
        return self._function._submit(args, kwargs, self._options, self._request,
                                      self._strategy, self._retry, self._generator,
                                      self._capture, self._env)

    def options(self, **options) -> _BoundOptions:
        validate_options(options, TASK_OPTIONS, f"remote function {self._function._name}")
        return _BoundOptions(self._function, {**self._given, **options})

    def __call__(self, *args, **kwargs):
        return self._function(*args, **kwargs)


def _retry_policy(options: dict[str, Any]) -> tuple[bool, bytes]:
    """``retry_exceptions`` on the wire: whether an exception the task raises may be
    retried, and the exception types that may (pickled; empty: any exception)."""
    value = options.get("retry_exceptions")
    if isinstance(value, list | tuple):
        return True, _pickled_types(tuple(value))
    return bool(value), b""


@functools.lru_cache(maxsize=64)
def _pickled_types(types: tuple[type, ...]) -> bytes:
    return cloudpickle.dumps(types)


def placed_request(options: dict[str, Any]) -> tuple[dict[str, float], p.Strategy, bool]:
    """What a task with these options asks for, its wire strategy, and whether the tasks
    it starts go in its placement group too."""
    request = resource_request(options)
    group = placement(options)
    if group is None:
        return request, wire_strategy(options.get("scheduling_strategy")), False
    pg_hex, index, capture = group
    return in_group(request, pg_hex, index), None, capture
