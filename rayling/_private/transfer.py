"""Moving large objects between nodes, node to node (the head is never on this path).

    node B daemon (needs the object)               node A daemon (has it)
    Puller thread ──TCP: Hello(token), FetchSegment(name, size)──▶ TransferServer
                  ◀── the segment's bytes, streamed by sendfile ──
    writes them into a new segment of B's store, then reports PullDone to the head

Every node daemon runs one TransferServer on its node address. Its accepting thread goes
through the connection layer (connection.py): at most MAX_STRANGERS unauthenticated
connections (a newcomer past the limit closes the oldest), a Hello with the cluster token
within the handshake deadline for the whole handshake however slowly it drips (frames
before it capped at 64 KiB), a frame once begun finished within FRAME_TIMEOUT, and a
listener that rests instead of failing when descriptors run out. An authenticated
connection may ask for one segment of this node's own store (this user's, by name); a
bounded pool of sender threads streams it kernel to kernel (``sendfile``), and the
receiver ``recv_into``s each chunk straight into the mapped destination.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import selectors
import socket
import stat
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import protocol as p, shm
from .connection import Acceptor, Channel, RefusalLog

log = logging.getLogger("rayling.daemon")

CHUNK = 8 * 1024 * 1024  # bytes per send/receive call
SEND_TIMEOUT = 60  # seconds a peer may stall mid-transfer before the other side gives up
SENDERS = 32  # segments served at once; more requests wait their turn
STREAMS = 4  # connections one large object is copied over at once ...
STREAM_MIN = 32 * 1024 * 1024  # ... each carrying at least this many bytes
_SEGMENT = re.compile(r"/rl[0-9a-f]+_[0-9a-f]+")


class TransferServer:
    """Serves this node's segments to other nodes that prove the cluster token."""

    def __init__(self, host: str, token: str, shm_session: str) -> None:
        self._prefix = f"/rl{shm_session}_"
        self._sock = socket.create_server((host, 0), backlog=64)
        self.address = f"{host}:{self._sock.getsockname()[1]}"
        self._selector = selectors.DefaultSelector()
        self._acceptor = Acceptor(self._selector, token, accepts=(p.FetchSegment,))
        self._acceptor.listen(self._sock)
        self._refusals = RefusalLog(log)
        self._stop_r, self._stop_w = socket.socketpair()
        self._selector.register(self._stop_r, selectors.EVENT_READ, None)
        self._senders = ThreadPoolExecutor(SENDERS, thread_name_prefix="rayling-transfer")
        self._thread = threading.Thread(target=self._accept_loop, name="rayling-transfer",
                                        daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        acceptor = self._acceptor
        try:
            while True:
                for key, _ in self._selector.select(acceptor.timeout()):
                    sock, stream = key.fileobj, key.data
                    if stream is acceptor:
                        acceptor.accept(sock)
                    elif sock is self._stop_r:
                        return
                    else:
                        self._read(sock, stream)
                acceptor.expire()
        finally:
            acceptor.close()
            self._selector.close()

    def _read(self, conn: socket.socket, stream) -> None:
        try:
            data = conn.recv(65536)
            if not data:
                raise p.ProtocolError("closed before asking for anything")
            stranger = stream.hello is None
            requests = [m for m in stream.feed(data, time.monotonic())
                        if type(m) is p.FetchSegment]
            self._acceptor.fed(conn, stream, stranger)
            if not requests:
                return
            request = requests[0]
            if not (_SEGMENT.fullmatch(request.name) and request.name.startswith(self._prefix)):
                raise p.ProtocolError(f"asked for {request.name!r}, not a segment of this node")
        except (OSError, p.ProtocolError) as e:
            self._refusals.warning("transfer connection closed: %s", e)
            self._acceptor.drop(conn)
            return
        self._acceptor.release(conn)
        self._senders.submit(self._serve, conn, request)

    @staticmethod
    def _serve(conn: socket.socket, request: p.FetchSegment) -> None:
        with conn:
            try:
                # sendfile needs a blocking socket; the kernel gives up on a stalled peer.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                struct.pack("ll", SEND_TIMEOUT, 0))
                _send_segment(conn, request)
            except (OSError, p.ProtocolError) as e:
                log.warning("sending %s failed: %s", request.name, e)

    def close(self) -> None:
        self._stop_w.send(b"x")
        self._thread.join(timeout=5)
        self._sock.close()
        self._stop_r.close()
        self._stop_w.close()
        self._senders.shutdown(wait=False, cancel_futures=True)


def _send_segment(conn: socket.socket, request: p.FetchSegment) -> None:
    fd = os.open(f"/dev/shm{request.name}", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
            raise p.ProtocolError(f"{request.name} is another user's, or not a segment")
        offset, end = request.offset, request.offset + request.size
        if offset < 0 or os.fstat(fd).st_size < end:
            raise p.ProtocolError(f"segment {request.name} has no bytes {offset}-{end}")
        while offset < end:
            sent = os.sendfile(conn.fileno(), fd, offset, min(CHUNK, end - offset))
            if sent == 0:
                raise OSError("the receiver stopped reading")
            offset += sent
    finally:
        os.close(fd)


def fetch(address: str, token: str, source: str, size: int, name: str) -> None:
    """Copy ``size`` bytes of segment ``source`` on the node at ``address`` into a new
    local segment ``name``. Large objects come over several connections at once, each
    allocating and filling its own part. Raises OSError (the local segment is removed)."""
    fd = shm.create_unallocated(name, size)
    try:
        parts = max(1, min(STREAMS, size // STREAM_MIN))
        step = -(-size // parts)
        ranges = [(start, min(step, size - start)) for start in range(0, size, step)]
        if len(ranges) == 1:
            _fetch_range(address, token, source, fd, *ranges[0])
        else:
            with ThreadPoolExecutor(len(ranges)) as pool:
                for future in [pool.submit(_fetch_range, address, token, source, fd, *r)
                               for r in ranges]:
                    future.result()
    except BaseException:
        shm.unlink(name)
        raise
    finally:
        os.close(fd)


def _fetch_range(address: str, token: str, source: str, fd: int, offset: int,
                 length: int) -> None:
    shm.allocate_range(fd, offset, length)
    # Map from the page holding ``offset``; mmap offsets must be page-aligned.
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mem = mmap.mmap(fd, offset + length - start, offset=start)
    try:
        channel = Channel("tcp:" + address, timeout=SEND_TIMEOUT)
        with channel.sock as sock, memoryview(mem) as view:
            sock.settimeout(SEND_TIMEOUT)  # a sender silent this long has stalled
            channel.send([p.Hello("transfer", os.getpid(), b"", token),
                          p.FetchSegment(source, length, offset)])
            pos, end = offset - start, offset - start + length
            while pos < end:
                n = sock.recv_into(view[pos:], min(CHUNK, end - pos))
                if n == 0:
                    raise OSError(f"the node at {address} closed the transfer of {source} "
                                  f"after {pos - (offset - start):,} of {length:,} bytes")
                pos += n
    finally:
        mem.close()


class Puller:
    """Runs fetches in a few background threads; ``done(msg, error)`` is called after each."""

    def __init__(self, token: str) -> None:
        self._token = token
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="rayling-pull")

    def pull(self, msg: p.PullObject, done) -> None:
        def work() -> None:
            try:
                fetch(msg.address, self._token, msg.source, msg.size, msg.name)
                error = None
            except Exception as e:  # any failure is reported, never lost in the thread
                error = f"{type(e).__name__}: {e}"
            done(msg, error)

        self._pool.submit(work)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
