"""Methods every actor has, as in Ray (__ray_ready__, __ray_call__, __ray_terminate__),
and max_task_retries given per call with .options()."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import rayling

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@rayling.remote
class Counter:
    def __init__(self, start):
        self.value = start

    def add(self, n):
        self.value += n
        return self.value

    def pid(self):
        return os.getpid()


@rayling.remote
class AsyncCounter:
    async def get(self):
        return 1


def test_ready_call_and_terminate(shared_cluster):
    counter = Counter.remote(10)
    assert rayling.get(counter.__ray_ready__.remote()) is True
    assert rayling.get(AsyncCounter.remote().__ray_ready__.remote()) is True
    assert rayling.get(counter.__ray_call__.remote(lambda self, n: self.value * n, 3)) == 30
    pid = rayling.get(counter.pid.remote())
    before = counter.add.remote(1)
    counter.__ray_terminate__.remote()
    after = counter.add.remote(1)
    assert rayling.get(before) == 11  # calls made before it still run
    with pytest.raises(rayling.exceptions.ActorDiedError):
        rayling.get(after)
    wait_until(lambda: not psutil.pid_exists(pid) or
               psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
               what="the terminated actor's worker to exit")


@rayling.remote(max_restarts=1)
class DiesOnce:
    def work(self, marker):
        if not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return "done"


def test_max_task_retries_per_call(shared_cluster, tmp_path):
    actor = DiesOnce.remote()
    assert rayling.get(actor.work.options(max_task_retries=1).remote(
        str(tmp_path / "a"))) == "done"
    other = DiesOnce.remote()
    with pytest.raises(rayling.exceptions.RayActorError):
        rayling.get(other.work.remote(str(tmp_path / "b")))  # the actor's default: 0


def test_max_pending_calls_raises_past_the_limit(shared_cluster, tmp_path):
    @rayling.remote(max_pending_calls=3)
    class Slow:
        def wait_for(self, path):
            while not os.path.exists(path):
                time.sleep(0.01)
            return True

    gate = str(tmp_path / "gate")
    slow = Slow.remote()
    calls = [slow.wait_for.remote(gate) for _ in range(3)]
    with pytest.raises(rayling.exceptions.PendingCallsLimitExceeded):
        slow.wait_for.remote(gate)
    open(gate, "w").close()
    assert rayling.get(calls) == [True] * 3
    assert rayling.get(slow.wait_for.remote(gate))  # room again
