"""Direct connections between clients, so actor calls skip the daemon on their way.

    caller ──ExecuteTask──▶ actor worker's listening socket        (the call)
    caller ◀──ObjectReady── worker, to the caller's listening socket (its results)
    caller ──SubmitTask(direct_worker=…)──▶ daemon  ┐ bookkeeping, off the critical
    worker ──TaskDone(direct=True)──▶ daemon        ┘ path: refs, pins, restarts

Every client listens on a unix socket in the session directory (mode 0700), and in a
cluster also on TCP at its node's address, for callers on other nodes (addresses of the
form ``tcp:host:port``). A peer's first message must be a Hello carrying the cluster
token; after it, only ExecuteTask (to an actor's worker) and ObjectReady (to a caller)
are accepted.
"""

from __future__ import annotations

import os
import secrets
import socket

from . import protocol as p
from .protocol import FrameReader, encode_frame

PEER_MAX_FRAME = 256 * 1024 * 1024
AUTH_TIMEOUT = 10.0  # seconds an accepted peer has to authenticate
_ACCEPTED = (p.ExecuteTask, p.ObjectReady)


def listen(session_dir: str) -> tuple[socket.socket, str]:
    """A listening socket for peers, and its path."""
    path = os.path.join(session_dir, f"c{os.getpid()}-{secrets.token_hex(2)}.s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    os.chmod(path, 0o600)
    sock.listen(128)
    return sock, path


def listen_tcp(host: str) -> tuple[socket.socket, str]:
    """A listening TCP socket for peers on other nodes, and its ``host:port``."""
    sock = socket.create_server((host, 0), backlog=128)
    return sock, f"{host}:{sock.getsockname()[1]}"


class IncomingPeer:
    """Reading state of one accepted peer connection."""

    __slots__ = ("reader", "authenticated")

    def __init__(self) -> None:
        self.reader = FrameReader(max_frame=64 * 1024)
        self.authenticated = False

    def feed(self, data, token: str) -> list:
        """Messages to act on; raises ProtocolError if the peer misbehaves."""
        out = []
        for msg in self.reader.feed(data):
            if self.authenticated:
                if not isinstance(msg, _ACCEPTED):
                    raise p.ProtocolError(f"a peer may not send {type(msg).__name__}")
                out.append(msg)
            elif type(msg) is p.Hello and p.token_matches(msg.token, token):
                self.authenticated = True
                self.reader._max = PEER_MAX_FRAME
            else:
                raise p.ProtocolError("peer did not authenticate")
        return out


class PeerSender:
    """Outgoing connections to other clients' listening sockets, opened on first use."""

    def __init__(self, token: str, worker_id: bytes) -> None:
        self._token = token
        self._worker_id = worker_id
        self._socks: dict[str, socket.socket] = {}

    def send(self, path: str, messages: list) -> bool:
        """Send ``messages`` to the client listening at ``path``; False if it cannot."""
        sock = self._socks.get(path)
        try:
            if sock is None:
                if path.startswith("tcp:"):
                    sock = socket.create_connection(p.split_address(path[4:]), timeout=10)
                    sock.settimeout(None)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                else:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.connect(path)
                sock.sendall(encode_frame(
                    [p.Hello("peer", os.getpid(), self._worker_id, self._token)]))
                self._socks[path] = sock
            sock.sendall(encode_frame(messages))
            return True
        except OSError:
            self.forget(path)
            return False

    def forget(self, path: str) -> None:
        sock = self._socks.pop(path, None)
        if sock is not None:
            sock.close()

    def close(self) -> None:
        for path in list(self._socks):
            self.forget(path)
