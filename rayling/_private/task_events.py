"""The head's bounded history of tasks, for the state API (``list_tasks``, ``rayling
list tasks``, the dashboard, ``timeline``): one record per attempt of each task, with
Ray's states and times (pure logic, no I/O).

    submitted ──> PENDING_ARGS_AVAIL (its arguments do not exist yet)
              ──> PENDING_NODE_ASSIGNMENT (queued for resources, a worker, or its actor)
              ──> RUNNING (sent to a worker) ──> FINISHED | FAILED (with the error)
    a retry ends the attempt as FAILED and starts the next one (attempt_number + 1)

The controller reports each transition; a task submitted with enable_task_events=False
is never recorded. At most ``capacity`` records are kept: past it, the oldest finished
ones go first, so memory stays bounded on long runs (unfinished tasks are bounded by
the task table itself).
"""

from __future__ import annotations

import time
from collections import deque

from . import ids, protocol as p
from .placement_groups import group_of

PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
RUNNING = "RUNNING"
FINISHED = "FINISHED"
FAILED = "FAILED"

DEFAULT_CAPACITY = 100_000


class TaskEvent:
    """One attempt of one task, as the state API shows it."""

    __slots__ = ("task_id", "attempt", "name", "kind", "actor_id", "parent", "state",
                 "node_id", "worker_id", "pid", "created", "started", "ended", "error",
                 "resources", "error_text")

    def __init__(self, spec: p.SubmitTask, attempt: int, parent: bytes | None,
                 created: float) -> None:
        self.task_id = spec.task_id
        self.attempt = attempt
        self.name = spec.name
        self.kind = ("NORMAL_TASK" if spec.actor_id is None else
                     "ACTOR_CREATION_TASK" if spec.method == "__init__" else "ACTOR_TASK")
        self.actor_id = spec.actor_id
        self.parent = parent
        self.state = PENDING_NODE_ASSIGNMENT
        self.node_id: bytes | None = None
        self.worker_id: bytes | None = None
        self.pid: int | None = None
        self.created = created  # wall-clock seconds
        self.started: float | None = None
        self.ended: float | None = None
        self.error: bytes | None = None  # the pickled exception of a failed attempt
        self.error_text = ""  # why an attempt failed when there is no exception to show
        self.resources = spec.resources

    def info(self) -> dict:
        """The record as a Query answer (msgspec-encodable)."""
        return {
            "task_id": self.task_id.hex(), "attempt_number": self.attempt,
            "name": self.name, "func_or_class_name": self.name, "state": self.state,
            "job_id": self.task_id[-ids.JOB_ID_LEN:].hex(), "type": self.kind,
            "actor_id": self.actor_id.hex() if self.actor_id else None,
            "parent_task_id": self.parent.hex() if self.parent else None,
            "node_id": self.node_id.hex() if self.node_id else None,
            "worker_id": self.worker_id.hex() if self.worker_id else None,
            "worker_pid": self.pid,
            "required_resources": dict(self.resources),
            "placement_group_id": group_of(self.resources),
            "creation_time_ms": _ms(self.created), "start_time_ms": _ms(self.started),
            "end_time_ms": _ms(self.ended), "error": self.error,
            "error_message": self.error_text or None,
        }


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


class TaskEvents:
    def __init__(self, capacity: int = DEFAULT_CAPACITY, clock=time.time) -> None:
        self.capacity = capacity
        self.clock = clock
        self.records: dict[tuple[bytes, int], TaskEvent] = {}  # every kept attempt
        self.live: dict[bytes, TaskEvent] = {}  # task id -> its attempt now, until it ends
        self._ended: deque[tuple[bytes, int]] = deque()  # finished attempts, oldest first
        self.dropped = 0  # records let go to stay within capacity

    def __len__(self) -> int:
        return len(self.records)

    def submitted(self, spec: p.SubmitTask, parent: bytes | None, waits: bool) -> None:
        attempt = 0
        while (spec.task_id, attempt) in self.records:  # (a restarted actor's creation)
            attempt += 1
        event = TaskEvent(spec, attempt, parent, self.clock())
        if waits:
            event.state = PENDING_ARGS_AVAIL
        self.records[(spec.task_id, attempt)] = event
        self.live[spec.task_id] = event

    def ready(self, task_id: bytes) -> None:
        event = self.live.get(task_id)
        if event is not None:
            event.state = PENDING_NODE_ASSIGNMENT

    def running(self, task_id: bytes, worker) -> None:
        event = self.live.get(task_id)
        if event is not None:
            event.state = RUNNING
            event.started = self.clock()
            event.node_id = worker.node.node_id
            event.worker_id = worker.worker_id
            event.pid = worker.pid

    def ended(self, task_id: bytes, results: list[p.ObjectData]) -> None:
        event = self.live.pop(task_id, None)
        if event is None:
            return
        failure = next((d for d in results if d.error), None)
        if failure is not None:
            event.error = failure.inline
        self._end(event, FAILED if failure is not None else FINISHED)

    def failed(self, task_id: bytes, why: str) -> None:
        """The attempt ended without results (``why``: what happened)."""
        event = self.live.pop(task_id, None)
        if event is not None:
            event.error_text = why
            self._end(event, FAILED)

    def retried(self, task_id: bytes, why: str, error: bytes | None = None) -> None:
        """The attempt failed (``why``; ``error``: the exception it raised) and the task
        runs again as the next attempt."""
        event = self.live.get(task_id)
        if event is None:
            return
        event.error, event.error_text = error, why
        self._end(event, FAILED)
        retry = TaskEvent.__new__(TaskEvent)
        for field in TaskEvent.__slots__:
            setattr(retry, field, getattr(event, field))
        retry.attempt = event.attempt + 1
        retry.state = PENDING_NODE_ASSIGNMENT
        retry.created = self.clock()
        retry.started = retry.ended = retry.error = retry.pid = None
        retry.node_id = retry.worker_id = None
        retry.error_text = ""
        self.records[(task_id, retry.attempt)] = retry
        self.live[task_id] = retry

    def _end(self, event: TaskEvent, state: str) -> None:
        event.state = state
        event.ended = self.clock()
        key = (event.task_id, event.attempt)
        self._ended.append(key)
        while len(self.records) > self.capacity and self._ended:
            if self.records.pop(self._ended.popleft(), None) is not None:
                self.dropped += 1

    def list(self) -> list[dict]:
        return [event.info() for event in self.records.values()]
