"""Nodes dying under a cluster's feet: tasks are retried elsewhere, actors restart or
die, objects whose only copy was on the dead node are lost, and nodes() says so."""

from __future__ import annotations

import os
import time

import pytest

import rayling
from rayling import exceptions as exc
from rayling.cluster_utils import Cluster

from .conftest import wait_until
from .test_cluster import _on, make_array

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def fresh_cluster():
    """A cluster for one test that kills nodes."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    yield cluster
    cluster.shutdown()


def test_node_death_retries_tasks_fails_actors_and_loses_objects(fresh_cluster):
    cluster = fresh_cluster
    doomed = cluster.add_node(num_cpus=2)
    doomed_id = doomed.node_id
    rayling.init(address=cluster.address)

    @rayling.remote(max_retries=2)
    def slow_then_node(marker: str):
        if rayling.get_runtime_context().get_node_id() == doomed_id:
            open(marker, "w").close()
            time.sleep(60)
        return rayling.get_runtime_context().get_node_id()

    @rayling.remote
    class Counter:
        def ping(self):
            return 1

    marker = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"rl-marker-{os.getpid()}")
    task = slow_then_node.options(scheduling_strategy=_on(doomed, soft=True)).remote(marker)
    actor = Counter.options(scheduling_strategy=_on(doomed)).remote()
    assert rayling.get(actor.ping.remote()) == 1
    lost = make_array.options(scheduling_strategy=_on(doomed)).remote(1_000_000)
    rayling.wait([lost])
    wait_until(lambda: os.path.exists(marker), what="the task to start on the doomed node")
    os.unlink(marker)

    killed_at = time.monotonic()
    doomed.kill()
    wait_until(lambda: not next(n for n in rayling.nodes()
                                if n["NodeID"] == doomed.node_id)["Alive"],
               timeout=5, what="the killed node to be marked dead")
    assert time.monotonic() - killed_at < 5
    assert rayling.get(task) == cluster.head_node.node_id  # retried on the live node
    with pytest.raises(exc.ActorDiedError):
        rayling.get(actor.ping.remote())
    with pytest.raises(exc.ObjectLostError, match="died"):
        rayling.get(lost)
    assert rayling.cluster_resources()["CPU"] == 2


def test_actor_restarts_on_another_node(fresh_cluster):
    cluster = fresh_cluster
    doomed = cluster.add_node(num_cpus=1, resources={"spot": 1})
    rayling.init(address=cluster.address)

    @rayling.remote(max_restarts=1)
    class Service:
        def node(self):
            return rayling.get_runtime_context().get_node_id()

    service = Service.options(scheduling_strategy=_on(doomed, soft=True)).remote()
    assert rayling.get(service.node.remote()) == doomed.node_id
    doomed.kill()
    # (A call made while the killed node's worker is still dying may be answered by it.)
    wait_until(lambda: _try(service.node.remote()) == cluster.head_node.node_id,
               timeout=30, what="the actor to answer again, from the head")


def _try(ref):
    try:
        return rayling.get(ref, timeout=10)
    except exc.RayActorError:
        return None


def test_a_silent_node_is_declared_dead(monkeypatch, request):
    """A node that stops talking (its machine hangs, the network drops) without closing
    its connection is dead after RAYLING_NODE_TIMEOUT seconds of silence (10 by default;
    3 here); it then stops itself."""
    import signal

    monkeypatch.setenv("RAYLING_NODE_TIMEOUT", "3")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    request.addfinalizer(cluster.shutdown)
    frozen = cluster.add_node(num_cpus=1)
    rayling.init(address=cluster.address)
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        wait_until(lambda: not next(n for n in rayling.nodes()
                                    if n["NodeID"] == frozen.node_id)["Alive"],
                   timeout=8, what="the silent node to be marked dead")
        assert time.monotonic() - stopped_at < 6
        assert rayling.cluster_resources()["CPU"] == 2
        assert rayling.get(make_array.remote(10)).sum() == 45
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    wait_until(lambda: not frozen.alive(), timeout=10,
               what="the node to stop once it finds the head gone")


def test_a_node_stops_when_its_head_goes_silent(monkeypatch, request):
    """The head heartbeats to its nodes too: a node whose head hangs (machine frozen,
    network gone) stops itself and its workers after RAYLING_NODE_TIMEOUT seconds."""
    import signal

    monkeypatch.setenv("RAYLING_NODE_TIMEOUT", "3")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    request.addfinalizer(cluster.shutdown)
    node = cluster.add_node(num_cpus=1)
    os.kill(cluster.head_node.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not node.alive(), timeout=10,
                   what="the node to stop after its head went silent")
    finally:
        os.kill(cluster.head_node.pid, signal.SIGCONT)
