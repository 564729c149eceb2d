"""Actors: state in one process, ordered calls, handles, names, failures, concurrency."""

from __future__ import annotations

import os
import time

import numpy as np
import psutil
import pytest

import rayling as ray
from rayling import exceptions as exc
from rayling.actor import exit_actor

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@ray.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
        self.log = []

    def incr(self, by=1):
        self.value += by
        return self.value

    def append(self, item):
        self.log.append(item)

    def get_log(self):
        return self.log

    def pid(self):
        return os.getpid()

    def ids(self):
        ctx = ray.get_runtime_context()
        return ctx.get_actor_id(), ctx.get_task_id()

    @ray.method(num_returns=2)
    def pair(self):
        return "left", "right"

    def fail(self):
        raise ValueError("method failed")

    def die(self):
        os._exit(1)


def test_state_lives_in_one_process(shared_cluster):
    counter = Counter.remote(10)
    assert ray.get([counter.incr.remote() for _ in range(5)]) == [11, 12, 13, 14, 15]
    pids = set(ray.get([counter.pid.remote() for _ in range(5)]))
    assert len(pids) == 1 and os.getpid() not in pids


def test_calls_run_in_submission_order(shared_cluster):
    counter = Counter.remote()
    slow_arg = ray.put(0)
    for i in range(200):
        counter.append.remote(slow_arg if i == 0 else i)
    assert ray.get(counter.get_log.remote()) == list(range(200))


def test_ref_arguments_and_num_returns(shared_cluster):
    counter = Counter.remote()
    assert ray.get(counter.incr.remote(ray.put(5))) == 5
    left, right = counter.pair.remote()
    assert ray.get([left, right]) == ["left", "right"]
    a, b, c = counter.incr.options(num_returns=1).remote(1), None, None
    assert ray.get(a) == 6 and b is c is None


def test_actor_and_task_ids(shared_cluster):
    counter = Counter.remote()
    actor_id, task_id = ray.get(counter.ids.remote())
    assert len(actor_id) == 32 and len(task_id) == 48
    assert actor_id == counter._ray_actor_id
    assert ray.get_runtime_context().get_actor_id() is None


def test_current_actor_handle(shared_cluster):
    @ray.remote
    class Self:
        def me(self):
            return ray.get_runtime_context().current_actor

        def ping(self):
            return "pong"

    actor = Self.remote()
    handle = ray.get(actor.me.remote())
    assert ray.get(handle.ping.remote()) == "pong"


def test_handles_passed_to_tasks_and_actors(shared_cluster):
    counter = Counter.remote()

    @ray.remote
    def bump(handle, times):
        return ray.get([handle.incr.remote() for _ in range(times)])[-1]

    assert ray.get(bump.remote(counter, 3)) == 3

    @ray.remote
    class Forwarder:
        def forward(self, handle):
            return ray.get(handle.incr.remote(10))

    assert ray.get(Forwarder.remote().forward.remote(counter)) == 13
    (inside,) = ray.get(ray.put([counter]))
    assert ray.get(inside.incr.remote()) == 14


def test_bad_method_and_direct_calls(shared_cluster):
    counter = Counter.remote()
    with pytest.raises(AttributeError, match=r"'Counter' actor has no method 'nope'"):
        counter.nope.remote()
    with pytest.raises(TypeError, match=r"incr\.remote\(\)"):
        counter.incr()
    with pytest.raises(TypeError, match=r"Counter\.remote"):
        Counter()


def test_method_error_fails_only_that_call(shared_cluster):
    counter = Counter.remote()
    with pytest.raises(ValueError, match="method failed"):
        ray.get(counter.fail.remote())
    assert ray.get(counter.incr.remote()) == 1


def test_constructor_error_kills_the_actor(shared_cluster):
    @ray.remote
    class Broken:
        def __init__(self):
            raise RuntimeError("constructor exploded")

        def method(self):
            return 1

    broken = Broken.remote()
    with pytest.raises(exc.ActorDiedError, match="constructor exploded") as info:
        ray.get(broken.method.remote())
    assert isinstance(info.value, exc.RayActorError)
    with pytest.raises(exc.ActorDiedError):
        ray.get(broken.method.remote())


def test_named_actors(shared_cluster):
    first = Counter.options(name="shared-counter").remote()
    ray.get(first.incr.remote())
    again = ray.get_actor("shared-counter")
    assert ray.get(again.incr.remote()) == 2
    with pytest.raises(ValueError, match="already exists"):
        Counter.options(name="shared-counter").remote()
    same = Counter.options(name="shared-counter", get_if_exists=True).remote()
    assert ray.get(same.incr.remote()) == 3
    with pytest.raises(ValueError, match="Failed to look up actor"):
        ray.get_actor("no-such-actor")
    ray.kill(first)
    wait_until(lambda: _lookup_fails("shared-counter"), what="the name to be released")


def _lookup_fails(name):
    try:
        ray.get_actor(name)
    except ValueError:
        return True
    return False


def test_kill_fails_pending_and_later_calls(shared_cluster):
    counter = Counter.remote()
    pid = ray.get(counter.pid.remote())
    ray.kill(counter)
    with pytest.raises(exc.ActorDiedError, match="killed"):
        ray.get(counter.incr.remote())
    wait_until(lambda: not psutil.pid_exists(pid), what="the actor process to end")


def test_exit_actor(shared_cluster):
    @ray.remote
    class Quitter:
        def quit(self):
            exit_actor()

        def ping(self):
            return 1

    quitter = Quitter.remote()
    assert ray.get(quitter.ping.remote()) == 1
    with pytest.raises(exc.ActorDiedError):
        ray.get(quitter.quit.remote())
    with pytest.raises(exc.ActorDiedError, match="exit_actor"):
        ray.get(quitter.ping.remote())


def test_restart_rebuilds_state_then_gives_up(shared_cluster):
    counter = Counter.options(max_restarts=1).remote(100)
    assert ray.get(counter.incr.remote()) == 101
    with pytest.raises(exc.ActorDiedError):
        ray.get(counter.die.remote())
    assert ray.get(counter.incr.remote()) == 101  # constructor ran again
    with pytest.raises(exc.ActorDiedError):
        ray.get(counter.die.remote())
    with pytest.raises(exc.ActorDiedError, match="died unexpectedly"):
        ray.get(counter.incr.remote())


def test_max_task_retries_reruns_the_call_after_restart(shared_cluster, tmp_path):
    marker = tmp_path / "died-once"

    @ray.remote(max_restarts=1, max_task_retries=1)
    class Fragile:
        def once(self, path):
            if not os.path.exists(path):
                open(path, "w").close()
                os._exit(1)
            return "second try"

    assert ray.get(Fragile.remote().once.remote(str(marker))) == "second try"


def test_dropping_every_handle_ends_the_actor(shared_cluster):
    counter = Counter.remote()
    pid = ray.get(counter.pid.remote())
    del counter
    wait_until(lambda: not psutil.pid_exists(pid), what="the unreferenced actor to end")


def test_threaded_actor_runs_calls_concurrently(shared_cluster, tmp_path):
    @ray.remote(max_concurrency=4)
    class Threaded:
        def meet(self, directory):
            open(os.path.join(directory, str(time.monotonic_ns())), "w").close()
            deadline = time.monotonic() + 20
            while len(os.listdir(directory)) < 4:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)
            return True

    actor = Threaded.remote()
    assert ray.get([actor.meet.remote(str(tmp_path)) for _ in range(4)]) == [True] * 4


def test_async_actor_runs_calls_concurrently(shared_cluster):
    import asyncio

    @ray.remote
    class AsyncActor:
        def __init__(self):
            self.arrived = 0

        async def meet(self, parties):
            self.arrived += 1
            deadline = time.monotonic() + 20
            while self.arrived < parties:
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.01)
            return True

    actor = AsyncActor.remote()
    assert ray.get([actor.meet.remote(50) for _ in range(50)]) == [True] * 50


def test_cancel_actor_call(shared_cluster, tmp_path):
    started = tmp_path / "started"

    @ray.remote
    class Sleeper:
        def nap(self, path):
            try:
                open(path, "w").close()
                time.sleep(60)
            except KeyboardInterrupt:
                return "interrupted"

        def ping(self):
            return "alive"

    sleeper = Sleeper.remote()
    ref = sleeper.nap.remote(str(started))
    queued = sleeper.ping.remote()
    wait_until(started.exists, what="the call to start")
    ray.cancel(ref)
    result = None
    try:
        result = ray.get(ref, timeout=30)
    except exc.TaskCancelledError:
        result = "cancelled"
    assert result in ("interrupted", "cancelled")
    assert ray.get(queued) == "alive"


def test_actor_pool(shared_cluster):
    from rayling.util import ActorPool

    actors = [Counter.remote(), Counter.remote()]
    pool = ActorPool(actors)
    doubled = list(pool.map(lambda a, v: a.incr.remote(0), range(4)))
    assert doubled == [0, 0, 0, 0]
    pids = list(pool.map_unordered(lambda a, v: a.pid.remote(), range(6)))
    assert len(pids) == 6 and len(set(pids)) == 2  # both actors did work
    pool.submit(lambda a, v: a.incr.remote(v), 5)
    assert pool.has_next() and pool.has_free()  # one actor busy, one free
    assert pool.get_next() == 5 and not pool.has_next()
    idle = pool.pop_idle()
    assert idle is not None
    with pytest.raises(ValueError):
        pool.push(actors[0] if actors[0] is not idle else actors[1])
    pool.push(idle)
    for v in range(3):  # more submissions than actors: one waits for a free actor
        pool.submit(lambda a, v: a.incr.remote(0), v)
    assert not pool.has_free()
    results = [pool.get_next_unordered() for _ in range(3)]
    assert len(results) == 3 and not pool.has_next()
    with pytest.raises(StopIteration):
        pool.get_next()


def test_queue(shared_cluster):
    from rayling.util.queue import Empty, Full, Queue

    q = Queue(maxsize=2)
    assert q.empty() and not q.full()
    q.put(1)
    q.put_nowait(2)
    assert q.full() and q.qsize() == 2
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, timeout=0.05)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(block=True, timeout=0.05)

    @ray.remote
    def producer(queue, n):
        for i in range(n):
            queue.put(i)

    ray.get(producer.remote(q, 2))
    assert [q.get(), q.get()] == [0, 1]
    q.shutdown()


def test_large_arrays_through_actors(shared_cluster):
    @ray.remote
    class ArrayStorage:
        def store(self, arr):
            self.array = arr

        def total(self):
            return float(self.array.sum())

        def get(self):
            return self.array

    storage = ArrayStorage.remote()
    ray.get(storage.store.remote(np.ones(1_000_000)))
    assert ray.get(storage.total.remote()) == 1_000_000
    out = ray.get(storage.get.remote())
    assert out.shape == (1_000_000,) and not out.flags.writeable


def test_calls_go_direct_and_stay_in_order_across_the_switch(shared_cluster):
    from rayling._private import client as client_mod

    counter = Counter.remote()
    for i in range(300):  # the first calls go through the daemon, later ones direct
        counter.append.remote(i)
    assert ray.get(counter.get_log.remote()) == list(range(300))
    ray.get(counter.incr.remote())
    assert counter._actor_id in client_mod.current.actor_routes.routes  # now calling it directly
    for i in range(300, 400):
        counter.append.remote(i)
    assert ray.get(counter.get_log.remote()) == list(range(400))


def test_direct_call_with_an_argument_still_being_computed(shared_cluster, tmp_path):
    gate = tmp_path / "gate"

    @ray.remote
    def later(path):
        while not os.path.exists(path):
            time.sleep(0.01)
        return 5

    counter = Counter.remote()
    ray.get(counter.incr.remote())
    ray.get(counter.incr.remote())  # the route is known by now
    pending = later.remote(str(gate))
    result = counter.incr.remote(pending)  # the actor's worker fetches the argument itself
    ready, _ = ray.wait([result], timeout=0.2)
    assert ready == []
    gate.touch()
    assert ray.get(result, timeout=30) == 7
