"""The head daemon's decisions: scheduling, worker pools, task lifecycle, objects.

This module has no sockets and starts no processes. The daemon shell (daemon.py) hands
it decoded messages with the connection they came from, and it answers by calling
``conn.send(message)`` and each node's agent (nodes.py): ``spawn_worker()``,
``kill(pid)``, ``unlink(name)``, ``pull(PullObject)``; the head's own node also has
``segments.preallocate(name, size, done)``. Tests drive it with fake connections.

One NodeManager runs in the head daemon and decides for the whole cluster: joined nodes
register over TCP (RegisterNode) and their workers connect to the head directly, so
every task, worker and object is in these tables, each tagged with its node.

Life of a task::

    SubmitTask ──> waiting for deps ──> ready queue (per resource shape)
                                              │ resources free and an idle worker
                                              ▼
                         ExecuteTask ──> running on a worker ──> TaskDone
                                              │ worker died              │
                                              ▼                          ▼
                           retried (max_retries) or failed      results stored; the
                           with WorkerCrashedError              submitter and waiters
                                                                are sent ObjectReady

State owned here: the object table (values, refs, pins), the nodes (each with its
resource pool, GPU allocator, idle workers and store accounting), tasks not finished
yet, workers, function blobs, where each shared-memory segment lives and which nodes
hold copies of which objects.

Large objects stay on the node that made them. A client on another node that needs one
is first told where it is (ObjectData.where); when it asks for the value, the head has
its node daemon pull a copy from the owning node (transfer.py) once, and every client
of that node then maps the local copy.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque

import cloudpickle

from .. import exceptions as exc
from . import ids, protocol as p, shm
from .actor_manager import ActorManagerMixin
from .nodes import NodeRecord, Placement, RemoteAgent
from .object_table import ObjectTable
from .resources import UNIT, from_units, to_units

log = logging.getLogger("rayling.daemon")

SPARE_MIN = 8 * 1024 * 1024  # objects from this size ...
SPARE_MAX = 128 * 1024 * 1024  # ... to this size get a preallocated segment ready
SPARE_IDLE = 5.0  # seconds an unused spare segment is kept
WORKER_IDLE_TIMEOUT = 10.0  # seconds an idle worker beyond the CPU count is kept
NODE_TIMEOUT = float(os.environ.get("RAYLING_NODE_TIMEOUT", 10))  # seconds of silence
# after which a joined node is dead (one whose daemon exits is dead at once: its
# connection closes)
WORKER_START_TIMEOUT = 30.0  # seconds a requested worker may take to say Hello
WAITING, READY, RUNNING, DONE = "waiting", "ready", "running", "done"


class TaskRecord:
    __slots__ = (
        "spec", "submitter", "request", "shape", "retries_left", "waiting_on",
        "state", "worker", "gpu_ids", "cancelled", "lent_cpu", "pinned", "node",
    )

    def __init__(self, spec: p.SubmitTask, submitter, request: dict[str, int]) -> None:
        self.spec = spec
        self.submitter = submitter
        self.request = request
        self.shape = (tuple(sorted(request.items())), spec.strategy)
        self.retries_left = spec.max_retries
        self.waiting_on = 0  # number of dependencies not ready yet
        self.state = WAITING
        self.worker: WorkerRecord | None = None
        self.gpu_ids: list[int] = []
        self.cancelled = False
        self.lent_cpu = 0  # CPU units given back while the task blocks in get/wait
        self.pinned = True  # its arguments are pinned by this task (not by an actor)
        self.node: NodeRecord | None = None  # where it runs (or ran)


class WorkerRecord:
    __slots__ = ("conn", "pid", "worker_id", "task", "known_functions", "idle_since", "actor",
                 "node")

    def __init__(self, conn, pid: int, worker_id: bytes, node: NodeRecord) -> None:
        self.conn = conn
        self.node = node
        self.pid = pid
        self.worker_id = worker_id
        self.task: TaskRecord | None = None
        self.known_functions: set[bytes] = set()
        self.idle_since = 0.0
        self.actor = None  # the ActorRecord this worker hosts, if any


class DirectSegments:
    """Unlinks and preallocates segments at once, in the caller's thread (the daemon uses
    a background thread instead so large frees and allocations do not stall it)."""

    def unlink(self, name: str) -> None:
        shm.unlink(name)

    def preallocate(self, name: str, size: int, done) -> None:
        try:
            shm.preallocate(name, size)
            ok = True
        except OSError:
            ok = False
        done(name, size, ok)


class NodeManager(ActorManagerMixin):
    def __init__(
        self,
        *,
        node_id: bytes,
        node_ip: str,
        session: str,
        session_dir: str,
        token: str,
        resources: dict[str, float],
        store_capacity: int,
        spawner,
        segments=None,
        puller=None,
        transfer_address: str = "",
        max_workers: int | None = None,
    ) -> None:
        self.session_dir = session_dir
        self.token = token
        self.segments = segments or DirectSegments()
        self.local = NodeRecord(
            node_id, node_ip, os.uname().nodename, resources, store_capacity,
            _LocalAgent(spawner, self.segments, puller), session, transfer_address,
            max_workers=max_workers)
        self.nodes: dict[bytes, NodeRecord] = {node_id: self.local}
        self.node_list: list[NodeRecord] = [self.local]
        self.placement = Placement()
        self.objects = ObjectTable(self._free_object_data)
        self.functions: dict[bytes, tuple[bytes, str]] = {}
        self.tasks: dict[bytes, TaskRecord] = {}
        self.dep_waiters: dict[bytes, list[TaskRecord]] = {}
        self.ready: dict[tuple, deque[TaskRecord]] = {}
        self.workers: dict[object, WorkerRecord] = {}
        self.drivers: set = set()
        self.drivers_seen = 0
        self.job_id = ids.new_job_id()  # the first script's; later ones get their own
        self._shm_counter = 0
        self._reservations: dict[object, dict[str, int]] = {}  # conn -> {name: size}
        self._segments: dict[str, tuple[NodeRecord, int, bytes]] = {}  # name -> node, size, id
        self._copies: dict[bytes, dict[bytes, str]] = {}  # object -> {node id: segment}
        self._pulls: dict[tuple[bytes, bytes], list] = {}  # (object, node id) -> waiting conns
        self.pulls_started = 0  # copies between nodes begun (for stats)
        self._spare: tuple[str, int] | None = None  # a preallocated segment: (name, size)
        self._spare_pending = False
        self._spare_since = 0.0
        self._warned_infeasible: set[tuple] = set()
        self._feasible: set[tuple] = set()  # task shapes some node can run
        self._constructor_errors: dict[bytes, p.ObjectData | None] = {}
        self._init_actors()
        self.stopping = False

    # The head's own node, under the names the single-node daemon has always used.
    @property
    def node_id(self) -> bytes:
        return self.local.node_id

    @property
    def pool(self):
        return self.local.pool

    @property
    def store_used(self) -> int:
        return self.local.store_used

    @property
    def store_capacity(self) -> int:
        return self.local.store_capacity

    @property
    def spawner(self):
        return self.local.agent.spawner

    # -- connections ------------------------------------------------------------------
    def on_hello(self, conn, hello: p.Hello) -> bool:
        """Admit or reject a new connection. Returns False if it must be closed."""
        if not p.token_matches(hello.token, self.token):
            conn.send(p.Rejected("authentication failed: wrong cluster token"))
            log.warning("rejected connection from pid %s: wrong token", hello.pid)
            return False
        conn.kind = hello.kind
        conn.pid = hello.pid
        conn.listen_path = hello.listen_path
        conn.listen_tcp = hello.listen_tcp
        if hello.kind == "worker":
            node = self.nodes.get(hello.node_id) if hello.node_id else self.local
            if node is None or not node.alive:
                conn.send(p.Rejected("this worker's node is not part of the cluster"))
                return False
            conn.node = node
            node.starting = max(0, node.starting - 1)
            node.workers += 1
            worker = WorkerRecord(conn, hello.pid, hello.worker_id, node)
            self.workers[conn] = worker
            conn.send(self._welcome(node))
            self._make_idle(worker)
            self.dispatch()
        elif hello.kind == "driver":
            node = self._node_of_address(getattr(conn, "peer_ip", ""))
            if node is None:
                conn.send(p.Rejected(
                    "no rayling node runs on this machine, and a script reads large "
                    "objects from its own node's store: run `rayling start --address "
                    "HEAD:PORT` here first, or run the script on the head node"))
                return False
            conn.node = node
            self.drivers.add(conn)
            # Each script is a job of its own (ids of its tasks and objects end with it).
            conn.send(self._welcome(node, ids.new_job_id() if self.drivers_seen else None))
            self.drivers_seen += 1
        elif hello.kind == "node":
            conn.node = None  # set by its RegisterNode
        else:
            conn.send(p.Rejected(f"unknown client kind {hello.kind!r}"))
            return False
        return True

    def _node_of_address(self, ip: str) -> NodeRecord | None:
        """The node a driver connecting from ``ip`` runs on: the head's for local
        connections, otherwise the live node with that address."""
        if not ip or ip.startswith("127.") or ip == "::1" or ip == self.local.ip:
            return self.local
        for node in self.node_list:
            if node.alive and node.ip == ip:
                return node
        return None

    def _welcome(self, node: NodeRecord, job_id: bytes | None = None) -> p.Welcome:
        return p.Welcome(
            node_id=node.node_id,
            job_id=job_id or self.job_id,
            node_ip=node.ip,
            session_dir=self.session_dir,
            resources=node.pool.total_float(),
        )

    def on_disconnect(self, conn) -> None:
        worker = self.workers.pop(conn, None)
        if worker is not None:
            node = worker.node
            node.workers -= 1
            if worker in node.idle:
                node.idle.remove(worker)
            task = worker.task
            if worker.actor is not None:
                if task is not None:  # died in the constructor
                    worker.task = None
                    self._release_task_resources(task)
                    self.tasks.pop(task.spec.task_id, None)
                    task.state = DONE
                self._actor_worker_died(worker.actor, worker)
            elif task is not None:
                worker.task = None
                self._worker_died_running(task, worker)
        self.drivers.discard(conn)
        node = getattr(conn, "node", None)
        if conn.kind == "node" and node is not None and node.conn is conn:
            self.node_lost(node, "its daemon disconnected")
        for name, size in self._reservations.pop(conn, {}).items():
            self._release_segment(name, size)
        self.objects.drop_holder(conn)
        if not self.stopping:
            self.dispatch()

    # -- joined nodes -----------------------------------------------------------------
    def _on_register_node(self, conn, msg: p.RegisterNode) -> None:
        if conn.kind != "node" or conn.node is not None or msg.node_id in self.nodes:
            raise p.ProtocolError("RegisterNode from a connection that is not a new node")
        node = NodeRecord(msg.node_id, msg.ip, msg.hostname, msg.resources, msg.store_capacity,
                          RemoteAgent(conn), msg.shm_session, msg.transfer_address, conn=conn)
        conn.node = node
        self.nodes[msg.node_id] = node
        self.node_list.append(node)
        self._warned_infeasible.clear()
        self._feasible.clear()
        conn.send(self._welcome(node))
        log.info("node %s joined from %s with %s", msg.node_id.hex()[:12], msg.ip,
                 _fmt(msg.resources))
        prestart = min(node.base_workers, node.max_workers)
        node.starting += prestart
        node.starting_since = time.monotonic()
        conn.send(p.SpawnWorkers(prestart))
        self.dispatch()

    def _on_heartbeat(self, conn, msg) -> None:
        pass  # check_nodes reads last_seen, which the daemon shell sets on every message

    def check_nodes(self, now: float, late: float = 0.0) -> None:
        """Declare dead every joined node silent for NODE_TIMEOUT, and send each live one
        a heartbeat (called every second). ``late``: how far behind schedule this call
        is; a head that was itself stalled does not blame the nodes for its silence."""
        for node in self.node_list:
            conn = node.conn
            if not node.alive or conn is None:
                continue
            if late > 1.0:
                conn.last_seen = max(conn.last_seen, now - late)
            if now - conn.last_seen > NODE_TIMEOUT:
                conn.close(f"no message for {NODE_TIMEOUT:g} s")
                self.node_lost(node, f"it sent nothing for {NODE_TIMEOUT:g} s")
            else:
                conn.send(p.Heartbeat())

    def node_lost(self, node: NodeRecord, why: str) -> None:
        """A joined node is gone: its workers' tasks are retried elsewhere, its actors
        restart or die, and objects whose only copy it held are lost."""
        if not node.alive:
            return
        log.warning("node %s (%s) is dead: %s", node.node_id.hex()[:12], node.ip, why)
        node.alive = False
        node.idle.clear()
        self._feasible.clear()
        # Its workers and the scripts running there go: they used its store.
        for conn in [w.conn for w in self.workers.values() if w.node is node] + \
                [d for d in self.drivers if getattr(d, "node", None) is node]:
            conn.close(f"its node died: {why}")
            self.on_disconnect(conn)
        for name, (where, _size, oid) in list(self._segments.items()):
            if where is node:
                del self._segments[name]
                self._segment_lost(oid, node, name)
        for key in [k for k in self._pulls if k[1] == node.node_id]:
            del self._pulls[key]
        self.dispatch()

    def _segment_lost(self, oid: bytes, node: NodeRecord, name: str) -> None:
        copies = self._copies.get(oid)
        if copies is not None and copies.get(node.node_id) == name:
            del copies[node.node_id]
            return
        entry = self.objects.entries.get(oid)
        if entry is None or entry.data is None or entry.data.shm != name:
            return
        data = entry.data
        if copies:  # another node has a copy: it becomes the object's home
            node_id, copy = copies.popitem()
            entry.data = _with_segment(data, copy)
            return
        entry.data = p.ObjectData(
            inline=cloudpickle.dumps(exc.ObjectLostError(
                f"Object {oid.hex()} was lost: the only copy was on node "
                f"{node.node_id.hex()} ({node.ip}), which died.")),
            error=True, contained=data.contained)

    # -- messages ---------------------------------------------------------------------
    def handle(self, conn, msg) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise p.ProtocolError(f"unexpected message {type(msg).__name__}")
        handler(self, conn, msg)

    def _on_ref_update(self, conn, msg: p.RefUpdate) -> None:
        if msg.adds:
            self.objects.add_holders(msg.adds, conn)
        if msg.dels:
            self.objects.remove_holders(msg.dels, conn)

    def _on_register_function(self, conn, msg: p.RegisterFunction) -> None:
        self.functions.setdefault(msg.fid, (msg.blob, msg.name))

    def _on_submit(self, conn, spec: p.SubmitTask) -> None:
        self._admit_task(spec, conn)

    def _admit_task(self, spec: p.SubmitTask, submitter, pin_args: bool = True,
                    expect_returns: bool = True) -> None:
        request = to_units(spec.resources)
        task = TaskRecord(spec, submitter, request)
        task.pinned = pin_args
        self.tasks[spec.task_id] = task
        objects = self.objects
        if expect_returns:
            for i in range(spec.num_returns):
                objects.expect(ids.object_id_for_return(spec.task_id, i), submitter)
        if pin_args:
            for oid in spec.deps:
                objects.pin(oid)
            for oid in spec.contained:
                objects.pin(oid)
        if spec.actor_id is not None and spec.method != "__init__":
            self._queue_actor_call(task)
            if task.state in (DONE, RUNNING):  # failed at once, or sent directly
                return
        elif not self._fits_ever(task):
            self._warn_infeasible(task)
        for oid in spec.deps:
            entry = objects.entries.get(oid)
            if entry is None:
                self._fail_task(task, exc.ObjectLostError(
                    f"Argument object {oid.hex()} of task {spec.name} no longer exists."))
                return
            if entry.data is None:
                task.waiting_on += 1
                self.dep_waiters.setdefault(oid, []).append(task)
        if task.waiting_on == 0:
            self._make_ready(task)
            if spec.actor_id is None or spec.method == "__init__":
                self.dispatch()

    def _on_put(self, conn, msg: p.PutObject) -> None:
        data = msg.data
        if data.shm is not None:
            self._seal_reservation(conn, data.shm)
        self._object_ready(msg.object_id, self.objects.put(msg.object_id, data, conn), data)

    def _on_reserve(self, conn, msg: p.ReserveShm) -> None:
        size = msg.size
        node = conn.node
        if not node.alive:
            conn.send(p.ShmReserved(msg.req_id, None, "this process's node is dead"))
            return
        spare = self._spare if node is self.local else None
        preallocated = spare is not None and spare[1] == size
        if preallocated:
            name = spare[0]  # its bytes are already counted in store_used
            self._spare = None
        else:
            if spare is not None and node.store_used + size > node.store_capacity:
                self._drop_spare()
            if node.store_used + size > node.store_capacity:
                self._evict_copies(node, size)
            if node.store_used + size > node.store_capacity:
                conn.send(p.ShmReserved(msg.req_id, None, _store_full_text(node, size)))
                return
            name = self._new_segment_name(node)
            node.store_used += size
        self._segments[name] = (node, size, msg.object_id)
        self._reservations.setdefault(conn, {})[name] = size
        conn.send(p.ShmReserved(msg.req_id, name, preallocated=preallocated))
        if node is self.local:
            self._prepare_spare(size)

    def _new_segment_name(self, node: NodeRecord) -> str:
        self._shm_counter += 1
        return shm.segment_name(node.shm_session, self._shm_counter)

    def _prepare_spare(self, size: int) -> None:
        """Allocate, in the background, a segment of the size just asked for.

        Zeroing fresh pages is most of the cost of writing a large object; a loop that puts
        objects of one size finds the next segment ready and only copies its data.
        """
        local = self.local
        if (self._spare is not None or self._spare_pending or not SPARE_MIN <= size <= SPARE_MAX
                or size > local.store_capacity // 8
                or local.store_used + size > local.store_capacity or self.stopping):
            return
        self._spare_pending = True
        local.store_used += size
        self.segments.preallocate(self._new_segment_name(local), size, self.on_preallocated)

    def on_preallocated(self, name: str, size: int, ok: bool) -> None:
        self._spare_pending = False
        if ok and not self.stopping:
            self._spare = (name, size)
            self._spare_since = time.monotonic()
        else:
            self.local.store_used -= size
            self.segments.unlink(name)

    def drop_idle_spare(self, now: float) -> None:
        """Give back a spare segment nobody used for SPARE_IDLE seconds (called periodically)."""
        if self._spare is not None and now - self._spare_since >= SPARE_IDLE:
            self._drop_spare()

    def _drop_spare(self) -> None:
        name, size = self._spare
        self._spare = None
        self.local.store_used -= size
        self.segments.unlink(name)

    def _on_get(self, conn, msg: p.GetObjects) -> None:
        subscribe = self.objects.subscribe
        for oid in msg.object_ids:
            data = subscribe(oid, conn)
            if data is not None:
                self._send_value(conn, oid, data)
            elif oid not in self.objects:
                conn.send(p.ObjectReady(oid, _error_data(exc.ObjectLostError(
                    f"Object {oid.hex()} does not exist: it was freed or never created."))))

    # -- objects across nodes ---------------------------------------------------------
    def _readable(self, conn, oid: bytes, data: p.ObjectData) -> p.ObjectData:
        """``data`` as ``conn`` can use it: a segment on its own node, or a ``where``
        marker naming the node that has the object."""
        if data.shm is None or len(self.node_list) == 1:
            return data
        home = self._segments.get(data.shm)
        node = getattr(conn, "node", None)
        if home is None or home[0] is node or node is None:
            return data
        copy = self._copies.get(oid, {}).get(node.node_id)
        if copy is not None:
            return _with_segment(data, copy)
        return p.ObjectData(size=data.size, error=data.error, contained=data.contained,
                            where=home[0].node_id)

    def _send_value(self, conn, oid: bytes, data: p.ObjectData) -> None:
        """Send ``conn`` the object, copying it to its node first if it is elsewhere."""
        readable = self._readable(conn, oid, data)
        if readable.where is None:
            conn.send(p.ObjectReady(oid, readable))
        else:
            self._pull(conn, oid, data)

    def _pull(self, conn, oid: bytes, data: p.ObjectData) -> None:
        """Have ``conn``'s node copy ``oid`` from the node that has it, then send it."""
        node = conn.node
        key = (oid, node.node_id)
        waiting = self._pulls.get(key)
        if waiting is not None:
            waiting.append(conn)
            return
        source, size, _ = self._segments[data.shm]
        if not node.alive:
            return
        if node.store_used + size > node.store_capacity:
            if node is self.local and self._spare is not None:
                self._drop_spare()
            self._evict_copies(node, size)
        if node.store_used + size > node.store_capacity:
            conn.send(p.ObjectReady(oid, _error_data(exc.ObjectStoreFullError(
                _store_full_text(node, size)))))
            return
        self._pulls[key] = [conn]
        self.pulls_started += 1
        name = self._new_segment_name(node)
        node.store_used += size
        self._segments[name] = (node, size, oid)
        node.agent.pull(p.PullObject(oid, source.transfer_address, data.shm, size, name))

    def _evict_copies(self, node: NodeRecord, size: int) -> None:
        """Make room for ``size`` bytes on ``node`` by dropping copies of objects whose
        home is another node, oldest first (they can be copied again; processes that
        mapped one keep their mapping)."""
        for oid, copies in list(self._copies.items()):
            if node.store_used + size <= node.store_capacity:
                return
            name = copies.pop(node.node_id, None)
            if name is not None:
                if not copies:
                    del self._copies[oid]
                self._release_segment(name, self._segments[name][1])

    def on_pull_done(self, node_id: bytes, oid: bytes, name: str, error: str | None) -> None:
        """A node finished copying ``oid`` into its segment ``name`` (or failed to)."""
        waiting = self._pulls.pop((oid, node_id), [])
        entry = self.objects.entries.get(oid)
        home = self._segments.get(name)
        if error is not None or entry is None or entry.data is None or home is None:
            if home is not None:
                self._release_segment(name, home[1])
            if error is not None:
                log.warning("copying object %s to node %s failed: %s", oid.hex(),
                            node_id.hex()[:12], error)
            data = _error_data(exc.ObjectLostError(
                f"Object {oid.hex()} could not be copied to node {node_id.hex()}: "
                f"{error or 'it was freed meanwhile'}"))
        else:
            self._copies.setdefault(oid, {})[node_id] = name
            data = _with_segment(entry.data, name)
        for conn in waiting:
            if conn in self.workers or conn in self.drivers:
                conn.send(p.ObjectReady(oid, data))

    def _on_pull_done(self, conn, msg: p.PullDone) -> None:
        self.on_pull_done(conn.node.node_id, msg.object_id, msg.name, msg.error)

    def _on_cancel(self, conn, msg: p.CancelTask) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None or task.cancelled:
            return
        task.cancelled = True
        if task.state == RUNNING:
            worker = task.worker
            if msg.force and worker.actor is None:
                worker.node.agent.kill(worker.pid)
            else:  # an actor call is interrupted, never its whole actor
                worker.conn.send(p.CancelTask(msg.task_id, False))
        else:
            self._fail_task(task, exc.TaskCancelledError(msg.task_id.hex()))

    def _on_blocked(self, conn, msg) -> None:
        worker = self.workers.get(conn)
        if worker is not None and worker.task is None and worker.actor is not None:
            self._actor_blocked(worker.actor, +1)
            return
        task = worker.task if worker else None
        if task is not None and not task.lent_cpu:
            cpu = task.request.get("CPU", 0)
            if cpu:
                task.lent_cpu = cpu
                task.node.pool.release({"CPU": cpu})
                self.dispatch()

    def _on_unblocked(self, conn, msg) -> None:
        worker = self.workers.get(conn)
        if worker is not None and worker.task is None and worker.actor is not None:
            self._actor_blocked(worker.actor, -1)
            return
        task = worker.task if worker else None
        if task is not None and task.lent_cpu:
            task.node.pool.acquire({"CPU": task.lent_cpu})
            task.lent_cpu = 0

    def _on_task_done(self, conn, msg: p.TaskDone) -> None:
        worker = self.workers.get(conn)
        if worker is None:
            raise p.ProtocolError("TaskDone from a connection that is not a worker")
        for data in msg.results:
            if data.shm is not None:
                self._seal_reservation(conn, data.shm)
        task = worker.task
        if task is None or task.spec.task_id != msg.task_id:
            if worker.actor is None:
                raise p.ProtocolError("TaskDone for a task this worker is not running")
            self._actor_call_done(worker.actor, msg)
            return
        worker.task = None
        if worker.actor is not None:
            self._creation_done(task, worker, msg.results)
            return
        self._release_task_resources(task)
        self._finish_task(task, msg.results)
        self._make_idle(worker)
        self.dispatch()

    def _on_logs(self, conn, msg: p.Logs) -> None:
        for driver in self.drivers:
            driver.send(msg)

    def _on_query(self, conn, msg: p.Query) -> None:
        if msg.what == "actor_address":
            self._answer_actor_address(conn, msg.req_id, msg.arg)
            return
        try:
            value = self.query(msg.what, msg.arg)
            conn.send(p.Reply(msg.req_id, value))
        except Exception as e:  # a bad query must not take the daemon down
            conn.send(p.Reply(msg.req_id, None, f"{type(e).__name__}: {e}"))

    def _on_shutdown(self, conn, msg) -> None:
        self.stopping = True

    _handlers = {
        p.RefUpdate: _on_ref_update,
        p.RegisterFunction: _on_register_function,
        p.SubmitTask: _on_submit,
        p.PutObject: _on_put,
        p.ReserveShm: _on_reserve,
        p.GetObjects: _on_get,
        p.CancelTask: _on_cancel,
        p.Blocked: _on_blocked,
        p.Unblocked: _on_unblocked,
        p.TaskDone: _on_task_done,
        p.Logs: _on_logs,
        p.Query: _on_query,
        p.Shutdown: _on_shutdown,
        p.CreateActor: ActorManagerMixin._on_create_actor,
        p.KillActor: ActorManagerMixin._on_kill_actor,
        p.RegisterNode: _on_register_node,
        p.PullDone: _on_pull_done,
        p.Heartbeat: _on_heartbeat,
    }

    # -- scheduling -------------------------------------------------------------------
    def _make_ready(self, task: TaskRecord) -> None:
        task.state = READY
        if task.spec.actor_id is not None and task.spec.method != "__init__":
            self._pump_actor(self.actors[task.spec.actor_id])
            return
        queue = self.ready.get(task.shape)
        if queue is None:
            queue = self.ready[task.shape] = deque()
        queue.append(task)

    def dispatch(self) -> None:
        """Start every ready task that has resources and a worker; ask for workers."""
        pick = self.placement.pick
        nodes, by_id = self.node_list, self.nodes
        want: set[NodeRecord] = set()
        for shape, queue in list(self.ready.items()):
            while queue:
                task = queue[0]
                if task.cancelled or task.state != READY:
                    queue.popleft()
                    continue
                spec = task.spec
                node = None
                if spec.deps and not spec.strategy and len(nodes) > 1:
                    node = self._where_its_data_is(task)
                if node is None:
                    node = pick(nodes, by_id, task.request, spec.strategy,
                                getattr(task.submitter, "node", None))
                if node is None:
                    if spec.strategy and self._affinity_node_gone(task):
                        queue.popleft()
                        continue
                    if self.actors:
                        self._warn_held_by_actors(task)
                    break
                if not node.idle:
                    want.add(node)
                    break
                queue.popleft()
                self._start(task, node.idle.pop())
            if not queue:
                del self.ready[shape]
        for node in want:
            if node.starting == 0 and node.workers < node.max_workers:
                node.starting += 1
                node.starting_since = time.monotonic()
                node.agent.spawn_worker()

    def _where_its_data_is(self, task: TaskRecord) -> NodeRecord | None:
        """The node holding most of a task's large arguments, if it can start the task
        now (an idle worker, the resources free): running there saves copying them."""
        bytes_on: dict[NodeRecord, int] = {}
        copies = self._copies
        for oid in task.spec.deps:
            data = self.objects.get(oid)
            if data is None or data.shm is None:
                continue
            home = self._segments.get(data.shm)
            if home is not None:
                bytes_on[home[0]] = bytes_on.get(home[0], 0) + home[1]
            for node_id in copies.get(oid, ()):
                node = self.nodes[node_id]
                bytes_on[node] = bytes_on.get(node, 0) + data.size
        if not bytes_on:
            return None
        node = max(bytes_on, key=bytes_on.get)
        if node.alive and node.idle and node.pool.fits_now(task.request):
            return node
        return None

    def _affinity_node_gone(self, task: TaskRecord) -> bool:
        """Fail a task bound (hard) to a node that is dead or unknown. True if it failed."""
        target = self.placement.affinity(task.spec.strategy)
        if target is None or target[1]:
            return False
        node = self.nodes.get(target[0])
        if node is not None and node.alive:
            return False
        self._fail_task(task, exc.TaskUnschedulableError(
            f"Task {task.spec.name} must run on node {target[0].hex()} "
            f"(NodeAffinitySchedulingStrategy with soft=False), which is "
            f"{'dead' if node is not None else 'not in this cluster'}."))
        return True

    def _start(self, task: TaskRecord, worker: WorkerRecord) -> None:
        spec = task.spec
        node = worker.node
        node.pool.acquire(task.request)
        gpu_units = task.request.get("GPU", 0)
        task.gpu_ids = node.gpus.allocate(gpu_units) if gpu_units else []
        task.state = RUNNING
        task.worker = worker
        task.node = node
        worker.task = task
        actor = None
        if spec.actor_id is not None:  # the creation task: this worker now hosts the actor
            actor = self.actors[spec.actor_id]
            actor.worker = worker
            worker.actor = actor
        self._send_execute(task, worker, actor)

    def _send_execute(self, task: TaskRecord, worker: WorkerRecord, actor=None) -> None:
        spec = task.spec
        function = None
        if spec.fid and spec.fid not in worker.known_functions:
            function = self.functions[spec.fid][0]
            worker.known_functions.add(spec.fid)
        get = self.objects.get
        conn = worker.conn
        deps = [get(oid) for oid in spec.deps]
        dep_ids = []
        if len(self.node_list) > 1 and deps:
            deps = [d if d is None else self._readable(conn, oid, d)
                    for oid, d in zip(spec.deps, deps, strict=True)]
            if any(d is not None and d.where is not None for d in deps):
                dep_ids = spec.deps  # the worker fetches those from this node's store
                deps = [p.ObjectData() if d.where is not None else d for d in deps]
        conn.send(p.ExecuteTask(
            spec.task_id, spec.task_id[-ids.JOB_ID_LEN:], spec.fid, function, spec.name,
            spec.args, deps, spec.num_returns,
            actor.gpu_ids if actor and actor.gpu_ids else task.gpu_ids,
            spec.actor_id, spec.method,
            actor.spec.max_concurrency if actor else 1, actor.spec.is_async if actor else False,
            dep_ids,
        ))

    def _make_idle(self, worker: WorkerRecord) -> None:
        worker.idle_since = time.monotonic()
        worker.node.idle.append(worker)

    def reap_idle_workers(self, now: float) -> None:
        """Stop workers beyond each node's CPU count that sat idle WORKER_IDLE_TIMEOUT
        seconds (they were started while tasks were blocked in get). Called periodically."""
        for node in self.node_list:
            if node.starting and now - node.starting_since > WORKER_START_TIMEOUT:
                log.warning("node %s: %d requested workers never started; asking again",
                            node.node_id.hex()[:12], node.starting)
                node.starting = 0
            excess = sum(1 for w in self.workers.values()
                         if w.node is node and w.actor is None) - node.base_workers
            for worker in list(node.idle):
                if excess <= 0:
                    break
                if now - worker.idle_since >= WORKER_IDLE_TIMEOUT:
                    node.idle.remove(worker)
                    node.agent.kill(worker.pid)
                    excess -= 1

    def _release_task_resources(self, task: TaskRecord) -> None:
        node = task.node
        if node is None:
            return
        request = task.request
        if task.lent_cpu:
            request = dict(request)
            request["CPU"] -= task.lent_cpu
            task.lent_cpu = 0
        node.pool.release(request)
        if task.gpu_ids:
            node.gpus.free(task.gpu_ids, task.request.get("GPU", 0))
            task.gpu_ids = []
        task.node = None

    def _fits_ever(self, task: TaskRecord) -> bool:
        """Could some node ever run it? (Remembered per shape until the nodes change.)"""
        if task.shape in self._feasible:
            return True
        target = self.placement.affinity(task.spec.strategy)
        if target is not None and not target[1]:
            node = self.nodes.get(target[0])
            if node is None:
                return True  # fails at dispatch, naming the node
            fits = node.pool.fits_ever(task.request)
        else:
            fits = any(n.alive and n.pool.fits_ever(task.request) for n in self.node_list)
        if fits:
            self._feasible.add(task.shape)
        return fits

    def _warn_infeasible(self, task: TaskRecord) -> None:
        key = (task.spec.fid, task.shape)
        if key in self._warned_infeasible or task.submitter is None:
            return
        self._warned_infeasible.add(key)
        alive = [n for n in self.node_list if n.alive]
        offers = "; ".join(
            f"node {n.node_id.hex()[:8]} has {_fmt(n.pool.total_float())}, short by "
            + ", ".join(f"{k}: {v:g} more" for k, v in n.pool.missing(task.request).items())
            for n in alive[:8])
        if len(alive) > 8:
            offers += f"; and {len(alive) - 8} more"
        text = (
            f"Task {task.spec.name} requests {_fmt(from_units(task.request))}, but no node in "
            f"this cluster has that much in total ({offers}). It will wait until a node with "
            f"enough resources joins. Lower the request with .options(...) or start the "
            f"cluster with more resources."
        )
        task.submitter.send(p.Warning(text))

    # -- completion -------------------------------------------------------------------
    def _finish_task(self, task: TaskRecord, results: list[p.ObjectData],
                     tell_submitter: bool = True) -> None:
        spec = task.spec
        task.state = DONE
        self.tasks.pop(spec.task_id, None)
        if len(results) != spec.num_returns:  # defensive: never trust a count
            results = [_error_data(exc.RaySystemError(
                f"Task {spec.name} produced {len(results)} results for "
                f"{spec.num_returns} returns"))] * spec.num_returns
        for i, data in enumerate(results):
            oid = ids.object_id_for_return(spec.task_id, i)
            subscribers = self.objects.set_ready(oid, data)
            self._object_ready(oid, subscribers, data,
                               also=task.submitter if tell_submitter else None)
        if task.pinned:
            for oid in spec.deps:
                self.objects.unpin(oid)
            for oid in spec.contained:
                self.objects.unpin(oid)

    def _object_ready(self, oid: bytes, subscribers: list, data: p.ObjectData, also=None) -> None:
        """Tell waiters (and the owner, if it still holds a ref) that ``oid`` exists."""
        if subscribers or also is not None:
            msg = p.ObjectReady(oid, data)
            several_nodes = data.shm is not None and len(self.node_list) > 1
            for conn in subscribers:  # they asked for the value (get, or wait): copy it
                if several_nodes:
                    self._send_value(conn, oid, data)
                else:
                    conn.send(msg)
            if also is not None and also not in subscribers and self.objects.holds(oid, also):
                also.send(p.ObjectReady(oid, self._readable(also, oid, data))
                          if several_nodes else msg)
        waiting = self.dep_waiters.pop(oid, None)
        if waiting:
            started = False
            for task in waiting:
                if task.state == WAITING and not task.cancelled:
                    task.waiting_on -= 1
                    if task.waiting_on == 0:
                        self._make_ready(task)
                        started = True
            if started:
                self.dispatch()

    def _fail_task(self, task: TaskRecord, error: BaseException) -> None:
        """Store ``error`` as every result of a task that will not run (again)."""
        self._finish_task(task, [_error_data(error)] * task.spec.num_returns)

    def _worker_died_running(self, task: TaskRecord, worker: WorkerRecord) -> None:
        self._release_task_resources(task)
        task.worker = None
        spec = task.spec
        if task.cancelled:
            self._fail_task(task, exc.TaskCancelledError(
                spec.task_id.hex(), f"Task {spec.name} was cancelled (its worker was killed)."))
        elif task.retries_left != 0:
            if task.retries_left > 0:
                task.retries_left -= 1
            log.info("retrying task %s after its worker (pid %s) died", spec.name, worker.pid)
            self._make_ready(task)
        else:
            self._fail_task(task, exc.WorkerCrashedError(
                f"The worker (pid {worker.pid}) running task {spec.name} died unexpectedly "
                f"(it was killed, crashed, or exited), and the task has no retries left "
                f"(max_retries={spec.max_retries})."))

    # -- the object store -------------------------------------------------------------
    def _seal_reservation(self, conn, name: str) -> None:
        reservations = self._reservations.get(conn)
        if reservations is not None:
            reservations.pop(name, None)

    def _free_object_data(self, oid: bytes, data: p.ObjectData) -> None:
        actor = self.actor_by_creation.pop(oid, None)
        if actor is not None:
            self._creation_object_freed(actor)
        if data.shm is not None:
            home = self._segments.get(data.shm)
            if home is not None:
                self._release_segment(data.shm, home[1])
            for name in self._copies.pop(oid, {}).values():
                home = self._segments.get(name)
                if home is not None:
                    self._release_segment(name, home[1])

    def _release_segment(self, name: str, size: int) -> None:
        home = self._segments.pop(name, None)
        if home is None:
            return
        node = home[0]
        node.store_used -= size
        if node.alive:
            node.agent.unlink(name)

    def release_all_segments(self) -> None:
        """Unlink every segment on the head's own node (the daemon is stopping)."""
        if self._spare is not None:
            self._drop_spare()
        for name, (node, _size, _oid) in list(self._segments.items()):
            if node is self.local:
                self.segments.unlink(name)
                del self._segments[name]
        self.local.store_used = 0

    # -- introspection ----------------------------------------------------------------
    def query(self, what: str, arg=None):
        if what == "nodes":
            return [node.info() for node in self.node_list]
        if what == "cluster_resources":
            return _sum(n.pool.total_float() for n in self.node_list if n.alive)
        if what == "available_resources":
            free = _sum(n.pool.free_float() for n in self.node_list if n.alive)
            return {k: v for k, v in free.items() if v > 0}
        if what == "get_actor":
            name, namespace = arg
            actor = self.actors.get(self.named_actors.get((namespace, name), b""))
            return actor.info() if actor is not None and actor.state != "dead" else None
        if what == "actors":
            return [a.info() for a in self.actors.values()]
        if what == "stats":
            return {
                "store_used": self.store_used - (self._spare[1] if self._spare else 0),
                "store_capacity": self.store_capacity,
                "segments": len(self._segments),
                "workers": len(self.workers),
                "idle_workers": sum(len(n.idle) for n in self.node_list),
                "tasks": len(self.tasks),
                "worker_pids": [w.pid for w in self.workers.values()],
                "pulls": self.pulls_started,
                "copies": sum(len(c) for c in self._copies.values()),
                **self.objects.statistics(),
            }
        raise ValueError(f"unknown query {what!r}")


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


def _error_data(error: BaseException) -> p.ObjectData:
    return p.ObjectData(inline=cloudpickle.dumps(error), error=True)


def _with_segment(data: p.ObjectData, name: str) -> p.ObjectData:
    return p.ObjectData(shm=name, size=data.size, error=data.error, contained=data.contained)


def _sum(dicts) -> dict[str, float]:
    total: dict[str, float] = {}
    for d in dicts:
        for k, v in d.items():
            total[k] = total.get(k, 0) + v
    return total


def _store_full_text(node: NodeRecord, size: int) -> str:
    used, capacity = node.store_used, node.store_capacity
    return (f"Cannot store an object of {size:,} bytes: the object store of node "
            f"{node.node_id.hex()[:12]} has {capacity - used:,} of {capacity:,} bytes free "
            f"({used:,} in use by live objects). Drop refs you no longer need or start with "
            f"a larger object_store_memory.")


class _LocalAgent:
    """Acts on the head's own node: the daemon's spawner, segment thread and puller."""

    def __init__(self, spawner, segments, puller) -> None:
        self.spawner = spawner
        self.spawn_worker = spawner.spawn_worker
        self.kill = spawner.kill
        self.unlink = segments.unlink
        self.puller = puller

    def pull(self, msg: p.PullObject) -> None:
        self.puller(msg)


__all__ = ["NodeManager", "UNIT"]
