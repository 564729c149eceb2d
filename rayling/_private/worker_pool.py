"""The head's worker pools, one per node: which workers exist, which are idle, how many
are starting, and which idle ones to stop (pure logic).

A node starts one worker per CPU. More are asked for, one at a time, when a task could
start on a node that has no idle worker (tasks blocked in get lend their CPUs, so a node
can run more tasks than it has CPUs, and every actor has a worker of its own); those
extra workers are stopped once idle for WORKER_IDLE_TIMEOUT. A worker that hosts an actor
is the actor's until it dies and never counts as idle.

The only bound on a node's workers is its memory: one worker per WORKER_MEMORY_BUDGET of
RAM (``worker_limit``; RAYLING_MAX_WORKERS_PER_NODE sets it instead). A node at its
bound says so once (``want_one`` returns LIMIT), and the controller warns the drivers.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("rayling.daemon")

WORKER_IDLE_TIMEOUT = 10.0  # seconds an idle worker beyond the CPU count is kept
WORKER_START_TIMEOUT = 30.0  # seconds a requested worker may take to say Hello
WORKER_MEMORY_BUDGET = 64 * 1024 * 1024  # bytes of a node's RAM per worker it may start
LIMIT_ENV = "RAYLING_MAX_WORKERS_PER_NODE"
LIMIT = "limit"  # want_one: the node has as many workers as it may (said once)


def worker_limit(total_memory: int) -> int:
    """How many workers a node with ``total_memory`` bytes of RAM may run."""
    configured = os.environ.get(LIMIT_ENV, "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            log.warning("%s=%r is not a number; using the memory bound", LIMIT_ENV,
                        configured)
    return max(16, total_memory // WORKER_MEMORY_BUDGET)


class WorkerRecord:
    __slots__ = ("conn", "pid", "worker_id", "node", "task", "known_functions", "idle_since",
                 "actor")

    def __init__(self, conn, pid: int, worker_id: bytes, node) -> None:
        self.conn = conn
        self.pid = pid
        self.worker_id = worker_id
        self.node = node  # its NodeRecord
        self.task = None  # the TaskRecord it runs (an actor's: its creation task, once)
        self.known_functions: set[bytes] = set()  # code it was sent already
        self.idle_since = 0.0
        self.actor = None  # the ActorRecord it hosts, if any


class NodeWorkers:
    """One node's pool (``NodeRecord.workers``)."""

    __slots__ = ("idle", "count", "starting", "starting_since", "base", "max", "limit_said")

    def __init__(self, cpus: float, max_workers: int) -> None:
        self.idle: list[WorkerRecord] = []
        self.count = 0  # workers connected
        self.starting = 0  # workers asked for that have not said Hello yet
        self.starting_since = 0.0  # when the last of them was asked for
        self.base = max(1, int(cpus))  # workers kept even when idle
        self.max = max_workers  # see worker_limit
        self.limit_said = False  # the drivers were told it is at its limit


class WorkerPool:
    def __init__(self) -> None:
        self.by_conn: dict[object, WorkerRecord] = {}

    def __len__(self) -> int:
        return len(self.by_conn)

    def add_node(self, node, cpus: float, max_workers: int) -> None:
        node.workers = NodeWorkers(cpus, max_workers)

    def prestart(self, node, count: int, now: float) -> int:
        """Workers to start on a new node (its base pool); counted as starting."""
        pool = node.workers
        count = min(count, pool.max)
        pool.starting += count
        pool.starting_since = now
        return count

    def connected(self, conn, pid: int, worker_id: bytes, node, now: float) -> WorkerRecord:
        """A worker said Hello: it joins its node's pool, idle."""
        pool = node.workers
        pool.starting = max(0, pool.starting - 1)
        pool.count += 1
        worker = WorkerRecord(conn, pid, worker_id, node)
        self.by_conn[conn] = worker
        self.make_idle(worker, now)
        return worker

    def get(self, conn) -> WorkerRecord | None:
        return self.by_conn.get(conn)

    def remove(self, conn) -> WorkerRecord | None:
        """The worker's connection closed (it died or was stopped)."""
        worker = self.by_conn.pop(conn, None)
        if worker is not None:
            pool = worker.node.workers
            pool.count -= 1
            if worker in pool.idle:
                pool.idle.remove(worker)
        return worker

    @staticmethod
    def make_idle(worker: WorkerRecord, now: float) -> None:
        worker.idle_since = now
        worker.node.workers.idle.append(worker)

    @staticmethod
    def want_one(node, now: float) -> bool | str:
        """A task waits for a worker on ``node``: True to start one; False if one is on
        its way or the node has as many as it may; LIMIT the first time it has."""
        pool = node.workers
        if pool.starting:
            return False
        if pool.count >= pool.max:
            if pool.limit_said:
                return False
            pool.limit_said = True
            return LIMIT
        pool.starting = 1
        pool.starting_since = now
        return True

    def on_node(self, node) -> list[WorkerRecord]:
        return [w for w in self.by_conn.values() if w.node is node]

    def to_stop(self, nodes, now: float, keep=lambda worker: False) -> list[WorkerRecord]:
        """Idle workers beyond each node's base pool that sat idle WORKER_IDLE_TIMEOUT
        seconds (and that ``keep`` does not keep): they leave the pool, and the caller
        stops them. Also forgets requested workers that never started, so they are asked
        for again."""
        stop = []
        for node in nodes:
            pool = node.workers
            if pool.starting and now - pool.starting_since > WORKER_START_TIMEOUT:
                log.warning("node %s: %d requested workers never started; asking again",
                            node.node_id.hex()[:12], pool.starting)
                pool.starting = 0
            excess = sum(1 for w in self.by_conn.values()
                         if w.node is node and w.actor is None) - pool.base
            for worker in list(pool.idle):
                if excess <= 0:
                    break
                if now - worker.idle_since >= WORKER_IDLE_TIMEOUT and not keep(worker):
                    pool.idle.remove(worker)
                    stop.append(worker)
                    excess -= 1
        return stop
