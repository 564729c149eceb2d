"""The connection layer: the token handshake, deadlines, the limit on strangers, the
send lock, and an accept loop that survives running out of descriptors."""

from __future__ import annotations

import logging
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from rayling._private import connection, protocol as p
from rayling._private.connection import (
    FRAME_TIMEOUT,
    HANDSHAKE_TIMEOUT,
    Acceptor,
    Channel,
    IncomingStream,
    StrangerLimit,
    Unauthenticated,
    WrongToken,
)

TOKEN = "t0ken"
HELLO = p.Hello("peer", 1, b"w" * 28, TOKEN)


def frame(*messages) -> bytes:
    return p.encode_frame(list(messages))


# -- IncomingStream (no I/O) ----------------------------------------------------------------
def test_a_stream_opens_with_a_hello_carrying_the_token():
    stream = IncomingStream(TOKEN, now=0.0)
    ready = p.ObjectReady(b"o" * 28, p.ObjectData(inline=b"1"))
    assert stream.feed(frame(HELLO, ready), now=1.0) == [HELLO, ready]
    assert stream.authenticated and stream.hello == HELLO


@pytest.mark.parametrize("first, error", [
    (p.Hello("peer", 1, b"w" * 28, "wrong"), WrongToken),
    (p.Hello("peer", 1, b"w" * 28, ""), WrongToken),
    (p.Hello("peer", 1, b"w" * 28, TOKEN[:-1]), WrongToken),
    (p.FetchSegment("/rl00_1", 10), Unauthenticated),
])
def test_anything_else_first_is_refused(first, error):
    with pytest.raises(error):
        IncomingStream(TOKEN, now=0.0).feed(frame(first), now=0.0)


def test_strangers_may_not_send_large_frames_but_peers_may():
    stranger = IncomingStream(TOKEN, now=0.0)
    with pytest.raises(p.ProtocolError, match="exceeds"):
        stranger.feed((100_000).to_bytes(4, "little") + b"x", now=0.0)
    peer = IncomingStream(TOKEN, now=0.0)
    peer.feed(frame(HELLO), now=0.0)
    big = p.ObjectReady(b"o" * 28, p.ObjectData(inline=b"x" * 200_000))
    assert peer.feed(frame(big), now=0.0) == [big]


def test_a_large_frame_right_behind_the_hello_is_taken():
    """A peer sends its Hello and at once a call larger than a stranger may send: both may
    arrive in one read (this once dropped direct actor calls)."""
    stream = IncomingStream(TOKEN, now=0.0)
    big = p.ObjectReady(b"o" * 28, p.ObjectData(inline=b"x" * 200_000))
    data = frame(HELLO) + frame(big)
    assert stream.feed(data[:100], now=0.0) == [HELLO]
    assert stream.feed(data[100:], now=0.0) == [big]
    again = IncomingStream(TOKEN, now=0.0)
    assert again.feed(data, now=0.0) == [HELLO, big]


def test_a_listener_takes_only_the_kinds_it_serves():
    stream = IncomingStream(TOKEN, now=0.0, accepts=(p.ObjectReady,))
    stream.feed(frame(HELLO), now=0.0)
    with pytest.raises(p.ProtocolError, match="may not send SubmitTask"):
        stream.feed(frame(p.SubmitTask(b"t", b"f", "f", b"", [], [], 1, {}, 0)), now=0.0)


def test_the_handshake_has_one_deadline_however_slowly_bytes_drip():
    stream = IncomingStream(TOKEN, now=0.0)
    hello = frame(HELLO)
    for i, byte in enumerate(hello[:-1]):  # a byte a second, never finishing in time
        stream.feed(bytes([byte]), now=float(i) / 10)
        if stream.expired(now=float(i) / 10):
            break
    assert stream.expired(now=HANDSHAKE_TIMEOUT) == f"no Hello within {HANDSHAKE_TIMEOUT:g} s"


def test_a_frame_that_stalls_expires_but_steady_traffic_does_not():
    stream = IncomingStream(TOKEN, now=0.0)
    stream.feed(frame(HELLO), now=0.0)
    assert stream.expired(now=1000.0) is None and stream.next_deadline() is None
    one = frame(p.Heartbeat())
    # Frames keep completing, each send also starting the next: never a stall.
    now = 0.0
    stream.feed(one[:2], now=now)
    for _ in range(200):
        now += 1.0
        stream.feed(one[2:] + one[:2], now=now)  # the rest of one frame, the start of next
        assert stream.expired(now) is None
    stream.feed(one[:1], now=now)  # now nothing more arrives
    assert stream.expired(now + FRAME_TIMEOUT) == f"a frame stalled for {FRAME_TIMEOUT:g} s"


def test_a_stranger_past_the_limit_evicts_the_one_that_waited_longest():
    limit = StrangerLimit(2)
    assert limit.admit("a") is None and limit.admit("b") is None
    assert limit.admit("c") == "a" and limit.count == 2
    limit.leave("b")
    limit.leave("b")  # (leaving twice is harmless)
    assert limit.count == 1 and limit.admit("d") is None and limit.admit("e") == "c"
    # Added without evicting (an asyncio burst), then the excess chosen at once.
    for conn in "fgh":
        limit.add(conn)
    assert limit.count == 5 and limit.excess() == ["d", "e", "f"] and limit.count == 2


def test_refused_connections_are_logged_a_few_a_minute_then_counted(caplog):
    logger = logging.getLogger("rayling.test-refusals")
    now = [100.0]
    refusals = connection.RefusalLog(logger, burst=3, window=60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=logger.name):
        for i in range(50):
            refusals.warning("refused %d", i)
        assert [r.getMessage() for r in caplog.records] == ["refused 0", "refused 1",
                                                            "refused 2"]
        now[0] += 61  # the minute ends; the next refusal reports the unlogged ones
        refusals.warning("refused %d", 50)
    assert [r.getMessage() for r in caplog.records][3:] == [
        "47 more refused connections were not logged (at most 3 a minute are)",
        "refused 50"]


# -- Acceptor and Channel, over real local sockets ------------------------------------------
class Listener:
    """An Acceptor loop on a unix socket, run in a thread; it records what it received."""

    def __init__(self, path: str, limit: int = connection.MAX_STRANGERS) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(512)
        self.selector = selectors.DefaultSelector()
        self.acceptor = Acceptor(self.selector, TOKEN, None, limit)
        self.acceptor.listen(self.sock)
        self.received: list = []
        self._stop_r, self._stop_w = socket.socketpair()
        self.selector.register(self._stop_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        acceptor = self.acceptor
        while True:
            for key, _ in self.selector.select(acceptor.timeout()):
                sock, stream = key.fileobj, key.data
                if stream is acceptor:
                    acceptor.accept(sock)
                    continue
                if sock is self._stop_r:
                    acceptor.close()
                    return
                data = sock.recv(1 << 20)
                if not data:
                    acceptor.drop(sock)
                    continue
                stranger = stream.hello is None
                try:
                    self.received += stream.feed(data, time.monotonic())
                except p.ProtocolError:
                    acceptor.drop(sock)
                    continue
                acceptor.fed(sock, stream, stranger)
            acceptor.expire()

    def stop(self) -> None:
        self._stop_w.send(b"x")
        self.thread.join(5)
        self.sock.close()
        self.selector.close()


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_strangers_past_the_limit_evict_the_oldest_and_slow_ones_time_out(tmp_path, monkeypatch):
    monkeypatch.setattr(connection, "HANDSHAKE_TIMEOUT", 1.0)
    listener = Listener(str(tmp_path / "l.s"), limit=4)
    try:
        strangers = [connection.connect(str(tmp_path / "l.s")) for _ in range(6)]
        closed = [_closed(s, timeout=0.3) for s in strangers[:2]]
        assert closed == [True, True]  # the oldest, evicted by newcomers over the limit
        # While the flood holds every stranger's place, a real peer still gets in.
        peer = Channel(str(tmp_path / "l.s"))
        peer.send([HELLO])
        deadline = time.monotonic() + 5
        while HELLO not in listener.received and time.monotonic() < deadline:
            time.sleep(0.01)
        assert HELLO in listener.received
        assert all(_closed(s, timeout=5) for s in strangers[2:])  # no Hello in time
        assert listener.acceptor.stranger_count == 0
        assert not _closed(peer.sock, timeout=1.5)  # (past the handshake deadline: kept)
        peer.close()
        for s in strangers:
            s.close()
    finally:
        listener.stop()


def test_frames_from_many_threads_on_one_channel_never_interleave(tmp_path):
    """Threads of a threaded actor share one channel per peer: run it as a race."""
    listener = Listener(str(tmp_path / "l.s"))
    try:
        channel = Channel(str(tmp_path / "l.s"))
        channel.send([HELLO])
        sizes = [10, 70_000, 300, 1_000_000]

        def sender(k: int) -> None:
            for i in range(50):
                data = p.ObjectData(inline=bytes([k]) * sizes[(i + k) % len(sizes)])
                channel.send([p.ObjectReady(bytes([k]) * 28, data)])

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 20
        while len(listener.received) < 201 and time.monotonic() < deadline:
            time.sleep(0.02)
        got = [m for m in listener.received if type(m) is p.ObjectReady]
        assert len(got) == 200
        assert all(set(m.data.inline) == {m.object_id[0]} for m in got)
        channel.close()
    finally:
        listener.stop()


def test_posted_frames_arrive_whole_in_each_threads_order_and_each_hears_once(tmp_path):
    """Threads post without waiting for one another: whoever writes reports to all."""
    listener = Listener(str(tmp_path / "l.s"))
    try:
        channel = Channel(str(tmp_path / "l.s"))
        channel.send([HELLO])
        outcomes: list = []

        def poster(k: int) -> None:
            for i in range(100):
                data = p.ObjectData(inline=bytes([k]) * (10 + 3000 * (i % 7)) + bytes([i]))
                channel.post([p.ObjectReady(bytes([k]) * 28, data)], outcomes.append)

        threads = [threading.Thread(target=poster, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 20
        while len(listener.received) < 801 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert outcomes == [None] * 800
        got = [m for m in listener.received if type(m) is p.ObjectReady]
        for k in range(8):
            mine = [m.data.inline[-1] for m in got if m.object_id[0] == k]
            assert mine == list(range(100))  # all of them, in the order posted
        channel.close()
    finally:
        listener.stop()


def test_a_failed_write_is_reported_to_the_poster_and_marks_the_channel_broken(tmp_path):
    listener = Listener(str(tmp_path / "l.s"))
    try:
        channel = Channel(str(tmp_path / "l.s"))
        channel.send([b"not a message"])  # the listener drops a peer that sends garbage
        outcomes: list = []
        deadline = time.monotonic() + 10
        while not outcomes or outcomes[-1] is None:
            assert time.monotonic() < deadline, "the write never failed"
            channel.post([p.Heartbeat()], outcomes.append)
            time.sleep(0.01)
        assert isinstance(outcomes[-1], OSError) and channel.broken
        channel.close()
    finally:
        listener.stop()


_EMFILE_SCRIPT = textwrap.dedent("""
    import os, resource, socket, sys
    import numpy as np
    from rayling._private import shm, transfer

    token, session = "t0ken", os.urandom(4).hex()
    name = shm.segment_name(session)
    data = np.random.default_rng(0).integers(0, 255, 5_000_000, dtype=np.uint8).tobytes()
    mem = shm.create(name, len(data))
    mem[:] = data
    mem.close()
    server = transfer.TransferServer("127.0.0.1", token, session)
    try:
        host, port = server.address.split(":")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
        flood = []
        try:  # strangers until this process has no descriptor left at all
            while True:
                flood.append(socket.create_connection((host, int(port)), timeout=2))
        except OSError:
            pass
        print("flooded with", len(flood), file=sys.stderr)
        for s in flood:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        copy = shm.segment_name(session)
        transfer.fetch(server.address, token, name, len(data), copy)
        mem = shm.open_readonly(copy, len(data))
        assert bytes(mem[:len(data)]) == data
        mem.close()
        print("served after the flood")
    finally:
        server.close()
        shm.unlink_session(session)
""")


def test_the_transfer_server_keeps_serving_after_descriptors_ran_out():
    done = subprocess.run([sys.executable, "-c", _EMFILE_SCRIPT], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "served after the flood" in done.stdout
