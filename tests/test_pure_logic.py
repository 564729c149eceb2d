"""Unit tests of the decision logic that has no sockets or processes in it."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given, strategies as st

from rayling._private import protocol as p
from rayling._private.log_dedup import LogDeduplicator
from rayling._private.object_table import EARLY_GRACE_TICKS, ObjectTable
from rayling._private.resources import UNIT, GpuAllocator, ResourcePool, to_units


# -- resources ------------------------------------------------------------------------
def test_fractional_cpus_add_up_exactly():
    pool = ResourcePool({"CPU": 1})
    tenth = to_units({"CPU": 0.1})
    for _ in range(10):
        assert pool.fits_now(tenth)
        pool.acquire(tenth)
    assert not pool.fits_now(tenth)
    for _ in range(10):
        pool.release(tenth)
    assert pool.free == pool.total


def test_fits_ever_and_missing():
    pool = ResourcePool({"CPU": 2, "GPU": 1})
    request = to_units({"CPU": 1, "GPU": 2, "TPU": 1})
    assert not pool.fits_ever(request)
    assert pool.missing(request) == {"GPU": 1.0, "TPU": 1.0}


def test_negative_request_rejected():
    with pytest.raises(ValueError, match="negative"):
        to_units({"CPU": -1})


@given(st.lists(st.sampled_from([0.1, 0.25, 0.5, 1.0]), max_size=30))
def test_acquire_release_roundtrip(amounts):
    pool = ResourcePool({"CPU": 4})
    taken = []
    for a in amounts:
        req = to_units({"CPU": a})
        if pool.fits_now(req):
            pool.acquire(req)
            taken.append(req)
    assert pool.free["CPU"] >= 0
    for req in taken:
        pool.release(req)
    assert pool.free == pool.total


def test_gpu_allocator_whole_and_fractional():
    gpus = GpuAllocator(2)
    assert gpus.allocate(UNIT) == [0]
    assert gpus.allocate(UNIT // 2) == [1]
    assert gpus.allocate(UNIT // 2) == [1]
    assert gpus.allocate(UNIT // 2) == []
    gpus.free([0], UNIT)
    assert gpus.allocate(2 * UNIT) == []
    assert gpus.allocate(UNIT) == [0]


# -- object table ---------------------------------------------------------------------
def _table():
    freed = []
    return ObjectTable(lambda oid, data: freed.append(oid)), freed


def test_object_freed_when_last_holder_drops():
    table, freed = _table()
    table.put(b"a", p.ObjectData(inline=b"x"), "driver")
    table.add_holders([b"a"], "worker")
    table.remove_holders([b"a"], "driver")
    assert freed == []
    table.remove_holders([b"a"], "worker")
    assert freed == [b"a"]
    assert b"a" not in table


def test_refs_and_gets_that_come_before_their_object_wait_for_it():
    """A worker's RefUpdate and GetObjects read before the caller's PutObject."""
    table, freed = _table()
    table.add_holders([b"a"], "worker")
    assert table.subscribe(b"a", "worker") is None and b"a" not in table
    assert table.expire_early() == []  # still within its grace
    waiting = table.put(b"a", p.ObjectData(inline=b"x"), "driver")
    assert waiting == ["worker"]
    table.remove_holders([b"a"], "driver")
    assert freed == [] and table.holds(b"a", "worker")  # the early ref counts
    table.remove_holders([b"a"], "worker")
    assert freed == [b"a"]


def test_gets_of_an_object_that_never_appears_expire():
    table, _ = _table()
    table.add_holders([b"gone"], "worker")
    table.subscribe(b"gone", "worker")
    table.subscribe(b"gone", "driver")
    table.drop_holder("driver")
    expired = []
    for _ in range(EARLY_GRACE_TICKS + 1):
        expired += table.expire_early()
    assert expired == [(b"gone", ["worker"])]
    assert table.expire_early() == [] and b"gone" not in table


def test_pinned_object_outlives_holders():
    table, freed = _table()
    table.put(b"a", p.ObjectData(inline=b"x"), "driver")
    table.pin(b"a")
    table.remove_holders([b"a"], "driver")
    assert freed == []
    table.unpin(b"a")
    assert freed == [b"a"]


def test_contained_refs_live_as_long_as_container():
    table, freed = _table()
    table.put(b"inner", p.ObjectData(inline=b"1"), "driver")
    table.put(b"outer", p.ObjectData(inline=b"2", contained=[b"inner"]), "driver")
    table.remove_holders([b"inner"], "driver")
    assert freed == []
    table.remove_holders([b"outer"], "driver")
    assert freed == [b"outer", b"inner"]


def test_result_of_dropped_pending_task_is_freed_on_arrival():
    table, freed = _table()
    table.expect(b"r", "driver")
    table.remove_holders([b"r"], "driver")
    assert freed == []
    assert table.set_ready(b"r", p.ObjectData(inline=b"v")) == []
    assert freed == [b"r"]


def test_subscribers_are_returned_once_ready():
    table, _ = _table()
    table.expect(b"r", "driver")
    assert table.subscribe(b"r", "worker") is None
    data = p.ObjectData(inline=b"v")
    assert table.set_ready(b"r", data) == ["worker"]
    assert table.subscribe(b"r", "other") is data


def test_dropping_a_process_releases_everything_it_held():
    table, freed = _table()
    for oid in (b"a", b"b"):
        table.put(oid, p.ObjectData(inline=b"x"), "worker")
    table.drop_holder("worker")
    assert sorted(freed) == [b"a", b"b"]


# -- log folding ----------------------------------------------------------------------
def test_identical_lines_fold_within_window():
    d = LogDeduplicator(window=5)
    assert d.add("(f pid=1)", "done", 0.0) == ["(f pid=1) done"]
    assert d.add("(f pid=2)", "done", 1.0) == []
    assert d.add("(f pid=3)", "done", 2.0) == []
    assert d.next_deadline() == 5.0
    assert d.flush(4.9) == []
    assert d.flush(5.0) == ["(f pid=3) done [repeated 2x across cluster]"]


def test_dedup_disabled_prints_everything():
    d = LogDeduplicator(enabled=False)
    assert d.add("(f pid=1)", "x", 0) == ["(f pid=1) x"]
    assert d.add("(f pid=2)", "x", 0) == ["(f pid=2) x"]


def test_single_line_has_no_summary():
    d = LogDeduplicator(window=1)
    d.add("(f pid=1)", "only", 0)
    assert d.flush(10) == []


# -- framing --------------------------------------------------------------------------
def test_frames_split_across_reads():
    frame = p.encode_frame([p.GetObjects([b"a" * 28]), p.Blocked()])
    reader = p.FrameReader()
    out = []
    for i in range(len(frame)):
        out += reader.feed(frame[i:i + 1])
    assert out == [p.GetObjects([b"a" * 28]), p.Blocked()]


def test_oversize_frame_rejected():
    reader = p.FrameReader(max_frame=100)
    with pytest.raises(p.ProtocolError, match="exceeds"):
        reader.feed((1000).to_bytes(4, "little") + b"x" * 10)


def test_garbage_frame_rejected():
    reader = p.FrameReader()
    with pytest.raises(p.ProtocolError, match="malformed"):
        reader.feed((3).to_bytes(4, "little") + b"\xc1\xc1\xc1")


def test_wrong_field_type_rejected():
    import msgspec

    body = msgspec.msgpack.encode([[12, "not a list"]])
    with pytest.raises(p.ProtocolError):
        p.FrameReader().feed(len(body).to_bytes(4, "little") + body)


def test_exceptions_pickle_roundtrip():
    from rayling import exceptions as exc

    err = exc.RayTaskError("f", "Traceback...", ValueError("boom"), 42)
    again = pickle.loads(pickle.dumps(err))
    assert again.function_name == "f" and again.pid == 42
    dual = again.as_instanceof_cause()
    assert isinstance(dual, ValueError) and isinstance(dual, exc.RayTaskError)
    assert "Traceback" in str(dual)


def test_a_task_cancelled_before_it_starts_keeps_its_function_for_the_next():
    """The daemon sends a function's code with the first task of it a worker gets; if that
    task is cancelled before it starts, the worker must still keep the code."""
    import cloudpickle

    from rayling._private import protocol as p
    from rayling._private.worker import Executor

    class Client:
        on_cancel = None
        peers = None

        def __init__(self):
            self.sent = []

        def send(self, msg):
            self.sent.append(msg)

        def store(self, oid, value, what):
            return p.ObjectData(inline=cloudpickle.dumps(value)), None

    def task(task_id: bytes, function: bytes | None) -> p.ExecuteTask:
        return p.ExecuteTask(task_id, b"\0" * 4, b"fid", function, "double",
                             cloudpickle.dumps(((21,), {})), [], 1, [])

    client = Client()
    executor = Executor(client)
    executor.cancel(b"first")  # cancelled while it waits to start
    executor.execute(task(b"first", cloudpickle.dumps(lambda x: 2 * x)))
    executor.execute(task(b"second", None))
    first, second = client.sent
    assert first.results[0].error and not second.results[0].error
    assert cloudpickle.loads(second.results[0].inline) == 42
