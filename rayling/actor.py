"""Actors: ``@remote`` classes whose instance lives in one dedicated worker process.

``Cls.remote(*args)`` returns an ActorHandle at once; ``handle.method.remote(*args)``
returns ObjectRefs. Calls from one caller run in the order they were made. A handle can be
passed to tasks and other actors; when the last handle anywhere is gone, the actor ends
(unless it is named or detached).
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from . import exceptions as exc
from ._private import ids, protocol as p, serialization, session, task_context
from ._private.generators import ObjectRefGenerator
from ._private.object_ref import ObjectRef, uncounted_refs
from ._private.options import (
    ACTOR_OPTIONS,
    METHOD_OPTIONS,
    env_vars,
    generator_mode,
    placement,
    resource_request,
    validate_options,
    wire_strategy,
)
from ._private.placement_groups import in_group
from ._private.task_args import SignatureCheck, pack_args


def _method_table(cls: type) -> dict[str, dict]:
    """Public methods of ``cls`` with their options (num_returns) and whether async."""
    table = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("__") and name != "__call__":
            continue
        if not (inspect.isfunction(member) or inspect.ismethod(member)):
            continue
        options = dict(getattr(member, "__rayling_method_options__", {}))
        table[name] = {
            "num_returns": generator_mode(member, options) or options.get("num_returns", 1),
            "is_async": inspect.iscoroutinefunction(member)
            or inspect.isasyncgenfunction(member),
            "max_task_retries": options.get("max_task_retries"),
            "backpressure": options.get("_generator_backpressure_num_objects"),
            "concurrency_group": options.get("concurrency_group") or "",
            "events": options.get("enable_task_events"),
        }
    return table


class ActorClass:
    """What ``@remote`` makes of a class."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        validate_options(options, ACTOR_OPTIONS, f"actor class {cls.__name__}")
        self._cls = cls
        self._options = options
        self._methods = _method_table(cls)
        self._prepared: tuple | None = None
        self._constructor: SignatureCheck | None = None  # made at the first creation
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__module__ = cls.__module__
        self.__doc__ = cls.__doc__

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actor class {self._cls.__name__} cannot be instantiated directly. Use "
            f"{self._cls.__name__}.remote(...) to create an actor.")

    def __reduce__(self):
        return (ActorClass, (self._cls, self._options))

    def options(self, **options) -> _BoundActorClass:
        validate_options(options, ACTOR_OPTIONS, f"actor class {self._cls.__name__}")
        return _BoundActorClass(self, {**self._options, **options})

    def remote(self, *args, **kwargs) -> ActorHandle:
        return self._create(args, kwargs, self._options)

    def bind(self, *args, **kwargs):  # pragma: no cover - Ray DAG API
        raise NotImplementedError("Ray's DAG API (bind) is not supported by rayling")

    def _create(self, args: tuple, kwargs: dict, options: dict) -> ActorHandle:
        if self._constructor is None:
            self._constructor = SignatureCheck(self._cls)
        self._constructor.check(f"{self._cls.__name__}.__init__", args, kwargs)
        client = session.client_or_start()
        if self._prepared is None:
            blob = serialization.dumps_function(self._cls)
            self._prepared = (hashlib.blake2b(blob, digest_size=16).digest(), blob)
        fid, blob = self._prepared
        hold = resource_request({**options, "num_cpus": options.get("num_cpus", 0)})
        place = hold if "num_cpus" in options else {**hold, "CPU": max(hold.get("CPU", 0), 1)}
        group = placement(options)
        capture = False
        if group is None and "placement_group" not in options and \
                "scheduling_strategy" not in options:
            parent = task_context.capturing_group()
            group = (parent, -1, True) if parent is not None else None
        if group is not None:  # (it asks for what its placement group reserved)
            pg_hex, index, capture = group
            hold, place = in_group(hold, pg_hex, index), in_group(place, pg_hex, index)
        is_async = any(m["is_async"] for m in self._methods.values())
        groups = options.get("concurrency_groups") or {}
        for method, info in self._methods.items():
            if info["concurrency_group"] and info["concurrency_group"] not in groups:
                raise ValueError(
                    f"{self._cls.__name__}.{method} runs in concurrency group "
                    f"{info['concurrency_group']!r}, which the actor does not define: give "
                    f"it in concurrency_groups={{{info['concurrency_group']!r}: <max "
                    f"concurrency>, ...}} (its groups: {', '.join(groups) or 'none'})")
        max_concurrency = options.get("max_concurrency") or (1000 if is_async else 1)
        name = options.get("name") or ""
        namespace = options.get("namespace") or (session.current_namespace() if name else "")
        if options.get("lifetime") not in (None, "detached", "non_detached"):
            raise ValueError(f"lifetime must be 'detached' or 'non_detached', got "
                             f"{options['lifetime']!r}")
        if options.get("get_if_exists") and not name:
            raise ValueError("get_if_exists=True needs a name for the actor")
        job_id = task_context.current_job_id(client.job_id)
        actor_id = ids.new_actor_id(job_id)
        task_id = ids.new_task_id(job_id)
        args_blob, deps, contained, keep = pack_args(
            client, self._cls.__init__, f"{self._cls.__name__}.__init__", args, kwargs)
        actor_retries = options.get("max_task_retries", 0)
        pending_limit = options.get("max_pending_calls")
        events = options.get("enable_task_events") is not False
        methods = {name: {**info, "max_task_retries": actor_retries
                          if info["max_task_retries"] is None else info["max_task_retries"],
                          "max_pending_calls": pending_limit if pending_limit else -1,
                          "events": events if info["events"] is None else info["events"]}
                   for name, info in self._methods.items()}
        methods_blob = serialization.serialize((self._cls.__name__, methods)).pickled
        creation_ref = ObjectRef(ids.object_id_for_return(task_id, 0), _born=True)
        msg = lambda req_id: p.CreateActor(  # noqa: E731
            req_id, actor_id, task_id, fid, self._cls.__name__, args_blob, deps, contained,
            place, hold, options.get("max_restarts", 0), options.get("max_task_retries", 0),
            max_concurrency, is_async, methods_blob, name, namespace,
            options.get("lifetime") == "detached", bool(options.get("get_if_exists")),
            wire_strategy(options.get("scheduling_strategy")), capture,
            {**task_context.inherited_env(), **env_vars(options.get("runtime_env"))},
            dict(groups),
        )
        register = (fid, blob, self._cls.__name__)
        if name:
            client.send_soon(register=register)  # (the request below sends it first)
            reply = client.request(msg)
            if reply.error:
                raise ValueError(reply.error)
            if reply.value["existing"]:
                return handle_from_info(reply.value)
        else:
            client.send_soon(msg(0), register=register)
        del keep
        handle = ActorHandle(actor_id, self._cls.__name__, methods, creation_ref)
        handle._cls = self._cls  # (its creator's handle checks each call's arguments)
        return handle


class _BoundActorClass:
    def __init__(self, actor_class: ActorClass, options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args, **kwargs) -> ActorHandle:
        return self._actor_class._create(args, kwargs, self._options)

    def options(self, **options) -> _BoundActorClass:
        validate_options(options, ACTOR_OPTIONS, "actor class")
        return _BoundActorClass(self._actor_class, {**self._options, **options})


# Methods every actor has, as in Ray: ``__ray_ready__`` (True once it is constructed),
# ``__ray_terminate__`` (ends it after the calls before this one), ``__ray_call__(fn,
# *args)`` (runs ``fn(instance, *args)`` in it).
BUILTIN_METHODS = frozenset({"__ray_ready__", "__ray_terminate__", "__ray_call__"})


class ActorHandle:
    """A reference to an actor; ``handle.method.remote(...)`` calls a method."""

    def __init__(self, actor_id: bytes, class_name: str, methods: dict[str, dict],
                 creation_ref: ObjectRef) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._methods = methods
        self._creation_ref = creation_ref  # keeps the actor alive while handles exist
        self._cls: type | None = None  # the class, in the process that created the actor
        self._checks: dict[str, SignatureCheck] = {}

    def _check_call(self, method: str, args: tuple, kwargs: dict) -> None:
        """Raise TypeError now if ``method`` cannot take these arguments."""
        if method in BUILTIN_METHODS:
            return
        check = self._checks.get(method)
        if check is None:
            function = getattr(self._cls, method)
            plain = inspect.isfunction(function) and not isinstance(
                inspect.getattr_static(self._cls, method), staticmethod)
            check = self._checks[method] = SignatureCheck(function, skip_first=plain)
        check.check(f"{self._class_name}.{method}", args, kwargs)

    def __getattr__(self, name: str) -> ActorMethod:
        methods = self.__dict__.get("_methods")
        if name in BUILTIN_METHODS and methods is not None:
            return ActorMethod(self, name, 1)
        if methods is None or name.startswith("__"):
            raise AttributeError(name)
        info = methods.get(name)
        if info is None:
            raise AttributeError(
                f"'{self._class_name}' actor has no method '{name}'. Its methods are: "
                f"{', '.join(sorted(methods)) or '(none)'}.")
        return ActorMethod(self, name, info["num_returns"], info.get("max_task_retries"),
                           info.get("backpressure"), info.get("max_pending_calls", -1),
                           info.get("events") is not False)

    def __reduce__(self):
        return (ActorHandle, (self._actor_id, self._class_name, self._methods,
                              self._creation_ref))

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    @property
    def _ray_actor_id(self):
        return self._actor_id.hex()


class ActorMethod:
    def __init__(self, handle: ActorHandle, name: str, num_returns: int,
                 max_task_retries: int | None = None, backpressure: int | None = None,
                 max_pending_calls: int = -1, events: bool = True) -> None:
        self._handle = handle
        self._events = events  # recorded in the task history (enable_task_events)
        self._name = name
        self._num_returns = num_returns
        self._max_task_retries = max_task_retries
        self._backpressure = backpressure
        self._max_pending = max_pending_calls

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"Actor methods cannot be called directly. Instead of running "
            f"'actor.{self._name}()', try 'actor.{self._name}.remote()'.")

    def options(self, **options) -> _BoundActorMethod:
        validate_options(options, METHOD_OPTIONS, f"actor method {self._name}")
        return _BoundActorMethod(self, options)

    def remote(self, *args, **kwargs):
        return self._submit(args, kwargs, self._num_returns, None, self._backpressure,
                            self._max_task_retries)

    def _submit(self, args: tuple, kwargs: dict, num_returns: int, name: str | None,
                backpressure: int | None, max_task_retries: int | None,
                concurrency_group: str = "", events: bool | None = None):
        handle = self._handle
        if handle._cls is not None:
            handle._check_call(self._name, args, kwargs)
        client = session.client_or_start()
        if self._max_pending > 0:
            pending = client.pending_actor_calls(handle._actor_id)
            if pending >= self._max_pending:
                raise exc.PendingCallsLimitExceeded(
                    f"{handle._class_name} has {pending} calls from this process that have "
                    f"not returned (max_pending_calls={self._max_pending}); wait for some "
                    f"before calling again")
        return submit_actor_call(
            client, handle._actor_id, self._name,
            name or f"{handle._class_name}.{self._name}", args, kwargs, num_returns,
            max_task_retries or 0, max(0, backpressure or 0), concurrency_group,
            self._events if events is None else events)


_FETCH = p.ObjectData()  # a dependency the actor's worker fetches itself


def submit_actor_call(client, actor_id: bytes, method: str, name: str, args: tuple,
                      kwargs: dict, num_returns: int, max_retries: int, backpressure: int = 0,
                      concurrency_group: str = "", events: bool = True):
    """Queue one actor method call: straight to the actor's worker when its address is
    known, otherwise through the daemon. Returns its ref, refs, or None. An empty
    ``concurrency_group`` means the method's own."""
    job_id = task_context.current_job_id(client.job_id)
    task_id = ids.new_task_id(job_id)
    args_blob, deps, contained, keep = pack_args(client, None, name, args, kwargs)
    generator = num_returns if num_returns in ("streaming", "dynamic") else ""
    count = 1 if generator else max(num_returns, 1)  # (a call with no returns still
    # reports that it finished)
    oids = [ids.object_id_for_return(task_id, i) for i in range(count)]
    refs = uncounted_refs(client, oids)
    # The first result stays referenced until it arrives, so the caller always learns
    # when the call is done (that is when it may switch between paths).
    if generator == "streaming":  # (tracked first: its values may come at once)
        stream = ObjectRefGenerator(client, task_id, refs[0], backpressure > 0)
        client.track_generator(task_id, stream)
    route = client.begin_actor_call(actor_id, oids, keep=refs[0],
                                    direct=generator != "streaming")

    def register(direct_worker: bytes | None) -> p.SubmitTask:
        return p.SubmitTask(
            task_id, b"", name, args_blob, deps, contained, count, {}, max_retries, False,
            actor_id, method, direct_worker, generator=generator, backpressure=backpressure,
            concurrency_group=concurrency_group, events=events)

    if route is not None:
        objects = client.objects
        path, worker_id, node_id = route
        if node_id == client.node_id:
            dep_data = [objects.get(oid, _FETCH) for oid in deps]
        else:  # a large argument is copied to the actor's node by its daemon
            dep_data = [_FETCH if d.shm is not None or d.where is not None else d
                        for d in (objects.get(oid, _FETCH) for oid in deps)]
        if _FETCH in dep_data:
            # The worker will ask the daemon for these: send what made them first.
            client.send()
        if node_id == client.node_id:
            reply_to = client.listen_path
        else:  # empty when we cannot be reached from there: the results come via the head
            reply_to = "tcp:" + client.listen_tcp if client.listen_tcp else ""
        call = p.ExecuteTask(
            task_id, job_id, b"", None, name, args_blob, dep_data, count, [],
            actor_id, method, dep_ids=deps, owner_path=reply_to, owner_node=client.node_id,
            generator=generator, concurrency_group=concurrency_group)
        if client.peers.send(path, [call]):
            client.send_later(register(worker_id))  # bookkeeping only: nobody waits on it
        else:
            client.direct_call_failed(actor_id, path)
            client.send_actor_call(actor_id, register(None), generator == "streaming")
    else:
        client.send_actor_call(actor_id, register(None), generator == "streaming")
    del keep
    if generator == "streaming":
        return stream
    if num_returns == 1 or generator:
        return refs[0]
    if num_returns == 0:
        return None
    return refs


class _BoundActorMethod:
    def __init__(self, method: ActorMethod, options: dict[str, Any]) -> None:
        self._method = method
        self._options = options

    def remote(self, *args, **kwargs):
        return self._method._submit(
            args, kwargs, self._options.get("num_returns", self._method._num_returns),
            self._options.get("name"),
            self._options.get("_generator_backpressure_num_objects",
                              self._method._backpressure),
            self._options.get("max_task_retries", self._method._max_task_retries),
            self._options.get("concurrency_group") or "",
            self._options.get("enable_task_events"))


def handle_from_info(info: dict) -> ActorHandle:
    """A handle to the actor the daemon described (get_actor, get_if_exists)."""
    class_name, methods = serialization.deserialize_inline(info["methods"])
    creation_ref = ObjectRef(ids.object_id_for_return(info["creation_task"], 0))
    return ActorHandle(info["actor_id"], class_name, methods, creation_ref)


def exit_actor() -> None:
    """End the current actor after this call (from inside one of its methods)."""
    if task_context.actor.actor_id is None:
        raise TypeError("exit_actor() can only be called inside an actor")
    raise task_context.ActorExit()
