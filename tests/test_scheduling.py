"""Scheduling by resources: CPU limits, fractions, GPUs, custom resources, infeasible."""

from __future__ import annotations

import os
import time

import pytest

import rayling as ray

from .conftest import barrier, wait_until

pytestmark = pytest.mark.timeout(60)


@ray.remote
def interval(duration):
    start = time.monotonic()
    time.sleep(duration)
    return start, time.monotonic()


def max_overlap(intervals) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals],
                    key=lambda x: (x[0], x[1]))
    level = best = 0
    for _, delta in events:
        level += delta
        best = max(best, level)
    return best


def test_at_most_num_cpus_tasks_at_once(ray_start):
    spans = ray.get([interval.remote(0.2) for _ in range(6)])
    assert max_overlap(spans) <= 2


def test_fractional_cpus_run_together(ray_start, tmp_path):
    @ray.remote(num_cpus=0.5)
    def meet(d):
        return barrier(d, 4)

    assert ray.get([meet.remote(str(tmp_path)) for _ in range(4)]) == [True] * 4


def test_bigger_requests_limit_concurrency(ray_start):
    spans = ray.get([interval.options(num_cpus=2).remote(0.1) for _ in range(3)])
    assert max_overlap(spans) == 1


def test_custom_resources():
    ray.init(num_cpus=2, resources={"special": 1})
    try:
        spans = ray.get([interval.options(resources={"special": 1}).remote(0.1)
                         for _ in range(3)])
        assert max_overlap(spans) == 1
        assert ray.cluster_resources()["special"] == 1
    finally:
        ray.shutdown()


def test_gpus_are_assigned_per_task(tmp_path):
    ray.init(num_cpus=2, num_gpus=2)
    try:
        @ray.remote(num_gpus=1)
        def gpu_task(d):
            assert barrier(d, 2)
            return ray.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

        results = ray.get([gpu_task.remote(str(tmp_path)) for _ in range(2)])
        assert sorted(r[0][0] for r in results) == [0, 1]
        assert all(r[1] == str(r[0][0]) for r in results)
        assert ray.get_gpu_ids() == []
    finally:
        ray.shutdown()


def test_infeasible_request_warns_and_names_the_task(ray_start, capfd):
    @ray.remote(num_gpus=1)
    def needs_gpu():
        return 1

    ref = needs_gpu.remote()
    seen = []

    def warned():
        seen.append(capfd.readouterr().err)
        return "needs_gpu" in "".join(seen) and "GPU" in "".join(seen)

    wait_until(warned, what="a warning about the infeasible task")
    ready, _ = ray.wait([ref], timeout=0)
    assert ready == []
    ray.cancel(ref)


def test_blocked_task_lends_its_cpu(ray_start):
    @ray.remote
    def child(x):
        return x

    @ray.remote
    def parent(x):
        # Both CPUs are held by parents; children can only run if parents lend theirs.
        return ray.get(child.remote(x)) + 1

    assert ray.get([parent.remote(i) for i in range(4)]) == [1, 2, 3, 4]


def test_memory_and_node_resources_as_in_ray():
    import rayling

    rayling.init(num_cpus=2)
    try:
        total = rayling.cluster_resources()["memory"]
        ip = rayling.nodes()[0]["NodeManagerAddress"]

        @rayling.remote
        def assigned():
            return rayling.get_runtime_context().get_assigned_resources()

        asked = assigned.options(memory=total / 2, num_cpus=0.5,
                                 resources={f"node:{ip}": 0.01}).remote()
        assert rayling.get(asked, timeout=30) == {"CPU": 0.5, "memory": total / 2,
                                                  f"node:{ip}": 0.01}
        with pytest.raises(ValueError, match="memory"):
            assigned.options(memory=-1)
    finally:
        rayling.shutdown()
