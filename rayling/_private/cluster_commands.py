"""What ``rayling start``, ``rayling stop`` and ``rayling status`` do (scripts.py holds
only their command-line options).

    rayling start --head        a head daemon on TCP; prints how to join and connect
    rayling start --address A   a node daemon that joins the head at A
    rayling start --slurm       either of the two, decided by Slurm's environment
    rayling stop                every daemon ``rayling start`` left on this machine
    rayling status              the cluster's nodes and resource use

Without ``--block`` start returns once the daemon is serving (head) or registered (node),
and the daemon keeps running in its own session. With ``--block`` it stays in the
foreground: the daemon ends when this process does (SIGTERM, Ctrl-C, or Slurm ending the
job), and its files are removed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import stat
import time

from .. import exceptions as exc
from . import cluster_files, head_wait, protocol as p, shm
from .node import LocalNode, default_num_cpus, default_store_capacity, detect_gpus
from .options import check_node_resources

SLURM_HEAD_TIMEOUT = 300.0  # seconds a Slurm task waits for task 0's head to be up
START_TIME_SLACK = 1.0  # seconds a recorded daemon's start time may differ from psutil's


class StartError(Exception):
    """``rayling start`` cannot go on; the message says why and what to do."""


def resolve_ip(host: str) -> str:
    ip = cluster_files.resolve(host)
    if ip is None:
        raise StartError(f"cannot resolve {host!r} to an address")
    return ip


def node_resources(num_cpus, num_gpus, resources_json) -> dict[str, float]:
    resources = {"CPU": float(default_num_cpus() if num_cpus is None else num_cpus)}
    if num_gpus is None:
        num_gpus = detect_gpus()
    if num_gpus:
        resources["GPU"] = float(num_gpus)
    if resources_json:
        try:
            custom = json.loads(resources_json)
        except ValueError as e:
            raise StartError(
                f"--resources must be a JSON object, e.g. '{{\"disk\": 1}}': {e}") from None
        if not isinstance(custom, dict):
            raise StartError("--resources must map resource names to non-negative numbers")
        for name, amount in custom.items():
            if name in ("CPU", "GPU"):
                raise StartError(f"use --num-cpus/--num-gpus, not --resources {name!r}")
            resources[name] = amount
    try:
        check_node_resources(resources["CPU"], resources.get("GPU"),
                             {k: v for k, v in resources.items() if k not in ("CPU", "GPU")},
                             None)
    except (TypeError, ValueError) as e:
        raise StartError(f"bad resources for this node: {e}") from None
    return {name: float(amount) for name, amount in resources.items()}


def start_head(resources: dict, *, port: int, node_ip: str | None, token: str | None,
               object_store_memory: int | None, block: bool, slurm_file: str | None = None,
               echo=print, dashboard: tuple[str, int] | None = None,
               metrics_port: int | None = None) -> int:
    ip = resolve_ip(node_ip or "127.0.0.1")
    token = token or os.environ.get("RAYLING_TOKEN") or secrets.token_hex(16)
    node = LocalNode.start(resources, object_store_memory or default_store_capacity(), ip,
                           port=port, token=token, exit_with_driver=False,
                           die_with_parent=block, dashboard=dashboard,
                           metrics_port=metrics_port,
                           on_spawn=lambda node: _note_starting(node, "head", f"{ip}:{port}"))
    address = f"{ip}:{node.port}"
    info = {"address": address, "token": token, "pid": node.process.pid,
            "socket": node.socket_path}
    files = _record_node(node, "head", address)
    files += cluster_files.write_machine_record(cluster_files.CURRENT, info)
    home = cluster_files.home_cluster_path(address)
    cluster_files.write(home, {"address": address, "token": token})
    files.append(home)
    if slurm_file:
        cluster_files.write(slurm_file, info)
        files.append(slurm_file)
    if slurm_file:  # the job's other tasks read the token from the file; keep it off the log
        join = (f"  The job's other tasks join through {slurm_file}; to add a node by hand:\n"
                f"    rayling start --address={address}   (token: in {home})\n")
    elif ip.startswith("127.") or ip == "::1":
        join = (f"  The head listens on this machine only ({ip}): other machines cannot join.\n"
                f"  To let them, start it with --node-ip-address=<an address of this machine\n"
                f"  they reach>. Another node on this machine joins with:\n"
                f"    rayling start --address={address}\n")
    else:
        join = (f"  Add a node from another machine (the token is in {home}, mode 0600;\n"
                f"  copy it there, or to any file only you can read, if that machine does\n"
                f"  not share this home directory):\n"
                f"    rayling start --address={address} --token-file={home}\n")
    echo(f"rayling head started at {address} (node {node.node_id[:12]}, "
         f"{_fmt_resources(resources)}).\n"
         f"\n"
         f"{join}"
         f"  Connect a script:\n"
         f"    rayling.init(address=\"{address}\")   or, on this machine, "
         f"rayling.init(address=\"auto\")\n"
         f"  Status and stop:\n"
         f"    rayling status    rayling stop"
         + (f"\n  Dashboard: http://{node.dashboard_url}" if node.dashboard_url else "")
         + (f"\n  Metrics (Prometheus): port {node.metrics_port}, /metrics"
            if node.metrics_port is not None else ""))
    return _maybe_block(node, block, files, echo)


def read_token_file(path: str) -> str:
    """The token in ``path``: a file only this user can read, holding the token alone or
    a head's record (``~/.rayling/clusters/*.json``)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise StartError(f"cannot read the token file {path}: {e.strerror}") from None
    with os.fdopen(fd) as f:
        st = os.fstat(f.fileno())
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise StartError(
                f"the token file {path} must be yours and readable by you alone (chmod 600 "
                f"{path}); it is mode {st.st_mode & 0o777:o}, owned by uid {st.st_uid}")
        text = f.read().strip()
    try:
        record = json.loads(text)
    except ValueError:
        record = None
    token = record.get("token") if isinstance(record, dict) else text
    if not token or not isinstance(token, str):
        raise StartError(f"no token in {path}")
    return token


def start_node(address: str, resources: dict, *, node_ip: str | None, token: str | None,
               object_store_memory: int | None, block: bool, echo=print) -> int:
    if ":" not in address:
        address += ":6379"
    host, _, port = address.rpartition(":")
    head = f"{resolve_ip(host)}:{port}"

    def known_token() -> str | None:
        return cluster_files.find_token(address, token) or cluster_files.find_token(head)
    try:  # (the head may still be coming up: the seeds start both at once)
        token = head_wait.wait_for_head(head, known_token, head_wait.default_wait(),
                                        head_wait.say_on_stderr)
    except ConnectionError as e:
        raise StartError(str(e)) from None
    ip = resolve_ip(node_ip) if node_ip else _local_ip_towards(head)
    node = LocalNode.start(resources, object_store_memory or default_store_capacity(), ip,
                           head_address=head, token=token, exit_with_driver=False,
                           die_with_parent=block,
                           on_spawn=lambda node: _note_starting(node, "node", head))
    files = _record_node(node, "node", head)
    files += cluster_files.write_machine_record(
        cluster_files.CURRENT, {"address": head, "token": token, "pid": node.process.pid})
    echo(f"rayling node {node.node_id[:12]} ({ip}, {_fmt_resources(resources)}) joined the "
         f"cluster at {head}.")
    return _maybe_block(node, block, files, echo)


def start_slurm(resources_args: dict, *, port: int | None, node_ip: str | None,
                object_store_memory: int | None, echo=print) -> int:
    """Task 0 of the job step becomes the head, the others join it (always --block)."""
    env = os.environ
    if not env.get("SLURM_JOB_ID"):
        raise StartError("--slurm needs Slurm's environment (SLURM_JOB_ID is not set): run it "
                         "with srun inside an sbatch script or salloc allocation")
    cpus = resources_args.pop("num_cpus", None)
    if cpus is None:
        cpus = int(env.get("SLURM_CPUS_PER_TASK") or env.get("SLURM_CPUS_ON_NODE") or 0) or None
    gpus = resources_args.pop("num_gpus", None)
    if gpus is None and env.get("SLURM_GPUS_ON_NODE"):
        gpus = int(env["SLURM_GPUS_ON_NODE"])
    resources = node_resources(cpus, gpus, resources_args.pop("resources_json", None))
    path = cluster_files.slurm_cluster_path()
    if int(env.get("SLURM_PROCID", "0")) == 0:
        cluster_files.remove(path)
        return start_head(resources, port=port or 0, node_ip=node_ip or _machine_ip(),
                          token=None, object_store_memory=object_store_memory, block=True,
                          slurm_file=path, echo=echo)
    # Wait for task 0's head. The file comes from another machine through a shared file
    # system, which offers nothing to wait on but its appearance, so this looks every
    # 0.2 s until SLURM_HEAD_TIMEOUT. A file left by an earlier step of the job names a
    # head that is gone: joining it fails, and this waits for the new one.
    deadline = time.monotonic() + SLURM_HEAD_TIMEOUT
    tried = None
    while time.monotonic() < deadline:
        info = cluster_files.read(path)
        if info and info.get("address") and info.get("token") and info != tried:
            tried = info
            try:
                return start_node(info["address"], resources, node_ip=node_ip,
                                  token=info["token"], object_store_memory=object_store_memory,
                                  block=True, echo=echo)
            except exc.RaySystemError:
                pass  # a stale head; a new file will come
        time.sleep(0.2)
    raise StartError(f"task 0 of this job did not publish a head that accepts nodes in "
                     f"{path} within {SLURM_HEAD_TIMEOUT:.0f} s; see its output")


def _machine_ip() -> str:
    """This machine's address for other machines: its hostname's, unless that is a
    loopback address (as /etc/hosts often says), then the one on its default route."""
    ip = resolve_ip(socket.gethostname())
    if not ip.startswith("127."):
        return ip
    try:
        return _local_ip_towards("192.0.2.1:9")  # no packet is sent (UDP connect)
    except OSError:  # no route off this machine: loopback is all there is
        return ip


def _local_ip_towards(address: str) -> str:
    """This machine's address on the route to ``address`` (what other nodes reach)."""
    host, _, port = address.rpartition(":")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect((host, int(port)))
        return s.getsockname()[0]


def _note_starting(node: LocalNode, role: str, address: str) -> None:
    """Record a daemon as soon as it runs, so `rayling stop` sees it while it starts; if
    it fails to start, its stop removes the record."""
    node.records = _record_node(node, role, address)


def _record_node(node: LocalNode, role: str, address: str) -> list[str]:
    import psutil

    return cluster_files.write_machine_record(f"nodes/{node.process.pid}.json", {
        "pid": node.process.pid, "role": role, "address": address, "session": node.session,
        "session_dir": node.session_dir,
        # With the pid, says which process it was: pids are reused after it exits.
        "started": psutil.Process(node.process.pid).create_time(),
    })


def _maybe_block(node: LocalNode, block: bool, files: list[str], echo) -> int:
    if not block:
        return 0

    def forward(signum, frame) -> None:
        node.process.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, forward)
    code = node.process.wait()
    node.stop()
    for path in files:
        cluster_files.remove(path)
    echo(f"rayling daemon {node.process.pid} stopped.")
    return 0 if code in (0, -signal.SIGTERM) else 1


def set_temp_dir(path: str) -> None:
    """``rayling start --temp-dir``: this node's session folder goes under ``path``."""
    from . import node

    node.set_session_parent(path)


def stop(echo=print, timeout: float = 10.0, force: bool = False) -> int:
    """Stop every daemon this user's ``rayling start`` left running on this machine.

    A record is acted on only as far as it proves true: the process it names must be this
    user's, started when the record says, and running rayling's daemon; the folder it
    names must be this user's own session folder (``rayling_<session>_*``, not a link);
    shared memory is removed only by the exact prefix of a well-formed session id, and only
    this user's segments. Anything else in a record is ignored, with a line saying so.
    """
    import psutil

    records = cluster_files.machine_records("nodes")
    procs, false_records, seen = [], set(), set()
    # Joined nodes first, so none of them sees its head go and reports it.
    for path, info in sorted(records, key=lambda r: r[1].get("role") == "head"):
        proc, why_not = _recorded_daemon(info, psutil)
        if proc is not None:
            if proc.pid not in seen:  # (the same record is in each machine folder)
                seen.add(proc.pid)
                if force:
                    proc.kill()
                else:
                    proc.terminate()
                procs.append(proc)
        elif why_not:
            echo(f"Not stopping pid {info.get('pid')!r} named in {path}: {why_not}; "
                 f"the record is removed and nothing it names is touched.")
            false_records.add(path)
    _gone, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        proc.kill()
    psutil.wait_procs(alive, timeout=5)
    for path, info in records:
        cluster_files.remove(path)
        if path in false_records:
            continue
        # The daemon was stopped, or is gone (crashed): what it left goes too, unless a
        # daemon still serves in that session folder (a record naming another's session).
        session_dir = _recorded_session_dir(info)
        if session_dir and _serving(os.path.join(session_dir, "daemon.sock")):
            continue
        shm.unlink_session(info.get("session"))
        if session_dir:
            shutil.rmtree(session_dir, ignore_errors=True)
        if info.get("role") == "head" and isinstance(info.get("address"), str):
            cluster_files.remove(cluster_files.home_cluster_path(info["address"]))
    for path in cluster_files.machine_record_paths(cluster_files.CURRENT):
        try:
            current = cluster_files.read(path)
        except cluster_files.UnsafeFileError:
            continue  # (another user's: reported above, never touched)
        if isinstance(current, dict) and \
                not cluster_files.pid_alive(cluster_files.record_pid(current)):
            cluster_files.remove(path)
    echo(f"Stopped {len(procs)} rayling daemon(s)." if procs else
         "No rayling daemons were running on this machine.")
    return 0


def _recorded_daemon(info: dict, psutil):
    """The running daemon a node record names, or None and why the record is false ("" if
    that daemon simply ended; pids are reused, so a pid alone proves nothing)."""
    pid, started = cluster_files.record_pid(info), info.get("started")
    if not pid or not isinstance(started, float):
        return None, "the record is malformed"
    try:
        proc = psutil.Process(pid)
        # (psutil derives start times from the boot time, which a clock step moves a
        # little; a reused pid started later by far more than a second)
        if abs(proc.create_time() - started) > START_TIME_SLACK:
            return None, ""  # that daemon is gone; the pid now belongs to something else
        if proc.uids().real != os.getuid():
            return None, "that process is another user's"
        if "rayling._private.daemon" not in proc.cmdline():
            return None, "that process is not a rayling daemon"
    except psutil.Error:
        return None, ""
    return proc, ""


def _serving(socket_path: str) -> bool:
    """Whether a daemon accepts connections on ``socket_path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(socket_path)
            return True
        except OSError:
            return False


def _recorded_session_dir(info: dict) -> str | None:
    """The session folder a node record names, if it is one this user's daemon made."""
    session, path = info.get("session"), info.get("session_dir")
    if not (isinstance(session, str) and shm.SESSION.fullmatch(session)
            and isinstance(path, str) and os.path.isabs(path)):
        return None
    if not os.path.basename(path).startswith(f"rayling_{session}_"):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return path


def status(address: str | None, echo=print) -> int:
    from . import session

    session.connect_or_start(address or "auto", log_to_driver=False)
    try:
        nodes = session.connected_client().query(p.ClusterNodes())
    finally:
        session.shutdown()
    echo(format_status(nodes))
    return 0


def format_status(nodes: list[dict]) -> str:
    alive = [n for n in nodes if n["Alive"]]
    dead = [n for n in nodes if not n["Alive"]]
    lines = ["======== rayling cluster status ========", "Node status",
             "-" * 60, "Active:"]
    for n in alive:
        lines.append(f" 1 node_{n['NodeID']} ({n['NodeManagerAddress']})"
                     + ("  head" if n.get("IsHead") else ""))
    lines.append("Dead:")
    lines += [f" 1 node_{n['NodeID']} ({n['NodeManagerAddress']})" for n in dead] or \
        [" (no dead nodes)"]
    lines += ["", "Resources", "-" * 60, "Usage:"]
    totals: dict[str, float] = {}
    free: dict[str, float] = {}
    for n in alive:
        for k, v in n["Resources"].items():
            totals[k] = totals.get(k, 0) + v
        for k, v in n["AvailableResources"].items():
            free[k] = free.get(k, 0) + v
    for key in sorted(totals, key=lambda k: (k not in ("CPU", "GPU"), k)):
        if key.startswith("node:") or key == "object_store_memory":
            continue  # (the object store is shown below, from its own counters)
        if key == "memory":
            lines.append(f" {_gib(totals[key] - free.get(key, 0))}/{_gib(totals[key])} memory")
            continue
        lines.append(f" {totals[key] - free.get(key, 0):g}/{totals[key]:g} {key}")
    used = sum(n["ObjectStoreUsed"] for n in alive)
    capacity = sum(n["ObjectStoreCapacity"] for n in alive)
    lines.append(f" {_gib(used)}/{_gib(capacity)} object_store_memory")
    import psutil

    lines.append(f" {_gib(psutil.virtual_memory().total - psutil.virtual_memory().available)}"
                 f"/{_gib(psutil.virtual_memory().total)} memory (this machine)")
    lines += ["", "Per node:"]
    for n in alive:
        res, avail = n["Resources"], n["AvailableResources"]
        cpu = res.get("CPU", 0)
        lines.append(f" node_{n['NodeID'][:12]} {n['NodeManagerAddress']}: "
                     f"{cpu - avail.get('CPU', 0):g}/{cpu:g} CPU, object store "
                     f"{_gib(n['ObjectStoreUsed'])}/{_gib(n['ObjectStoreCapacity'])}")
    return "\n".join(lines)


def _gib(n: int) -> str:
    return f"{n / 2**30:.2f}GiB"


def _fmt_resources(resources: dict) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in resources.items())
