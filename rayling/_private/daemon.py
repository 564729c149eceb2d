"""The node daemon process: one per node, as the head or as a node that joined it.

Started by ``rayling.init()`` or ``rayling start`` (node.py) as
``python -S -m rayling._private.daemon``, with its DaemonConfig as JSON on stdin and the
cluster token in ``RAYLING_TOKEN`` (neither is visible in its command line). It starts
the warm template first thing, so the template's imports overlap its own, then serves in
its role (daemon_shell.py). It prints ``READY {json}`` on stdout once it serves (a joined
node: once the head registered it); the json holds the node id and, for a head, its TCP
port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import msgspec


class DaemonConfig(msgspec.Struct, kw_only=True):
    session: str  # names the session's shared-memory segments
    session_dir: str  # private folder: sockets, logs
    socket_path: str  # the daemon's unix socket
    resources: dict[str, float]
    object_store_memory: int
    node_ip: str = "127.0.0.1"  # where a clustered daemon listens and is reached
    node_id: str = ""  # hex; a new one if empty
    exit_with_driver: bool = True  # a local cluster ends with the script that started it
    prestart_workers: int = 0
    system_config: dict = {}
    port: int | None = None  # a head's TCP port (0: any free one); None: no TCP
    head_address: str | None = None  # a joined node's head ("host:port")
    listen_ip: str = ""  # workers also accept direct calls on TCP here (in clusters)
    driver_wait: float = 60.0  # exit_with_driver: stop if no driver came within this long
    dashboard_host: str = ""  # a head serves the dashboard here ("": no dashboard) ...
    dashboard_port: int = 8265  # ... on this port or the next free one (0: any)
    metrics_port: int = -1  # a head serves only its Prometheus metrics here too (-1: no)

    @property
    def clustered(self) -> bool:
        """Objects may move between nodes (a head with a TCP port, or a joined node)."""
        return self.port is not None or bool(self.head_address)

    @property
    def worker_address(self) -> str:
        """Where this node's workers connect: a joined node's workers dial the head."""
        return "tcp:" + self.head_address if self.head_address else self.socket_path


def start_template(config: DaemonConfig) -> tuple[subprocess.Popen, socket.socket]:
    """Start the warm template process (template.py) and return it with the socket on
    which each byte written asks it to fork a worker."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "RAYLING_SOCKET": config.worker_address,
           "RAYLING_NODE_ID": config.node_id, "RAYLING_SESSION_DIR": config.session_dir}
    if config.listen_ip:
        env["RAYLING_LISTEN_IP"] = config.listen_ip
    with open(os.path.join(config.session_dir, "logs", "template.err"), "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-S", "-m", "rayling._private.template", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), env=env, stdout=subprocess.DEVNULL, stderr=err)
    theirs.close()
    return proc, ours


def _raise_descriptor_limit(wanted: int = 65536) -> None:
    """Let this daemon, its template and its workers open as many descriptors as the
    system allows (up to ``wanted``): every worker, peer and transfer holds some, and the
    listeners' limits on unauthenticated connections (connection.py) then keep a flood
    of them well below it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted if hard == resource.RLIM_INFINITY else min(hard, wanted)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: keep it
        pass


def main() -> None:
    config = msgspec.json.decode(sys.stdin.buffer.read(), type=DaemonConfig)
    _raise_descriptor_limit()
    os.makedirs(os.path.join(config.session_dir, "logs"), exist_ok=True)
    if not config.node_id:
        config.node_id = os.urandom(28).hex()
    template = start_template(config)
    from .daemon_shell import HeadDaemon, JoinedNodeDaemon  # the heavy imports, meanwhile

    role = JoinedNodeDaemon if config.head_address else HeadDaemon
    role(config, os.environ.get("RAYLING_TOKEN", ""), *template).run()


if __name__ == "__main__":
    main()
