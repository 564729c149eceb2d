"""Actor concurrency groups (``concurrency_groups=`` with ``@method(concurrency_group=)``
and ``.options(concurrency_group=)``): each group runs its calls in its own thread(s) or
event loop, at most its limit at once, so a blocked group never blocks another; and the
runtime context is each thread's and each coroutine's own."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

import rayling

from .conftest import barrier

pytestmark = pytest.mark.timeout(90)


def _wait_for_file(path: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@rayling.remote(concurrency_groups={"io": 2, "compute": 3})
class AsyncGroups:
    """Records, per group, how many calls were inside at once."""

    def __init__(self):
        self.lock = threading.Lock()  # (the groups' loops run in different threads)
        self.inside = {"io": 0, "compute": 0, "": 0}
        self.peak = {"io": 0, "compute": 0, "": 0}

    async def _hold(self, group: str, limit: int) -> str:
        with self.lock:
            self.inside[group] += 1
            self.peak[group] = max(self.peak[group], self.inside[group])
        # Stay until the group is full (a broken limit would let more in meanwhile).
        deadline = time.monotonic() + 10
        while self.inside[group] < limit and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        with self.lock:
            self.inside[group] -= 1
        return threading.current_thread().name

    @rayling.method(concurrency_group="io")
    async def io(self):
        return await self._hold("io", 2)

    @rayling.method(concurrency_group="compute")
    async def compute(self):
        return await self._hold("compute", 3)

    async def default(self):
        return await self._hold("", 1000)

    def peaks(self):
        return dict(self.peak)

    @rayling.method(concurrency_group="io")
    def blocking_io(self, path: str) -> bool:
        return _wait_for_file(path)  # (blocks the io group's loop, not the others)

    async def ping(self):
        return "pong"


def test_async_groups_limit_their_own_calls(shared_cluster):
    actor = AsyncGroups.remote()
    refs = [actor.io.remote() for _ in range(6)] + [actor.compute.remote() for _ in range(9)]
    threads = rayling.get(refs, timeout=60)
    peaks = rayling.get(actor.peaks.remote())
    assert peaks["io"] == 2 and peaks["compute"] == 3
    # Each group has its own event loop thread.
    assert len(set(threads[:6])) == 1 and len(set(threads[6:])) == 1
    assert threads[0] != threads[6]


def test_a_blocked_async_group_does_not_block_the_others(shared_cluster, tmp_path):
    actor = AsyncGroups.remote()
    release = str(tmp_path / "release")
    blocked = actor.blocking_io.remote(release)
    assert rayling.get(actor.ping.remote(), timeout=20) == "pong"
    assert rayling.get(actor.compute.options().remote(), timeout=20)
    ready, _ = rayling.wait([blocked], timeout=0.2)
    assert not ready  # still blocked: the answers above came from other groups
    open(release, "w").close()
    assert rayling.get(blocked, timeout=30) is True


@rayling.remote(concurrency_groups={"health": 1})
class Server:
    """A threaded actor: its default group has one thread, "health" another."""

    def serve(self, path: str) -> bool:
        return _wait_for_file(path)

    @rayling.method(concurrency_group="health")
    def health(self) -> str:
        return threading.current_thread().name

    def where(self) -> str:
        return threading.current_thread().name


def test_a_health_check_answers_while_the_default_group_is_busy(shared_cluster, tmp_path):
    server = Server.remote()
    release = str(tmp_path / "release")
    busy = server.serve.remote(release)
    health_thread = rayling.get(server.health.remote(), timeout=20)
    # A method of the default group, sent to "health" for this call only, answers too.
    assert rayling.get(server.where.options(concurrency_group="health").remote(),
                       timeout=20) == health_thread
    ready, _ = rayling.wait([busy], timeout=0.2)
    assert not ready
    open(release, "w").close()
    assert rayling.get(busy, timeout=30) is True
    assert rayling.get(server.where.remote()) != health_thread


def test_calls_of_one_group_keep_their_order(shared_cluster):
    @rayling.remote(concurrency_groups={"log": 1})
    class Log:
        def __init__(self):
            self.items = []

        @rayling.method(concurrency_group="log")
        def add(self, item):
            self.items.append(item)

        @rayling.method(concurrency_group="log")
        def items_(self):
            return self.items

    log = Log.remote()
    for i in range(200):
        log.add.remote(i)
    assert rayling.get(log.items_.remote()) == list(range(200))


def test_groups_are_checked(shared_cluster):
    @rayling.remote
    class Undeclared:
        @rayling.method(concurrency_group="io")
        def f(self):
            return 1

    with pytest.raises(ValueError, match="concurrency group 'io'.*does not define"):
        Undeclared.remote()
    with pytest.raises(ValueError, match="from 1"):
        Server.options(concurrency_groups={"io": 0})
    with pytest.raises(TypeError, match="integer"):
        Server.options(concurrency_groups={"io": "2"})
    with pytest.raises(TypeError, match="dict"):
        Server.options(concurrency_groups=["io"])
    with pytest.raises(TypeError, match="string"):
        rayling.method(concurrency_group=3)
    server = Server.remote()
    with pytest.raises(rayling.exceptions.RayTaskError, match="'nope'.*its groups: health"):
        rayling.get(server.where.options(concurrency_group="nope").remote(), timeout=30)
    assert rayling.get(server.health.remote(), timeout=30)  # (the actor goes on)
    # Undeclared groups are reported the same way by async actors.
    actor = AsyncGroups.remote()
    with pytest.raises(rayling.exceptions.RayTaskError, match="its groups: compute, io"):
        rayling.get(actor.ping.options(concurrency_group="nope").remote(), timeout=30)


@rayling.remote(max_concurrency=4)
class Threaded:
    def context(self, directory: str):
        ctx = rayling.get_runtime_context()
        before = ctx.get_task_id()
        assert barrier(directory, 4)  # all four calls run at once, in four threads
        return before, ctx.get_task_id()


@rayling.remote
class Async:
    def __init__(self):
        self.inside = 0

    async def context(self):
        ctx = rayling.get_runtime_context()
        before = ctx.get_task_id()
        self.inside += 1
        deadline = time.monotonic() + 30
        while self.inside < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert self.inside >= 4
        return before, ctx.get_task_id()


def test_runtime_context_is_each_threads_own(shared_cluster, tmp_path):
    actor = Threaded.remote()
    refs = [actor.context.remote(str(tmp_path)) for _ in range(4)]
    seen = rayling.get(refs, timeout=60)
    assert [before for before, _ in seen] == [ref.task_id().hex() for ref in refs]
    assert [after for _, after in seen] == [ref.task_id().hex() for ref in refs]


def test_runtime_context_is_each_coroutines_own(shared_cluster):
    actor = Async.remote()
    refs = [actor.context.remote() for _ in range(4)]
    seen = rayling.get(refs, timeout=60)
    assert [before for before, _ in seen] == [ref.task_id().hex() for ref in refs]
    assert [after for _, after in seen] == [ref.task_id().hex() for ref in refs]


def test_a_plain_actor_has_no_groups_to_name(shared_cluster):
    @rayling.remote
    class Plain:
        def ping(self):
            return "pong"

    plain = Plain.remote()
    with pytest.raises(rayling.exceptions.RayTaskError, match="its groups: none"):
        rayling.get(plain.ping.options(concurrency_group="io").remote(), timeout=30)
    assert rayling.get(plain.ping.remote(), timeout=30) == "pong"
