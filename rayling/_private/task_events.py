"""The head's bounded history of tasks, for the state API (``list_tasks``, ``rayling
list tasks``, the dashboard, ``timeline``): one record per attempt of each task, with
Ray's states and times (pure logic, no I/O).

    PENDING_ARGS_AVAIL (its arguments do not exist yet: TaskState.WAITING)
    PENDING_NODE_ASSIGNMENT (queued for resources, a worker or its actor: READY)
    RUNNING (sent to a worker) ──> FINISHED | FAILED (with the error)
    a task's retry (its worker died, or retry_exceptions) ends the attempt as FAILED
    and starts the next one (attempt_number + 1); an actor call rerun after its actor
    restarted keeps its attempt

Recording costs little on the task path: an unfinished task is shown from its own
TaskRecord (the task table's, which notes when it was submitted and started), and a
record of its own is made only when an attempt ends. A task submitted with
enable_task_events=False is never shown. At most ``capacity`` ended attempts are kept:
past it the oldest go first, so memory stays bounded on long runs (unfinished tasks
are bounded by the task table itself).
"""

from __future__ import annotations

import time
from collections import deque

from . import ids, protocol as p
from .placement_groups import group_of
from .task_table import READY, RUNNING as TASK_RUNNING, WAITING

PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"

DEFAULT_CAPACITY = 100_000
MAX_ERROR = 64 << 10  # a longer pickled error is not kept (its record says so)

_LIVE_STATES = {WAITING: PENDING_ARGS_AVAIL, READY: PENDING_NODE_ASSIGNMENT,
                TASK_RUNNING: RUNNING}


class TaskEvent:
    """One ended attempt of one task: what its row shows (not the task's arguments)."""

    __slots__ = ("task_id", "name", "actor_id", "method", "resources", "attempt", "parent",
                 "state", "worker", "created", "started", "ended", "error", "error_text")

    def __init__(self, task, state: str, ended: float, error: bytes | None,
                 error_text: str) -> None:
        spec = task.spec
        self.task_id, self.name, self.actor_id = spec.task_id, spec.name, spec.actor_id
        self.method, self.resources = spec.method, spec.resources
        self.attempt = task.attempt
        self.parent = task.parent
        self.state = state
        self.worker = task.where
        self.created = task.created
        self.started = task.started
        self.ended = ended
        self.error = error  # the pickled exception of a failed attempt
        self.error_text = error_text  # why it failed when there is no exception to show

    def info(self) -> dict:
        return _row(self, self.attempt, self.parent, self.state, self.worker,
                    self.created, self.started, self.ended, self.error, self.error_text)


def live_info(task) -> dict:
    """The row of an unfinished task, from its TaskRecord."""
    state = _LIVE_STATES.get(task.state, PENDING_NODE_ASSIGNMENT)
    return _row(task.spec, task.attempt, task.parent, state, task.where, task.created,
                task.started, None, None, "")



def _row(spec, attempt: int, parent: bytes | None, state: str, where: tuple | None,
         created: float, started: float | None, ended: float | None, error: bytes | None,
         error_text: str) -> dict:
    """A task attempt as a Query answer (msgspec-encodable), with Ray's field names;
    ``spec``: its SubmitTask or TaskEvent (both have its id, name, actor id, method and
    resources)."""
    node_id, worker_id, pid = where or (None, None, None)
    return {
        "task_id": spec.task_id.hex(), "attempt_number": attempt, "name": spec.name,
        "func_or_class_name": spec.name, "state": state,
        "job_id": spec.task_id[-ids.JOB_ID_LEN:].hex(),
        "type": kind_of(spec),
        "actor_id": spec.actor_id.hex() if spec.actor_id else None,
        "parent_task_id": parent.hex() if parent else None,
        "node_id": node_id.hex() if node_id else None,
        "worker_id": worker_id.hex() if worker_id else None, "worker_pid": pid,
        "required_resources": dict(spec.resources),
        "placement_group_id": group_of(spec.resources),
        "creation_time_ms": _ms(created), "start_time_ms": _ms(started),
        "end_time_ms": _ms(ended), "error": error, "error_message": error_text or None,
    }


def kind_of(spec) -> str:
    """Ray's task type of a SubmitTask or TaskEvent."""
    if spec.actor_id is None:
        return "NORMAL_TASK"
    return "ACTOR_CREATION_TASK" if spec.method == "__init__" else "ACTOR_TASK"


def summary(events: TaskEvents, unfinished) -> dict:
    """Tasks by name: type and how many are in each state (each task's latest attempt;
    ``unfinished``: the task table's records), with the totals Ray's summary shows."""
    latest: dict[bytes, tuple[str, str, str]] = {}
    for event in events.records:  # (oldest first: a later attempt replaces an earlier)
        latest[event.task_id] = (event.name, kind_of(event), event.state)
    for task in unfinished:
        if task.spec.events:
            latest[task.spec.task_id] = (task.spec.name, kind_of(task.spec),
                                         _LIVE_STATES.get(task.state, PENDING_NODE_ASSIGNMENT))
    by_name: dict[str, dict] = {}
    kinds = {"ACTOR_TASK": 0, "ACTOR_CREATION_TASK": 0}
    for name, kind, state in latest.values():
        entry = by_name.get(name)
        if entry is None:
            entry = by_name[name] = {"func_or_class_name": name, "type": kind,
                                     "state_counts": {}}
        counts = entry["state_counts"]
        counts[state] = counts.get(state, 0) + 1
        if kind in kinds:
            kinds[kind] += 1
    return {"summary": by_name, "total_tasks": len(latest),
            "total_actor_tasks": kinds["ACTOR_TASK"],
            "total_actor_scheduled": kinds["ACTOR_CREATION_TASK"], "summary_by": "func_name"}


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class TaskEvents:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock=time.time) -> None:
        self.clock = clock
        # Ended attempts, oldest first; past ``capacity`` the oldest goes.
        self.records: deque[TaskEvent] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.records)

    def ended(self, task, results: list[p.ObjectData], failed: bool = False) -> None:
        """The task is done (``failed``: it raised, though its results may not show
        it: a task of no returns, a stream whose last item is the error)."""
        if not task.spec.events:
            return
        error, why = None, ""
        for data in results:
            if data.error:
                error = data.inline or b""
                break
        if error is not None and len(error) > MAX_ERROR:
            error, why = None, f"(its error, {len(error)} bytes pickled, is too large to keep)"
        if failed and error is None and not why:
            why = "it raised an exception (see its log, or its stream's last value)"
        state = FAILED if failed or error is not None or why else FINISHED
        self.records.append(TaskEvent(task, state, self.clock(), error, why))

    def failed(self, task, why: str, error: bytes | None = None) -> None:
        """The attempt ended without results (``why``), or raised ``error`` and will be
        retried: its record. The task's next attempt starts from now."""
        if task.spec.events:
            self.records.append(TaskEvent(task, FAILED, self.clock(), error, why))
        task.attempt += 1
        task.created, task.started, task.where = self.clock(), None, None
