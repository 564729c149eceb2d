"""Resources held by actors, on clusters of their own."""

from __future__ import annotations

import pytest

import rayling as ray

from .conftest import wait_until
from .test_actors import Counter

pytestmark = pytest.mark.timeout(60)


def test_resources_held_by_actors():
    ray.init(num_cpus=2)
    try:
        free = [Counter.remote() for _ in range(3)]  # default: placed with 1 CPU, hold 0
        ray.get([a.incr.remote() for a in free])
        assert ray.available_resources().get("CPU") == 2
        holders = [Counter.options(num_cpus=1).remote() for _ in range(2)]
        ray.get([a.incr.remote() for a in holders])
        assert ray.available_resources().get("CPU", 0) == 0
        ray.kill(holders[0])
        wait_until(lambda: ray.available_resources().get("CPU") == 1,
                   what="the killed actor's CPU to be free")
    finally:
        ray.shutdown()


def test_task_waiting_on_actor_held_cpus_warns(capfd):
    ray.init(num_cpus=1)
    try:
        holder = Counter.options(num_cpus=1).remote()
        ray.get(holder.incr.remote())

        @ray.remote
        def needs_cpu():
            return 1

        ref = needs_cpu.remote()
        seen = []
        wait_until(lambda: seen.append(capfd.readouterr().err) or "Counter" in "".join(seen),
                   what="a warning naming the actor that holds the CPU")
        assert "needs_cpu" in "".join(seen)
        ray.kill(holder)
        assert ray.get(ref, timeout=30) == 1
    finally:
        ray.shutdown()


def test_gpu_actor_keeps_its_gpu_for_every_call():
    import os

    ray.init(num_cpus=2, num_gpus=2)
    try:
        @ray.remote(num_gpus=1)
        class GpuUser:
            def gpus(self):
                return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

        users = [GpuUser.remote() for _ in range(2)]
        seen = ray.get([u.gpus.remote() for u in users] + [u.gpus.remote() for u in users])
        assert sorted(ids[0] for ids, _ in seen[:2]) == [0, 1]
        assert seen[:2] == seen[2:]  # the same GPU on every call
        assert all(env == str(ids[0]) for ids, env in seen)
        assert ray.available_resources().get("GPU", 0) == 0
        ray.kill(users[0])
        wait_until(lambda: ray.available_resources().get("GPU") == 1,
                   what="the killed actor's GPU to be free")
    finally:
        ray.shutdown()


def test_actor_holding_the_only_cpu_can_wait_for_a_task():
    ray.init(num_cpus=1)
    try:
        @ray.remote
        def child(x):
            return x * 2

        @ray.remote(num_cpus=1)
        class Parent:
            def run(self, x):
                return ray.get(child.remote(x))

        parent = Parent.remote()
        assert ray.get(parent.run.remote(21), timeout=30) == 42
        assert ray.available_resources().get("CPU", 0) == 0  # held again afterwards
    finally:
        ray.shutdown()
