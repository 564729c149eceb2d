"""The one connection layer every rayling socket uses: framing, the token handshake,
deadlines, and accepting connections without letting strangers exhaust anything.

    accepting side (daemon, client's direct-call listener, transfer server)
    ──────────────
    accept ──> StrangerLimit: at most MAX_STRANGERS unauthenticated at once (a newcomer
               past it closes the one that has waited longest)
           ──> IncomingStream.feed(bytes, now): frames of at most 64 KiB until a Hello
               with the cluster token; then only the message kinds this listener takes
           ──> IncomingStream.expired(now): no Hello within HANDSHAKE_TIMEOUT for the whole
               handshake, or a frame begun and not finished within FRAME_TIMEOUT
    Acceptor runs that for selector loops (it also backs off when accept() runs out of
    descriptors); the daemon's asyncio shell uses IncomingStream and StrangerLimit itself.

    connecting side
    ───────────────
    Channel(address): connects (unix path or "tcp:host:port") and writes frames whole,
    however many threads send on it (``post`` lets a thread leave its frame to the one
    writing); the first frame carries the Hello.

Nothing a peer sends before its Hello is unpickled: messages are msgspec Structs, and the
only bytes fields that carry pickles are read after authentication.
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from collections import deque

from . import protocol as p

HANDSHAKE_TIMEOUT = 10.0  # seconds a new connection has to prove the token
FRAME_TIMEOUT = 60.0  # seconds a frame, once begun, has to arrive in full
STRANGER_MAX_FRAME = 64 * 1024  # the largest frame read before the Hello
MAX_STRANGERS = 128  # unauthenticated connections one listener keeps at once
EVICTION_DELAY = 0.05  # seconds an asyncio listener lets strangers past the limit be read
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

    __slots__ = ("reader", "hello", "_token", "_accepts", "_deadline", "frame_started")

    def __init__(self, token: str, now: float, accepts: tuple[type, ...] | None = None):
        self.reader = p.FrameReader(max_frame=STRANGER_MAX_FRAME)
        self.hello: p.Hello | None = None
        self._token = token
        self._accepts = accepts
        self._deadline = now + HANDSHAKE_TIMEOUT
        self.frame_started: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.hello is not None

    def feed(self, data, now: float) -> list:
        """Messages completed by ``data``; raises ProtocolError (or Unauthenticated) for
        anything this peer may not send, after which the connection must be closed."""
        if self.hello is None:
            return self._handshake(data, now)
        reader = self.reader
        messages = reader.feed(data)
        if not reader.pending():
            self.frame_started = None
        elif messages or self.frame_started is None:
            self.frame_started = now  # a new frame began within this data
        accepts = self._accepts
        if accepts is not None:
            for msg in messages:
                if not isinstance(msg, accepts):
                    raise p.ProtocolError(f"this peer may not send {type(msg).__name__}")
        return messages

    def _handshake(self, data, now: float) -> list:
        reader = self.reader
        # The first frame alone, at the strangers' size limit: what follows a valid Hello
        # in the same read may be as large as any authenticated frame.
        messages = reader.feed(data, one_frame=True)
        if not messages:
            if self.frame_started is None and reader.pending():
                self.frame_started = now
            return messages
        first = messages[0]
        if type(first) is not p.Hello:
            raise Unauthenticated(f"first message was {type(first).__name__}, not Hello")
        if not p.token_matches(first.token, self._token):
            raise WrongToken("wrong token")
        self.hello = first
        reader.max_frame = p.MAX_FRAME
        rest = messages[1:]
        accepts = self._accepts
        if accepts is not None:
            for msg in rest:
                if not isinstance(msg, accepts):
                    raise p.ProtocolError(f"this peer may not send {type(msg).__name__}")
        return [first, *rest, *self.feed(b"", now)]  # (and what followed, in full)

    def expired(self, now: float) -> str | None:
        """Why the connection must be closed now, or None."""
        if self.hello is None and now >= self._deadline:
            return f"no Hello within {HANDSHAKE_TIMEOUT:g} s"
        started = self.frame_started
        if started is not None and now - started >= FRAME_TIMEOUT:
            return f"a frame stalled for {FRAME_TIMEOUT:g} s"
        return None

    def next_deadline(self) -> float | None:
        """When ``expired`` may next say yes (None: not while nothing arrives)."""
        if self.hello is None:
            return self._deadline
        if self.frame_started is not None:
            return self.frame_started + FRAME_TIMEOUT
        return None


class StrangerLimit:
    """One listener's unauthenticated connections, oldest first, at most ``limit``.

    A newcomer over the limit evicts the stranger that has waited longest instead of being
    refused: a real peer sends its Hello as it connects, so the oldest stranger is the
    likeliest attacker, and a flood of connections cannot keep real peers out.
    """

    __slots__ = ("_waiting", "limit")

    def __init__(self, limit: int = MAX_STRANGERS) -> None:
        self._waiting: dict = {}  # connection -> None, in arrival order
        self.limit = limit

    @property
    def count(self) -> int:
        return len(self._waiting)

    def admit(self, conn):
        """Count ``conn`` in; returns the stranger to close to make room for it, or None.
        (For loops that read a connection before accepting the next one.)"""
        self._waiting[conn] = None
        excess = self.excess()
        return excess[0] if excess else None

    def add(self, conn) -> None:
        """Count ``conn`` in without evicting anyone yet: a loop that accepts many
        connections before reading any (asyncio's) calls ``excess`` a moment later, once
        the real peers among them have been read and have left."""
        self._waiting[conn] = None

    def excess(self) -> list:
        """The oldest strangers past the limit, no longer counted: close them."""
        waiting = self._waiting
        gone = []
        while len(waiting) > self.limit:
            oldest = next(iter(waiting))
            del waiting[oldest]
            gone.append(oldest)
        return gone

    def leave(self, conn) -> None:
        """``conn`` authenticated or went away (again is harmless)."""
        self._waiting.pop(conn, None)


class RefusalLog:
    """Logs refused connections without letting a flood of them fill the disk: at most
    ``burst`` lines per ``window`` seconds, then one line saying how many went unlogged."""

    def __init__(self, logger, burst: int = 20, window: float = 60.0,
                 clock=time.monotonic) -> None:
        self._clock = clock
        self._logger = logger
        self._burst = burst
        self._window = window
        self._window_end = 0.0
        self._logged = 0
        self._unlogged = 0

    def warning(self, message: str, *args) -> None:
        now = self._clock()
        if now >= self._window_end:
            if self._unlogged:
                self._logger.warning("%d more refused connections were not logged "
                                     "(at most %d a minute are)", self._unlogged, self._burst)
            self._window_end = now + self._window
            self._logged = self._unlogged = 0
        if self._logged < self._burst:
            self._logged += 1
            self._logger.warning(message, *args)
        else:
            self._unlogged += 1


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
    """An outgoing connection whose frames are written whole, whatever number of threads
    send on it. Every frame is queued; the thread holding the lock writes all queued
    frames at once (one system call for many), in order.

    ``send`` waits for its frame to be written (taking the lock, or finding that the
    holder wrote it) and raises if the write failed. ``post`` never waits: if another
    thread holds the lock, that thread writes the frame too, and ``done(error)`` is
    called by whichever thread wrote it (error None on success). Threads of a threaded
    actor replying at once thus never queue up on the lock. The first frame must be the
    Hello.
    """

    def __init__(self, address: str, timeout: float = CONNECT_TIMEOUT) -> None:
        self.sock = connect(address, timeout)
        self.broken = False  # a write failed: open a new channel
        self._lock = threading.Lock()
        self._queued: deque = deque()  # [frame, outcome, done] waiting to be written

    def send(self, messages: list) -> None:
        """Write ``messages`` as one frame; raises OSError if the connection failed."""
        frame = p.encode_frame(messages)
        lock = self._lock
        if not self._queued and lock.acquire(blocking=False):  # nobody else is writing
            try:
                self._write(frame)
            finally:
                lock.release()
            if self._queued:
                self._write_posted()
            return
        entry = [frame, None, None]
        self._queued.append(entry)
        with lock:
            finished = self._write_queued() if entry[1] is None else []
        self._finish(finished)
        self._write_posted()  # frames posted while we held the lock
        if entry[1] is not True:
            raise entry[1]

    def post(self, messages: list, done) -> None:
        """Write ``messages`` as one frame now or soon, from this thread or the one
        holding the lock; ``done(error or None)`` says how it went."""
        frame = p.encode_frame(messages)
        lock = self._lock
        if not self._queued and lock.acquire(blocking=False):  # nobody else is writing
            try:
                self._write(frame)
                error = None
            except OSError as e:
                error = e
            finally:
                lock.release()
            done(error)
            if self._queued:
                self._write_posted()
            return
        self._queued.append([frame, None, done])
        self._write_posted()

    def _write(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.broken = True
            raise

    def _write_posted(self) -> None:
        # A poster that finds the lock taken leaves its frame to the holder, which looks
        # again after releasing: a frame queued before that look is written by the
        # holder, one queued after it finds the lock free.
        queued, lock = self._queued, self._lock
        while queued:
            if not lock.acquire(blocking=False):
                return
            try:
                finished = self._write_queued()
            finally:
                lock.release()
            self._finish(finished)

    def _write_queued(self) -> list:
        """Write every queued frame (lock held); returns the posters to tell."""
        queued = self._queued
        batch = []
        while queued:
            batch.append(queued.popleft())
        if not batch:
            return []
        try:
            self._write(batch[0][0] if len(batch) == 1 else b"".join(e[0] for e in batch))
            outcome = True
        except OSError as e:
            outcome = e
        for entry in batch:
            entry[1] = outcome
        return [entry for entry in batch if entry[2] is not None]

    @staticmethod
    def _finish(entries: list) -> None:
        for _frame, outcome, done in entries:
            done(None if outcome is True else outcome)

    def close(self) -> None:
        self.sock.close()


class Acceptor:
    """Accepts connections on listening sockets inside a selector loop, keeps each
    stranger's IncomingStream until it authenticates, and closes strangers that are too
    many or too slow. The loop asks ``timeout()`` before each select, calls
    ``accept(sock)`` when a listener is readable and ``expire()`` after each select.

    Selector keys: a listener's data is the Acceptor itself; an accepted connection's data
    is its IncomingStream. The loop feeds the stream what it reads, then calls
    ``fed(sock, stream, was_stranger)``; ``drop(sock)`` closes a connection, ``release``
    hands an authenticated one over to the caller.
    """

    def __init__(self, selector: selectors.BaseSelector, token: str,
                 accepts: tuple[type, ...] | None, limit: int = MAX_STRANGERS) -> None:
        self._selector = selector
        self._token = token
        self._accepts = accepts
        self._limit = limit
        self._limits: dict[socket.socket, StrangerLimit] = {}  # listener -> its strangers
        self._limit_of: dict[socket.socket, StrangerLimit] = {}  # stranger -> its limit
        self._deadlines: dict[socket.socket, IncomingStream] = {}  # streams with deadlines
        self._resting: dict[socket.socket, float] = {}  # listener -> resume time

    @property
    def stranger_count(self) -> int:
        return len(self._limit_of)

    def listen(self, sock: socket.socket) -> None:
        """Accept on ``sock`` too; its strangers are counted apart from other listeners'
        (a flood on a TCP port does not crowd out this machine's unix-socket peers)."""
        sock.setblocking(False)
        self._limits[sock] = StrangerLimit(self._limit)
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
        limit = self._limits[listener]
        self._limit_of[conn] = limit
        evicted = limit.admit(conn)
        conn.setblocking(True)
        stream = IncomingStream(self._token, time.monotonic(), self._accepts)
        self._selector.register(conn, selectors.EVENT_READ, stream)
        self._deadlines[conn] = stream
        if evicted is not None:
            self.drop(evicted)

    def fed(self, conn: socket.socket, stream: IncomingStream, was_stranger: bool) -> None:
        """Called after feeding ``stream``: account for a new authentication and keep
        watching only streams that still have a deadline."""
        if was_stranger:
            if stream.hello is None:
                return  # (still watched since it was accepted)
            self._leave(conn)
        if stream.frame_started is None:
            if self._deadlines:
                self._deadlines.pop(conn, None)
        else:
            self._deadlines[conn] = stream

    def drop(self, conn: socket.socket) -> None:
        """Close an accepted connection (misbehaving, expired, or finished)."""
        if conn.fileno() < 0:  # closed already
            return
        self._deadlines.pop(conn, None)
        self._leave(conn)  # (a Hello may have come before what made it fail)
        if conn in self._selector.get_map():
            self._selector.unregister(conn)
        conn.close()

    def _leave(self, conn: socket.socket) -> None:
        limit = self._limit_of.pop(conn, None)
        if limit is not None:
            limit.leave(conn)

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
