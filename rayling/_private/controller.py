"""The head daemon's controller: it routes each message to the part that owns what the
message is about, and carries out what the parts decide. No sockets, no processes: the
daemon shell (daemon.py) hands it decoded messages with the connection they came from,
and it answers with ``conn.send(message)`` and each node's agent (``spawn_worker()``,
``kill(pid)``, ``unlink(name)``, ``pull(PullObject)``; the head's own node also
``preallocate(name, size, done)``). Tests drive it with fake connections and agents.

    part (module)                   owns
    ─────────────────────────────   ──────────────────────────────────────────────────
    nodes      (node_table)         membership, agents, liveness
    workers    (worker_pool)        each node's workers: idle, starting, to stop
    objects    (object_directory)   values, locations, ref counts, pins, store quotas
    tasks      (task_table)         unfinished tasks, what they wait for, retries
    scheduler  (scheduler)          ready queues, placement, resources, lending
    actors     (actor_directory)    names, lifecycle, restarts, call order, direct calls
    jobs       (job_table)          drivers, job ids, registered code

One controller runs in the head daemon and decides for the whole cluster: joined nodes
register over TCP (RegisterNode) and their workers connect to the head directly.

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
"""

from __future__ import annotations

import logging
import os
import time

from .. import exceptions as exc
from . import ids, introspection, protocol as p
from .actor_directory import ActorDirectory
from .job_table import JobTable
from .node_table import NodeRecord, NodeTable
from .object_directory import ObjectDirectory, error_data
from .placement_groups import PlacementGroups, group_of
from .resources import to_units
from .scheduler import Scheduler, fmt_resources
from .task_events import TaskEvents
from .task_table import DONE, RUNNING, TaskRecord, TaskTable, ran_on
from .user_metrics import UserMetrics
from .worker_pool import LIMIT, LIMIT_ENV, WORKER_MEMORY_BUDGET, WorkerPool

log = logging.getLogger("rayling.daemon")


class Controller:
    def __init__(self, *, node_id: bytes, node_ip: str, session: str, session_dir: str,
                 resources: dict[str, float], store_capacity: int, agent,
                 transfer_address: str = "", max_workers: int = 256) -> None:
        """``agent`` acts on the head's own node; ``session`` names its segments;
        ``max_workers``: how many worker processes it may run (worker_pool.worker_limit)."""
        self.session_dir = session_dir
        self.nodes = NodeTable(NodeRecord(node_id, node_ip, os.uname().nodename, agent,
                                          session, transfer_address))
        self.workers = WorkerPool()
        self.objects = ObjectDirectory(self.nodes, on_free=self._object_freed)
        self.tasks = TaskTable()
        self.scheduler = Scheduler(self.nodes, self.workers, self.objects.bytes_by_node)
        self.actors = ActorDirectory(self)
        self.groups = PlacementGroups(self)
        self.jobs = JobTable()
        self.events = TaskEvents()
        self.metrics = UserMetrics()
        self.dashboard_url = ""  # "host:port" of the head's dashboard, if it serves one
        self.stopping = False
        self._add_node(self.nodes.local, resources, store_capacity, max_workers)

    def _add_node(self, node: NodeRecord, resources: dict[str, float], capacity: int,
                  max_workers: int) -> None:
        self.scheduler.add_node(node, resources)
        self.workers.add_node(node, resources.get("CPU", 1), max_workers)
        self.objects.add_node(node, capacity)

    # -- connections ----------------------------------------------------------------------
    def on_hello(self, conn, hello: p.Hello) -> bool:
        """Admit a connection that proved the token. False: refused, close it."""
        conn.kind = hello.kind
        conn.pid = hello.pid
        conn.listen_path = hello.listen_path
        conn.listen_tcp = hello.listen_tcp
        if hello.kind == "worker":
            node = self.nodes.get(hello.node_id) if hello.node_id else self.nodes.local
            if node is None or not node.alive:
                conn.send(p.Rejected("this worker's node is not part of the cluster"))
                return False
            conn.node = node
            self.workers.connected(conn, hello.pid, hello.worker_id, node, time.monotonic())
            conn.send(self._welcome(node))
            self.dispatch()
        elif hello.kind == "driver":
            node = self.nodes.node_of_address(getattr(conn, "peer_ip", ""))
            if node is None:
                conn.send(p.Rejected(
                    "no rayling node runs on this machine, and a script reads large "
                    "objects from its own node's store: run `rayling start --address "
                    "HEAD:PORT` here first, or run the script on the head node"))
                return False
            conn.node = node
            conn.send(self._welcome(node, self.jobs.add_driver(conn, hello.namespace,
                                                               hello.pid)))
        elif hello.kind == "node":
            conn.node = None  # set by its RegisterNode
        elif hello.kind == "observer":  # (`rayling list`, say: Query only, not a job)
            conn.node = self.nodes.local
            conn.send(self._welcome(self.nodes.local))
        else:
            conn.send(p.Rejected(f"unknown client kind {hello.kind!r}"))
            return False
        return True

    def _welcome(self, node: NodeRecord, job_id: bytes | None = None) -> p.Welcome:
        return p.Welcome(node.node_id, job_id or self.jobs.first_job_id, node.ip,
                         self.session_dir, node.pool.total_float(), self.dashboard_url)

    def on_disconnect(self, conn) -> None:
        worker = self.workers.remove(conn)
        if worker is not None:
            task = worker.task
            worker.task = None
            if worker.actor is not None:
                if task is not None:  # died in the constructor
                    self.scheduler.release(task)
                    self.tasks.remove(task)
                    self.events.failed(task, f"its worker (pid {worker.pid}) died")
                self.actors.worker_died(worker.actor, worker)
            elif task is not None:
                self._worker_died_running(task, worker)
        job_id = self.jobs.remove_driver(conn)
        if job_id is not None and self.groups:
            self.groups.job_gone(job_id)
        if self.actors:
            self.actors.caller_gone(conn)
        self._owner_gone(conn)
        node = getattr(conn, "node", None)
        if conn.kind == "node" and node is not None and node.conn is conn:
            self.node_lost(node, "its daemon disconnected")
        self.objects.release_reservations(conn)
        self.objects.table.drop_holder(conn)
        if self.metrics.live:
            self.metrics.gone(conn)
        if not self.stopping:
            self.dispatch()

    def _worker_died_running(self, task: TaskRecord, worker) -> None:
        self.scheduler.release(task)
        task.worker = None
        spec = task.spec
        if task.cancelled:
            self.fail_task(task, exc.TaskCancelledError(
                spec.task_id.hex(), f"Task {spec.name} was cancelled (its worker was killed)."))
        elif self.tasks.retry_after_worker_death(task):
            log.info("retrying task %s after its worker (pid %s) died", spec.name, worker.pid)
            self.events.failed(task, f"its worker (pid {worker.pid}) died")
            self._make_ready(task)
        else:
            self.fail_task(task, exc.WorkerCrashedError(
                f"The worker (pid {worker.pid}) running task {spec.name} died unexpectedly "
                f"(it was killed, crashed, or exited), and the task has no retries left "
                f"(max_retries={spec.max_retries})."))

    # -- joined nodes ---------------------------------------------------------------------
    def _on_register_node(self, conn, msg: p.RegisterNode) -> None:
        if conn.kind != "node" or conn.node is not None:
            raise p.ProtocolError("RegisterNode from a connection that is not a new node")
        node = self.nodes.register(conn, msg)
        conn.node = node
        self._add_node(node, msg.resources, msg.store_capacity, msg.max_workers)
        conn.send(self._welcome(node))
        log.info("node %s joined from %s with %s", msg.node_id.hex()[:12], msg.ip,
                 fmt_resources(msg.resources))
        conn.send(p.SpawnWorkers(self.workers.prestart(node, node.workers.base,
                                                       time.monotonic())))
        self.dispatch()

    def check_nodes(self, heartbeat, now: float) -> None:
        """Declare dead every joined node silent too long, and send each live one a
        heartbeat (the shell calls this every HEARTBEAT_INTERVAL)."""
        for conn in heartbeat.tick(now, self.nodes.joined_links()):
            why = f"it sent nothing for {heartbeat.timeout:g} s"
            conn.close(f"no message for {heartbeat.timeout:g} s")
            self.node_lost(conn.node, why)
        for conn in self.nodes.joined_links():
            conn.send(p.Heartbeat())

    def node_lost(self, node: NodeRecord, why: str) -> None:
        """A joined node is gone: its workers' tasks are retried elsewhere, its actors
        restart or die, and objects whose only copy it held are lost."""
        if not node.alive:
            return
        log.warning("node %s (%s) is dead: %s", node.node_id.hex()[:12], node.ip, why)
        node.alive = False
        node.agent.gone()
        node.workers.idle.clear()
        self.scheduler.nodes_changed()
        if self.groups:
            self.groups.node_lost(node)
        # Its workers and the scripts running there go: they used its store.
        for conn in [w.conn for w in self.workers.on_node(node)] + \
                [d for d in self.jobs.drivers if getattr(d, "node", None) is node]:
            conn.close(f"its node died: {why}")
            self.on_disconnect(conn)
        self.objects.node_lost(node)
        self.dispatch()

    # -- messages -------------------------------------------------------------------------
    def handle(self, conn, msg) -> None:
        """Route ``msg``. A message that is not one ``conn`` may send raises
        ProtocolError (the shell closes the connection); one that cannot be carried out
        fails alone, with an answer to its sender where one is awaited."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise p.ProtocolError(f"unexpected message {type(msg).__name__}")
        if conn.kind == "observer" and type(msg) is not p.Query:
            raise p.ProtocolError(f"an observer only asks (Query), it sent "
                                  f"{type(msg).__name__}")
        try:
            handler(self, conn, msg)
        except p.ProtocolError:
            raise
        except Exception as e:
            log.exception("could not carry out %s from pid %s", type(msg).__name__, conn.pid)
            self._refuse(conn, msg, e)

    @staticmethod
    def _refuse(conn, msg, error: Exception) -> None:
        """Tell ``conn`` that ``msg`` failed: a task's results, an actor's creation or a
        request's reply become the error."""
        what = f"the node daemon could not carry out {type(msg).__name__}: {error!r}"
        results: list[bytes] = []
        if type(msg) is p.SubmitTask:
            what = f"the node daemon could not accept task {msg.name}: {error!r}"
            results = [ids.object_id_for_return(msg.task_id, i)
                       for i in range(min(msg.num_returns, 10_000))]
        elif type(msg) is p.CreateActor:
            results = [ids.object_id_for_return(msg.task_id, 0)]
        data = error_data(exc.RaySystemError(what))
        for oid in results:
            conn.send(p.ObjectReady(oid, data))
        req_id = getattr(msg, "req_id", 0)
        if req_id:
            conn.send(p.Reply(req_id, None, what))

    def _on_ref_update(self, conn, msg: p.RefUpdate) -> None:
        table = self.objects.table
        if msg.adds:
            table.add_holders(msg.adds, conn)
        if msg.dels:
            table.remove_holders(msg.dels, conn)

    def _on_register_function(self, conn, msg: p.RegisterFunction) -> None:
        self.jobs.register_function(msg.fid, msg.blob, msg.name)

    def _on_submit(self, conn, spec: p.SubmitTask) -> None:
        self.admit_task(spec, conn)

    def admit_task(self, spec: p.SubmitTask, submitter, pin_args: bool = True,
                   expect_returns: bool = True) -> None:
        """A new task (or actor call, or actor creation): hold its refs, wait for its
        arguments, queue it."""
        task = TaskRecord(spec, submitter, to_units(spec.resources))
        task.pinned = pin_args
        worker = self.workers.by_conn.get(submitter)
        if worker is not None and worker.task is not None:
            task.parent = worker.task.spec.task_id
        self.tasks.add(task)
        table = self.objects.table
        if expect_returns:
            for i in range(spec.num_returns):
                table.expect(ids.object_id_for_return(spec.task_id, i), submitter)
        if pin_args:
            for oid in spec.deps:
                table.pin(oid)
            for oid in spec.contained:
                table.pin(oid)
        actor_call = task.is_actor_call
        if actor_call:
            self.actors.queue_call(task)
            if task.state is RUNNING:  # the caller sent it to the worker itself
                actor = self.actors.get(spec.actor_id)
                if actor is not None and actor.worker is not None:
                    task.where, task.started = ran_on(actor.worker), task.created
                return
            if task.state is DONE:  # failed at once
                return
        elif submitter is not None and not self.scheduler.fits_ever(task) and \
                group_of(spec.resources) is None:  # (a group's resources may come later)
            text = self.scheduler.infeasible_warning(task)
            if text:
                submitter.send(p.Warning(text))
        for oid in spec.deps:
            entry = table.entries.get(oid)
            if entry is None:
                self.fail_task(task, exc.ObjectLostError(
                    f"Argument object {oid.hex()} of task {spec.name} no longer exists."))
                return
            if entry.data is None:
                self.tasks.wait_for(task, oid)
        if task.waiting_on == 0:
            self._make_ready(task)
            if not actor_call:
                self.dispatch()

    def _on_put(self, conn, msg: p.PutObject) -> None:
        self.object_ready(msg.object_id, self.objects.put(conn, msg.object_id, msg.data),
                          msg.data)

    def _on_reserve(self, conn, msg: p.ReserveShm) -> None:
        conn.send(self.objects.reserve(conn, msg.req_id, msg.object_id, msg.size,
                                       self.nodes.local.agent.preallocate))

    def _on_release_shm(self, conn, msg: p.ReleaseShm) -> None:
        self.objects.abandon(conn, msg.name)

    def _on_create_placement_group(self, conn, msg: p.CreatePlacementGroup) -> None:
        self.groups.create(conn, msg)
        self.dispatch()

    def _on_remove_placement_group(self, conn, msg: p.RemovePlacementGroup) -> None:
        self.groups.remove(msg.pg_id)
        self.dispatch()

    def _on_generator_consumed(self, conn, msg: p.GeneratorConsumed) -> None:
        """The caller took values of a streaming task that waits for that: tell it."""
        task = self.tasks.get(msg.task_id)
        if task is not None and task.submitter is conn:
            task.consumed = max(task.consumed, msg.count)  # (a rerun starts from it)
            if task.worker is not None:
                task.worker.conn.send(msg)

    def _on_generator_item(self, conn, msg: p.GeneratorItem) -> None:
        """A streaming task yielded a value: it is an object of its submitter's, who hears
        of it at once. A retried task's items that went out before are dropped."""
        worker = self.workers.get(conn)
        task = self.tasks.get(msg.task_id)
        if worker is None or task is None or task.worker is not worker or \
                task.spec.generator != "streaming":
            raise p.ProtocolError("GeneratorItem for a task this worker is not streaming")
        data = msg.data
        if task.cancelled or msg.index < task.items or task.submitter is None:
            if data.shm is not None:
                self.objects.abandon(conn, data.shm)
            return
        if data.shm is not None:
            self.objects.seal(conn, data.shm)
        task.items = msg.index + 1
        oid = ids.object_id_for_return(msg.task_id, msg.index + 1)
        submitter = task.submitter
        table = self.objects.table
        table.expect(oid, submitter)
        subscribers = table.set_ready(oid, data)
        readable = self.objects.readable(submitter, oid, data) \
            if data.shm is not None and self.nodes.several else data
        submitter.send(p.GeneratorItem(msg.task_id, msg.index, readable))
        if subscribers:
            self.object_ready(oid, subscribers, data)

    def _on_get(self, conn, msg: p.GetObjects) -> None:
        table = self.objects.table
        for oid in msg.object_ids:
            data = table.subscribe(oid, conn)
            if data is not None:
                self._send_value(conn, oid, data)

    def tick(self) -> None:
        """The shell calls this every second: gets of objects that never appeared are
        answered (they were freed or never created); segments of dead actor workers that
        no caller claimed are released."""
        if self.actors:
            self.actors.tick()
        for oid, getters in self.objects.table.expire_early():
            lost = p.ObjectReady(oid, error_data(exc.ObjectLostError(
                f"Object {oid.hex()} does not exist: it was freed or never created.")))
            for conn in getters:
                conn.send(lost)

    def _send_value(self, conn, oid: bytes, data: p.ObjectData) -> None:
        """Send ``conn`` the object, once it is on its node (it may be copied first)."""
        value = self.objects.value_for(conn, oid, data)
        if value is not None:
            conn.send(p.ObjectReady(oid, value))

    def pull_done(self, node_id: bytes, oid: bytes, name: str, error: str | None) -> None:
        """A node finished copying ``oid`` into its segment ``name`` (or failed to)."""
        waiting, data = self.objects.pull_done(node_id, oid, name, error)
        for conn in waiting:
            if conn in self.workers.by_conn or conn in self.jobs.drivers:
                conn.send(p.ObjectReady(oid, data))

    def _on_metrics_report(self, conn, msg: p.MetricsReport) -> None:
        self.metrics.report(conn, msg)

    def _on_logs_read(self, conn, msg: p.LogsRead) -> None:
        if conn.node is not None:
            conn.node.agent.logs_read(msg)

    def _on_pull_done(self, conn, msg: p.PullDone) -> None:
        self.pull_done(conn.node.node_id, msg.object_id, msg.name, msg.error)

    def _on_cancel(self, conn, msg: p.CancelTask) -> None:
        task = self.tasks.get(msg.task_id)
        if task is not None:
            self.cancel(task, msg.force, msg.recursive)

    def cancel(self, task: TaskRecord, force: bool, recursive: bool) -> None:
        """Cancel ``task``: fail it if it has not started, else interrupt it (``force``:
        kill its worker); ``recursive``: first the tasks it submitted, and theirs."""
        if task.cancelled:
            return
        task.cancelled = True
        if recursive and task.state is RUNNING:
            for child in self.tasks.children_of(task.spec.task_id):
                self.cancel(child, force, True)
        if task.state is RUNNING:
            worker = task.worker
            if force and worker.actor is None:
                worker.node.agent.kill(worker.pid)
            else:  # an actor call is interrupted, never its whole actor
                worker.conn.send(p.CancelTask(task.spec.task_id, False))
        else:
            self.fail_task(task, exc.TaskCancelledError(task.spec.task_id.hex()))

    def _owner_gone(self, conn) -> None:
        """``conn``, a driver or a worker's process, is gone: as in Ray, what it started
        ends with it. Its queued tasks are dropped, the workers running its tasks are
        killed (so their own tasks end in turn), and its actors end."""
        for task in self.tasks.submitted_by(conn):
            self.cancel(task, force=True, recursive=False)
        if self.actors:
            self.actors.owner_gone(conn)

    def _on_blocked(self, conn, msg) -> None:
        worker = self.workers.get(conn)
        if worker is None:
            return
        if worker.task is None and worker.actor is not None:
            lent = self.actors.blocked(worker.actor, +1)
        else:
            lent = worker.task is not None and self.scheduler.lend(worker.task)
        if lent:
            self.dispatch()

    def _on_unblocked(self, conn, msg) -> None:
        worker = self.workers.get(conn)
        if worker is None:
            return
        if worker.task is None and worker.actor is not None:
            self.actors.blocked(worker.actor, -1)
        elif worker.task is not None:
            self.scheduler.reclaim(worker.task)

    def _on_task_done(self, conn, msg: p.TaskDone) -> None:
        worker = self.workers.get(conn)
        if worker is None:
            raise p.ProtocolError("TaskDone from a connection that is not a worker")
        for data in msg.results:
            if data.shm is not None:
                self.objects.seal(conn, data.shm)
        task = worker.task
        if task is None or task.spec.task_id != msg.task_id:
            if worker.actor is None:
                raise p.ProtocolError("TaskDone for a task this worker is not running")
            self.actors.call_done(worker.actor, msg)
            return
        worker.task = None
        if worker.actor is not None:
            self.events.ended(task, msg.results)
            self.actors.creation_done(task, worker, msg.results)
            return
        self.scheduler.release(task)
        task.worker = None
        if msg.retryable and self.tasks.retry_after_exception(task, msg.results):
            log.info("retrying task %s after it raised an exception its retry_exceptions "
                     "names", task.spec.name)
            self.events.failed(task, "it raised an exception its retry_exceptions names",
                               msg.results[0].inline if msg.results else None)
            self._make_ready(task)
        else:
            self.finish_task(task, msg.results, failed=msg.failed)
        if not msg.retiring:  # (a retiring worker exits: its disconnect removes it)
            self.workers.make_idle(worker, time.monotonic())
        self.dispatch()

    def _to_drivers(self, conn, msg) -> None:
        for driver in self.jobs.drivers:
            driver.send(msg)

    def _on_query(self, conn, msg: p.Query) -> None:
        what = msg.what
        if type(what) is p.ActorAddress:
            self.actors.answer_address(conn, msg.req_id, what.actor_id)
            return
        if type(what) is p.NodeLogs:
            node = self.nodes.get(what.node_id)
            if node is None or not node.alive:
                conn.send(p.Reply(msg.req_id, None, f"no live node {what.node_id.hex()}"))
                return
            node.agent.read_logs(what.name, what.offset, what.tail, lambda value, error:
                                 conn.send(p.Reply(msg.req_id, value, error)))
            return
        try:
            value = self.query(what)
            conn.send(p.Reply(msg.req_id, value))
        except Exception as e:  # a bad query must not take the daemon down
            conn.send(p.Reply(msg.req_id, None, f"{type(e).__name__}: {e}"))

    def _on_shutdown(self, conn, msg) -> None:
        self.stopping = True

    def _on_create_actor(self, conn, msg: p.CreateActor) -> None:
        self.actors.create(conn, msg)

    def _on_calls_received(self, conn, msg: p.CallsReceived) -> None:
        self.actors.calls_received(conn, msg)

    def _on_kill_actor(self, conn, msg: p.KillActor) -> None:
        self.actors.kill(msg)

    def _on_heartbeat(self, conn, msg: p.Heartbeat) -> None:
        # (The shell notes the time of every message; check_nodes reads it.)
        if msg.load is not None and conn.node is not None:
            conn.node.load = msg.load

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
        p.Logs: _to_drivers,
        p.ProgressBar: _to_drivers,
        p.Query: _on_query,
        p.Shutdown: _on_shutdown,
        p.CreateActor: _on_create_actor,
        p.KillActor: _on_kill_actor,
        p.CallsReceived: _on_calls_received,
        p.ReleaseShm: _on_release_shm,
        p.GeneratorItem: _on_generator_item,
        p.GeneratorConsumed: _on_generator_consumed,
        p.CreatePlacementGroup: _on_create_placement_group,
        p.RemovePlacementGroup: _on_remove_placement_group,
        p.RegisterNode: _on_register_node,
        p.PullDone: _on_pull_done,
        p.LogsRead: _on_logs_read,
        p.MetricsReport: _on_metrics_report,
        p.Heartbeat: _on_heartbeat,
    }

    # -- scheduling -----------------------------------------------------------------------
    def _make_ready(self, task: TaskRecord) -> None:
        if task.is_actor_call:
            self.actors.call_ready(task)
        else:
            self.scheduler.enqueue(task)

    def dispatch(self) -> None:
        """Start every ready task that can start; ask for workers where tasks wait."""
        if self.groups.waiting:
            self.groups.place_waiting()
        starts, unschedulable, starved, want_workers = self.scheduler.dispatch(
            note_starved=bool(self.actors))
        for task, worker in starts:
            self._start(task, worker)
        for task in unschedulable:
            node_id = task.spec.strategy.node_id
            known = self.nodes.get(node_id) is not None
            self.fail_task(task, exc.TaskUnschedulableError(
                f"Task {task.spec.name} must run on node {node_id.hex()} "
                f"(NodeAffinitySchedulingStrategy with soft=False), which is "
                f"{'dead' if known else 'not in this cluster'}."))
        if starved:
            for task in starved:
                if task.submitter is not None:
                    text = self.actors.held_warning(task, self._tasks_running)
                    if text:
                        task.submitter.send(p.Warning(text))
        if want_workers:
            now = time.monotonic()
            for node in want_workers:
                wanted = self.workers.want_one(node, now)
                if wanted is LIMIT:
                    self._to_drivers(None, p.Warning(
                        f"Tasks or actors wait for a worker on node {node.node_id.hex()[:12]}"
                        f" ({node.ip}), which runs {node.workers.count} worker processes, "
                        f"its limit ({LIMIT_ENV}, or one per {WORKER_MEMORY_BUDGET >> 20} "
                        f"MiB of its memory). They start as workers finish; to allow more, "
                        f"set {LIMIT_ENV} before starting the cluster."))
                elif wanted:
                    node.agent.spawn_worker()

    def _tasks_running(self) -> bool:
        """Some task (not an actor) runs: it will free resources when it ends."""
        return any(w.task is not None and w.actor is None for w in self.workers.by_conn.values())

    def _start(self, task: TaskRecord, worker) -> None:
        task.state = RUNNING
        task.worker = worker
        worker.task = task
        actor = None
        if task.spec.actor_id is not None:  # the creation task: the worker hosts the actor
            self.actors.placed(task, worker)
            actor = worker.actor
        self.send_execute(task, worker, actor)

    def send_execute(self, task: TaskRecord, worker, actor=None) -> None:
        spec = task.spec
        function = None
        if spec.fid and spec.fid not in worker.known_functions:
            function = self.jobs.code_for(spec.fid, worker.known_functions)
        task.where, task.started = ran_on(worker), time.time()
        get = self.objects.get
        conn = worker.conn
        deps = [get(oid) for oid in spec.deps]
        dep_ids = []
        if deps and self.nodes.several:
            readable = self.objects.readable
            deps = [d if d is None else readable(conn, oid, d)
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
            dep_ids, retry_exceptions=spec.retry_exceptions, retry_on=spec.retry_on,
            generator=spec.generator, backpressure=spec.backpressure, capture=spec.capture,
            consumed=task.consumed,
            env=spec.env if actor is None else (
                actor.spec.env if spec.method == "__init__" else {}),
            max_calls=spec.max_calls, resources=spec.resources if actor is None else {},
            actor=None if actor is None or spec.method != "__init__" else p.ActorStart(
                actor.spec.name, actor.spec.hold, actor.state.value == "RESTARTING",
                actor.spec.capture, actor.spec.concurrency_groups),
            concurrency_group=spec.concurrency_group,
        ))

    def reap_idle_workers(self, now: float) -> None:
        """Stop extra workers that sat idle too long (the shell calls this periodically);
        not one that owns an actor or unfinished tasks: they would end with it."""
        for worker in self.workers.to_stop(self.nodes.all, now, self._owns_work):
            worker.node.agent.kill(worker.pid)

    def _owns_work(self, worker) -> bool:
        return self.tasks.owns_any(worker.conn) or self.actors.owns_actors(worker.conn)

    # -- completion -----------------------------------------------------------------------
    def finish_task(self, task: TaskRecord, results: list[p.ObjectData],
                    tell_submitter: bool = True, failed: bool = False) -> None:
        """Store a task's results and tell whoever waits for them (``failed``: its
        worker says it raised)."""
        spec = task.spec
        self.tasks.remove(task)
        self.events.ended(task, results, failed)
        if len(results) != spec.num_returns:  # defensive: never trust a count
            results = [error_data(exc.RaySystemError(
                f"Task {spec.name} produced {len(results)} results for "
                f"{spec.num_returns} returns"))] * spec.num_returns
        set_ready = self.objects.table.set_ready
        submitter = task.submitter if tell_submitter else None
        for i, data in enumerate(results):
            oid = ids.object_id_for_return(spec.task_id, i)
            self.object_ready(oid, set_ready(oid, data), data, also=submitter)
        if task.pinned:
            unpin = self.objects.table.unpin
            for oid in spec.deps:
                unpin(oid)
            for oid in spec.contained:
                unpin(oid)

    def fail_task(self, task: TaskRecord, error: BaseException) -> None:
        """Store ``error`` as every result of a task that will not run (again)."""
        self.finish_task(task, [error_data(error)] * task.spec.num_returns)

    def object_ready(self, oid: bytes, subscribers: list, data: p.ObjectData,
                     also=None) -> None:
        """Tell waiters (and ``also``, the owner, if it still holds a ref) that ``oid``
        exists, and queue the tasks that waited for it."""
        if subscribers or also is not None:
            msg = p.ObjectReady(oid, data)
            several_nodes = data.shm is not None and self.nodes.several
            for conn in subscribers:  # they asked for the value (get, or wait): copy it
                if several_nodes:
                    self._send_value(conn, oid, data)
                else:
                    conn.send(msg)
            if also is not None and also not in subscribers and \
                    self.objects.table.holds(oid, also):
                also.send(p.ObjectReady(oid, self.objects.readable(also, oid, data))
                          if several_nodes else msg)
        ready = self.tasks.object_arrived(oid) if self.tasks.waiters else None
        if ready:
            for task in ready:
                self._make_ready(task)
            self.dispatch()

    def _object_freed(self, oid: bytes) -> None:
        self.actors.object_freed(oid)

    # -- introspection --------------------------------------------------------------------
    def query(self, what: p.QueryKind):
        return introspection.answer(self, what)
