"""Starting the dashboard (rayling/dashboard/server.py) beside a head daemon: the daemon
binds its port first, so the address is known when the cluster says it is ready, and
hands the listening socket to the dashboard process, which it starts right after."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import subprocess
import sys

PORT_TRIES = 50  # as Ray: a busy port moves the dashboard to the next free one
DEFAULT_PORT = 8265
ENV = "RAYLING_INCLUDE_DASHBOARD"  # "0" or "1": whether a new cluster serves one by default


def wanted(include_dashboard: bool | None) -> bool:
    """Whether a new head serves a dashboard: as asked, else as RAYLING_INCLUDE_DASHBOARD
    says, else when its libraries are installed (`pip install rayling[dashboard]`), as
    Ray does."""
    if include_dashboard is not None:
        return include_dashboard
    if os.environ.get(ENV) in ("0", "1"):
        return os.environ[ENV] == "1"
    import importlib.util

    return all(importlib.util.find_spec(name) is not None
               for name in ("aiohttp", "prometheus_client"))


def check(include_dashboard, host, port, metrics_port=None) -> None:
    """Errors that name a bad dashboard option."""
    if metrics_port is not None and (isinstance(metrics_port, bool) or not isinstance(
            metrics_port, int) or not 0 <= metrics_port <= 65535):
        raise ValueError(f"the metrics export port must be a port number (0 to 65535), "
                         f"got {metrics_port!r}")
    if include_dashboard not in (None, True, False):
        raise TypeError(f"include_dashboard must be True, False or None, got "
                        f"{include_dashboard!r}")
    if not isinstance(host, str) or not host:
        raise TypeError(f"dashboard_host must be an address, got {host!r}")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 0 <= port <= 65535):
        raise ValueError(f"dashboard_port must be a port number (0 to 65535), got {port!r}")
    if include_dashboard or metrics_port is not None:
        import importlib.util

        missing = [name for name in ("aiohttp", "prometheus_client")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"the dashboard and metrics need {' and '.join(missing)}: "
                              f"pip install 'rayling[dashboard]'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, tries: int = PORT_TRIES) -> socket.socket | None:
    """A listening socket on ``host`` and ``port`` or one of the next ``tries`` - 1 ports
    (``port`` 0: any free one); None if none is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in ([0] if port == 0 else range(port, port + tries)):
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:  # (a port a dashboard just left, in TIME_WAIT, is free to take again)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, candidate))
            sock.listen(128)
            return sock
        except OSError:
            sock.close()
    return None


def url(sock: socket.socket, host: str) -> str:
    """The dashboard's address as Ray gives it: "host:port", no scheme."""
    port = sock.getsockname()[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def start(sock: socket.socket | None, metrics: socket.socket | None, host: str,
          head_socket: str, session_dir: str, token: str) -> subprocess.Popen:
    """Start the dashboard process serving the dashboard on ``sock`` and only the
    metrics on ``metrics`` (either may be None; it inherits them)."""
    fds = tuple(s.fileno() for s in (sock, metrics) if s is not None)
    env = {**os.environ, "RAYLING_TOKEN": token}
    log = os.path.join(session_dir, "logs", "dashboard.log")
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "rayling.dashboard.server"], stdin=subprocess.PIPE,
            stdout=out, stderr=out, env=env, pass_fds=fds)
    process.stdin.write(json.dumps({
        "fd": sock.fileno() if sock else None,
        "metrics_fd": metrics.fileno() if metrics else None, "head_socket": head_socket,
        "needs_login": not is_loopback(host)}).encode() + b"\n")
    process.stdin.close()
    return process
