"""Several nodes on one machine (rayling.cluster_utils): scheduling across nodes, actors
on other nodes, objects copied node to node, and what happens when a node dies."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rayling
from rayling import exceptions as exc
from rayling._private import client as client_mod, cluster_files, protocol as p
from rayling.cluster_utils import Cluster
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .conftest import barrier, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def two_nodes():
    """A head and one more node, 2 CPUs each, with this process connected."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    node = cluster.add_node(num_cpus=2)
    rayling.init(address=cluster.address)
    yield cluster, cluster.head_node, node
    cluster.shutdown()


def _stats():
    return client_mod.current.query(p.StoreStats())


@rayling.remote(num_cpus=1)
def node_of_task():
    return rayling.get_runtime_context().get_node_id()


@rayling.remote
def node_of_default_task():
    return rayling.get_runtime_context().get_node_id()


@rayling.remote
def make_array(n: int):
    return np.arange(n, dtype=np.int64)


@rayling.remote
def sum_and_node(array):
    return int(array.sum()), rayling.get_runtime_context().get_node_id()


def _on(node, soft=False):
    return NodeAffinitySchedulingStrategy(node.node_id, soft=soft)


def test_nodes_are_listed_and_resources_summed(two_nodes):
    _cluster, head, other = two_nodes
    nodes = rayling.nodes()
    assert sorted(n["NodeID"] for n in nodes) == sorted([head.node_id, other.node_id])
    assert all(n["Alive"] for n in nodes)
    assert rayling.cluster_resources()["CPU"] == 4
    assert rayling.get_runtime_context().get_node_id() == head.node_id


@rayling.remote(num_cpus=1)
def node_when_all_run(directory: str, parties: int):
    return rayling.get_runtime_context().get_node_id(), barrier(directory, parties)


@rayling.remote
def node_when_all_run_default(directory: str, parties: int):
    return rayling.get_runtime_context().get_node_id(), barrier(directory, parties)


@pytest.mark.parametrize("task", [node_when_all_run, node_when_all_run_default])
def test_four_tasks_run_two_per_node(two_nodes, task, tmp_path):
    """Each task holds its CPU until all four run at once (a file-system barrier, which
    lends no CPU while it waits, as get/wait on an actor would): four 1-CPU tasks at once
    on two 2-CPU nodes can only be two per node."""
    _cluster, head, other = two_nodes
    results = rayling.get([task.remote(str(tmp_path), 4) for _ in range(4)])
    assert [met for _node, met in results] == [True] * 4, "the four tasks never ran at once"
    assert sorted(node for node, _met in results) == sorted(
        [head.node_id] * 2 + [other.node_id] * 2)


def test_spread_uses_every_node(two_nodes):
    _cluster, head, other = two_nodes
    placed = rayling.get([node_of_default_task.options(scheduling_strategy="SPREAD").remote()
                          for _ in range(6)])
    assert set(placed) == {head.node_id, other.node_id}


def test_node_affinity_hard_and_soft(two_nodes):
    _cluster, head, other = two_nodes
    hard = rayling.get([node_of_task.options(scheduling_strategy=_on(other)).remote()
                        for _ in range(5)])
    assert set(hard) == {other.node_id}
    soft = rayling.get(node_of_task.options(scheduling_strategy=_on(head, soft=True)).remote())
    assert soft == head.node_id
    # A soft request for a node that does not exist runs anywhere.
    missing = NodeAffinitySchedulingStrategy("ab" * 28, soft=True)
    assert rayling.get(node_of_task.options(scheduling_strategy=missing).remote()) in (
        head.node_id, other.node_id)
    with pytest.raises(exc.TaskUnschedulableError, match="not in this cluster"):
        rayling.get(node_of_task.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy("ab" * 28, soft=False)).remote())
    with pytest.raises(ValueError, match="scheduling_strategy"):
        node_of_task.options(scheduling_strategy="PACKED")


def test_large_object_is_copied_once_per_node_and_read_zero_copy(two_nodes):
    _cluster, head, other = two_nodes
    n = 4_000_000  # 32 MB
    ref = make_array.options(scheduling_strategy=_on(other)).remote(n)
    pulls = _stats()["pulls"]
    readers = [sum_and_node.options(scheduling_strategy=_on(head)).remote(ref)
               for _ in range(3)]
    expected = n * (n - 1) // 2
    assert rayling.get(readers) == [(expected, head.node_id)] * 3
    array = rayling.get(ref)  # the driver is on the head node: the same local copy
    assert array.sum() == expected and not array.flags.writeable
    assert _stats()["pulls"] == pulls + 1
    # Used on the node that made it: no copy at all.
    assert rayling.get(sum_and_node.options(scheduling_strategy=_on(other)).remote(ref)) == (
        expected, other.node_id)
    assert _stats()["pulls"] == pulls + 1


def test_put_on_the_head_is_read_on_the_other_node(two_nodes):
    _cluster, _head, other = two_nodes
    array = np.ones(3_000_000)
    ref = rayling.put(array)
    result = sum_and_node.options(scheduling_strategy=_on(other)).remote(ref)
    assert rayling.get(result) == (3_000_000, other.node_id)


def test_actor_on_another_node_gets_direct_calls_and_large_values(two_nodes):
    _cluster, _head, other = two_nodes

    @rayling.remote
    class Holder:
        def __init__(self):
            self.total = 0.0

        def node(self):
            return rayling.get_runtime_context().get_node_id()

        def add(self, array):
            self.total += float(array.sum())
            return self.total

        def big(self, n):
            return np.full(n, 2.0)

    holder = Holder.options(scheduling_strategy=_on(other)).remote()
    assert rayling.get(holder.node.remote()) == other.node_id
    assert rayling.get([holder.add.remote(np.ones(200_000)) for _ in range(3)])[-1] == 600_000
    assert rayling.get(holder.big.remote(1_000_000)).sum() == 2_000_000
    # Many calls keep their order (most of them travel straight to the actor's worker).
    results = rayling.get([holder.add.remote(np.ones(1)) for _ in range(300)])
    assert results == [600_000 + i for i in range(1, 301)]
    assert client_mod.current.actor_routes.routes  # the caller learned the actor's address


def test_prints_from_another_node_reach_the_driver(two_nodes, capfd):
    _cluster, _head, other = two_nodes

    @rayling.remote
    def shout():
        print("hello from the other node")
        return rayling.get_runtime_context().get_node_id()

    assert rayling.get(shout.options(scheduling_strategy=_on(other)).remote()) == other.node_id
    seen = []
    wait_until(lambda: seen.append(capfd.readouterr().out) or
               "hello from the other node" in "".join(seen),
               what="the remote worker's print to reach the driver")


def test_each_script_is_its_own_job(two_nodes):
    cluster, _head, _other = two_nodes
    code = (f"import rayling; rayling.init(address='{cluster.address}'); "
            "print(rayling.get_runtime_context().get_job_id())")


    env = {**__import__("os").environ,
           "RAYLING_TOKEN": cluster_files.find_token(cluster.address)}
    jobs = {subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, timeout=60, check=True).stdout.strip() for _ in range(2)}
    jobs.add(rayling.get_runtime_context().get_job_id())
    assert len(jobs) == 3


def test_a_dataset_runs_across_nodes_and_moves_blocks_between_them(two_nodes):
    rayling.data.DataContext.get_current().enable_progress_bars = False

    def tag(batch):
        node = rayling.get_runtime_context().get_node_id()
        return {"id": batch["id"], "node": np.array([node] * len(batch["id"])),
                "payload": np.ones((len(batch["id"]), 32 * 1024))}  # 256 KiB a row

    ds = rayling.data.range(64, override_num_blocks=16).map_batches(tag)
    rows = ds.sort("id", descending=True).take_all()  # blocks cross nodes to be sorted
    assert [r["id"] for r in rows] == list(range(63, -1, -1))
    assert len({r["node"] for r in rows}) == 2
    assert all(r["payload"].shape == (32 * 1024,) for r in rows)
