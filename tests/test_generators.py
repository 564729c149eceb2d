"""Generator tasks as in Ray: a generator function returns an ObjectRefGenerator whose
refs come as values are yielded; num_returns="dynamic" returns a ref to a
DynamicObjectRefGenerator; num_returns=N keeps the values yielded before an error."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import rayling
from rayling.cluster_utils import Cluster
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@rayling.remote
def gated(gate: str, n: int):
    """Yields 0, then waits for ``gate`` to exist, then yields 1 .. n-1."""
    yield 0
    while not os.path.exists(gate):
        time.sleep(0.01)
    yield from range(1, n)


def test_refs_come_as_values_are_yielded(shared_cluster, tmp_path):
    gate = str(tmp_path / "gate")
    gen = gated.remote(gate, 3)
    assert isinstance(gen, rayling.ObjectRefGenerator)
    first = next(gen)
    assert isinstance(first, rayling.ObjectRef) and rayling.get(first) == 0
    ready, not_ready = rayling.wait([gen], timeout=0.2)  # the task waits at the gate
    assert ready == [] and not_ready == [gen] and not gen.is_finished()
    open(gate, "w").close()
    ready, _ = rayling.wait([gen], timeout=30)
    assert ready == [gen]
    assert [rayling.get(ref) for ref in gen] == [1, 2]
    with pytest.raises(StopIteration):
        next(gen)
    assert gen.is_finished() and rayling.get(gen.completed()) == 3


@rayling.remote
def fails_after(k: int):
    yield from range(k)
    raise KeyError("after the values")


def test_an_exception_after_k_values_is_raised_by_the_next_get(shared_cluster):
    refs = list(fails_after.remote(2))
    assert len(refs) == 3 and rayling.get(refs[:2]) == [0, 1]
    with pytest.raises(KeyError, match="after the values"):
        rayling.get(refs[2])
    # num_returns=N: the values yielded before the error stay readable.
    first, second, third = fails_after.options(num_returns=3).remote(2)
    assert rayling.get([first, second]) == [0, 1]
    with pytest.raises(KeyError):
        rayling.get(third)


@rayling.remote
def forever(path: str):
    i = 0
    while True:
        with open(path, "a") as f:
            f.write("x")
        yield i
        i += 1
        time.sleep(0.01)


def test_dropping_the_generator_stops_the_task(shared_cluster, tmp_path):
    path = str(tmp_path / "progress")
    gen = forever.remote(path)
    assert [rayling.get(next(gen)) for _ in range(3)] == [0, 1, 2]
    del gen

    def stopped() -> bool:
        before = os.path.getsize(path)
        time.sleep(0.3)
        return os.path.getsize(path) == before

    wait_until(stopped, timeout=20, what="the generator task to stop")
    wait_until(lambda: rayling.available_resources().get("CPU") == 2, timeout=20,
               what="its CPU to be free")


@rayling.remote
def arrays(n: int):
    for i in range(n):
        yield np.full(250_000, i, dtype=np.float64)  # 2 MB: shared memory


def test_large_values_stream_through_shared_memory_and_are_freed(shared_cluster):
    from rayling._private import client as client_mod, protocol as p

    def used() -> int:
        return client_mod.current.query(p.StoreStats())["store_used"]

    baseline = used()
    total = 0.0
    for ref in arrays.remote(10):
        total += rayling.get(ref)[0]
        del ref
    assert total == sum(range(10))
    wait_until(lambda: used() <= baseline, timeout=20, what="the streamed values to be freed")


@rayling.remote
def consume(values: list) -> int:
    return sum(values)


def test_refs_from_a_generator_can_be_passed_on(shared_cluster):
    refs = list(arrays.remote(3))
    assert rayling.get([rayling.remote(lambda a: float(a[0])).remote(r) for r in refs]) == [
        0.0, 1.0, 2.0]


def test_num_returns_dynamic(shared_cluster):
    @rayling.remote(num_returns="dynamic")
    def split(n):
        for i in range(n):
            yield i * i

    dynamic = rayling.get(split.remote(4))
    assert isinstance(dynamic, rayling.DynamicObjectRefGenerator) and len(dynamic) == 4
    assert rayling.get(list(dynamic)) == [0, 1, 4, 9]

    @rayling.remote
    def total(generator):
        return sum(rayling.get(list(generator)))

    assert rayling.get(total.remote(dynamic)) == 14


def test_actor_generators_sync_and_async(shared_cluster):
    @rayling.remote
    class Source:
        def __init__(self):
            self.calls = 0

        def values(self, n):
            self.calls += 1
            yield from range(n)

        def count(self):
            return self.calls

    @rayling.remote
    class AsyncSource:
        async def values(self, n):
            import asyncio

            for i in range(n):
                await asyncio.sleep(0)
                yield i

    source = Source.remote()
    assert rayling.get(source.count.remote()) == 0  # (sends later calls directly)
    assert [rayling.get(r) for r in source.values.remote(3)] == [0, 1, 2]
    assert rayling.get(source.count.remote()) == 1  # in order with the other calls
    assert [rayling.get(r) for r in AsyncSource.remote().values.remote(4)] == [0, 1, 2, 3]


@rayling.remote(max_retries=2)
def dies_once(marker: str, n: int):
    for i in range(n):
        if i == 3 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        yield i


def test_a_stream_whose_worker_dies_is_retried_without_repeating_values(shared_cluster,
                                                                       tmp_path):
    values = [rayling.get(r) for r in dies_once.remote(str(tmp_path / "died"), 6)]
    assert values == [0, 1, 2, 3, 4, 5]


@rayling.remote(max_retries=2, retry_exceptions=[ValueError])
def raises_until(marker_dir: str, failures: int, n: int):
    """Raises ValueError after 3 values on its first ``failures`` runs."""
    for i in range(n):
        if i == 3 and len(os.listdir(marker_dir)) < failures:
            open(os.path.join(marker_dir, str(time.monotonic_ns())), "w").close()
            raise ValueError("flaky")
        yield i


def test_a_stream_that_raises_is_retried_as_retry_exceptions_says(shared_cluster, tmp_path):
    values = [rayling.get(r) for r in raises_until.remote(str(tmp_path), 2, 6)]
    assert values == [0, 1, 2, 3, 4, 5]  # (two reruns; no value twice)
    assert len(os.listdir(tmp_path)) == 2


def test_a_stream_out_of_retries_ends_with_its_exception(shared_cluster, tmp_path):
    refs = raises_until.remote(str(tmp_path), 5, 6)
    assert [rayling.get(next(refs)) for _ in range(3)] == [0, 1, 2]
    with pytest.raises(ValueError, match="flaky"):
        rayling.get(next(refs))  # (the 4th get raises, after 1 run and 2 reruns)
    with pytest.raises(StopIteration):
        next(refs)
    assert len(os.listdir(tmp_path)) == 3
    # An exception retry_exceptions does not name is the stream's last item at once.
    refs = list(raises_until.options(retry_exceptions=[KeyError]).remote(str(tmp_path), 5, 6))
    assert len(refs) == 4 and rayling.get(refs[:3]) == [0, 1, 2]
    with pytest.raises(ValueError, match="flaky"):
        rayling.get(refs[3])
    assert len(os.listdir(tmp_path)) == 4


def test_a_stream_from_another_node():
    rayling.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        node = cluster.add_node(num_cpus=1)
        rayling.init(address=cluster.address)
        there = arrays.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
        assert [float(rayling.get(r)[-1]) for r in there.remote(4)] == [0.0, 1.0, 2.0, 3.0]
    finally:
        rayling.shutdown()
        cluster.shutdown()


@rayling.remote
def counted(path: str, n: int):
    for i in range(n):
        with open(path, "a") as f:
            f.write("x")
        yield i


def _settled_size(path: str) -> int:
    """The size of ``path`` once it stops growing."""
    sizes = []

    def settled() -> bool:
        sizes.append(os.path.getsize(path) if os.path.exists(path) else 0)
        time.sleep(0.2)
        return len(sizes) > 1 and sizes[-1] == sizes[-2]

    wait_until(settled, timeout=20, what=f"{path} to stop growing")
    return sizes[-1]


def test_backpressure_pauses_the_generator_until_values_are_taken(shared_cluster,
                                                                   tmp_path):
    path = str(tmp_path / "made")
    gen = counted.options(_generator_backpressure_num_objects=2).remote(path, 50)
    assert rayling.get(next(gen)) == 0
    assert _settled_size(path) <= 3  # one taken, at most two waiting
    assert [rayling.get(r) for r in gen] == list(range(1, 50))

    @rayling.remote
    class Paced:
        def values(self, path, n):
            for i in range(n):
                with open(path, "a") as f:
                    f.write("x")
                yield i

    path = str(tmp_path / "made by an actor")
    gen = Paced.remote().values.options(_generator_backpressure_num_objects=3).remote(path, 40)
    assert rayling.get(next(gen)) == 0
    assert _settled_size(path) <= 4
    assert len(list(gen)) == 39
    # Without it, the generator runs ahead.
    path = str(tmp_path / "unpaced")
    gen = counted.remote(path, 50)
    assert rayling.get(next(gen)) == 0
    assert _settled_size(path) == 50


def test_async_iteration_and_errors_as_ray_documents(shared_cluster, tmp_path):
    import asyncio

    gate = tmp_path / "open"
    gate.touch()

    async def collect():
        return [await ref async for ref in gated.remote(str(gate), 3)]

    assert asyncio.run(collect()) == [0, 1, 2]

    # num_returns="dynamic": an error after the values is the last ref's.
    refs = list(rayling.get(fails_after.options(num_returns="dynamic").remote(2)))
    assert len(refs) == 3 and rayling.get(refs[:2]) == [0, 1]
    with pytest.raises(KeyError):
        rayling.get(refs[2])
    # num_returns=N and an error after all N values: the values stand (it is logged).
    first, second = fails_after.options(num_returns=2).remote(2)
    assert rayling.get([first, second]) == [0, 1]


@rayling.remote(max_retries=1)
def paced_dies_once(marker: str, n: int):
    for i in range(n):
        if i == 5 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        yield i


def test_a_paced_stream_survives_a_retry_and_cancel_ends_it_with_an_error(shared_cluster,
                                                                         tmp_path):
    paced = paced_dies_once.options(_generator_backpressure_num_objects=2)
    assert [rayling.get(r) for r in paced.remote(str(tmp_path / "died"), 9)] == list(range(9))
    gen = forever.remote(str(tmp_path / "progress"))
    assert rayling.get(next(gen)) == 0
    rayling.cancel(gen)
    with pytest.raises(rayling.exceptions.TaskCancelledError):
        for ref in gen:
            rayling.get(ref)


def test_a_threaded_actors_paced_stream_ends_when_dropped(shared_cluster, tmp_path):
    @rayling.remote(max_concurrency=4)
    class Threaded:
        def values(self, path):
            try:
                yield from range(100)
            finally:
                open(path, "w").close()

    actor = Threaded.remote()
    done = str(tmp_path / "done")
    gen = actor.values.options(_generator_backpressure_num_objects=1).remote(done)
    assert rayling.get(next(gen)) == 0
    del gen
    wait_until(lambda: os.path.exists(done), timeout=20, what="the stream to end")


def test_a_streaming_actor_call_does_not_block_behind_direct_calls(shared_cluster, tmp_path):
    @rayling.remote
    class Mixed:
        def wait_for(self, path):
            while not os.path.exists(path):
                time.sleep(0.01)
            return "waited"

        def values(self, n):
            yield from range(n)

        def plain(self):
            return "plain"

    actor = Mixed.remote()
    assert rayling.get(actor.plain.remote()) == "plain"  # (later calls go directly)
    gate = str(tmp_path / "gate")
    first = actor.wait_for.remote(gate)
    made = []  # (in a thread: if .remote() blocked, it would wait for the gate forever)
    caller = threading.Thread(target=lambda: made.extend(
        [actor.values.remote(3), actor.plain.remote()]))
    caller.start()
    caller.join(20)
    assert len(made) == 2, ".remote() of a streaming call blocked behind a direct call"
    stream, after = made
    assert not rayling.wait([after], timeout=0.2)[0]  # (held back behind `first`)
    open(gate, "w").close()
    assert rayling.get(first) == "waited"
    assert [rayling.get(r) for r in stream] == [0, 1, 2]
    assert rayling.get(after) == "plain"


def test_a_cancel_during_a_send_waits_for_the_send_to_finish(shared_cluster):
    """Dropped streams are cancelled with KeyboardInterrupt in their worker's main
    thread; one that lands while it writes a batch to the daemon would lose messages or
    cut a frame. A real worker, a real SIGINT, while it is (marked as) sending."""

    @rayling.remote
    def probe():
        import signal

        from rayling._private import client as client_mod

        client = client_mod.current
        client.main_sending = True  # as inside CoreClient.send
        os.kill(os.getpid(), signal.SIGINT)  # a cancel arrives
        time.sleep(0.05)
        deferred = client.interrupt_pending
        client.main_sending = False
        try:
            client.send()
        except KeyboardInterrupt:
            return deferred, "interrupted right after the send"
        return deferred, "never interrupted"

    assert rayling.get(probe.remote()) == (True, "interrupted right after the send")


def test_an_async_next_that_times_out_loses_no_value(shared_cluster, tmp_path):
    import asyncio

    gate = str(tmp_path / "gate")

    async def scenario():
        gen = gated.remote(gate, 3)
        assert await (await gen.__anext__()) == 0
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gen.__anext__(), 0.2)  # value 1 is behind the gate
        open(gate, "w").close()
        return [await ref async for ref in gen]

    assert asyncio.run(scenario()) == [1, 2]
