"""The public functions: init, shutdown, get, put, wait, cancel, remote and friends.

They check their arguments and call the private layer: ``_private.session`` holds this
process's connection to a cluster (and what shutdown stops), the client moves objects.
"""

from __future__ import annotations

import logging
import operator
import time
from typing import Any

from . import exceptions as exc
from ._private import (
    client as client_mod,
    dashboard_process,
    protocol as p,
    session,
    task_context,
)
from ._private.generators import ObjectRefGenerator
from ._private.object_ref import ObjectRef, put as _put
from ._private.options import (
    METHOD_OPTIONS,
    check_init_options,
    check_node_resources,
    env_vars,
    validate_options,
)
from ._private.version import VERSION
from .actor import ActorClass, ActorHandle, handle_from_info
from .remote_function import RemoteFunction

log = logging.getLogger("rayling")


class RayContext(dict):
    """What ``init()`` returns, as Ray's: ``dashboard_url``, ``python_version``,
    ``ray_version`` (rayling's), ``address_info`` (node_ip_address, session_dir, node_id,
    address/gcs_address, webui_url), which it also is as a dict; ``with rayling.init():``
    shuts down at the end."""

    def __init__(self, info: dict) -> None:
        import platform

        super().__init__(info)
        self.address_info = info
        self.dashboard_url = info.get("webui_url", "")
        self.python_version = platform.python_version()
        self.ray_version = f"{VERSION} (rayling)"
        self.ray_commit = "rayling"

    def __repr__(self) -> str:
        return (f"RayContext(dashboard_url={self.dashboard_url!r}, python_version="
                f"{self.python_version!r}, ray_version={self.ray_version!r}, ray_commit="
                f"{self.ray_commit!r}, address_info={dict(self)!r})")

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __enter__(self) -> RayContext:
        return self

    def __exit__(self, *exc_info) -> None:
        shutdown()

    def disconnect(self) -> None:
        shutdown()


def init(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    resources: dict[str, float] | None = None,
    object_store_memory: int | None = None,
    local_mode: bool = False,
    ignore_reinit_error: bool = False,
    include_dashboard: bool | None = None,
    dashboard_host: str = "127.0.0.1",
    dashboard_port: int | None = None,
    job_config: Any = None,
    configure_logging: bool = True,
    logging_level: int | str = logging.INFO,
    logging_format: str | None = None,
    logging_config: Any = None,
    log_to_driver: bool = True,
    namespace: str | None = None,
    runtime_env: dict | None = None,
    _system_config: dict | None = None,
    _node_ip_address: str | None = None,
    _temp_dir: str | None = None,
    _metrics_export_port: int | None = None,
    **kwargs: Any,
) -> RayContext:
    """Connect to a cluster, starting a local one (a node daemon and its worker pool)
    when there is none to connect to.

    ``address``: ``"HOST:PORT"`` of a head started with ``rayling start --head``;
    ``"auto"``: the cluster of this Slurm job or this machine; ``"local"``: always start a
    new local cluster. Without it, ``RAYLING_ADDRESS`` (or ``RAY_ADDRESS``) is used, then
    a cluster ``rayling start`` runs on this machine, else a new local cluster starts.
    ``_metrics_export_port``: a new local cluster also serves its Prometheus metrics
    (the dashboard's /metrics) on this port of ``dashboard_host``.
    A new local cluster serves the dashboard on ``dashboard_host:dashboard_port`` (8265,
    or the next free port) when ``include_dashboard`` is True, or, left None, when the
    dashboard's libraries are installed (`pip install 'rayling[dashboard]'`;
    ``RAYLING_INCLUDE_DASHBOARD=0`` turns that default off).
    Arguments mirror ``ray.init``. Those rayling does not implement yet (runtime_env
    beyond env_vars, job_config, local_mode, ...) are accepted at their defaults and raise
    NotImplementedError otherwise.
    """
    for key in kwargs:
        if not key.startswith("_"):
            raise TypeError(f"init() got an unexpected keyword argument {key!r}")
    check_init_options({
        "local_mode": local_mode, "job_config": job_config, "logging_config": logging_config,
        "_temp_dir": _temp_dir, **kwargs,
    }, _system_config)
    dashboard_process.check(include_dashboard, dashboard_host, dashboard_port,
                            _metrics_export_port)
    job_env = env_vars(runtime_env)
    with session.lock:
        if client_mod.current is not None:
            if ignore_reinit_error:
                return RayContext(session.info())
            raise RuntimeError(
                "Maybe you called rayling.init twice by accident? This error can be suppressed "
                "by passing in 'ignore_reinit_error=True' or by calling 'rayling.shutdown()' "
                "prior to 'rayling.init()'.")
        if configure_logging:
            level = logging_level
            if isinstance(level, str):
                level = logging.getLevelName(level.upper())
            logging.getLogger("rayling").setLevel(level)
            if logging_format:
                for handler in logging.getLogger("rayling").handlers:
                    handler.setFormatter(logging.Formatter(logging_format))
        check_node_resources(num_cpus, num_gpus, resources, object_store_memory)
        task_context.job_env = job_env
        return RayContext(session.connect_or_start(
            address, num_cpus=num_cpus, num_gpus=num_gpus, resources=resources,
            object_store_memory=object_store_memory, namespace_=namespace,
            log_to_driver=log_to_driver, system_config=_system_config,
            node_ip_address=_node_ip_address,
            dashboard=(dashboard_host, dashboard_process.DEFAULT_PORT if dashboard_port is None
                       else dashboard_port)
            if dashboard_process.wanted(include_dashboard) else None,
            metrics_port=_metrics_export_port))


def is_initialized() -> bool:
    return client_mod.current is not None


def shutdown(_exiting_interpreter: bool = False) -> None:
    """Disconnect, stop every process ``init()`` started and remove its files and memory."""
    session.shutdown()


def put(value: Any, *, _owner: Any = None) -> ObjectRef:
    """Store ``value`` in the object store and return a ref to it."""
    if isinstance(value, ObjectRef):
        raise TypeError(
            "Calling 'put' on an ObjectRef is not allowed. If you really want to do this, "
            "you can wrap the ObjectRef in a list and call 'put' on it.")
    return _put(session.client_or_start(), value)


def get(object_refs, *, timeout: float | None = None):
    """The value(s) of ``object_refs`` (one ref, or a list of refs), blocking until ready.

    Raises GetTimeoutError after ``timeout`` seconds, and the task's own exception
    (also an instance of RayTaskError) if the task failed.
    """
    if type(object_refs) is ObjectRef:
        client = session.connected_client()
        oid = object_refs._id
        if oid not in client.objects and not client.wait_for([oid], 1, timeout):
            raise exc.GetTimeoutError(
                f"Get timed out: {object_refs} was not ready after {timeout} s.")
        return client.value_of(oid)
    if isinstance(object_refs, list | tuple):
        for ref in object_refs:
            if not isinstance(ref, ObjectRef):
                raise TypeError(
                    f"get() expects a list of ObjectRefs, but the list contains a "
                    f"{type(ref).__name__}: {ref!r}")
        if not object_refs:
            return []
        client = session.connected_client()
        oids = [r._id for r in object_refs]
        objects = client.objects
        missing = [o for o in oids if o not in objects]
        if missing:
            ready = client.wait_for(missing, len(missing), timeout)
            if len(ready) < len(missing):
                raise exc.GetTimeoutError(
                    f"Get timed out: {len(missing) - len(ready)} of {len(oids)} objects were "
                    f"not ready after {timeout} s.")
        return [client.value_of(o) for o in oids]
    if hasattr(object_refs, "__await__") and not isinstance(object_refs, ObjectRef):
        raise TypeError("get() does not take coroutines or futures; await them instead.")
    raise TypeError(
        f"get() expects an ObjectRef or a list of ObjectRefs, got {type(object_refs).__name__}: "
        f"{object_refs!r}")


def wait(
    object_refs: list[ObjectRef],
    *,
    num_returns: int = 1,
    timeout: float | None = None,
    fetch_local: bool = True,
) -> tuple[list[ObjectRef], list[ObjectRef]]:
    """Wait until ``num_returns`` of the refs are ready or ``timeout`` passes.

    Returns ``(ready, not_ready)``, each in the order of ``object_refs``.
    """
    if not isinstance(object_refs, list | tuple):
        raise TypeError(
            f"wait() expects a list of ObjectRefs, got {type(object_refs).__name__}")
    kinds = set(map(type, object_refs))
    if kinds - {ObjectRef}:
        bad = next(k for k in kinds if k is not ObjectRef)
        if bad is ObjectRefGenerator and not kinds - {ObjectRef, ObjectRefGenerator}:
            return _wait_with_generators(list(object_refs), num_returns, timeout)
        raise TypeError(f"wait() expects a list of ObjectRefs, but got a {bad.__name__}")
    oids = list(map(_ref_id, object_refs))
    if len(set(oids)) != len(oids):
        raise ValueError("wait() requires a list of unique ObjectRefs; this one has duplicates")
    if not isinstance(num_returns, int) or num_returns < 0:
        raise ValueError(f"num_returns must be a non-negative integer, got {num_returns!r}")
    if num_returns > len(object_refs):
        raise ValueError(
            f"num_returns ({num_returns}) cannot exceed the number of refs ({len(object_refs)})")
    if timeout is not None and timeout < 0:
        raise ValueError(f"timeout must be None or non-negative, got {timeout}")
    client = session.connected_client()
    found = _first_ready(client.objects, oids, num_returns)
    if len(found) < num_returns:
        client.wait_for(oids, num_returns, timeout)
        found = _first_ready(client.objects, oids, num_returns)
    # Slices keep this linear in C even for thousands of refs.
    refs = list(object_refs)
    ready = [refs[i] for i in found]
    not_ready: list = []
    start = 0
    for i in found:
        not_ready += refs[start:i]
        start = i + 1
    not_ready += refs[start:]
    return ready, not_ready


_ref_id = operator.attrgetter("_id")


def _wait_with_generators(items: list, num_returns: int, timeout: float | None):
    """wait() over refs and streaming generators: a generator is ready when its next
    value (or its end) is here."""
    if not isinstance(num_returns, int) or not 0 <= num_returns <= len(items):
        raise ValueError(f"num_returns must be from 0 to {len(items)}, got {num_returns!r}")
    client = session.connected_client()
    deadline = None if timeout is None else time.monotonic() + timeout
    objects = client.objects

    def is_ready(item) -> bool:
        return item._ready() if type(item) is ObjectRefGenerator else item._id in objects

    while True:
        ready = [i for i, item in enumerate(items) if is_ready(item)][:num_returns]
        remaining = None if deadline is None else deadline - time.monotonic()
        if len(ready) >= num_returns or (remaining is not None and remaining <= 0):
            break
        waiting = [item for item in items if not is_ready(item)]
        client.wait_for_any(
            [x._id if type(x) is ObjectRef else x._end._id for x in waiting],
            [x._next_item() for x in waiting if type(x) is ObjectRefGenerator], remaining)
    chosen = set(ready)
    return ([items[i] for i in ready],
            [item for i, item in enumerate(items) if i not in chosen])


def _first_ready(objects: dict, oids: list[bytes], count: int) -> list[int]:
    """Indices of the first ``count`` ids (in order) whose objects have arrived."""
    found = []
    if count:
        for i, oid in enumerate(oids):
            if oid in objects:
                found.append(i)
                if len(found) == count:
                    break
    return found


def cancel(object_ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
    """Cancel the task that makes ``object_ref`` (or an ObjectRefGenerator's task).

    A queued task never runs; a running one gets KeyboardInterrupt (``force=True`` kills its
    worker instead). ``get`` on its result then raises TaskCancelledError (a generator's
    next ref does). With ``recursive`` (the default), the tasks it submitted are
    cancelled too.
    """
    if isinstance(object_ref, ObjectRefGenerator):
        object_ref = object_ref.completed()
    if not isinstance(object_ref, ObjectRef):
        raise TypeError(f"cancel() expects an ObjectRef, got {type(object_ref).__name__}")
    client = session.connected_client()
    client.send(p.CancelTask(object_ref._id[:24], force, bool(recursive)))


def remote(*args, **kwargs):
    """Make a function into a remote function (``@remote`` or ``@remote(num_cpus=...)``)."""
    if len(args) == 1 and not kwargs and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError("@remote takes keyword options only, e.g. @remote(num_cpus=2)")
    return lambda target: _make_remote(target, kwargs)


def _make_remote(target, options: dict):
    if isinstance(target, type):
        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@remote needs a function or class, got {type(target).__name__}")
    return RemoteFunction(target, options)


def method(*args, **kwargs):
    """Options for an actor method (``@rayling.method(num_returns=2)``)."""
    validate_options(kwargs, METHOD_OPTIONS, "@method")

    def decorate(fn):
        fn.__rayling_method_options__ = kwargs
        return fn

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return decorate(args[0])
    return decorate


def kill(actor, *, no_restart: bool = True) -> None:
    """End an actor now: its process is killed, pending calls fail with ActorDiedError.
    With ``no_restart=False`` it restarts if its ``max_restarts`` allows."""
    if not isinstance(actor, ActorHandle):
        raise TypeError(f"kill() expects an actor handle, got {type(actor).__name__}")
    session.connected_client().kill_actor(actor._actor_id, no_restart)


def get_actor(name: str, namespace: str | None = None):
    """The handle of the live actor named ``name`` (raises ValueError if there is none)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() needs an actor name, got {name!r}")
    ns = namespace if namespace is not None else session.current_namespace()
    info = session.client_or_start().query(p.NamedActor(name, ns))
    if info is None:
        raise ValueError(f"Failed to look up actor with name '{name}' in namespace "
                         f"'{ns}'. It was never created, or it has died.")
    return handle_from_info(info)


def nodes() -> list[dict]:
    """One dict per node: NodeID, Alive, NodeManagerAddress, Resources, ..."""
    return session.client_or_start().query(p.ClusterNodes())


def cluster_resources() -> dict[str, float]:
    return session.client_or_start().query(p.ClusterResources())


def available_resources() -> dict[str, float]:
    return session.client_or_start().query(p.AvailableResources())


def get_dashboard_url() -> str:
    """The dashboard's address, "host:port" without a scheme (as Ray's); empty when the
    cluster serves none."""
    return session.client_or_start().dashboard_url


def get_gpu_ids() -> list[int]:
    """GPU indices assigned to the current task (empty on the driver)."""
    return task_context.gpu_ids()


def _object_store_stats() -> dict:
    """Daemon-side counters (store bytes, objects, workers); for tests and benchmarks."""
    return session.connected_client().query(p.StoreStats())
