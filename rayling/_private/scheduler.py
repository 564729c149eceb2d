"""Which ready task runs where, and the resource accounting that decides it (pure logic).

Ready tasks wait in one queue per *shape*: their resource request and scheduling strategy.
A dispatch pass looks at the head of each queue, picks a node for it and takes an idle
worker there; it returns what it decided for the controller to carry out.
A queue whose head cannot start now waits as a whole, so tasks of one shape start in the
order they were submitted.

Choosing a node (``Placement.pick``), after the node holding most of a task's large
arguments when that node can start it now (no copy needed):

* default: among the nodes where the task fits now, the least loaded (fraction of its
  CPUs in use), preferring the submitter's node on a tie, so work spreads over the
  cluster as soon as one node is busier than another;
* SpreadStrategy: the same, but ties go round-robin instead of to the submitter's node;
* NodeAffinity: that node when the task fits there now. Otherwise a hard request waits
  for it (and fails once it is dead or unknown); a soft one waits too, unless the node is
  dead or could never fit the task, then it runs as the default; ``spill`` (Ray's
  ``_spill_on_unavailable``) also runs elsewhere while the node is busy.

Resources are integers in units of 1/10000 (resources.py). A task holds its request
while it runs; while it blocks in get/wait it lends its CPUs to other tasks. An actor
holds its ``hold`` resources for its life (lending its CPUs likewise while every call it
runs is blocked).
"""

from __future__ import annotations

import itertools
from collections import deque

from . import protocol as p
from .resources import GpuAllocator, ResourcePool, from_units, gpu_units
from .task_table import READY, TaskRecord

_CPU = "CPU"
_NOTHING: tuple = ((), (), (), ())  # what a dispatch with no ready task decides


class Placement:
    """Chooses a node for a task (see the module docstring)."""

    def __init__(self) -> None:
        self._round_robin = itertools.count()

    def pick(self, nodes: list, by_id: dict, request: dict[str, int], strategy: p.Strategy,
             home) -> object | None:
        """The node to run on now, or None if the task fits nowhere it may run now."""
        spread = False
        if strategy is not None:
            if type(strategy) is p.NodeAffinity:
                node = by_id.get(strategy.node_id)
                usable = node is not None and node.alive
                if usable and node.pool.fits_now(request):
                    return node
                if not strategy.soft:  # hard: that node or nothing
                    return None
                if usable and node.pool.fits_ever(request) and not strategy.spill:
                    return None  # soft: wait while it is only busy
            else:
                spread = True
        if len(nodes) == 1:
            node = nodes[0]
            return node if node.alive and node.pool.fits_now(request) else None
        best = None
        best_load = 2.0
        start = next(self._round_robin) % len(nodes) if spread else 0
        for i in range(len(nodes)):
            node = nodes[(start + i) % len(nodes)]
            if not node.alive or not node.pool.fits_now(request):
                continue
            load = _load(node)
            if load < best_load or (load == best_load and node is home and not spread):
                best, best_load = node, load
        return best


def _load(node) -> float:
    """Fraction of a node's CPUs in use (1.0 for a node without CPUs)."""
    pool = node.pool
    total = pool.total.get(_CPU, 0)
    if not total:
        return 1.0
    return 1.0 - pool.free.get(_CPU, 0) / total


class Scheduler:
    def __init__(self, nodes, workers, bytes_by_node) -> None:
        """``nodes``: the NodeTable; ``workers``: the WorkerPool; ``bytes_by_node(ids)``:
        how many bytes of those objects each node holds (ObjectDirectory)."""
        self._nodes = nodes
        self._workers = workers
        self._bytes_by_node = bytes_by_node
        self.ready: dict[tuple, deque[TaskRecord]] = {}
        self.placement = Placement()
        self._feasible: set[tuple] = set()  # task shapes some node can run
        self._warned_infeasible: set[tuple] = set()

    def add_node(self, node, resources: dict[str, float]) -> None:
        node.pool = ResourcePool(resources)
        node.gpus = GpuAllocator(int(resources.get("GPU", 0)))
        self._feasible.clear()
        self._warned_infeasible.clear()  # a task may have to be warned of again

    def nodes_changed(self) -> None:
        """A node died: what can run anywhere must be worked out again."""
        self._feasible.clear()

    # -- queues -------------------------------------------------------------------------
    def enqueue(self, task: TaskRecord) -> None:
        task.state = READY
        queue = self.ready.get(task.shape)
        if queue is None:
            queue = self.ready[task.shape] = deque()
        queue.append(task)

    def dispatch(self, note_starved: bool = False) -> tuple[list, list, list, list]:
        """Start every ready task that has resources and an idle worker on some node.

        Returns what it decided: (tasks to start with the idle worker taken for each,
        tasks bound to a node that is dead or unknown, tasks that fit nowhere now if
        ``note_starved``, nodes where a task waits for an idle worker)."""
        if not self.ready:
            return _NOTHING
        starts: list[tuple[TaskRecord, object]] = []
        unschedulable: list[TaskRecord] = []
        starved: list[TaskRecord] = []
        want: list = []
        pick = self.placement.pick
        nodes, by_id = self._nodes.all, self._nodes.by_id
        emptied = None
        for shape, queue in self.ready.items():
            while queue:
                task = queue[0]
                if task.cancelled or task.state is not READY:
                    queue.popleft()
                    continue
                spec = task.spec
                node = None
                if spec.deps and spec.strategy is None and len(nodes) > 1:
                    node = self._where_its_data_is(task)
                if node is None:
                    node = pick(nodes, by_id, task.request, spec.strategy,
                                getattr(task.submitter, "node", None))
                if node is None:
                    if spec.strategy is not None and self._bound_to_lost_node(task):
                        queue.popleft()
                        unschedulable.append(task)
                        continue
                    if note_starved:
                        starved.append(task)
                    break
                idle = node.workers.idle
                if not idle:
                    if node not in want:
                        want.append(node)
                    break
                queue.popleft()
                self.acquire(task, node)
                starts.append((task, idle.pop()))
            if not queue:
                if emptied is None:
                    emptied = []
                emptied.append(shape)
        if emptied is not None:
            for shape in emptied:
                del self.ready[shape]
        return starts, unschedulable, starved, want

    def _where_its_data_is(self, task: TaskRecord):
        """The node holding most of a task's large arguments, if it can start the task
        now (an idle worker, the resources free): running there saves copying them."""
        bytes_on = self._bytes_by_node(task.spec.deps)
        if not bytes_on:
            return None
        node = max(bytes_on, key=bytes_on.get)
        if node.alive and node.workers.idle and node.pool.fits_now(task.request):
            return node
        return None

    def _bound_to_lost_node(self, task: TaskRecord) -> bool:
        """A hard node affinity to a node that is dead or not in the cluster."""
        strategy = task.spec.strategy
        if type(strategy) is not p.NodeAffinity or strategy.soft:
            return False
        node = self._nodes.get(strategy.node_id)
        return node is None or not node.alive

    # -- feasibility --------------------------------------------------------------------
    def fits_ever(self, task: TaskRecord) -> bool:
        """Could some node ever run it? (Remembered per shape until the nodes change.)"""
        if task.shape in self._feasible:
            return True
        strategy = task.spec.strategy
        if type(strategy) is p.NodeAffinity and not strategy.soft:
            node = self._nodes.get(strategy.node_id)
            if node is None:
                return True  # fails at dispatch, naming the node
            fits = node.pool.fits_ever(task.request)
        else:
            fits = any(n.alive and n.pool.fits_ever(task.request) for n in self._nodes.all)
        if fits:
            self._feasible.add(task.shape)
        return fits

    def infeasible_warning(self, task: TaskRecord) -> str | None:
        """The text that says no node can ever run ``task`` (once per function and shape)."""
        key = (task.spec.fid, task.shape)
        if key in self._warned_infeasible:
            return None
        self._warned_infeasible.add(key)
        alive = self._nodes.live()
        offers = "; ".join(
            f"node {n.node_id.hex()[:8]} has {fmt_resources(n.pool.total_float())}, short by "
            + ", ".join(f"{k}: {v:g} more" for k, v in n.pool.missing(task.request).items())
            for n in alive[:8])
        if len(alive) > 8:
            offers += f"; and {len(alive) - 8} more"
        return (
            f"Task {task.spec.name} requests {fmt_resources(from_units(task.request))}, but no "
            f"node in this cluster has that much in total ({offers}). It will wait until a "
            f"node with enough resources joins. Lower the request with .options(...) or start "
            f"the cluster with more resources."
        )

    # -- resources ----------------------------------------------------------------------
    @staticmethod
    def acquire(task: TaskRecord, node) -> None:
        node.pool.acquire(task.request)
        units = gpu_units(task.request)
        task.gpu_ids = node.gpus.allocate(units) if units else []
        task.node = node

    @staticmethod
    def release(task: TaskRecord) -> None:
        """Give back what ``task`` holds (less the CPUs it has lent)."""
        node = task.node
        if node is None:
            return
        request = task.request
        if task.lent_cpu:
            request = dict(request)
            request[_CPU] -= task.lent_cpu
            task.lent_cpu = 0
        node.pool.release(request)
        if task.gpu_ids:
            node.gpus.free(task.gpu_ids, gpu_units(task.request))
            task.gpu_ids = []
        task.node = None

    @staticmethod
    def lend(task: TaskRecord) -> bool:
        """``task`` blocks in get/wait: lend its CPUs to others. True if it lent any."""
        cpu = task.request.get(_CPU, 0)
        if task.lent_cpu or not cpu or task.node is None:
            return False
        task.lent_cpu = cpu
        task.node.pool.release({_CPU: cpu})
        return True

    @staticmethod
    def reclaim(task: TaskRecord) -> None:
        """``task`` runs again: take back the CPUs it lent (the node may be oversubscribed
        for a while, as in Ray)."""
        if task.lent_cpu and task.node is not None:
            task.node.pool.acquire({_CPU: task.lent_cpu})
            task.lent_cpu = 0

    @staticmethod
    def hold(node, request: dict[str, int]) -> None:
        """An actor takes resources for its life."""
        node.pool.acquire(request)

    @staticmethod
    def unhold(node, request: dict[str, int]) -> None:
        node.pool.release(request)


def fmt_resources(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"
