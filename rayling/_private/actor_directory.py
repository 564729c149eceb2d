"""The head's directory of actors: their names, lifecycle, restarts, the order of their
calls, and the books of calls sent to them directly (no sockets or processes here).

An actor is an instance of a user class living in one dedicated worker process::

    CreateActor ─▶ PENDING: creation task queued like any task (needs the "place" resources)
                      │ runs __init__ on a pool worker, which then belongs to the actor
                      ▼
                   ALIVE (holds the "hold" resources) ──worker died──▶ RESTARTING while
                      │                                               max_restarts allows
                      │ kill(), exit_actor(), last handle dropped, __init__ raised,
                      ▼ or no restarts left
                    DEAD: every queued and later call fails with ActorDiedError

Method calls arrive as SubmitTask with an actor id and join the actor's queue in arrival
order. Calls whose arguments are ready are sent to the actor's worker at once, in order
(pipelined); the worker runs them one at a time, or concurrently for threaded and async
actors. A call never waits behind a later one, and never runs before an earlier one
from the same queue. A call a caller sent straight to the worker is recorded when the
caller's SubmitTask(direct_worker=...) arrives; if the worker's TaskDone comes first it is
parked until then.

Results exactly once: a call sent straight to the worker may have returned its results
to the caller while the worker's TaskDone was still queued when the worker died. Such
a call is *in doubt*: the directory asks its caller (CallsInDoubt) which results it got,
after the caller has read everything that worker sent it; received calls are finished,
the others retried or failed. The actor sends nothing more until every doubt is settled,
so a retried call still runs before the calls made after it.

Every handle holds a ref to the creation task's result, so when the last handle is gone
that object is freed and the actor ends (named and detached actors pin it instead).

The directory owns the actor records; what it does to tasks, objects and resources goes
through its *host* (the controller): ``admit_task``, ``fail_task``, ``finish_task``,
``object_ready``, ``send_execute``, ``dispatch``, and the host's ``objects``, ``tasks``
and ``scheduler`` parts.
"""

from __future__ import annotations

import enum
import pickle
from collections import deque

from .. import exceptions as exc
from . import ids, protocol as p
from .object_directory import error_data
from .resources import gpu_units, to_units
from .task_table import DONE, READY, RUNNING, ran_on

ADOPTED_TICKS = 5  # ticks (seconds) a dead actor worker's unreported segments are kept


class ActorState(enum.Enum):
    PENDING = "PENDING"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


PENDING = ActorState.PENDING
ALIVE = ActorState.ALIVE
RESTARTING = ActorState.RESTARTING
DEAD = ActorState.DEAD


class ActorRecord:
    __slots__ = (
        "spec", "state", "worker", "queue", "inflight", "restarts_left", "cause",
        "hold", "handles_gone", "creation_oid", "gpu_ids", "blocked", "lent_cpu",
        "address_waiters", "stopping", "doubts", "rerun", "owner", "restarts",
    )

    def __init__(self, spec: p.CreateActor, owner) -> None:
        self.spec = spec
        self.owner = owner  # the connection that created it: it ends with it (unless
        # detached)
        self.state = PENDING
        self.worker = None  # the WorkerRecord hosting it, while it has one
        self.queue: deque = deque()  # calls not sent to the worker yet, in order
        self.inflight: dict[bytes, object] = {}  # calls sent to the worker, in order
        self.restarts_left = spec.max_restarts
        self.restarts = 0  # how many times it restarted
        self.cause = ""  # why it is dying or dead, for ActorDiedError
        self.hold = to_units(spec.hold)
        self.handles_gone = False
        self.creation_oid = ids.object_id_for_return(spec.task_id, 0)
        self.gpu_ids: list[int] = []  # GPUs the actor keeps for its life
        self.blocked = 0  # its calls now waiting in get/wait
        self.lent_cpu = 0  # held CPU units lent to others while every call waits
        self.address_waiters: list = []  # (conn, req_id) asking where the worker listens
        self.stopping = False  # its worker is being killed: send it nothing more
        self.doubts: dict[bytes, tuple] = {}  # calls whose callers are asked: (order, task)
        self.rerun: list = []  # calls settled as not returned, while others are in doubt

    @property
    def name(self) -> str:
        return self.spec.class_name

    def info(self) -> dict:
        spec = self.spec
        return {
            "actor_id": spec.actor_id, "class_name": spec.class_name, "methods": spec.methods,
            "creation_task": spec.task_id, "is_async": spec.is_async,
            "max_task_retries": spec.max_task_retries, "state": self.state.value,
            "name": spec.name, "namespace": spec.namespace,
            "pid": self.worker.pid if self.worker else None,
        }


class ActorDirectory:
    DEAD_KEPT = 1000  # dead actors remembered (for the state API and their callers'
    # errors); older ones are forgotten, so a long run's memory stays bounded

    def __init__(self, host) -> None:
        self._host = host
        self.actors: dict[bytes, ActorRecord] = {}
        self.named: dict[tuple[str, str], bytes] = {}  # (namespace, name) -> actor id
        self._by_creation: dict[bytes, ActorRecord] = {}  # creation object id -> actor
        # Direct calls done before they were announced: their TaskDone, and where they ran
        self._parked: dict[bytes, tuple[p.TaskDone, tuple]] = {}
        self._doubt_order = 0  # numbers calls in doubt in the order they were made
        self._adopted: dict[ActorRecord, int] = {}  # actors holding a dead worker's
        # segments: ticks since
        self._constructor_errors: dict[bytes, p.ObjectData | None] = {}
        self._dead_order: deque[bytes] = deque()  # dead actors' ids, oldest first
        self._warned_held: set[tuple] = set()

    def __bool__(self) -> bool:
        return bool(self.actors)

    def get(self, actor_id: bytes) -> ActorRecord | None:
        return self.actors.get(actor_id)

    def named_actor(self, namespace: str, name: str) -> ActorRecord | None:
        actor = self.actors.get(self.named.get((namespace, name), b""))
        return actor if actor is not None and actor.state is not DEAD else None

    # -- creation -----------------------------------------------------------------------
    def create(self, conn, msg: p.CreateActor) -> None:
        existing = self.named_actor(msg.namespace, msg.name) if msg.name else None
        if existing is not None:
            if msg.get_if_exists:
                conn.send(p.Reply(msg.req_id, {**existing.info(), "existing": True}))
            else:
                conn.send(p.Reply(msg.req_id, None, (
                    f"An actor named {msg.name!r} already exists in namespace "
                    f"{msg.namespace!r}. Use rayling.get_actor({msg.name!r}) to get a "
                    f"handle to it, or pass get_if_exists=True.")))
            return
        actor = ActorRecord(msg, conn)
        self.actors[msg.actor_id] = actor
        self._by_creation[actor.creation_oid] = actor
        if msg.name:
            self.named[(msg.namespace, msg.name)] = msg.actor_id
        table = self._host.objects.table
        table.expect(actor.creation_oid, conn)
        if msg.name or msg.detached:
            table.pin(actor.creation_oid)  # lives until killed
        for oid in msg.deps + msg.contained:
            table.pin(oid)  # the constructor's arguments, kept for restarts
        if msg.req_id:
            conn.send(p.Reply(msg.req_id, {**actor.info(), "existing": False}))
        self._submit_creation(actor, conn)

    def _submit_creation(self, actor: ActorRecord, submitter) -> None:
        spec = actor.spec
        creation = p.SubmitTask(
            spec.task_id, spec.fid, f"{spec.class_name}.__init__", spec.args, spec.deps, [],
            1, spec.place, 0, actor_id=spec.actor_id, method="__init__", strategy=spec.strategy,
        )
        # The constructor's arguments are pinned by the actor, not by this task.
        self._host.admit_task(creation, submitter, pin_args=False, expect_returns=False)
        record = self._host.tasks.get(spec.task_id)
        if record is not None:  # (a restart's creation is the next attempt of the first)
            record.attempt = actor.restarts

    def placed(self, task, worker) -> None:
        """The creation task starts on ``worker``, which now hosts the actor."""
        actor = self.actors[task.spec.actor_id]
        actor.worker = worker
        worker.actor = actor

    def creation_done(self, task, worker, results: list[p.ObjectData]) -> None:
        host = self._host
        actor = self.actors[task.spec.actor_id]
        if gpu_units(actor.hold):  # the GPUs the constructor ran with stay the actor's
            actor.gpu_ids, task.gpu_ids = task.gpu_ids, []
        host.scheduler.release(task)
        host.tasks.remove(task)
        data = results[0] if results else None
        if actor.state is DEAD:
            worker.node.agent.kill(worker.pid)
            return
        objects = host.objects
        if data is None or data.error:
            # The constructor raised: the actor is dead, and its error is the cause.
            host.object_ready(actor.creation_oid, objects.set_ready(actor.creation_oid, data),
                              data)
            actor.cause = "its constructor raised an exception"
            self._dead(actor, constructor_error=data)
            worker.node.agent.kill(worker.pid)
            host.dispatch()
            return
        host.scheduler.hold(worker.node, actor.hold)
        actor.state = ALIVE
        self._answer_address_waiters(actor)
        if objects.get(actor.creation_oid) is None:
            host.object_ready(actor.creation_oid, objects.set_ready(actor.creation_oid, data),
                              data)
        self.pump(actor)
        host.dispatch()  # the placement resources are free again

    # -- calls --------------------------------------------------------------------------
    def queue_call(self, task) -> None:
        """A method call arrived (maybe one its caller already sent to the worker)."""
        spec = task.spec
        host = self._host
        if spec.direct_worker is not None:
            parked, where = self._parked.pop(spec.task_id, (None, None))
            if parked is not None:  # the worker finished it before we heard of it
                task.where, task.started = where, task.created
                host.finish_task(task, parked.results, tell_submitter=not parked.direct,
                                 failed=parked.failed)
                self._pin_contained(parked, False)
                return
            actor = self.actors.get(spec.actor_id)
            if (actor is not None and actor.state is ALIVE
                    and actor.worker.worker_id == spec.direct_worker):
                task.state = RUNNING  # the caller sent it to the worker itself
                task.worker = actor.worker
                actor.inflight[spec.task_id] = task
                return
            if actor is None:
                host.fail_task(task, exc.ActorDiedError(
                    f"{spec.name} was sent to an actor that no longer exists."))
                return
            # It was sent to a worker that has died since: only its caller knows whether
            # it returned first.
            task.state = RUNNING
            self._ask_callers(actor, spec.direct_worker, [task])
            return
        actor = self.actors.get(spec.actor_id)
        if actor is None:
            host.fail_task(task, exc.ActorDiedError(
                f"Method {spec.name} was called on an actor this node does not know "
                f"(id {spec.actor_id.hex()})."))
            return
        if actor.state is DEAD:
            host.fail_task(task, self._died_error(actor, spec.name))
            return
        actor.queue.append(task)

    def call_ready(self, task) -> None:
        """A queued call's arguments all exist."""
        task.state = READY
        self.pump(self.actors[task.spec.actor_id])

    def pump(self, actor: ActorRecord) -> None:
        """Send every call at the head of the queue whose arguments are ready."""
        if actor.state is ALIVE and not actor.stopping and not actor.doubts:
            queue = actor.queue
            send = self._host.send_execute
            while queue:
                task = queue[0]
                if task.state is DONE:  # cancelled while queued
                    queue.popleft()
                    continue
                if task.state is not READY:
                    break
                queue.popleft()
                task.state = RUNNING
                task.worker = actor.worker
                actor.inflight[task.spec.task_id] = task
                send(task, actor.worker, actor)
        idle = not actor.queue and not actor.inflight
        if actor.handles_gone and idle and actor.state is not DEAD and not actor.doubts:
            actor.restarts_left = 0
            actor.cause = "all handles to it went out of scope"
            if actor.worker is not None:
                self._stop(actor)
            else:
                self._dead(actor)

    def call_done(self, actor: ActorRecord, msg: p.TaskDone) -> None:
        task = actor.inflight.pop(msg.task_id, None) or self._host.tasks.get(msg.task_id)
        if task is None:
            # A call sent straight here whose caller's SubmitTask is still on the way
            # (its results went to the caller, or, if the caller could not be reached,
            # they are in this message and go out when the SubmitTask arrives). The
            # refs inside the results are held meanwhile: the worker may drop its own.
            self._parked[msg.task_id] = (msg, ran_on(actor.worker))
            self._pin_contained(msg, True)
        elif task.state is not DONE:
            self._host.finish_task(task, msg.results, tell_submitter=not msg.direct,
                                   failed=msg.failed)
        if msg.actor_exit:
            actor.restarts_left = 0
            actor.cause = "it called exit_actor()"
            self._stop(actor)
        self.pump(actor)

    def _pin_contained(self, msg: p.TaskDone, pin: bool) -> None:
        table = self._host.objects.table
        for data in msg.results:
            for oid in data.contained:
                if pin:
                    table.pin(oid)
                else:
                    table.unpin(oid)

    def _stop(self, actor: ActorRecord) -> None:
        """Kill the actor's worker; nothing more is sent to it meanwhile."""
        actor.stopping = True
        actor.worker.node.agent.kill(actor.worker.pid)

    # -- death --------------------------------------------------------------------------
    def worker_died(self, actor: ActorRecord, worker) -> None:
        """The process hosting ``actor`` is gone: restart it, or it is dead."""
        host = self._host
        if actor.state is ALIVE:
            host.scheduler.unhold(worker.node, actor.hold)
            if actor.lent_cpu:
                host.scheduler.hold(worker.node, {"CPU": actor.lent_cpu})
        actor.blocked = actor.lent_cpu = 0
        if actor.gpu_ids:
            worker.node.gpus.free(actor.gpu_ids, gpu_units(actor.hold))
            actor.gpu_ids = []
        actor.worker = None
        actor.stopping = False
        if not actor.cause:
            actor.cause = (f"its worker process (pid {worker.pid}) died unexpectedly (it was "
                           f"killed, crashed, or exited)")
        retry, failed, doubtful = [], [], []
        for task in actor.inflight.values():
            if task.spec.direct_worker is not None and task.submitter is not None:
                doubtful.append(task)  # it may have returned to its caller
            elif task.retries_left != 0 and actor.restarts_left != 0:
                if task.retries_left > 0:
                    task.retries_left -= 1
                task.state = READY
                retry.append(task)
            else:
                failed.append(task)
        actor.inflight.clear()
        actor.queue.extendleft(reversed(retry))
        for task in failed:
            host.fail_task(task, self._died_error(actor, task.spec.name))
        if actor.restarts_left != 0 and actor.state is not DEAD:
            if actor.restarts_left > 0:
                actor.restarts_left -= 1
            actor.restarts += 1
            actor.state = RESTARTING
            actor.cause = ""
            self._submit_creation(actor, None)
        else:
            self._dead(actor)
        # Results the worker made but never reported may be with their callers: keep
        # its segments while a call's bookkeeping may still arrive (see tick).
        if host.objects.adopt_reservations(worker.conn, actor):
            self._adopted[actor] = 0
        if doubtful:
            self._ask_callers(actor, worker.worker_id, doubtful)

    # -- calls in doubt -----------------------------------------------------------------
    def _ask_callers(self, actor: ActorRecord, worker_id: bytes, tasks: list) -> None:
        """Ask the callers of ``tasks``, sent straight to the dead worker ``worker_id``,
        which of them returned."""
        by_caller: dict = {}
        for task in tasks:
            self._doubt_order += 1
            actor.doubts[task.spec.task_id] = (self._doubt_order, task)
            by_caller.setdefault(task.submitter, []).append(task)
        for caller, calls in by_caller.items():
            caller.send(p.CallsInDoubt(actor.spec.actor_id, worker_id, [
                (t.spec.task_id, t.spec.num_returns) for t in calls]))

    def calls_received(self, caller, msg: p.CallsReceived, caller_left: bool = False
                       ) -> None:
        """``caller`` says which of its calls in doubt returned: finish those, run the
        others again if the actor lives on and their retries allow (and the caller is
        still there to want them), else fail them."""
        actor = self.actors.get(msg.actor_id)
        if actor is None or not actor.doubts:
            return
        host = self._host
        got = dict(msg.received)
        asked = None if msg.asked is None else set(msg.asked)
        for task_id, (order, task) in list(actor.doubts.items()):
            if task.submitter is not caller or (asked is not None and task_id not in asked):
                continue
            del actor.doubts[task_id]
            results = got.get(task_id)
            if results is not None:
                host.finish_task(task, self._received(actor, task, results),
                                 tell_submitter=False)
            elif task.retries_left != 0 and actor.state is not DEAD and not caller_left:
                if task.retries_left > 0:
                    task.retries_left -= 1
                task.state = READY
                actor.rerun.append((order, task))
            else:
                host.fail_task(task, self._died_error(actor, task.spec.name))
        if not actor.doubts:  # all settled: the reruns go first, in the order made
            actor.rerun.sort(key=lambda entry: entry[0])
            actor.queue.extendleft(reversed([task for _, task in actor.rerun]))
            actor.rerun = []
        self.pump(actor)

    def tick(self) -> None:
        """Called every second: a dead worker's segments no call in doubt claimed are
        released once ADOPTED_TICKS ticks passed with none in doubt."""
        for actor, ticks in list(self._adopted.items()):
            if actor.doubts:
                continue
            if ticks < ADOPTED_TICKS:
                self._adopted[actor] = ticks + 1
                continue
            del self._adopted[actor]
            self._host.objects.release_reservations(actor)

    def _received(self, actor: ActorRecord, task, results: list) -> list[p.ObjectData]:
        """The results a caller got, as the directory stores them: a large one is in a
        segment the dead worker reserved (a caller on another node only knows where)."""
        objects = self._host.objects
        out = []
        for i, data in enumerate(results):
            if data is not None and data.where is not None:
                data = objects.reserved_segment(
                    actor, ids.object_id_for_return(task.spec.task_id, i), data)
            if data is None:  # the caller had dropped it: nobody else can have it
                data = error_data(exc.ObjectLostError(
                    f"A result of {task.spec.name} was dropped by its caller before its "
                    f"actor's worker died."))
            elif data.shm is not None:
                objects.seal(actor, data.shm)
            out.append(data)
        return out

    def owner_gone(self, owner) -> None:
        """``owner`` (a driver, or the process of a task or actor) is gone: the actors it
        created end with it, detached ones aside."""
        for actor in list(self.actors.values()):
            if actor.owner is owner and not actor.spec.detached and actor.state is not DEAD:
                self.kill(p.KillActor(actor.spec.actor_id, True),
                          cause="its owner (the driver, task or actor that created it) "
                                "exited")

    def owns_actors(self, owner) -> bool:
        return any(a.owner is owner and a.state is not DEAD for a in self.actors.values())

    def caller_gone(self, caller) -> None:
        """``caller`` disconnected: none of its calls in doubt returned to anyone."""
        for actor in [a for a in self.actors.values() if a.doubts]:
            self.calls_received(caller, p.CallsReceived(actor.spec.actor_id, None, []),
                                caller_left=True)

    def _dead(self, actor: ActorRecord, constructor_error: p.ObjectData | None = None) -> None:
        actor.state = DEAD
        self._answer_address_waiters(actor)
        host = self._host
        reruns, actor.rerun = [task for _, task in actor.rerun], []
        while actor.queue:
            reruns.append(actor.queue.popleft())
        for task in reruns:
            if task.state is not DONE:
                host.fail_task(task, self._died_error(actor, task.spec.name, constructor_error))
        spec = actor.spec
        table = host.objects.table
        if spec.name and self.named.get((spec.namespace, spec.name)) == spec.actor_id:
            del self.named[(spec.namespace, spec.name)]
            table.unpin(actor.creation_oid)
        elif spec.detached:
            table.unpin(actor.creation_oid)
        for oid in spec.deps + spec.contained:
            table.unpin(oid)
        self._constructor_errors[spec.actor_id] = constructor_error
        self._dead_order.append(spec.actor_id)
        while len(self._dead_order) > self.DEAD_KEPT:
            forgotten = self._dead_order.popleft()
            record = self.actors.pop(forgotten, None)
            self._constructor_errors.pop(forgotten, None)
            if record is not None:
                self._by_creation.pop(record.creation_oid, None)

    def _died_error(self, actor: ActorRecord, call: str,
                    constructor_error: p.ObjectData | None = None) -> exc.ActorDiedError:
        constructor_error = constructor_error or self._constructor_errors.get(
            actor.spec.actor_id)
        cause = None
        if constructor_error is not None and constructor_error.inline is not None:
            try:
                cause = pickle.loads(constructor_error.inline)
            except Exception:  # the cause cannot be rebuilt here; its text is enough
                cause = None
        why = actor.cause or "its worker process died while the call was on its way to it"
        text = (f"The actor {actor.name} (id {actor.spec.actor_id.hex()}) is dead because "
                f"{why}, so {call} cannot run.")
        if cause is not None:
            text += f"\nThe constructor failed with:\n{cause}"
        error = exc.ActorDiedError(text)
        error.cause = cause
        return error

    def kill(self, msg: p.KillActor, cause: str = "it was killed with rayling.kill()"
             ) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is None or actor.state is DEAD:
            return
        if msg.no_restart:
            actor.restarts_left = 0
        actor.cause = cause
        if actor.worker is not None:
            self._stop(actor)
        elif msg.no_restart:
            self._cancel_pending_creation(actor)
            self._dead(actor)

    def group_removed(self, pg_hex: str, why: str) -> None:
        """The placement group ``pg_hex`` was removed: the actors placed in it end."""
        from .placement_groups import group_of

        for actor in list(self.actors.values()):
            if actor.state is not DEAD and (group_of(actor.spec.hold) == pg_hex
                                            or group_of(actor.spec.place) == pg_hex):
                self.kill(p.KillActor(actor.spec.actor_id, True),
                          f"its placement group {pg_hex} was removed ({why})")

    def _cancel_pending_creation(self, actor: ActorRecord) -> None:
        tasks = self._host.tasks
        creation = tasks.get(actor.spec.task_id)
        if creation is not None and creation.state is not RUNNING:
            creation.cancelled = True
            tasks.remove(creation)

    def object_freed(self, oid: bytes) -> None:
        """An object was freed: if it kept an actor alive, its last handle is gone, and
        the actor ends once its queued calls are done."""
        actor = self._by_creation.pop(oid, None)
        if actor is None:
            return
        actor.handles_gone = True
        if actor.state in (PENDING, RESTARTING) and actor.worker is None:
            actor.cause = "all handles to it went out of scope"
            self._cancel_pending_creation(actor)
            self._dead(actor)
        else:
            self.pump(actor)

    # -- where callers reach it directly ------------------------------------------------
    def answer_address(self, conn, req_id: int, actor_id: bytes) -> None:
        """Where the actor's worker listens; asked before the actor is up, answered then."""
        actor = self.actors.get(actor_id)
        if actor is not None and (actor.state in (PENDING, RESTARTING) or actor.stopping):
            actor.address_waiters.append((conn, req_id))
        else:
            conn.send(p.Reply(req_id, _address(actor, conn)))

    def _answer_address_waiters(self, actor: ActorRecord) -> None:
        for conn, req_id in actor.address_waiters:
            conn.send(p.Reply(req_id, _address(actor, conn)))
        actor.address_waiters = []

    # -- resources ----------------------------------------------------------------------
    def blocked(self, actor: ActorRecord, delta: int) -> bool:
        """An actor waiting in get/wait lends the CPUs it holds, as a blocked task does,
        so the tasks it waits for can run. True if it lent them now."""
        actor.blocked = max(0, actor.blocked + delta)
        cpu = actor.hold.get("CPU", 0)
        if actor.state is not ALIVE or not cpu:
            return False
        node = actor.worker.node
        if actor.blocked and not actor.lent_cpu:
            actor.lent_cpu = cpu
            self._host.scheduler.unhold(node, {"CPU": cpu})
            return True
        if not actor.blocked and actor.lent_cpu:
            self._host.scheduler.hold(node, {"CPU": actor.lent_cpu})
            actor.lent_cpu = 0
        return False

    def held_warning(self, task, tasks_running) -> str | None:
        """A task waits for resources that only actors hold: the text that says so (once
        per shape), unless ``tasks_running()``: they will free resources anyway."""
        if task.shape in self._warned_held or tasks_running():
            return None
        holders = [a for a in self.actors.values() if a.state is ALIVE and a.hold]
        if not holders:
            return None
        self._warned_held.add(task.shape)
        names = ", ".join(sorted(f"{a.name} ({a.spec.actor_id.hex()[:8]})" for a in holders))
        return (f"Task {task.spec.name} is waiting for resources that actors hold for their "
                f"whole life: {names}. It will start when one of them ends (rayling.kill(handle)"
                f" or dropping every handle), or create the actors with fewer resources.")


def _address(actor: ActorRecord | None, caller) -> dict | None:
    """Where ``caller`` reaches the actor's worker: its unix socket from the same node,
    its TCP address from another one (None: go through the daemon)."""
    if actor is None or actor.state is not ALIVE or actor.stopping:
        return None
    worker = actor.worker
    same_node = worker.node is getattr(caller, "node", None)
    if same_node and worker.conn.listen_path:
        path = worker.conn.listen_path
    elif worker.conn.listen_tcp and getattr(caller, "listen_tcp", ""):
        path = "tcp:" + worker.conn.listen_tcp  # (the worker answers on the caller's)
    else:
        return None
    return {"path": path, "worker_id": worker.worker_id, "node_id": worker.node.node_id}
