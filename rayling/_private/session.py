"""This process's session: its connection to a cluster (found, or started here), and
what shutdown() must stop.

    init(address)  ──> a running cluster (the address given, RAYLING_ADDRESS, a Slurm
                       job's, or this machine's `rayling start`): connect to it
                   └─> none: start a local one (LocalNode: a daemon and its workers)
    first .remote() or put() without init(): the same, with the defaults
    shutdown()     ──> close the client; stop the daemon if this process started it

The public ``rayling.init`` checks its arguments and calls ``connect_or_start`` here.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import uuid

from .. import exceptions as exc
from . import client as client_mod, cluster_files, head_wait, ids, protocol as p, task_context
from .client import CoreClient
from .log_printer import LogPrinter
from .node import LocalNode, default_num_cpus, default_store_capacity, detect_gpus

lock = threading.RLock()
_node: LocalNode | None = None  # the daemon this process started, if any
_printer: LogPrinter | None = None
_observer: CoreClient | None = None  # this process's observer connection (observe())
_atexit_registered = False
namespace: str | None = None  # this driver's job's namespace (init()'s, or anonymous)
_job_namespaces: dict[bytes, str] = {}  # in a worker: job id -> its namespace


def connect_or_start(address: str | None = None, *, num_cpus=None, num_gpus=None,
                     resources: dict | None = None, object_store_memory: int | None = None,
                     namespace_: str | None = None, log_to_driver: bool = True,
                     system_config: dict | None = None, node_ip_address: str | None = None,
                     dashboard: tuple[str, int] | None = None,
                     metrics_port: int | None = None) -> dict:
    """Connect to the cluster ``address`` names (or the one to use without it), or start
    a local one. Returns the session's facts (``info()``). Lock held by the caller.
    ``dashboard``: (host, port) where a new local cluster serves its dashboard (and
    ``metrics_port`` where it serves its metrics alone)."""
    global _node, namespace
    if not address:
        address = os.environ.get("RAYLING_ADDRESS") or os.environ.get("RAY_ADDRESS")
    existing = find_cluster(address)
    if existing is not None:
        if num_cpus is not None or num_gpus is not None or resources:
            raise ValueError(
                "When connecting to an existing cluster, num_cpus, num_gpus and resources "
                "must not be provided: they are set by `rayling start` on each node.")
        namespace = namespace_ or _anonymous_namespace()
        _attach(_connect(*existing, node_ip_address), log_to_driver)
        return info()
    node_resources: dict[str, float] = {
        "CPU": float(default_num_cpus() if num_cpus is None else num_cpus),
    }
    gpus = num_gpus if num_gpus is not None else detect_gpus()
    if gpus:
        node_resources["GPU"] = float(gpus)
    for name, amount in (resources or {}).items():
        if name in ("CPU", "GPU"):
            raise ValueError(f"Use num_cpus/num_gpus instead of resources={{{name!r}: ...}}")
        node_resources[name] = float(amount)
    namespace = namespace_ or _anonymous_namespace()
    capacity = object_store_memory or default_store_capacity()
    node = LocalNode.start(node_resources, int(capacity), system_config=system_config,
                           dashboard=dashboard, metrics_port=metrics_port)
    try:
        client = CoreClient(node.socket_path, node.token, "driver", namespace=namespace)
    except BaseException:
        node.stop(timeout=0.1)
        raise
    try:  # (so `rayling list` finds it; a script runs on without it)
        node.records = cluster_files.write_local_cluster(
            node.process.pid, node.socket_path, node.token, node.session_dir)
    except OSError as e:
        logging.getLogger("rayling").warning(
            "cannot note this cluster for `rayling list` and the dashboard's commands: %s", e)
    _node = node
    _attach(client, log_to_driver)
    return info()


def observe(address: str | None = None) -> CoreClient:
    """A client that asks about the cluster: this process's own if it is a driver or a
    worker; otherwise (`rayling list`, the state API before init()) a connection of its
    own kept apart from the driver's (an *observer*: no job, no worker output, queries
    only; init() can still follow). The cluster: at ``address``; without one, the
    cluster `rayling start` runs on this machine (or the Slurm job's), else the newest one
    that a script's ``init()`` started here."""
    global _observer
    if client_mod.current is not None:
        return client_mod.current
    with lock:
        if _observer is not None:
            return _observer
        local = cluster_files.local_clusters()
        named = [info for info in local if address in (info["socket"], info["session_dir"])]
        if not named and (address or cluster_files.resolve_auto() is not None):
            found = find_cluster(address or "auto")
            _observer = _connect(*found, None, "observer")
            return _observer
        found = named or local  # (init()'s address is its daemon's socket)
        if not found:
            raise ConnectionError(
                "Found no rayling cluster to look at on this machine: no `rayling start` "
                "cluster and no script whose init() runs one. Pass the head's address "
                "(--address HOST:PORT) for a cluster elsewhere.")
        info = found[0]
        try:
            return observe_socket(info["socket"], info["token"])
        except OSError as e:
            raise ConnectionError(f"Could not connect to the rayling cluster of process "
                                  f"{info['driver_pid']}: {e}") from e


def observe_socket(socket_path: str, token: str) -> CoreClient:
    """Connect to the daemon at ``socket_path`` as this process's observer (see
    observe)."""
    global _observer, _atexit_registered
    _observer = CoreClient(socket_path, token, "observer")
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    return _observer


def _attach(client: CoreClient, log_to_driver: bool) -> None:
    """Make ``client`` this process's connection (lock held)."""
    global _printer, _atexit_registered
    client_mod.current = client
    if log_to_driver:
        _printer = LogPrinter()
        client.on_logs = _printer.handle
        client.on_progress = _printer.progress
        client.on_warning = _printer.warning
        client.output_caught_up = _printer.caught_up
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True


def find_cluster(address: str | None, wait: float | None = None
                 ) -> tuple[str, str] | None:
    """(address, token) of the running cluster to connect to, or None to start one. A
    head named by address that is still coming up is waited for (``wait`` seconds;
    default RAYLING_WAIT_FOR_HEAD or 60)."""
    if address in (None, "", "auto"):
        found = cluster_files.resolve_auto(wait=address == "auto")
        if found is None:
            if address == "auto":
                slurm = (f"this Slurm job's head did not publish its address within "
                         f"{cluster_files.SLURM_WAIT:g} s (`srun rayling start --slurm`), and "
                         if cluster_files.slurm_cluster_path() else "")
                raise ConnectionError(
                    f"Could not find a running rayling cluster for address='auto': {slurm}"
                    f"this user runs no `rayling start` cluster on this machine. Start one "
                    f"with `rayling start --head`, or call init() without an address for a "
                    f"local cluster.")
            return None
        return found["address"], os.environ.get("RAYLING_TOKEN") or found["token"]
    if address == "local":
        return None
    for prefix in ("ray://", "rayling://"):
        if address.startswith(prefix):
            address = address[len(prefix):]
    if ":" not in address:
        address += ":6379"
    host, _, port = address.rpartition(":")

    def known_token() -> str | None:
        return cluster_files.find_token(address) or cluster_files.find_token(
            f"{_resolve(host)}:{port}")
    # No token yet: a head still coming up (it writes its files once it serves), or
    # nothing there.
    token = known_token() or head_wait.wait_for_head(
        f"{_resolve(host)}:{port}", known_token,
        head_wait.default_wait() if wait is None else wait, head_wait.say_on_stderr)
    return address, token


def _resolve(host: str) -> str:
    return cluster_files.resolve(host) or host


def _connect(address: str, token: str, listen_ip: str | None, kind: str = "driver"
             ) -> CoreClient:
    host, _, port = address.rpartition(":")
    host = _resolve(host)
    local = cluster_files.local_socket(f"{host}:{port}") or cluster_files.local_socket(address)
    if local:  # the head runs on this machine: its unix socket, and TCP for peers
        where, listen = local, _resolve(listen_ip) if listen_ip else host
    else:
        where, listen = f"tcp:{host}:{port}", _resolve(listen_ip) if listen_ip else ""
    try:
        return CoreClient(where, token, kind, listen_ip=listen, namespace=namespace or "")
    except ConnectionRefusedError:
        if local:
            raise
    except OSError as e:
        raise ConnectionError(
            f"Could not connect to the rayling cluster at {address}: {e}. Is `rayling start "
            f"--head` running there, and is the port reachable from this machine?") from e
    # Nothing listens there yet: a head still coming up is waited for; else say so.
    head_wait.wait_for_head(f"{host}:{port}", lambda: token, head_wait.default_wait(),
                            head_wait.say_on_stderr)
    return CoreClient(where, token, kind, listen_ip=listen, namespace=namespace or "")


def info() -> dict:
    """Facts of the connected session (what init() returns)."""
    client = client_mod.current
    return {
        "node_ip_address": client.node_ip,
        "session_dir": client.session_dir,
        "node_id": client.node_id.hex(),
        "address": client.address,
        "gcs_address": client.address,  # (Ray's name for where the cluster is)
        "webui_url": client.dashboard_url,
    }


def shutdown() -> None:
    """Disconnect, stop every process this one started and remove its files and memory."""
    global _node, _printer, _observer
    with lock:
        if _observer is not None:
            _observer.close()
            _observer = None
        client = client_mod.current
        if client is None:
            return
        if client.is_worker:
            return  # a task cannot shut its own cluster down
        client_mod.current = None
        try:
            if _node is not None:
                client.send(p.Shutdown())
        except exc.RayError:
            pass
        client.close()
        if _printer is not None:
            _printer.close()
            _printer = None
        if _node is not None:
            _node.stop()
            _node = None


def client_or_start() -> CoreClient:
    """This process's client, starting (or finding) a cluster with the defaults first if
    it has none, as Ray does on the first .remote() or put()."""
    client = client_mod.current
    if client is None:
        with lock:
            if client_mod.current is None:
                logging.getLogger("rayling").setLevel(logging.INFO)
                connect_or_start()
            client = client_mod.current
    return client


def _anonymous_namespace() -> str:
    """A job that names no namespace gets one of its own, as in Ray: its named actors
    are not visible to other jobs."""
    return str(uuid.uuid4())


def current_namespace() -> str:
    """The namespace named actors are made in and looked up in from here: this driver's
    job's, or in a worker, that of the job whose actor or task runs here."""
    client = client_or_start()
    if not client.is_worker:
        return namespace or ""
    call = task_context.current()
    creation = task_context.actor.creation_task
    if creation is not None:
        job_id = creation[-ids.JOB_ID_LEN:]
    elif call is not None:
        job_id = call.job_id
    else:
        return ""
    found = _job_namespaces.get(job_id)
    if found is None:
        found = _job_namespaces[job_id] = client.query(p.JobNamespace(job_id)) or ""
    return found


def connected_client() -> CoreClient:
    client = client_mod.current
    if client is None:
        raise exc.RaySystemError("rayling is not initialized; call rayling.init() first")
    return client
