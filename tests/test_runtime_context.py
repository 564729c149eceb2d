"""get_runtime_context() beyond the ids: the resources a task or actor was given, the
actor's name, whether the actor was restarted, whether the call was asked to cancel, and
Ray's deprecated id properties."""

from __future__ import annotations

import os
import time

import pytest

import rayling

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def cluster():
    rayling.init(num_cpus=2, resources={"disk": 4})
    yield
    rayling.shutdown()


@rayling.remote
def assigned():
    return rayling.get_runtime_context().get_assigned_resources()


@rayling.remote
class Actor:
    def assigned(self):
        return rayling.get_runtime_context().get_assigned_resources()

    def name(self):
        return rayling.get_runtime_context().get_actor_name()

    def reconstructed(self):
        return rayling.get_runtime_context().was_current_actor_reconstructed

    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)


def test_assigned_resources_are_what_the_task_or_actor_holds(cluster):
    ctx = rayling.get_runtime_context()
    assert ctx.get_assigned_resources() == {}  # the driver holds nothing
    assert rayling.get(assigned.remote()) == {"CPU": 1.0}
    assert rayling.get(assigned.options(num_cpus=0.5, resources={"disk": 2}).remote()) == {
        "CPU": 0.5, "disk": 2.0}
    assert rayling.get(Actor.remote().assigned.remote()) == {}  # holds 0 CPUs, as in Ray
    held = Actor.options(num_cpus=1, resources={"disk": 1}).remote()
    assert rayling.get(held.assigned.remote()) == {"CPU": 1.0, "disk": 1.0}


def test_actor_name_and_reconstruction(cluster):
    assert rayling.get_runtime_context().get_actor_name() is None
    assert rayling.get(Actor.options(name="named-one").remote().name.remote()) == "named-one"
    assert rayling.get(Actor.remote().name.remote()) == ""
    restarting = Actor.options(max_restarts=1).remote()
    first = rayling.get(restarting.pid.remote())
    assert rayling.get(restarting.reconstructed.remote()) is False
    restarting.die.remote()
    wait_until(lambda: _pid_or_none(restarting) not in (None, first), timeout=30,
               what="the actor to restart")
    assert rayling.get(restarting.reconstructed.remote()) is True


def _pid_or_none(actor):
    try:
        return rayling.get(actor.pid.remote(), timeout=10)
    except rayling.exceptions.RayError:
        return None


def test_a_task_can_see_it_was_asked_to_cancel(cluster, tmp_path):
    started, seen = str(tmp_path / "started"), str(tmp_path / "seen")

    @rayling.remote
    def stubborn(started, seen):
        ctx = rayling.get_runtime_context()
        open(started, "w").close()
        while True:
            try:
                if ctx.is_canceled():
                    break
                time.sleep(0.01)
            except KeyboardInterrupt:  # the cancel's interruption: note it, go on
                pass
        with open(seen, "w") as f:
            f.write("canceled")
        return "finished anyway"

    ref = stubborn.remote(started, seen)
    wait_until(lambda: os.path.exists(started), what="the task to start")
    assert not rayling.get_runtime_context().is_canceled()
    rayling.cancel(ref)
    wait_until(lambda: os.path.exists(seen), what="the task to see its cancel")
    with open(seen) as f:
        assert f.read() == "canceled"


def test_deprecated_id_properties(cluster):
    ctx = rayling.get_runtime_context()
    assert ctx.node_id.hex() == ctx.get_node_id() and repr(ctx.node_id).startswith("NodeID(")
    # Ray's scheduling example passes the NodeID itself to NodeAffinitySchedulingStrategy.
    from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ctx.node_id, soft=False)
    assert rayling.get(assigned.options(scheduling_strategy=here).remote()) == {"CPU": 1.0}
    assert ctx.job_id.hex() == ctx.get_job_id()
    assert ctx.task_id is None and ctx.actor_id is None

    @rayling.remote
    def ids():
        ctx = rayling.get_runtime_context()
        return ctx.task_id.hex() == ctx.get_task_id(), ctx.get_task_function_name()

    same, name = rayling.get(ids.remote())
    assert same and name.endswith("ids")
