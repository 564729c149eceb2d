"""Placement groups (rayling.util.placement_group): bundles reserved together, all or
nothing, by strategy; tasks and actors placed in them; removal; job end; node death."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import rayling
from rayling.cluster_utils import Cluster
from rayling.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from rayling.util.scheduling_strategies import PlacementGroupSchedulingStrategy as InGroup

from .conftest import wait_until

pytestmark = pytest.mark.timeout(90)


@rayling.remote(num_cpus=1)
def where():
    ctx = rayling.get_runtime_context()
    return ctx.get_placement_group_id(), ctx.get_assigned_resources(), ctx.get_node_id()


@rayling.remote(num_cpus=1)
class Member:
    def group(self):
        return rayling.get_runtime_context().get_placement_group_id()


def test_a_group_reserves_its_bundles_and_runs_tasks_and_actors_in_them():
    rayling.init(num_cpus=4)
    try:
        group = placement_group([{"CPU": 1}, {"CPU": 2}], strategy="PACK", name="mine")
        assert rayling.get(group.ready(), timeout=30) is True and group.wait(1)
        assert rayling.available_resources()["CPU"] == 1.0
        assert rayling.cluster_resources()["CPU"] == 4.0
        pg_id, assigned, _ = rayling.get(where.options(
            scheduling_strategy=InGroup(group, placement_group_bundle_index=1)).remote())
        assert pg_id == group.id.hex() and assigned == {"CPU": 1.0}
        assert rayling.get(where.remote())[0] is None
        member = Member.options(scheduling_strategy=InGroup(group)).remote()
        assert rayling.get(member.group.remote()) == group.id.hex()
        assert get_placement_group("mine") == group
        table = placement_group_table()
        assert table[group.id.hex()]["state"] == "CREATED"
        assert table[group.id.hex()]["bundles"] == {0: {"CPU": 1.0}, 1: {"CPU": 2.0}}
        # Too big for what is left: it waits, and is made once the first goes.
        waiting = placement_group([{"CPU": 3}])
        assert not waiting.wait(0.3)
        assert placement_group_table(waiting)["state"] == "PENDING"
        # A task queued in the group (its bundle busy) fails when the group is removed,
        # and its actors die.
        busy = [where.options(scheduling_strategy=InGroup(group, 0)).remote()
                for _ in range(20)]
        remove_placement_group(group)
        wait_until(lambda: _dead(member), timeout=30, what="the group's actor to die")
        outcomes = []
        for ref in busy:
            try:
                outcomes.append(rayling.get(ref, timeout=30)[0])
            except (rayling.exceptions.TaskPlacementGroupRemoved,
                    rayling.exceptions.TaskCancelledError) as e:
                outcomes.append(type(e).__name__)
        assert "TaskPlacementGroupRemoved" in outcomes
        assert waiting.wait(30)
        assert placement_group_table()[group.id.hex()]["state"] == "REMOVED"
        remove_placement_group(waiting)
        wait_until(lambda: rayling.available_resources()["CPU"] == 4.0 and not any(
            "_group_" in k for k in rayling.available_resources()),
            what="every reservation to be given back")
    finally:
        rayling.shutdown()


def _dead(actor) -> bool:
    try:
        rayling.get(actor.group.remote(), timeout=10)
        return False
    except rayling.exceptions.ActorDiedError:
        return True


def test_bad_groups_are_refused():
    for bundles in ([], [{}], [{"CPU": -1}], [{"CPU": float("nan")}], "CPU"):
        with pytest.raises((ValueError, TypeError)):
            placement_group(bundles)
    with pytest.raises(ValueError, match="strategy"):
        placement_group([{"CPU": 1}], strategy="TIGHT")
    fake = type("G", (), {"id": bytes(18), "bundle_specs": [{"CPU": 1}]})()
    with pytest.raises(ValueError, match="bundle_index"):
        where.options(scheduling_strategy=InGroup(fake, 5))
    with pytest.raises(ValueError, match="need placement_group"):
        where.options(placement_group_bundle_index=0)


@rayling.remote(num_cpus=0.5)
def child_group():
    return rayling.get_runtime_context().get_placement_group_id()


@rayling.remote(num_cpus=0.5)
def parent(capture):
    current = get_current_placement_group()
    return (current.id.hex() if current else None), rayling.get(child_group.remote())


def test_captured_child_tasks_run_in_the_group():
    rayling.init(num_cpus=2)
    try:
        group = placement_group([{"CPU": 1}])
        assert group.wait(30)
        captured = rayling.get(parent.options(scheduling_strategy=InGroup(
            group, placement_group_capture_child_tasks=True)).remote(True))
        assert captured == (group.id.hex(), group.id.hex())
        plain = rayling.get(parent.options(scheduling_strategy=InGroup(group)).remote(False))
        assert plain == (group.id.hex(), None)
    finally:
        rayling.shutdown()


def test_strategies_across_nodes_node_death_and_job_end():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        nodes = [cluster.add_node(num_cpus=1) for _ in range(2)]
        rayling.init(address=cluster.address)
        spread = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        assert spread.wait(30)
        placed = placement_group_table(spread)["bundles_to_node_id"]
        assert len(set(placed.values())) == 2
        too_spread = placement_group([{"CPU": 0.1}] * 4, strategy="STRICT_SPREAD")
        assert not too_spread.wait(0.5)  # four distinct nodes: there are three
        remove_placement_group(too_spread)
        packed = placement_group([{"CPU": 0.5}, {"CPU": 0.5}], strategy="STRICT_PACK")
        assert packed.wait(30)
        assert len(set(placement_group_table(packed)["bundles_to_node_id"].values())) == 1
        remove_placement_group(packed)
        # A node holding a bundle dies: the bundle is placed again where it fits.
        lost = next(n for n in nodes if n.node_id in placed.values())
        lost.kill()
        wait_until(lambda: lost.node_id not in placement_group_table(spread).get(
            "bundles_to_node_id", {}).values() and
            placement_group_table(spread)["state"] == "CREATED", timeout=60,
            what="the lost bundle to be placed again")
        remove_placement_group(spread)
        # A group ends with the job that made it (unless detached).
        script = textwrap.dedent(f"""
            import rayling
            from rayling.util.placement_group import placement_group
            rayling.init(address={cluster.address!r})
            assert placement_group([{{"CPU": 0.1}}], name="passing").wait(30)
            assert placement_group([{{"CPU": 0.1}}], name="kept",
                                   lifetime="detached").wait(30)
        """)
        env = {**os.environ, "RAYLING_TOKEN": cluster._token,
               "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr

        def names() -> set:
            return {g["name"] for g in placement_group_table().values()
                    if g["state"] != "REMOVED"}

        wait_until(lambda: "passing" not in names(), what="the job's group to go")
        assert "kept" in names()
        remove_placement_group(get_placement_group("kept"))
    finally:
        rayling.shutdown()
        cluster.shutdown()


def test_a_gpu_bundle_gives_its_task_a_gpu():
    rayling.init(num_cpus=2, num_gpus=2)
    try:
        group = placement_group([{"CPU": 1, "GPU": 1}])
        assert group.wait(30)

        @rayling.remote(num_cpus=0, num_gpus=1)
        class UsesGpu:
            def gpus(self):
                return rayling.get_gpu_ids(), os.environ.get("CUDA_VISIBLE_DEVICES")

        actor = UsesGpu.options(scheduling_strategy=InGroup(group, 0)).remote()
        ids, visible = rayling.get(actor.gpus.remote())
        assert len(ids) == 1 and visible == str(ids[0])
    finally:
        rayling.shutdown()


@rayling.remote(num_cpus=1)
def hold_until(path):
    import time

    while not os.path.exists(path):
        time.sleep(0.01)
    return "held"


def test_a_bundle_used_by_index_is_not_also_free_for_any_bundle(tmp_path):
    rayling.init(num_cpus=2)
    try:
        group = placement_group([{"CPU": 1}])
        assert group.wait(30)
        gate = str(tmp_path / "gate")
        by_index = hold_until.options(scheduling_strategy=InGroup(group, 0)).remote(gate)
        wait_until(lambda: rayling.available_resources().get(
            f"CPU_group_{group.id.hex()}", 0) == 0, what="the bundle to be taken")
        anywhere = where.options(scheduling_strategy=InGroup(group, -1)).remote()
        ready, _ = rayling.wait([anywhere], timeout=0.5)
        assert not ready  # the group's only CPU is in use
        open(gate, "w").close()
        assert rayling.get(by_index) == "held" and rayling.get(anywhere)[1] == {"CPU": 1.0}
    finally:
        rayling.shutdown()
