"""Every result exactly once: finished actor calls are never run again after a restart,
refs inside direct replies can be read, concurrent first calls of a function all run,
and a killed actor runs nothing more. Each race runs in a loop."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import rayling as ray
from rayling.exceptions import ActorDiedError

pytestmark = pytest.mark.timeout(180)


@ray.remote(max_restarts=1, max_task_retries=-1)
class DiesAtFive:
    """Ray's actor_restart.py: the sixth call ends the process."""

    def __init__(self):
        self.counter = 0

    def increment(self):
        if self.counter == 5:
            os._exit(0)
        self.counter += 1
        return self.counter


def test_restart_reruns_only_the_call_that_did_not_return(shared_cluster):
    for _ in range(50):
        actor = DiesAtFive.remote()
        got = [ray.get(actor.increment.remote(), timeout=60) for _ in range(6)]
        assert got == [1, 2, 3, 4, 5, 1]
        ray.kill(actor)


def test_restart_with_calls_pipelined(shared_cluster):
    for _ in range(20):
        actor = DiesAtFive.remote()
        refs = [actor.increment.remote() for _ in range(8)]
        # Calls 1-5 return; the sixth ends the first process and runs again on the
        # restarted actor, as do the ones after it, in order.
        assert ray.get(refs, timeout=60) == [1, 2, 3, 4, 5, 1, 2, 3]
        ray.kill(actor)


@ray.remote(max_restarts=0)
class DiesAtThree:
    def __init__(self):
        self.counter = 0

    def increment(self):
        if self.counter == 3:
            os._exit(0)
        self.counter += 1
        return self.counter


def test_calls_that_returned_are_not_failed_when_the_actor_dies(shared_cluster):
    for _ in range(20):
        actor = DiesAtThree.remote()
        refs = [actor.increment.remote() for _ in range(5)]
        assert ray.get(refs[:3], timeout=60) == [1, 2, 3]
        for ref in refs[3:]:
            with pytest.raises(ActorDiedError):
                ray.get(ref, timeout=60)


@ray.remote
class Putter:
    def small(self, i):
        return ray.put(i)

    def large(self, i):
        return ray.put(np.full(200_000, i))

    def several(self, i):
        return [ray.put(i), ray.put(i + 1)]


def test_refs_returned_by_actor_calls_can_be_read(shared_cluster):
    """Ray's anti_pattern_return_ray_put.py: the put a call returns must exist when the
    caller reads it, however fast the reply travels."""
    actor = Putter.remote()
    for i in range(50):
        assert ray.get(ray.get(actor.small.remote(i), timeout=30), timeout=30) == i
        assert ray.get(ray.get(actor.large.remote(i), timeout=30), timeout=30)[0] == i
        assert ray.get(ray.get(actor.several.remote(i), timeout=30), timeout=30) == [i, i + 1]


@ray.remote(max_concurrency=4)
class ThreadedPutter:
    def small(self, i):
        return ray.put(i)


def test_refs_returned_by_threaded_actor_calls_can_be_read(shared_cluster):
    actor = ThreadedPutter.remote()
    for _ in range(5):
        inner = ray.get([actor.small.remote(i) for i in range(20)], timeout=30)
        assert ray.get(inner, timeout=30) == list(range(20))


def test_first_calls_of_a_function_from_two_threads(shared_cluster):
    for i in range(50):
        @ray.remote
        def identity(x, _version=i):  # a new function (new code) every round
            return x

        barrier = threading.Barrier(2)
        results, errors = [], []

        def call(x, identity=identity, barrier=barrier, results=results, errors=errors):
            try:
                barrier.wait()
                results.append(ray.get(identity.remote(x), timeout=30))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=call, args=(x,)) for x in (1, 2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert sorted(results) == [1, 2]


@ray.remote
class Counter:
    def __init__(self):
        self.calls = 0

    def ping(self):
        self.calls += 1
        return self.calls


def test_a_call_after_kill_never_runs(shared_cluster):
    for _ in range(100):
        actor = Counter.remote()
        assert ray.get([actor.ping.remote() for _ in range(3)], timeout=30) == [1, 2, 3]
        ray.kill(actor)
        with pytest.raises(ActorDiedError):
            ray.get(actor.ping.remote(), timeout=30)


@ray.remote
def still_here():
    return "yes"


def test_killing_actors_with_calls_in_flight_leaves_the_caller_working(shared_cluster):
    """The caller drains each dead worker's connection to answer for its calls in doubt,
    while other sockets of the same select are still to be handled."""
    for _ in range(20):
        actors = [Counter.remote() for _ in range(3)]
        ray.get([a.ping.remote() for a in actors], timeout=30)  # their routes are known
        refs = [a.ping.remote() for a in actors for _ in range(20)]
        for actor in actors:
            ray.kill(actor)
        for ref in refs:
            try:
                ray.get(ref, timeout=30)
            except ActorDiedError:
                pass
        assert ray.get(still_here.remote(), timeout=30) == "yes"
