"""Starting and stopping a node daemon on this machine (``init()``, ``rayling start``).

The daemon runs in its own session (so Ctrl-C in the driver's terminal does not reach
it), in a fresh private session directory that holds its socket and logs. ``start``
returns once the daemon prints READY (a head: serving; a joining node: registered with
the head); ``stop`` asks it to exit, waits, and removes the directory and any shared
memory left behind.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time

import msgspec
import psutil

from .. import exceptions as exc
from . import cluster_files, shm
from .daemon import DaemonConfig

STARTUP_TIMEOUT = 30.0


def default_num_cpus() -> int:
    """CPUs this process may run on (respects Slurm/cgroup affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS
        return max(1, os.cpu_count() or 1)


def detect_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else NVIDIA devices."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    try:
        return len([d for d in os.listdir("/dev") if d.startswith("nvidia") and d[6:].isdigit()])
    except OSError:
        return 0


def _shm_room() -> int | None:
    """Bytes the object store may take in /dev/shm (None: there is no /dev/shm)."""
    try:
        return int(shutil.disk_usage("/dev/shm").free * 0.9)
    except FileNotFoundError:
        return None


def default_store_capacity() -> int:
    """30% of RAM, but no more than /dev/shm can hold."""
    capacity = int(psutil.virtual_memory().total * 0.3)
    room = _shm_room()
    return capacity if room is None else min(capacity, room)


def fit_store_capacity(requested: int) -> int:
    """``requested`` bytes of object store, cut (with a warning) to what /dev/shm can
    hold: beyond it, puts would fail with "No space left on device"."""
    room = _shm_room()
    if room is None or requested <= room:
        return requested
    print(f"(rayling) Warning: object_store_memory is {requested:,} bytes but /dev/shm can "
          f"hold only {room:,} more; the object store gets {room:,} bytes. Give /dev/shm "
          f"more room (docker run --shm-size=..., say) to use more.", file=sys.stderr)
    return room


def with_standard_resources(resources: dict[str, float], object_store_memory: int,
                            node_ip: str, head: bool) -> dict[str, float]:
    """A node's resources with those every Ray node has: ``memory`` (bytes tasks and actors
    may ask for with ``memory=``: 70% of the memory available now, less the object store,
    unless given), ``object_store_memory``, ``node:<ip>`` (1, for pinning work to this
    node with ``resources={"node:<ip>": 0.01}``), and ``node:__internal_head__`` on a head."""
    full = dict(resources)
    full.setdefault("memory", float(max(
        0, int(psutil.virtual_memory().available * 0.7) - object_store_memory)))
    full.setdefault("object_store_memory", float(object_store_memory))
    full[f"node:{node_ip}"] = 1.0
    if head:
        full["node:__internal_head__"] = 1.0
    return full


class LocalNode:
    """A node daemon started by this process."""

    def __init__(self, session: str, session_dir: str, socket_path: str, token: str,
                 process: subprocess.Popen) -> None:
        self.session = session
        self.session_dir = session_dir
        self.socket_path = socket_path
        self.token = token
        self.process = process
        self.node_id = ""  # hex, from the daemon's READY line
        self.port: int | None = None  # a head's TCP port
        self.records: list[str] = []  # cluster files that name it, removed at its stop
        self.dashboard_url = ""  # "host:port" of the dashboard a head serves
        self.metrics_port: int | None = None  # where it serves only its metrics

    @classmethod
    def start(
        cls,
        resources: dict[str, float],
        object_store_memory: int,
        node_ip: str = "127.0.0.1",
        system_config: dict | None = None,
        *,
        port: int | None = None,
        head_address: str | None = None,
        token: str | None = None,
        exit_with_driver: bool = True,
        die_with_parent: bool = False,
        driver_wait: float = 60.0,
        dashboard: tuple[str, int] | None = None,
        metrics_port: int | None = None,
        on_spawn=None,
    ) -> LocalNode:
        """Start a daemon: a local cluster (the default), a head listening on TCP
        ``port`` (0: any free port), or a node joining the head at ``head_address``. A
        head with ``dashboard`` (host, port) serves the dashboard there, and with
        ``metrics_port`` its Prometheus metrics on that port too. ``on_spawn(node)`` runs
        as soon as the daemon's process exists, before it serves (`rayling start` notes
        it there, so `rayling stop` sees a daemon still starting)."""
        object_store_memory = fit_store_capacity(object_store_memory)
        resources = with_standard_resources(resources, object_store_memory, node_ip,
                                            head=head_address is None)
        session = secrets.token_hex(4)
        session_dir = tempfile.mkdtemp(prefix=f"rayling_{session}_", dir=_short_temp_dir())
        os.makedirs(os.path.join(session_dir, "logs"))
        socket_path = os.path.join(session_dir, "daemon.sock")
        token = token or secrets.token_hex(16)
        config = DaemonConfig(
            session=session,
            session_dir=session_dir,
            socket_path=socket_path,
            resources=resources,
            object_store_memory=object_store_memory,
            node_ip=node_ip,
            exit_with_driver=exit_with_driver,
            prestart_workers=max(1, int(resources.get("CPU", 1))),
            system_config=system_config or {},
            port=port,
            head_address=head_address,
            driver_wait=driver_wait,
            dashboard_host=dashboard[0] if dashboard else "",
            dashboard_port=dashboard[1] if dashboard else 0,
            metrics_port=-1 if metrics_port is None else metrics_port,
        )
        if config.clustered:  # workers also listen on TCP, for direct calls from other nodes
            config.listen_ip = node_ip
        env = dict(os.environ)
        env["RAYLING_TOKEN"] = token
        # The daemon, template and workers start with -S (no site processing, which can cost
        # tens of milliseconds) and see exactly the driver's import path instead.
        env["PYTHONPATH"] = os.pathsep.join(_driver_paths())
        stderr_path = os.path.join(session_dir, "logs", "daemon.err")
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-S", "-m", "rayling._private.daemon"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                start_new_session=not die_with_parent,
                preexec_fn=functools.partial(_die_with_parent, _libc_prctl())
                if die_with_parent else None,
            )
        process.stdin.write(msgspec.json.encode(config))  # (its config stays out of argv)
        process.stdin.close()
        node = cls(session, session_dir, socket_path, token, process)
        try:
            if on_spawn is not None:
                on_spawn(node)
            info = node._wait_ready(stderr_path)
        except BaseException:
            node.process.terminate()
            node.stop()
            raise
        node.node_id = info.get("node_id", "")
        node.port = info.get("port")
        node.dashboard_url = info.get("dashboard_url", "")
        node.metrics_port = info.get("metrics_port")
        return node

    def _wait_ready(self, stderr_path: str) -> dict:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not selector.select(remaining):
                raise exc.RaySystemError(
                    f"the rayling node daemon did not start within {STARTUP_TIMEOUT:.0f} s; "
                    f"see {stderr_path}")
            chunk = os.read(self.process.stdout.fileno(), 64)
            if not chunk:
                with open(stderr_path, errors="replace") as f:
                    err = f.read()[-2000:]
                raise exc.RaySystemError(f"the rayling node daemon failed to start:\n{err}")
            line += chunk
        selector.close()
        self.process.stdout.close()
        text = line.decode(errors="replace").strip()
        return json.loads(text[len("READY"):] or "{}") if text.startswith("READY") else {}

    def stop(self, timeout: float = 10.0) -> None:
        """Wait for the daemon to exit (it was asked to), then clean up after it."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for path in self.records:
            cluster_files.remove(path)
        shm.unlink_session(self.session)
        shutil.rmtree(self.session_dir, ignore_errors=True)


def _libc_prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (ImportError, OSError):  # not Linux: no parent-death signal
        return None


def _die_with_parent(prctl) -> None:
    """Runs in the child between fork and exec, so it imports and loads nothing (another
    thread of the parent may have held a lock at the fork): end with the starting thread.
    ``prctl`` was looked up in the parent."""
    os.setsid()  # still out of reach of the terminal's Ctrl-C
    if prctl is not None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG; SIGTERM: it still cleans up


MAX_SESSION_PARENT = 60  # characters: unix socket paths inside must stay under ~107
_session_parent: str | None = None  # rayling start --temp-dir


def set_session_parent(path: str) -> None:
    """Put session folders under ``path`` (made 0700 if missing)."""
    global _session_parent
    path = os.path.abspath(path)
    if len(path) > MAX_SESSION_PARENT:
        raise ValueError(f"--temp-dir {path} is too long: unix socket paths inside it would "
                         f"pass the system's limit; use a path of at most "
                         f"{MAX_SESSION_PARENT} characters")
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    shared = st.st_mode & stat.S_ISVTX  # (like /tmp: others cannot touch our entries)
    if not stat.S_ISDIR(st.st_mode) or not shared and (
            st.st_uid != os.geteuid() or st.st_mode & 0o022):
        raise ValueError(
            f"--temp-dir {path} is not a folder of yours that only you can write (mode "
            f"{st.st_mode & 0o777:o}, owner uid {st.st_uid}): another user could replace "
            f"the session folder inside it. Use a folder of your own, or a sticky one "
            f"like /tmp.")
    _session_parent = path


def _short_temp_dir() -> str:
    """Where session folders go: --temp-dir, or the temp directory unless its path is so
    long that unix socket paths inside it would pass the ~107-byte limit (then /tmp)."""
    if _session_parent is not None:
        return _session_parent
    base = tempfile.gettempdir()
    return base if len(base) <= MAX_SESSION_PARENT else "/tmp"


def _driver_paths() -> list[str]:
    """The driver's script directory, cwd and import path, so workers import what it can."""
    paths = []
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file:
        paths.append(os.path.dirname(os.path.abspath(main_file)))
    paths.append(os.getcwd())
    for entry in sys.path:
        entry = os.path.abspath(entry) if entry else os.getcwd()
        if entry not in paths:
            paths.append(entry)
    return paths
