"""The cluster's nodes as the head sees them, and choosing a node for a task (pure logic).

A NodeRecord holds one node's resources, idle workers and object-store accounting, and
an *agent* that acts on that node: the head's own node has the daemon's local spawner,
segment thread and puller; a joined node has a RemoteAgent that sends the same requests
over its connection. ``Placement.pick`` decides where a task runs (NodeManager first
tries the node holding most of a task's large arguments):

* default: among the nodes where the task fits now, the least loaded (fraction of its
  CPUs in use), preferring the submitter's node on a tie, so work spreads over the
  cluster as soon as one node is busier than another;
* ``SPREAD``: the same, but ties go round-robin instead of to the submitter's node;
* node affinity (``node:<id hex>:hard|soft|spill``): that node when the task fits there
  now. Otherwise a hard request waits for it; a soft one waits too, unless the node is
  dead or could never fit the task, then it runs as the default; a spill one (Ray's
  ``_spill_on_unavailable``) also runs elsewhere while the node is busy.
"""

from __future__ import annotations

import itertools

from . import protocol as p
from .resources import GpuAllocator, ResourcePool

_CPU = "CPU"


class NodeRecord:
    def __init__(self, node_id: bytes, ip: str, hostname: str, resources: dict[str, float],
                 store_capacity: int, agent, shm_session: str, transfer_address: str = "",
                 conn=None, max_workers: int | None = None) -> None:
        self.node_id = node_id
        self.ip = ip
        self.hostname = hostname
        self.pool = ResourcePool(resources)
        self.gpus = GpuAllocator(int(resources.get("GPU", 0)))
        self.agent = agent  # spawn_worker(), kill(pid), unlink(name), pull(PullObject)
        self.shm_session = shm_session
        self.transfer_address = transfer_address
        self.conn = conn  # the joined node's connection (None for the head's own node)
        self.store_capacity = store_capacity
        self._store_used = 0
        self.store_peak = 0  # the most store_used has been (for tests and benchmarks)
        self.idle: list = []  # idle WorkerRecords on this node
        self.workers = 0  # workers connected
        self.starting = 0  # workers asked for that have not said Hello yet
        self.starting_since = 0.0  # when the last of them was asked for
        cpus = max(1, int(resources.get(_CPU, 1)))
        self.base_workers = cpus  # workers kept even when idle
        self.max_workers = max_workers or max(32, 8 * cpus)
        self.alive = True
        self._cpu_total = self.pool.total.get(_CPU, 0)

    @property
    def store_used(self) -> int:
        """Bytes of this node's store reserved or in use."""
        return self._store_used

    @store_used.setter
    def store_used(self, value: int) -> None:
        self._store_used = value
        if value > self.store_peak:
            self.store_peak = value

    def load(self) -> float:
        """Fraction of this node's CPUs in use (1.0 for a node without CPUs)."""
        if not self._cpu_total:
            return 1.0
        return 1.0 - self.pool.free.get(_CPU, 0) / self._cpu_total

    def info(self) -> dict:
        total = self.pool.total_float()
        return {
            "NodeID": self.node_id.hex(),
            "Alive": self.alive,
            "NodeManagerAddress": self.ip,
            "NodeManagerHostname": self.hostname,
            "NodeName": self.ip,
            "Resources": total if self.alive else {},
            "alive": self.alive,
            "IsHead": self.conn is None,
            "AvailableResources": self.pool.free_float() if self.alive else {},
            "ObjectStoreUsed": self.store_used,
            "ObjectStoreCapacity": self.store_capacity,
            "ObjectStorePeak": self.store_peak,
            "TransferAddress": self.transfer_address,
            "ObjectStoreSocketName": self.shm_session,
        }


class RemoteAgent:
    """Acts on a joined node by sending its daemon requests over its connection."""

    def __init__(self, conn) -> None:
        self.conn = conn

    def spawn_worker(self) -> None:
        self.conn.send(p.SpawnWorkers(1))

    def kill(self, pid: int) -> None:
        self.conn.send(p.KillWorker(pid))

    def unlink(self, name: str) -> None:
        self.conn.send(p.UnlinkSegments([name]))

    def pull(self, msg: p.PullObject) -> None:
        self.conn.send(msg)


class Placement:
    """Chooses a node for each task (see the module docstring)."""

    def __init__(self) -> None:
        self._round_robin = itertools.count()

    @staticmethod
    def affinity(strategy: str) -> tuple[bytes, bool, bool] | None:
        """(node id, soft, spill when busy) of a node-affinity strategy, else None (also
        for a malformed one, which runs as the default)."""
        if not strategy.startswith("node:"):
            return None
        try:
            _, hex_id, kind = strategy.split(":")
            return bytes.fromhex(hex_id), kind != "hard", kind == "spill"
        except ValueError:
            return None

    def pick(self, nodes: list[NodeRecord], by_id: dict[bytes, NodeRecord], request: dict,
             strategy: str, home: NodeRecord | None) -> NodeRecord | None:
        """The node to run on now, or None if the task fits nowhere it may run now."""
        if strategy:
            target = self.affinity(strategy)
            if target is not None:
                node = by_id.get(target[0])
                usable = node is not None and node.alive
                if usable and node.pool.fits_now(request):
                    return node
                if not target[1]:  # hard: that node or nothing
                    return None
                if usable and node.pool.fits_ever(request) and not target[2]:
                    return None  # soft: wait while it is only busy
        if len(nodes) == 1:
            node = nodes[0]
            return node if node.alive and node.pool.fits_now(request) else None
        best = None
        best_load = 2.0
        spread = strategy == "SPREAD"
        start = next(self._round_robin) % len(nodes) if spread else 0
        for i in range(len(nodes)):
            node = nodes[(start + i) % len(nodes)]
            if not node.alive or not node.pool.fits_now(request):
                continue
            load = node.load()
            if load < best_load or (load == best_load and node is home and not spread):
                best, best_load = node, load
        return best
