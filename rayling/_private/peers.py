"""Direct connections between clients, so actor calls skip the daemon on their way.

    caller ──ExecuteTask──▶ actor worker's listening socket        (the call)
    caller ◀──ObjectReady── worker, to the caller's listening socket (its results)
    caller ──SubmitTask(direct_worker=…)──▶ daemon  ┐ bookkeeping, off the critical
    worker ──TaskDone(direct=True)──▶ daemon        ┘ path: refs, pins, restarts

Every client listens on a unix socket in the session directory (mode 0700), and in a
cluster also on TCP at its node's address, for callers on other nodes (addresses of the
form ``tcp:host:port``). Accepting goes through the connection layer (connection.py): a
peer's first message must be a Hello carrying the cluster token; after it, only
ExecuteTask (to an actor's worker) and ObjectReady (to a caller) are accepted.
"""

from __future__ import annotations

import os
import secrets
import select
import socket
import threading
import time

from . import protocol as p
from .connection import Channel, IncomingStream

ACCEPTED = (p.ExecuteTask, p.ObjectReady)  # what a peer may send after its Hello
CONNECT_TIMEOUT = 10.0


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


class PeerSender:
    """Outgoing connections to other clients' listening sockets, opened on first use. Each
    is a Channel, so frames sent by several threads never interleave."""

    def __init__(self, token: str, worker_id: bytes) -> None:
        self._hello = p.Hello("peer", os.getpid(), worker_id, token)
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()  # guards the dict while a channel opens

    def send(self, path: str, messages: list) -> bool:
        """Send ``messages`` to the client listening at ``path``; False if it cannot."""
        try:
            channel = self._channel(path)
            channel.send(messages)
            return True
        except OSError:
            self.forget(path)
            return False

    def post(self, path: str, messages: list, done) -> None:
        """Send ``messages`` to the client at ``path`` without waiting for the channel's
        lock; ``done(error or None)`` is called once it is known (see Channel.post)."""
        try:
            channel = self._channel(path)
        except OSError as e:
            self.forget(path)
            done(e)
            return
        channel.post(messages, done)

    def _channel(self, path: str) -> Channel:
        """The channel to ``path``, opened (and greeted) the first time."""
        channel = self._channels.get(path)
        if channel is None or channel.broken:
            with self._lock:
                channel = self._channels.get(path)
                if channel is None or channel.broken:
                    if channel is not None:
                        channel.close()  # a write on it failed: try a new connection
                    channel = Channel(path, CONNECT_TIMEOUT)
                    try:
                        channel.send([self._hello])
                    except OSError:
                        channel.close()
                        raise
                    self._channels[path] = channel
        return channel

    def forget(self, path: str) -> None:
        channel = self._channels.pop(path, None)
        if channel is not None:
            channel.close()

    def close(self) -> None:
        for path in list(self._channels):
            self.forget(path)


def drain(sock: socket.socket, stream: IncomingStream, deadline: float, handle) -> bool:
    """Read what a peer that has died sent on ``sock``, to its end, calling ``handle``
    on each message. False if the end did not come by ``deadline`` (something else,
    a forked child say, still holds the peer's end open)."""
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return False
        try:
            data = sock.recv(1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            return True
        if not data:
            return True
        try:
            messages = stream.feed(data, time.monotonic())
        except p.ProtocolError:
            return True
        for message in messages:
            handle(message)
