"""The one connection layer every rayling socket uses: framing, the token handshake,
deadlines, and accepting connections without letting strangers exhaust anything.

    accepting side (daemon, client's direct-call listener, transfer server)
    ──────────────
    accept ──> StrangerLimit: at most MAX_STRANGERS unauthenticated at once, else closed
           ──> IncomingStream.feed(bytes, now): frames of at most 64 KiB until a Hello
               with the cluster token; then only the message kinds this listener takes
           ──> IncomingStream.expired(now): no Hello within HANDSHAKE_TIMEOUT for the whole
               handshake, or a frame begun and not finished within FRAME_TIMEOUT
    Acceptor runs that for selector loops (it also backs off when accept() runs out of
    descriptors); the daemon's asyncio shell uses IncomingStream and StrangerLimit itself.

    connecting side
    ───────────────
    Channel(address): connects (unix path or "tcp:host:port") and sends frames under a
    lock, so threads never interleave their frames; the first one carries the Hello.

Nothing a peer sends before its Hello is unpickled: messages are msgspec Structs, and the
only bytes fields that carry pickles are read after authentication.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time

from . import protocol as p

HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection has to prove the token
FRAME_TIMEOUT = 60.0  # seconds a frame, once begun, has to arrive in full
STRANGER_MAX_FRAME = 64 * 1024  # the largest frame read before the Hello
MAX_STRANGERS = 128  # unauthenticated connections one listener keeps at once
CONNECT_TIMEOUT = 30.0
ACCEPT_BACKOFF = 1.0  # seconds a listener rests after accept() ran out of resources
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Unauthenticated(p.ProtocolError):
    """A peer did not open with a Hello carrying the cluster token."""


class WrongToken(Unauthenticated):
    """A peer's Hello carried another token (it may deserve being told, unlike garbage)."""


class IncomingStream:
    """The reading side of one accepted connection, with no I/O in it: the shell feeds it
    what it receives and asks it whether the connection has outstayed its deadlines.

    ``accepts``: the message kinds allowed after the Hello (None: any). ``feed`` returns
    the Hello too, first, so the receiver learns who the peer is.
    """

    __slots__ = ("reader", "hello", "_token", "_accepts", "_deadline", "_frame_started")

    def __init__(self, token: str, now: float, accepts: tuple[type, ...] | None = None):
        self.reader = p.FrameReader(max_frame=STRANGER_MAX_FRAME)
        self.hello: p.Hello | None = None
        self._token = token
        self._accepts = accepts
        self._deadline = now + HANDSHAKE_TIMEOUT
        self._frame_started: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.hello is not None

    def feed(self, data, now: float) -> list:
        """Messages completed by ``data``; raises ProtocolError (or Unauthenticated) for
        anything this peer may not send, after which the connection must be closed."""
        reader = self.reader
        if self.hello is None:
            # The first frame alone, at the strangers' size limit: what follows a valid
            # Hello in the same read may be as large as any authenticated frame.
            messages = reader.feed(data, one_frame=True)
            if messages:
                first = messages[0]
                if type(first) is not p.Hello:
                    raise Unauthenticated(
                        f"first message was {type(first).__name__}, not Hello")
                if not p.token_matches(first.token, self._token):
                    raise WrongToken("wrong token")
                self.hello = first
                reader.max_frame = p.MAX_FRAME
                messages += reader.feed(b"")
        else:
            messages = reader.feed(data)
        if not reader.pending():
            self._frame_started = None
        elif messages or self._frame_started is None:
            self._frame_started = now  # a new frame began within this data
        accepts = self._accepts
        if accepts is not None and messages:
            for msg in messages[1:] if messages[0] is self.hello else messages:
                if not isinstance(msg, accepts):
                    raise p.ProtocolError(f"this peer may not send {type(msg).__name__}")
        return messages

    def expired(self, now: float) -> str | None:
        """Why the connection must be closed now, or None."""
        if self.hello is None and now >= self._deadline:
            return f"no Hello within {HANDSHAKE_TIMEOUT:g} s"
        started = self._frame_started
        if started is not None and now - started >= FRAME_TIMEOUT:
            return f"a frame stalled for {FRAME_TIMEOUT:g} s"
        return None

    def next_deadline(self) -> float | None:
        """When ``expired`` may next say yes (None: not while nothing arrives)."""
        if self.hello is None:
            return self._deadline
        if self._frame_started is not None:
            return self._frame_started + FRAME_TIMEOUT
        return None


class StrangerLimit:
    """Counts one listener's unauthenticated connections; refuses more than the limit."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int = MAX_STRANGERS) -> None:
        self.count = 0
        self.limit = limit

    def admit(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        """One stranger authenticated or went away."""
        self.count -= 1


def connect(address: str, timeout: float = CONNECT_TIMEOUT) -> socket.socket:
    """A blocking socket connected to ``address``: a unix path or ``tcp:host:port``."""
    if address.startswith("tcp:"):
        sock = socket.create_connection(p.split_address(address[4:]), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    else:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except BaseException:
            sock.close()
            raise
    sock.settimeout(None)
    return sock


class Channel:
    """An outgoing connection whose ``send`` writes each frame whole under a lock, so
    frames from several threads never interleave. Its first message must be a Hello."""

    def __init__(self, address: str, timeout: float = CONNECT_TIMEOUT) -> None:
        self.address = address
        self.sock = connect(address, timeout)
        self._lock = threading.Lock()

    def send(self, messages: list) -> None:
        frame = p.encode_frame(messages)
        with self._lock:
            self.sock.sendall(frame)

    def close(self) -> None:
        self.sock.close()


class Acceptor:
    """Accepts connections on listening sockets inside a selector loop, keeps each
    stranger's IncomingStream until it authenticates, and closes strangers that are too
    many or too slow. The loop asks ``timeout()`` before each select, calls
    ``accept(sock)`` when a listener is readable and ``expire()`` after each select.

    Selector keys: a listener's data is the Acceptor itself; an accepted connection's data
    is its IncomingStream (the loop feeds it; ``authenticated(sock)`` or ``drop(sock)``
    when that changes its standing).
    """

    def __init__(self, selector: selectors.BaseSelector, token: str,
                 accepts: tuple[type, ...] | None, limit: int = MAX_STRANGERS) -> None:
        self._selector = selector
        self._token = token
        self._accepts = accepts
        self.strangers = StrangerLimit(limit)
        self._deadlines: dict[socket.socket, IncomingStream] = {}  # streams with deadlines
        self._resting: dict[socket.socket, float] = {}  # listener -> resume time

    def listen(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self._selector.register(sock, selectors.EVENT_READ, self)

    def accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        except OSError as e:
            if e.errno in _OUT_OF_RESOURCES:  # rest instead of spinning; keep serving others
                self._selector.unregister(listener)
                self._resting[listener] = time.monotonic() + ACCEPT_BACKOFF
            return
        if not self.strangers.admit():
            conn.close()
            return
        conn.setblocking(True)
        stream = IncomingStream(self._token, time.monotonic(), self._accepts)
        self._selector.register(conn, selectors.EVENT_READ, stream)
        self._deadlines[conn] = stream

    def fed(self, conn: socket.socket, stream: IncomingStream, was_stranger: bool) -> None:
        """Called after feeding ``stream``: account for a new authentication and keep
        watching only streams that still have a deadline."""
        if was_stranger and stream.authenticated:
            self.strangers.leave()
        if stream.next_deadline() is None:
            self._deadlines.pop(conn, None)
        else:
            self._deadlines[conn] = stream

    def drop(self, conn: socket.socket) -> None:
        """Close an accepted connection (misbehaving, expired, or finished)."""
        self._deadlines.pop(conn, None)
        key = self._selector.get_map().get(conn)
        if key is not None:
            self._selector.unregister(conn)
            if not key.data.authenticated:
                self.strangers.leave()
        conn.close()

    def release(self, conn: socket.socket) -> None:
        """Stop watching an authenticated connection the caller takes over."""
        self._deadlines.pop(conn, None)
        if conn in self._selector.get_map():
            self._selector.unregister(conn)

    def timeout(self) -> float | None:
        """Seconds until the next deadline or listener resumption (None: none)."""
        if not self._deadlines and not self._resting:
            return None
        times = [s.next_deadline() for s in self._deadlines.values()]
        times = [t for t in times if t is not None] + list(self._resting.values())
        if not times:
            return None
        return max(0.0, min(times) - time.monotonic())

    def expire(self) -> None:
        if not self._deadlines and not self._resting:
            return
        now = time.monotonic()
        for conn, stream in list(self._deadlines.items()):
            if stream.expired(now):
                self.drop(conn)
        for listener, resume in list(self._resting.items()):
            if now >= resume:
                del self._resting[listener]
                self._selector.register(listener, selectors.EVENT_READ, self)

    def close(self) -> None:
        """Close every connection this acceptor accepted (not the listeners)."""
        for key in list(self._selector.get_map().values()):
            if isinstance(key.data, IncomingStream):
                self.drop(key.fileobj)
