"""The node daemon's decisions: scheduling, the worker pool, task lifecycle, objects.

This module has no sockets and starts no processes. The daemon shell (daemon.py) hands
it decoded messages with the connection they came from, and it answers by calling
``conn.send(message)``, the ``spawner``'s ``spawn_worker()`` / ``kill(pid)`` and the
``segments``' ``unlink(name)`` / ``preallocate(name, size, done)``.
Tests drive it with fake connections.

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

State owned here: the object table (values, refs, pins), the resource pool, the GPU
allocator, tasks not finished yet, workers (idle stack and busy), function blobs, and
the shared-memory capacity accounting.
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
from .object_table import ObjectTable
from .resources import UNIT, GpuAllocator, ResourcePool, from_units, to_units

log = logging.getLogger("rayling.daemon")

SPARE_MIN = 8 * 1024 * 1024  # objects from this size ...
SPARE_MAX = 128 * 1024 * 1024  # ... to this size get a preallocated segment ready
SPARE_IDLE = 5.0  # seconds an unused spare segment is kept
WORKER_IDLE_TIMEOUT = 10.0  # seconds an idle worker beyond the CPU count is kept
WAITING, READY, RUNNING, DONE = "waiting", "ready", "running", "done"


class TaskRecord:
    __slots__ = (
        "spec", "submitter", "request", "shape", "retries_left", "waiting_on",
        "state", "worker", "gpu_ids", "cancelled", "lent_cpu", "pinned",
    )

    def __init__(self, spec: p.SubmitTask, submitter, request: dict[str, int]) -> None:
        self.spec = spec
        self.submitter = submitter
        self.request = request
        self.shape = tuple(sorted(request.items()))
        self.retries_left = spec.max_retries
        self.waiting_on = 0  # number of dependencies not ready yet
        self.state = WAITING
        self.worker: WorkerRecord | None = None
        self.gpu_ids: list[int] = []
        self.cancelled = False
        self.lent_cpu = 0  # CPU units given back while the task blocks in get/wait
        self.pinned = True  # its arguments are pinned by this task (not by an actor)


class WorkerRecord:
    __slots__ = ("conn", "pid", "worker_id", "task", "known_functions", "idle_since", "actor")

    def __init__(self, conn, pid: int, worker_id: bytes) -> None:
        self.conn = conn
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
        max_workers: int | None = None,
    ) -> None:
        self.node_id = node_id
        self.node_ip = node_ip
        self.session = session
        self.session_dir = session_dir
        self.token = token
        self.pool = ResourcePool(resources)
        self.gpus = GpuAllocator(int(resources.get("GPU", 0)))
        self.spawner = spawner
        self.objects = ObjectTable(self._free_object_data)
        self.functions: dict[bytes, tuple[bytes, str]] = {}
        self.tasks: dict[bytes, TaskRecord] = {}
        self.dep_waiters: dict[bytes, list[TaskRecord]] = {}
        self.ready: dict[tuple, deque[TaskRecord]] = {}
        self.workers: dict[object, WorkerRecord] = {}
        self.idle: list[WorkerRecord] = []
        self.starting = 0  # workers asked for that have not said Hello yet
        cpus = max(1, int(resources.get("CPU", 1)))
        self.base_workers = cpus  # workers kept even when idle
        self.max_workers = max_workers or max(32, 8 * cpus)
        self.drivers: set = set()
        self.job_id = ids.new_job_id()
        self.store_capacity = store_capacity
        self.store_used = 0
        self._shm_counter = 0
        self._reservations: dict[object, dict[str, int]] = {}  # conn -> {name: size}
        self._shm_sizes: dict[str, int] = {}
        self.segments = segments or DirectSegments()
        self._spare: tuple[str, int] | None = None  # a preallocated segment: (name, size)
        self._spare_pending = False
        self._spare_since = 0.0
        self._warned_infeasible: set[tuple] = set()
        self._constructor_errors: dict[bytes, p.ObjectData | None] = {}
        self._init_actors()
        self.stopping = False

    # -- connections ------------------------------------------------------------------
    def on_hello(self, conn, hello: p.Hello) -> bool:
        """Admit or reject a new connection. Returns False if it must be closed."""
        if hello.token != self.token:
            conn.send(p.Rejected("authentication failed: wrong cluster token"))
            log.warning("rejected connection from pid %s: wrong token", hello.pid)
            return False
        conn.kind = hello.kind
        conn.pid = hello.pid
        conn.listen_path = hello.listen_path
        if hello.kind == "worker":
            self.starting = max(0, self.starting - 1)
            worker = WorkerRecord(conn, hello.pid, hello.worker_id)
            self.workers[conn] = worker
            conn.send(self._welcome(self.job_id))
            self._make_idle(worker)
            self.dispatch()
        elif hello.kind == "driver":
            self.drivers.add(conn)
            conn.send(self._welcome(self.job_id))
        else:
            conn.send(p.Rejected(f"unknown client kind {hello.kind!r}"))
            return False
        return True

    def _welcome(self, job_id: bytes) -> p.Welcome:
        return p.Welcome(
            node_id=self.node_id,
            job_id=job_id,
            node_ip=self.node_ip,
            session_dir=self.session_dir,
            resources=self.pool.total_float(),
        )

    def on_disconnect(self, conn) -> None:
        worker = self.workers.pop(conn, None)
        if worker is not None:
            if worker in self.idle:
                self.idle.remove(worker)
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
        for name, size in self._reservations.pop(conn, {}).items():
            self._release_segment(name, size)
        self.objects.drop_holder(conn)
        if not self.stopping:
            self.dispatch()

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
        elif not self.pool.fits_ever(request):
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
        spare = self._spare
        preallocated = spare is not None and spare[1] == size
        if preallocated:
            name = spare[0]  # its bytes are already counted in store_used
            self._spare = None
        else:
            if spare is not None and self.store_used + size > self.store_capacity:
                self._drop_spare()
            if self.store_used + size > self.store_capacity:
                used = self.store_used
                conn.send(p.ShmReserved(msg.req_id, None, (
                    f"Cannot store an object of {size:,} bytes: the object store has "
                    f"{self.store_capacity - used:,} of {self.store_capacity:,} bytes free "
                    f"({used:,} in use by live objects). Drop refs you no longer need or "
                    f"start with a larger object_store_memory.")))
                return
            name = self._new_segment_name()
            self.store_used += size
        self._shm_sizes[name] = size
        self._reservations.setdefault(conn, {})[name] = size
        conn.send(p.ShmReserved(msg.req_id, name, preallocated=preallocated))
        self._prepare_spare(size)

    def _new_segment_name(self) -> str:
        self._shm_counter += 1
        return shm.segment_name(self.session, self._shm_counter)

    def _prepare_spare(self, size: int) -> None:
        """Allocate, in the background, a segment of the size just asked for.

        Zeroing fresh pages is most of the cost of writing a large object; a loop that puts
        objects of one size finds the next segment ready and only copies its data.
        """
        if (self._spare is not None or self._spare_pending or not SPARE_MIN <= size <= SPARE_MAX
                or size > self.store_capacity // 8
                or self.store_used + size > self.store_capacity or self.stopping):
            return
        self._spare_pending = True
        self.store_used += size
        self.segments.preallocate(self._new_segment_name(), size, self.on_preallocated)

    def on_preallocated(self, name: str, size: int, ok: bool) -> None:
        self._spare_pending = False
        if ok and not self.stopping:
            self._spare = (name, size)
            self._spare_since = time.monotonic()
        else:
            self.store_used -= size
            self.segments.unlink(name)

    def drop_idle_spare(self, now: float) -> None:
        """Give back a spare segment nobody used for SPARE_IDLE seconds (called periodically)."""
        if self._spare is not None and now - self._spare_since >= SPARE_IDLE:
            self._drop_spare()

    def _drop_spare(self) -> None:
        name, size = self._spare
        self._spare = None
        self.store_used -= size
        self.segments.unlink(name)

    def _on_get(self, conn, msg: p.GetObjects) -> None:
        subscribe = self.objects.subscribe
        for oid in msg.object_ids:
            data = subscribe(oid, conn)
            if data is not None:
                conn.send(p.ObjectReady(oid, data))
            elif oid not in self.objects:
                conn.send(p.ObjectReady(oid, _error_data(exc.ObjectLostError(
                    f"Object {oid.hex()} does not exist: it was freed or never created."))))

    def _on_cancel(self, conn, msg: p.CancelTask) -> None:
        task = self.tasks.get(msg.task_id)
        if task is None or task.cancelled:
            return
        task.cancelled = True
        if task.state == RUNNING:
            worker = task.worker
            if msg.force and worker.actor is None:
                self.spawner.kill(worker.pid)
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
                self.pool.release({"CPU": cpu})
                self.dispatch()

    def _on_unblocked(self, conn, msg) -> None:
        worker = self.workers.get(conn)
        if worker is not None and worker.task is None and worker.actor is not None:
            self._actor_blocked(worker.actor, -1)
            return
        task = worker.task if worker else None
        if task is not None and task.lent_cpu:
            self.pool.acquire({"CPU": task.lent_cpu})
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
        pool = self.pool
        want_workers = 0
        for shape, queue in list(self.ready.items()):
            while queue:
                task = queue[0]
                if task.cancelled or task.state != READY:
                    queue.popleft()
                    continue
                if not pool.fits_now(task.request):
                    if self.actors:
                        self._warn_held_by_actors(task)
                    break
                if not self.idle:
                    want_workers += 1
                    break
                queue.popleft()
                self._start(task, self.idle.pop())
            if not queue:
                del self.ready[shape]
        if want_workers and self.starting == 0:
            if len(self.workers) + self.starting < self.max_workers:
                self.starting += 1
                self.spawner.spawn_worker()

    def _start(self, task: TaskRecord, worker: WorkerRecord) -> None:
        spec = task.spec
        self.pool.acquire(task.request)
        gpu_units = task.request.get("GPU", 0)
        task.gpu_ids = self.gpus.allocate(gpu_units) if gpu_units else []
        task.state = RUNNING
        task.worker = worker
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
        worker.conn.send(p.ExecuteTask(
            spec.task_id, spec.task_id[-ids.JOB_ID_LEN:], spec.fid, function, spec.name,
            spec.args, [get(oid) for oid in spec.deps], spec.num_returns,
            actor.gpu_ids if actor and actor.gpu_ids else task.gpu_ids,
            spec.actor_id, spec.method,
            actor.spec.max_concurrency if actor else 1, actor.spec.is_async if actor else False,
        ))

    def _make_idle(self, worker: WorkerRecord) -> None:
        worker.idle_since = time.monotonic()
        self.idle.append(worker)

    def reap_idle_workers(self, now: float) -> None:
        """Stop workers beyond the node's CPU count that sat idle WORKER_IDLE_TIMEOUT
        seconds (they were started while tasks were blocked in get). Called periodically."""
        excess = sum(1 for w in self.workers.values() if w.actor is None) - self.base_workers
        for worker in list(self.idle):
            if excess <= 0:
                break
            if now - worker.idle_since >= WORKER_IDLE_TIMEOUT:
                self.idle.remove(worker)
                self.spawner.kill(worker.pid)
                excess -= 1

    def _release_task_resources(self, task: TaskRecord) -> None:
        request = task.request
        if task.lent_cpu:
            request = dict(request)
            request["CPU"] -= task.lent_cpu
            task.lent_cpu = 0
        self.pool.release(request)
        if task.gpu_ids:
            self.gpus.free(task.gpu_ids, task.request.get("GPU", 0))
            task.gpu_ids = []

    def _warn_infeasible(self, task: TaskRecord) -> None:
        key = (task.spec.fid, task.shape)
        if key in self._warned_infeasible or task.submitter is None:
            return
        self._warned_infeasible.add(key)
        missing = ", ".join(f"{k}: {v:g} more" for k, v in self.pool.missing(task.request).items())
        text = (
            f"Task {task.spec.name} requests {_fmt(from_units(task.request))}, but no node in "
            f"this cluster has that much in total ({_fmt(self.pool.total_float())}; short by "
            f"{missing}). It will wait until a node with enough resources joins. Lower the "
            f"request with .options(...) or start the cluster with more resources."
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
            for conn in subscribers:
                conn.send(msg)
            if also is not None and also not in subscribers and self.objects.holds(oid, also):
                also.send(msg)
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
            size = self._shm_sizes.pop(data.shm, None)
            if size is not None:
                self._release_segment(data.shm, size, forget=False)

    def _release_segment(self, name: str, size: int, forget: bool = True) -> None:
        if forget:
            self._shm_sizes.pop(name, None)
        self.store_used -= size
        self.segments.unlink(name)

    def release_all_segments(self) -> None:
        if self._spare is not None:
            self._drop_spare()
        for name in list(self._shm_sizes):
            self.segments.unlink(name)
        self._shm_sizes.clear()
        self.store_used = 0

    # -- introspection ----------------------------------------------------------------
    def query(self, what: str, arg=None):
        if what == "nodes":
            return [self.node_info()]
        if what == "cluster_resources":
            return self.pool.total_float()
        if what == "available_resources":
            free = self.pool.free_float()
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
                "segments": len(self._shm_sizes),
                "workers": len(self.workers),
                "idle_workers": len(self.idle),
                "tasks": len(self.tasks),
                "worker_pids": [w.pid for w in self.workers.values()],
                **self.objects.statistics(),
            }
        raise ValueError(f"unknown query {what!r}")

    def node_info(self) -> dict:
        return {
            "NodeID": self.node_id.hex(),
            "Alive": True,
            "NodeManagerAddress": self.node_ip,
            "NodeManagerHostname": os.uname().nodename,
            "NodeName": self.node_ip,
            "Resources": self.pool.total_float(),
            "alive": True,
            "ObjectStoreSocketName": self.session_dir,
        }


def _fmt(resources: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


def _error_data(error: BaseException) -> p.ObjectData:
    return p.ObjectData(inline=cloudpickle.dumps(error), error=True)


__all__ = ["NodeManager", "UNIT"]
