"""The head's table of tasks not finished yet, and what each waits for (pure logic).

    SubmitTask ──> WAITING (for argument objects) ──> READY (in a ready queue, or an
                       actor's queue) ──> RUNNING (on a worker) ──> DONE (results stored)
                                              │ its worker died
                                              └──> READY again while retries are left

A task record is created by the controller, queued by the Scheduler (or the
ActorDirectory for actor calls) and removed here when it is done. The table owns the
records and the map from each missing argument to the tasks waiting for it.
"""

from __future__ import annotations

import enum
import time

from . import protocol as p


class TaskState(enum.Enum):
    WAITING = "waiting"  # for argument objects to exist
    READY = "ready"  # queued: resources and a worker (or its actor's turn) wanted
    RUNNING = "running"  # sent to a worker
    DONE = "done"  # results stored, failed, or cancelled


WAITING = TaskState.WAITING
READY = TaskState.READY
RUNNING = TaskState.RUNNING
DONE = TaskState.DONE


class TaskRecord:
    __slots__ = (
        "spec", "submitter", "request", "shape", "retries_left", "waiting_on",
        "state", "worker", "gpu_ids", "cancelled", "lent_cpu", "pinned", "node",
        "is_actor_call", "parent", "items", "consumed", "created", "started", "attempt",
        "where",
    )

    def __init__(self, spec: p.SubmitTask, submitter, request: dict[str, int]) -> None:
        self.spec = spec
        self.submitter = submitter  # the connection that submitted it (None: the head)
        self.request = request  # resources in units (resources.UNIT)
        self.shape = (tuple(sorted(request.items())), spec.strategy)  # its ready queue
        self.retries_left = spec.max_retries  # -1: forever
        self.waiting_on = 0  # number of argument objects that do not exist yet
        self.state = WAITING
        self.worker = None  # the WorkerRecord running it
        self.gpu_ids: list[int] = []
        self.cancelled = False
        self.lent_cpu = 0  # CPU units given back while the task blocks in get/wait
        self.pinned = True  # it pins its arguments (an actor's creation task does not)
        self.node = None  # the NodeRecord whose resources it holds
        # A method call of an actor (not the actor's creation task):
        self.is_actor_call = spec.actor_id is not None and spec.method != "__init__"
        self.parent: bytes | None = None  # id of the task that submitted it, if known
        self.items = 0  # a streaming task's values its submitter has been told of
        self.consumed = 0  # ... and has taken (a paced stream)
        # For the task history (task_events.py): this attempt's times and worker.
        self.created = time.time()
        self.started: float | None = None
        self.attempt = 0
        self.where: tuple | None = None  # (node id, worker id, pid) it runs on


def ran_on(worker) -> tuple[bytes, bytes, int]:
    """What a TaskRecord notes of the worker it runs on (its ``where``)."""
    return worker.node.node_id, worker.worker_id, worker.pid


class TaskTable:
    def __init__(self) -> None:
        self.tasks: dict[bytes, TaskRecord] = {}
        self.waiters: dict[bytes, list[TaskRecord]] = {}  # object id -> tasks needing it

    def __len__(self) -> int:
        return len(self.tasks)

    def add(self, task: TaskRecord) -> None:
        self.tasks[task.spec.task_id] = task

    def get(self, task_id: bytes) -> TaskRecord | None:
        return self.tasks.get(task_id)

    def remove(self, task: TaskRecord) -> None:
        """The task is done: it leaves the table."""
        task.state = DONE
        self.tasks.pop(task.spec.task_id, None)

    def wait_for(self, task: TaskRecord, oid: bytes) -> None:
        """``task`` cannot start before object ``oid`` exists."""
        task.waiting_on += 1
        waiting = self.waiters.get(oid)
        if waiting is None:
            self.waiters[oid] = [task]
        else:
            waiting.append(task)

    def object_arrived(self, oid: bytes) -> list[TaskRecord]:
        """``oid`` exists now: the tasks that no longer wait for anything."""
        waiting = self.waiters.pop(oid, None)
        ready = []
        if waiting:
            for task in waiting:
                if task.state is WAITING and not task.cancelled:
                    task.waiting_on -= 1
                    if task.waiting_on == 0:
                        ready.append(task)
        return ready

    def submitted_by(self, conn) -> list[TaskRecord]:
        """Unfinished tasks (not actor calls or creations) ``conn`` submitted."""
        return [t for t in self.tasks.values()
                if t.submitter is conn and t.spec.actor_id is None]

    def owns_any(self, conn) -> bool:
        """Has ``conn`` submitted a task (not an actor call or creation) still running
        or queued?"""
        return any(t.submitter is conn and t.spec.actor_id is None
                   for t in self.tasks.values())

    def children_of(self, task_id: bytes) -> list[TaskRecord]:
        """Unfinished tasks that the task ``task_id`` submitted while it ran."""
        return [t for t in self.tasks.values() if t.parent == task_id]

    @staticmethod
    def retry_after_exception(task: TaskRecord, results: list[p.ObjectData]) -> bool:
        """It raised an exception its retry_exceptions names: run it again (spending a
        retry) or not. Not if values it produced first went to shared memory (a
        generator's): they stand as its results."""
        if task.cancelled or task.retries_left == 0 or any(d.shm for d in results):
            return False
        if task.retries_left > 0:
            task.retries_left -= 1
        return True

    @staticmethod
    def retry_after_worker_death(task: TaskRecord) -> bool:
        """Its worker died while running it: run it again (spending a retry) or not."""
        if task.cancelled or task.retries_left == 0:
            return False
        if task.retries_left > 0:
            task.retries_left -= 1
        return True
