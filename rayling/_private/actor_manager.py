"""The node daemon's actor decisions: a part of NodeManager kept in its own file.

An actor is an instance of a user class living in one dedicated worker process::

    CreateActor ─▶ creation task queued like any task (needs the "place" resources)
                      │ runs __init__ on a pool worker, which then belongs to the actor
                      ▼
                   ALIVE (holds the "hold" resources) ──worker died──▶ restart while
                      │                                               max_restarts allows
                      │ kill(), exit_actor(), last handle dropped, __init__ raised,
                      ▼ or no restarts left
                    DEAD: every queued and later call fails with ActorDiedError

Method calls arrive as SubmitTask with an actor id and join the actor's queue in arrival
order. Calls whose arguments are ready are sent to the actor's worker at once, in order
(pipelined); the worker runs them one at a time, or concurrently for threaded and async
actors. A call never waits behind a later one, and never runs before an earlier one
from the same queue.

Every handle holds a ref to the creation task's result, so when the last handle is gone
that object is freed and the actor ends (named and detached actors pin it instead).
"""

from __future__ import annotations

from collections import deque

from .. import exceptions as exc
from . import ids, protocol as p
from .resources import to_units

PENDING, ALIVE, RESTARTING, DEAD = "pending", "alive", "restarting", "dead"


class ActorRecord:
    __slots__ = (
        "spec", "state", "worker", "queue", "inflight", "restarts_left", "cause",
        "hold", "handles_gone", "creation_oid", "gpu_ids", "blocked", "lent_cpu",
        "address_waiters",
    )

    def __init__(self, spec: p.CreateActor) -> None:
        self.spec = spec
        self.state = PENDING
        self.worker = None
        self.queue: deque = deque()  # calls not sent to the worker yet, in order
        self.inflight: dict[bytes, object] = {}  # calls sent to the worker, in order
        self.restarts_left = spec.max_restarts
        self.cause = ""
        self.hold = to_units(spec.hold)
        self.handles_gone = False
        self.creation_oid = ids.object_id_for_return(spec.task_id, 0)
        self.gpu_ids: list[int] = []  # GPUs the actor keeps for its life
        self.blocked = 0  # its calls now waiting in get/wait
        self.lent_cpu = 0  # held CPU units lent to others while every call waits
        self.address_waiters: list = []  # (conn, req_id) asking where the worker listens

    @property
    def name(self) -> str:
        return self.spec.class_name

    def info(self) -> dict:
        spec = self.spec
        return {
            "actor_id": spec.actor_id, "class_name": spec.class_name, "methods": spec.methods,
            "creation_task": spec.task_id, "is_async": spec.is_async,
            "max_task_retries": spec.max_task_retries, "state": self.state.upper(),
            "name": spec.name, "namespace": spec.namespace,
            "pid": self.worker.pid if self.worker else None,
        }


class ActorManagerMixin:
    """Mixed into NodeManager; uses its objects, pool, tasks and workers."""

    def _init_actors(self) -> None:
        self.actors: dict[bytes, ActorRecord] = {}
        self.named_actors: dict[tuple[str, str], bytes] = {}
        self.actor_by_creation: dict[bytes, ActorRecord] = {}
        self._parked: dict[bytes, p.TaskDone] = {}  # direct calls done before announced
        self._warned_held: set[tuple] = set()

    # -- creation ---------------------------------------------------------------------
    def _on_create_actor(self, conn, msg: p.CreateActor) -> None:
        key = (msg.namespace, msg.name)
        if msg.name:
            existing = self.actors.get(self.named_actors.get(key, b""))
            if existing is not None and existing.state != DEAD:
                if msg.get_if_exists:
                    conn.send(p.Reply(msg.req_id, {**existing.info(), "existing": True}))
                else:
                    conn.send(p.Reply(msg.req_id, None, (
                        f"An actor named {msg.name!r} already exists in namespace "
                        f"{msg.namespace!r}. Use rayling.get_actor({msg.name!r}) to get a "
                        f"handle to it, or pass get_if_exists=True.")))
                return
        actor = ActorRecord(msg)
        self.actors[msg.actor_id] = actor
        self.actor_by_creation[actor.creation_oid] = actor
        if msg.name:
            self.named_actors[key] = msg.actor_id
        self.objects.expect(actor.creation_oid, conn)
        if msg.name or msg.detached:
            self.objects.pin(actor.creation_oid)  # lives until killed
        for oid in msg.deps + msg.contained:
            self.objects.pin(oid)  # the constructor's arguments, kept for restarts
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
        self._admit_task(creation, submitter, pin_args=False, expect_returns=False)

    def _creation_done(self, task, worker, results: list[p.ObjectData]) -> None:
        actor = self.actors[task.spec.actor_id]
        if actor.hold.get("GPU"):  # the GPUs the constructor ran with stay the actor's
            actor.gpu_ids, task.gpu_ids = task.gpu_ids, []
        self._release_task_resources(task)
        self.tasks.pop(task.spec.task_id, None)
        task.state = "done"
        data = results[0] if results else None
        if actor.state == DEAD:
            worker.node.agent.kill(worker.pid)
            return
        if data is None or data.error:
            # The constructor raised: the actor is dead, and its error is the cause.
            subscribers = self.objects.set_ready(actor.creation_oid, data)
            self._object_ready(actor.creation_oid, subscribers, data)
            actor.cause = "its constructor raised an exception"
            self._actor_dead(actor, constructor_error=data)
            worker.node.agent.kill(worker.pid)
            self.dispatch()
            return
        worker.node.pool.acquire(actor.hold)
        actor.state = ALIVE
        self._answer_address_waiters(actor)
        if self.objects.get(actor.creation_oid) is None:
            subscribers = self.objects.set_ready(actor.creation_oid, data)
            self._object_ready(actor.creation_oid, subscribers, data)
        self._pump_actor(actor)
        self.dispatch()  # the placement resources are free again

    # -- calls ------------------------------------------------------------------------
    def _queue_actor_call(self, task) -> None:
        spec = task.spec
        if spec.direct_worker is not None:
            parked = self._parked.pop(spec.task_id, None)
            if parked is not None:  # the worker finished it before we heard of it
                self._finish_task(task, parked.results, tell_submitter=not parked.direct)
                return
            actor = self.actors.get(spec.actor_id)
            if (actor is not None and actor.state == ALIVE
                    and actor.worker.worker_id == spec.direct_worker):
                task.state = "running"  # the caller sent it to the worker itself
                task.worker = actor.worker
                actor.inflight[spec.task_id] = task
                return
            # It reached a worker that has died since: like a call running at its death,
            # it runs again only if max_task_retries allows.
            if actor is None or actor.state == DEAD or task.retries_left == 0:
                self._fail_task(task, self._actor_died_error(actor, spec.name)
                                if actor is not None else exc.ActorDiedError(
                                    f"{spec.name} was sent to an actor that no longer exists."))
                return
            if task.retries_left > 0:
                task.retries_left -= 1
        actor = self.actors.get(task.spec.actor_id)
        if actor is None:
            self._fail_task(task, exc.ActorDiedError(
                f"Method {task.spec.name} was called on an actor this node does not know "
                f"(id {task.spec.actor_id.hex()})."))
            return
        if actor.state == DEAD:
            self._fail_task(task, self._actor_died_error(actor, task.spec.name))
            return
        actor.queue.append(task)

    def _pump_actor(self, actor: ActorRecord) -> None:
        """Send every call at the head of the queue whose arguments are ready."""
        if actor.state == ALIVE:
            queue = actor.queue
            while queue:
                task = queue[0]
                if task.state == "done":  # cancelled while queued
                    queue.popleft()
                    continue
                if task.state != "ready":
                    break
                queue.popleft()
                task.state = "running"
                task.worker = actor.worker
                actor.inflight[task.spec.task_id] = task
                self._send_execute(task, actor.worker, actor)
        if actor.handles_gone and not actor.queue and not actor.inflight and actor.state != DEAD:
            actor.restarts_left = 0
            actor.cause = "all handles to it went out of scope"
            if actor.worker is not None:
                actor.worker.node.agent.kill(actor.worker.pid)
            else:
                self._actor_dead(actor)

    def _actor_call_done(self, actor: ActorRecord, msg: p.TaskDone) -> None:
        task = actor.inflight.pop(msg.task_id, None) or self.tasks.get(msg.task_id)
        if task is None:
            # A call sent straight here whose caller's SubmitTask is still on the way
            # (its results went to the caller, or, if the caller could not be reached,
            # they are in this message and go out when the SubmitTask arrives).
            self._parked[msg.task_id] = msg
        elif task.state != "done":
            task.state = "done"  # (if it was queued again after a restart, skip it)
            self._finish_task(task, msg.results, tell_submitter=not msg.direct)
        if msg.actor_exit:
            actor.restarts_left = 0
            actor.cause = "it called exit_actor()"
            actor.worker.node.agent.kill(actor.worker.pid)
        self._pump_actor(actor)

    # -- death ------------------------------------------------------------------------
    def _actor_worker_died(self, actor: ActorRecord, worker) -> None:
        if actor.state == ALIVE:
            worker.node.pool.release(actor.hold)
            if actor.lent_cpu:
                worker.node.pool.acquire({"CPU": actor.lent_cpu})
        actor.blocked = actor.lent_cpu = 0
        if actor.gpu_ids:
            worker.node.gpus.free(actor.gpu_ids, actor.hold.get("GPU", 0))
            actor.gpu_ids = []
        actor.worker = None
        if not actor.cause:
            actor.cause = (f"its worker process (pid {worker.pid}) died unexpectedly (it was "
                           f"killed, crashed, or exited)")
        retry, failed = [], []
        for task in actor.inflight.values():
            if task.retries_left != 0 and actor.restarts_left != 0:
                if task.retries_left > 0:
                    task.retries_left -= 1
                task.state = "ready"
                retry.append(task)
            else:
                failed.append(task)
        actor.inflight.clear()
        actor.queue.extendleft(reversed(retry))
        for task in failed:
            self._fail_task(task, self._actor_died_error(actor, task.spec.name))
        if actor.restarts_left != 0 and actor.state != DEAD:
            if actor.restarts_left > 0:
                actor.restarts_left -= 1
            actor.state = RESTARTING
            actor.cause = ""
            self._submit_creation(actor, None)
        else:
            self._actor_dead(actor)

    def _actor_dead(self, actor: ActorRecord,
                    constructor_error: p.ObjectData | None = None) -> None:
        actor.state = DEAD
        self._answer_address_waiters(actor)
        while actor.queue:
            task = actor.queue.popleft()
            if task.state != "done":
                self._fail_task(task, self._actor_died_error(actor, task.spec.name,
                                                             constructor_error))
        spec = actor.spec
        if spec.name and self.named_actors.get((spec.namespace, spec.name)) == spec.actor_id:
            del self.named_actors[(spec.namespace, spec.name)]
            self.objects.unpin(actor.creation_oid)
        elif spec.detached:
            self.objects.unpin(actor.creation_oid)
        for oid in spec.deps + spec.contained:
            self.objects.unpin(oid)
        self._constructor_errors[spec.actor_id] = constructor_error

    def _actor_died_error(self, actor: ActorRecord, call: str,
                          constructor_error: p.ObjectData | None = None) -> exc.ActorDiedError:
        constructor_error = constructor_error or self._constructor_errors.get(
            actor.spec.actor_id)
        cause = None
        if constructor_error is not None and constructor_error.inline is not None:
            import pickle

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

    def _on_kill_actor(self, conn, msg: p.KillActor) -> None:
        actor = self.actors.get(msg.actor_id)
        if actor is None or actor.state == DEAD:
            return
        if msg.no_restart:
            actor.restarts_left = 0
        actor.cause = "it was killed with rayling.kill()"
        if actor.worker is not None:
            actor.worker.node.agent.kill(actor.worker.pid)
        elif msg.no_restart:
            self._cancel_pending_creation(actor)
            self._actor_dead(actor)

    def _cancel_pending_creation(self, actor: ActorRecord) -> None:
        creation = self.tasks.get(actor.spec.task_id)
        if creation is not None and creation.state != "running":
            creation.cancelled = True
            creation.state = "done"
            self.tasks.pop(actor.spec.task_id, None)

    def _creation_object_freed(self, actor: ActorRecord) -> None:
        """The last handle is gone: end the actor once its queued calls are done."""
        actor.handles_gone = True
        if actor.state in (PENDING, RESTARTING) and actor.worker is None:
            actor.cause = "all handles to it went out of scope"
            self._cancel_pending_creation(actor)
            self._actor_dead(actor)
        else:
            self._pump_actor(actor)

    # -- direct calls -----------------------------------------------------------------
    def _answer_actor_address(self, conn, req_id: int, actor_id: bytes) -> None:
        """Where the actor's worker listens; asked before the actor is up, answered then."""
        actor = self.actors.get(actor_id)
        if actor is not None and actor.state in (PENDING, RESTARTING):
            actor.address_waiters.append((conn, req_id))
        else:
            conn.send(p.Reply(req_id, self._actor_address(actor, conn)))

    def _answer_address_waiters(self, actor: ActorRecord) -> None:
        for conn, req_id in actor.address_waiters:
            conn.send(p.Reply(req_id, self._actor_address(actor, conn)))
        actor.address_waiters = []

    @staticmethod
    def _actor_address(actor: ActorRecord | None, caller) -> dict | None:
        """Where ``caller`` reaches the actor's worker: its unix socket from the same node,
        its TCP address from another one (None: go through the daemon)."""
        if actor is None or actor.state != ALIVE:
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

    # -- resources --------------------------------------------------------------------
    def _actor_blocked(self, actor: ActorRecord, delta: int) -> None:
        """An actor waiting in get/wait lends the CPUs it holds, as a blocked task does,
        so the tasks it waits for can run."""
        actor.blocked = max(0, actor.blocked + delta)
        cpu = actor.hold.get("CPU", 0)
        if actor.state != ALIVE or not cpu:
            return
        if actor.blocked and not actor.lent_cpu:
            actor.lent_cpu = cpu
            actor.worker.node.pool.release({"CPU": cpu})
            self.dispatch()
        elif not actor.blocked and actor.lent_cpu:
            actor.worker.node.pool.acquire({"CPU": actor.lent_cpu})
            actor.lent_cpu = 0

    def _warn_held_by_actors(self, task) -> None:
        """A task waits for resources that only actors hold: say so instead of hanging."""
        if task.shape in self._warned_held:
            return
        if any(w.task is not None and w.actor is None for w in self.workers.values()):
            return  # running tasks will free resources
        holders = [a for a in self.actors.values() if a.state == ALIVE and a.hold]
        if not holders:
            return
        self._warned_held.add(task.shape)
        names = ", ".join(sorted(f"{a.name} ({a.spec.actor_id.hex()[:8]})" for a in holders))
        task.submitter.send(p.Warning(
            f"Task {task.spec.name} is waiting for resources that actors hold for their whole "
            f"life: {names}. It will start when one of them ends (rayling.kill(handle) or "
            f"dropping every handle), or create the actors with fewer resources."))
