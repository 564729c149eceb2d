"""Moving large objects between nodes, node to node (the head is never on this path).

    node B daemon (needs the object)               node A daemon (has it)
    Puller thread ──TCP: Hello(token), FetchSegment(name, size)──▶ TransferServer thread
                  ◀── the segment's bytes, streamed by sendfile ──
    writes them into a new segment of B's store, then reports PullDone to the head

Every node daemon runs one TransferServer on its node address. A connection must open
with a Hello carrying the cluster token (frames before it are capped at 64 KiB), and
may only ask for segments of this node's own store. Both ends are plain blocking
sockets in threads: the bytes go kernel to kernel (``sendfile`` on the sender, one
``recv_into`` per chunk straight into the mapped destination on the receiver).
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import socket
import struct
import threading
from concurrent.futures import ThreadPoolExecutor

from . import protocol as p, shm

log = logging.getLogger("rayling.daemon")

CHUNK = 8 * 1024 * 1024  # bytes per send/receive call
AUTH_TIMEOUT = 10  # seconds a connection has to authenticate and ask
SEND_TIMEOUT = 60  # seconds a receiver may stall before the sender gives up
STREAMS = 4  # connections one large object is copied over at once ...
STREAM_MIN = 32 * 1024 * 1024  # ... each carrying at least this many bytes
_SEGMENT = re.compile(r"/rl[0-9a-f]+_[0-9a-f]+")


class TransferServer:
    """Serves this node's segments to other nodes that prove the cluster token."""

    def __init__(self, host: str, token: str, shm_session: str) -> None:
        self._token = token
        self._prefix = f"/rl{shm_session}_"
        self._sock = socket.create_server((host, 0), backlog=64)
        self.address = f"{host}:{self._sock.getsockname()[1]}"
        self._closed = False
        threading.Thread(target=self._accept_loop, name="rayling-transfer",
                         daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                conn, peer = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer) -> None:
        with conn:
            try:
                conn.settimeout(AUTH_TIMEOUT)  # for the request; sendfile needs blocking
                request = self._read_request(conn)
                conn.settimeout(None)
                # sendfile needs a blocking socket; the kernel gives up on a stalled peer.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                                struct.pack("ll", SEND_TIMEOUT, 0))
                self._send_segment(conn, request)
            except (OSError, p.ProtocolError) as e:
                log.warning("transfer connection from %s closed: %s", peer, e)

    def _read_request(self, conn: socket.socket) -> p.FetchSegment:
        reader = p.FrameReader(max_frame=64 * 1024)
        messages: list = []
        while len(messages) < 2:
            data = conn.recv(65536)
            if not data:
                raise p.ProtocolError("closed before asking for anything")
            messages += reader.feed(data)
            if messages and not (type(messages[0]) is p.Hello
                                 and p.token_matches(messages[0].token, self._token)):
                raise p.ProtocolError("did not authenticate with the cluster token")
        request = messages[1]
        if type(request) is not p.FetchSegment:
            raise p.ProtocolError(f"sent {type(request).__name__}, not FetchSegment")
        if not (_SEGMENT.fullmatch(request.name) and request.name.startswith(self._prefix)):
            raise p.ProtocolError(f"asked for {request.name!r}, not a segment of this node")
        return request

    @staticmethod
    def _send_segment(conn: socket.socket, request: p.FetchSegment) -> None:
        fd = os.open(f"/dev/shm{request.name}", os.O_RDONLY)
        try:
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

    def close(self) -> None:
        self._closed = True
        self._sock.close()


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
        with socket.create_connection(p.split_address(address), timeout=60) as sock, \
                memoryview(mem) as view:
            sock.sendall(p.encode_frame([p.Hello("transfer", os.getpid(), b"", token),
                                         p.FetchSegment(source, length, offset)]))
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
