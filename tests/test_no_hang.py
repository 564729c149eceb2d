"""No silent hang: a node starts workers as blocked tasks and actors need them, bounded
by its memory, not by a constant; at a limit, the drivers are told which and how to
raise it."""

from __future__ import annotations

import os

import pytest

import rayling as ray
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(180)


@ray.remote
class Pinger:
    def ping(self):
        return os.getpid()


def test_forty_actors_on_two_cpus(ray_start):
    actors = [Pinger.remote() for _ in range(40)]
    pids = ray.get([a.ping.remote() for a in actors], timeout=150)
    assert len(set(pids)) == 40


@ray.remote
def nested(depth):
    return 0 if depth == 0 else 1 + ray.get(nested.remote(depth - 1))


def test_tasks_nested_forty_deep(ray_start):
    assert ray.get(nested.remote(40), timeout=150) == 40


@ray.remote
def child():
    return 1


@ray.remote
def parent():
    return ray.get(child.remote())


def test_forty_parents_each_waiting_on_a_child(ray_start):
    assert sum(ray.get([parent.remote() for _ in range(40)], timeout=150)) == 40


def test_a_node_at_its_worker_limit_says_which_and_how_to_raise_it(monkeypatch, capfd):
    monkeypatch.setenv("RAYLING_MAX_WORKERS_PER_NODE", "3")
    ray.init(num_cpus=1)
    try:
        actors = [Pinger.remote() for _ in range(3)]
        ray.get([a.ping.remote() for a in actors[:3]], timeout=60)
        late = Pinger.remote()
        ref = late.ping.remote()
        seen = []

        def warned():
            seen.append(capfd.readouterr().err)
            return "RAYLING_MAX_WORKERS_PER_NODE" in "".join(seen)

        wait_until(warned, timeout=30, what="the worker-limit warning")
        assert "its limit" in "".join(seen)
        ray.kill(actors[0])  # a worker ends: the waiting actor starts
        assert ray.get(ref, timeout=60)
    finally:
        ray.shutdown()
