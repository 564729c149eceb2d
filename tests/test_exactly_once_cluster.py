"""Results exactly once across nodes: an actor on another node that dies after returning
large results (which its caller holds only by name) is rerun only where its caller did
not get the result."""

from __future__ import annotations

import os

import numpy as np
import pytest

import rayling as ray
from rayling.cluster_utils import Cluster
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(150)


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    other = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address)
    yield other
    ray.shutdown()
    cluster.shutdown()


@ray.remote(max_restarts=1, max_task_retries=-1)
class LargeAtFive:
    def __init__(self):
        self.counter = 0

    def next(self):
        if self.counter == 5:
            os._exit(0)
        self.counter += 1
        return np.full(100_000, self.counter)  # 800 kB: in the other node's store


def test_a_restart_on_another_node_reruns_only_what_did_not_return(two_nodes):
    on_other = NodeAffinitySchedulingStrategy(two_nodes.node_id, soft=False)
    for _ in range(10):
        actor = LargeAtFive.options(scheduling_strategy=on_other).remote()
        refs = []
        for _ in range(6):
            refs.append(actor.next.remote())
            ray.wait(refs[-1:], fetch_local=False, timeout=60)
        assert [int(ray.get(ref, timeout=60)[0]) for ref in refs] == [1, 2, 3, 4, 5, 1]
        ray.kill(actor)

