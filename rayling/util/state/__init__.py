"""The state API, as Ray's ``ray.util.state``: what the cluster runs and ran. The head
keeps it (task history: ``_private/task_events.py``; the rows: ``state_tables.py``);
these functions ask it from any driver of the cluster and return records with Ray's
field names (``common.py``), filtered by ``filters=[(field, "=" | "!=", value)]`` on the
head and cut at ``limit``.

    from rayling.util.state import list_tasks, summarize_tasks
    list_tasks(filters=[("state", "=", "RUNNING")])
"""

from __future__ import annotations

import warnings
from typing import Any

from ... import exceptions as exc
from ..._private import protocol as p, serialization, session
from .common import (
    ActorState,
    JobState,
    NodeState,
    ObjectState,
    PlacementGroupState,
    StateRecord,
    TaskState,
    WorkerState,
)

DEFAULT_LIMIT = 100
DEFAULT_TIMEOUT = 30

__all__ = [
    "ActorState", "JobState", "NodeState", "ObjectState", "PlacementGroupState",
    "TaskState", "WorkerState", "get_actor", "get_job", "get_node", "get_objects",
    "get_placement_group", "get_task", "get_worker", "list_actors", "list_jobs",
    "list_nodes", "list_objects", "list_placement_groups", "list_tasks", "list_workers",
    "summarize_actors", "summarize_objects", "summarize_tasks", "timeline",
]


def _client(address: str | None):
    """This process's client; a process not connected yet connects to the cluster at
    ``address`` (default: the one running on this machine) only to ask about it."""
    return session.observe(address)


def _check_filters(filters) -> list[tuple[str, str, str]]:
    checked = []
    for item in filters or ():
        if not (isinstance(item, tuple | list) and len(item) == 3):
            raise ValueError(f"each filter is (field, predicate, value), got {item!r}")
        field, predicate, value = item
        if predicate not in ("=", "!="):
            raise ValueError(f"a filter's predicate must be '=' or '!=', got {predicate!r}")
        checked.append((str(field), predicate, str(value)))
    return checked


def _list(kind: str, record: type[StateRecord], address, filters, limit, timeout,
          raise_on_missing_output=True) -> list:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    client = _client(address)
    answer = client.query(p.StateRows(kind, _check_filters(filters), limit))
    rows, total = answer["rows"], answer["total"]
    if total > len(rows):
        warnings.warn(f"{total} {kind} match, {len(rows)} are shown (limit={limit}); "
                      f"raise limit= to see more", stacklevel=3)
    if kind == "tasks":
        rows = [_with_error(row) for row in rows]
    return [record.from_row(row) for row in rows]


_ERROR_TYPES = {"RayTaskError": "TASK_EXECUTION_EXCEPTION", "TaskCancelledError":
                "TASK_CANCELLED", "WorkerCrashedError": "WORKER_DIED",
                "ActorDiedError": "ACTOR_DIED", "ObjectLostError": "OBJECT_LOST",
                "TaskUnschedulableError": "TASK_UNSCHEDULABLE_ERROR"}


def _with_error(row: dict) -> dict:
    """A task row with ``error_type`` and ``error_message`` from the stored exception."""
    blob = row.pop("error", None)
    if blob is not None:
        try:
            error = serialization.deserialize_inline(blob)
        except Exception as e:  # noqa: BLE001 - its class is not importable here
            row["error_type"] = "TASK_EXECUTION_EXCEPTION"
            row["error_message"] = f"(the exception cannot be loaded here: {e})"
            return row
        name = type(error).__name__
        if isinstance(error, exc.RayTaskError):
            name = "RayTaskError"
        row["error_type"] = _ERROR_TYPES.get(name, name)
        row["error_message"] = str(error)
    elif row.get("error_message"):
        row["error_type"] = "WORKER_DIED" if "worker" in row["error_message"] else \
            "TASK_EXECUTION_EXCEPTION"
    return row


def list_tasks(address: str | None = None, filters: list | None = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
               detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[TaskState]:
    """Every attempt of the tasks the head remembers (the last 100,000 finished ones and
    all unfinished), oldest first."""
    return _list("tasks", TaskState, address, filters, limit, timeout)


def list_actors(address: str | None = None, filters: list | None = None,
                limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                detail: bool = False, raise_on_missing_output: bool = True,
                _explain: bool = False) -> list[ActorState]:
    return _list("actors", ActorState, address, filters, limit, timeout)


def list_objects(address: str | None = None, filters: list | None = None,
                 limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[ObjectState]:
    """One row per process holding a ref to an object (and one per object only tasks
    or other objects keep)."""
    return _list("objects", ObjectState, address, filters, limit, timeout)


def list_nodes(address: str | None = None, filters: list | None = None,
               limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
               detail: bool = False, raise_on_missing_output: bool = True,
               _explain: bool = False) -> list[NodeState]:
    return _list("nodes", NodeState, address, filters, limit, timeout)


def list_workers(address: str | None = None, filters: list | None = None,
                 limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                 detail: bool = False, raise_on_missing_output: bool = True,
                 _explain: bool = False) -> list[WorkerState]:
    """The live worker processes and drivers."""
    return _list("workers", WorkerState, address, filters, limit, timeout)


def list_jobs(address: str | None = None, filters: list | None = None,
              limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
              detail: bool = False, raise_on_missing_output: bool = True,
              _explain: bool = False) -> list[JobState]:
    return _list("jobs", JobState, address, filters, limit, timeout)


def list_placement_groups(address: str | None = None, filters: list | None = None,
                          limit: int = DEFAULT_LIMIT, timeout: int = DEFAULT_TIMEOUT,
                          detail: bool = False, raise_on_missing_output: bool = True,
                          _explain: bool = False) -> list[PlacementGroupState]:
    return _list("placement_groups", PlacementGroupState, address, filters, limit, timeout)


def _one(kind: str, record: type, field: str, value: str, address, timeout):
    return _list(kind, record, address, [(field, "=", value)], 1 << 20, timeout)


def get_task(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> TaskState | None:
    """The latest attempt of task ``id`` (hex), or None."""
    rows = _one("tasks", TaskState, "task_id", id, address, timeout)
    return max(rows, key=lambda t: t.attempt_number) if rows else None


def get_actor(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
              _explain: bool = False) -> ActorState | None:
    rows = _one("actors", ActorState, "actor_id", id, address, timeout)
    return rows[0] if rows else None


def get_node(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
             _explain: bool = False) -> NodeState | None:
    rows = _one("nodes", NodeState, "node_id", id, address, timeout)
    return rows[0] if rows else None


def get_worker(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
               _explain: bool = False) -> WorkerState | None:
    rows = _one("workers", WorkerState, "worker_id", id, address, timeout)
    return rows[0] if rows else None


def get_job(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
            _explain: bool = False) -> JobState | None:
    rows = _one("jobs", JobState, "job_id", id, address, timeout)
    return rows[0] if rows else None


def get_placement_group(id: str, address: str | None = None,
                        timeout: int = DEFAULT_TIMEOUT,
                        _explain: bool = False) -> PlacementGroupState | None:
    rows = _one("placement_groups", PlacementGroupState, "placement_group_id", id, address,
                timeout)
    return rows[0] if rows else None


def get_objects(id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                _explain: bool = False) -> list[ObjectState]:
    """Every reference to object ``id`` (hex)."""
    return _one("objects", ObjectState, "object_id", id, address, timeout)


def _counts(rows, key, state_field: str) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(key(row), {"state_counts": {}})
        counts = entry["state_counts"]
        counts[row[state_field]] = counts.get(row[state_field], 0) + 1
    return summary


def summarize_tasks(address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                    raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    """Tasks by name and type, with how many are in each state (the latest attempt of
    each task)."""
    latest: dict[str, TaskState] = {}
    for task in _list("tasks", TaskState, address, None, 1 << 30, timeout):
        latest[task.task_id] = task
    summary = _counts(latest.values(), lambda t: t.func_or_class_name, "state")
    for name, entry in summary.items():
        kind = next(t.type for t in latest.values() if t.func_or_class_name == name)
        entry.update(func_or_class_name=name, type=kind)
    return {"cluster": {"summary": summary, "total_tasks": len(latest),
                        "total_actor_tasks": sum(t.type == "ACTOR_TASK"
                                                 for t in latest.values()),
                        "total_actor_scheduled": sum(t.type == "ACTOR_CREATION_TASK"
                                                     for t in latest.values()),
                        "summary_by": "func_name"}}


def summarize_actors(address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                     raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    actors = _list("actors", ActorState, address, None, 1 << 30, timeout)
    summary = _counts(actors, lambda a: a.class_name, "state")
    for name, entry in summary.items():
        entry["class_name"] = name
    return {"cluster": {"summary": summary, "total_actors": len(actors),
                        "summary_by": "class"}}


def summarize_objects(address: str | None = None, timeout: int = DEFAULT_TIMEOUT,
                      raise_on_missing_output: bool = True, _explain: bool = False) -> dict:
    objects = _list("objects", ObjectState, address, None, 1 << 30, timeout)
    sizes = {o.object_id: o.object_size or 0 for o in objects}
    by_type: dict[str, int] = {}
    for o in objects:
        by_type[o.reference_type] = by_type.get(o.reference_type, 0) + 1
    total_mb = sum(sizes.values()) / 2**20
    return {"cluster": {"summary": {"disabled": {
        "total_objects": len(sizes), "total_size_mb": total_mb,
        "total_num_workers": len({o.pid for o in objects if o.type == "WORKER"}),
        "total_num_nodes": len({o.ip for o in objects}), "ref_type_counts": by_type,
    }}, "total_objects": len(sizes), "total_size_mb": total_mb,
        "callsite_enabled": False, "summary_by": "callsite"}}


def timeline(filename: str | None = None) -> list[dict] | None:
    """The tasks that ran, as a Chrome trace (chrome://tracing, Perfetto): one row per
    worker process (grouped by node), one slice per task attempt with its name, times,
    state and ids. Written to ``filename`` as JSON if given, else returned."""
    events = []
    for task in _list("tasks", TaskState, None, None, 1 << 30, None):
        if task.start_time_ms is None or task.worker_pid is None:
            continue  # (never ran)
        end = task.end_time_ms if task.end_time_ms is not None else task.start_time_ms
        events.append({
            "name": task.name, "cat": task.type.lower(), "ph": "X",
            "ts": task.start_time_ms * 1000, "dur": max(end - task.start_time_ms, 0) * 1000,
            "pid": f"node {task.node_id[:12]}", "tid": f"worker {task.worker_pid}",
            "args": {"task_id": task.task_id, "attempt_number": task.attempt_number,
                     "state": task.state, "actor_id": task.actor_id,
                     "error_type": task.error_type},
        })
    if filename is None:
        return events
    import json

    with open(filename, "w") as f:
        json.dump(events, f)
    return None
