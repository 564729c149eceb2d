"""The state API, as Ray's ``ray.util.state``: what the cluster runs and ran. The head
keeps it (task history: ``_private/task_events.py``; the rows: ``state_tables.py``);
these functions ask it from any process (a driver or worker of the cluster through its
own connection; any other process through an observer connection of its own, which
leaves it free to init() later) and return records with Ray's
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
from ..._private.log_files import LogView
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
    "get_log", "get_placement_group", "get_task", "get_worker", "list_actors", "list_jobs",
    "list_logs",
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
    rows, total = query_rows(kind, address, filters, limit, timeout)
    if total > len(rows):
        warnings.warn(f"{total} {kind} match, {len(rows)} are shown (limit={limit}); "
                      f"raise limit= to see more", stacklevel=3)
    return [record.from_row(row) for row in rows]


def query_rows(kind: str, address, filters, limit, timeout) -> tuple[list[dict], int]:
    """The rows of ``kind`` the head picked (at most ``limit``), and how many match."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise ValueError(f"limit must be an integer >= 0, got {limit!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    client = _client(address)
    answer = client.query(p.StateRows(kind, _check_filters(filters), limit),
                          DEFAULT_TIMEOUT if timeout is None else timeout)
    rows = answer["rows"]
    if kind == "tasks":
        rows = [_with_error(row) for row in rows]
    return rows, answer["total"]


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
    each task), counted on the head."""
    return {"cluster": _client(address).query(p.TaskSummary(), timeout)}


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


# -- logs ---------------------------------------------------------------------------------
_LOG_POLL = 0.2  # seconds between reads while following a log


def _asker(address: str | None, timeout: float | None):
    """``client.query`` of this process's client, within ``timeout`` seconds."""
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    query = _client(address).query
    return lambda what: query(what, DEFAULT_TIMEOUT if timeout is None else timeout)


def _node_for(ask, node_id: str | None, node_ip: str | None) -> bytes:
    """The node a log request means: by id, by address, else the head's."""
    nodes = ask(p.ClusterNodes())
    for node in nodes:
        if (node_id and node["NodeID"] == node_id) or \
                (node_ip and not node_id and node["NodeManagerAddress"] == node_ip):
            return bytes.fromhex(node["NodeID"])
    if node_id or node_ip:
        raise ValueError(f"no node {node_id or node_ip} in the cluster")
    return next(bytes.fromhex(n["NodeID"]) for n in nodes if n.get("IsHead"))


def list_logs(address: str | None = None, node_id: str | None = None,
              node_ip: str | None = None, glob_filter: str | None = None,
              timeout: int = DEFAULT_TIMEOUT) -> dict[str, list[str]]:
    """A node's log files (the head's unless ``node_id``/``node_ip`` is given), by kind:
    ``worker_out`` (what each worker's tasks printed), ``daemon``, ``template``."""
    import fnmatch

    ask = _asker(address, timeout)
    files = ask(p.NodeLogs(_node_for(ask, node_id, node_ip)))
    kinds: dict[str, list[str]] = {}
    for entry in files:
        name = entry["name"]
        if glob_filter and not fnmatch.fnmatch(name, glob_filter):
            continue
        kind = ("worker_out" if name.startswith("worker-") else
                "daemon" if name.startswith("daemon") else
                "template" if name.startswith("template") else "misc")
        kinds.setdefault(kind, []).append(name)
    return kinds


def get_log(address: str | None = None, node_id: str | None = None,
            node_ip: str | None = None, filename: str | None = None,
            actor_id: str | None = None, task_id: str | None = None,
            pid: int | None = None, follow: bool = False, tail: int = 1000,
            timeout: int = DEFAULT_TIMEOUT, suffix: str = "out", encoding: str = "utf-8",
            errors: str = "strict", submission_id: str | None = None,
            attempt_number: int = 0):
    """The lines of a log, as a generator: a file of a node (``filename``), what a
    worker process printed (``pid``, on the head's node unless ``node_id`` says), what an
    actor printed (``actor_id``), or what one task printed (``task_id``). The last
    ``tail`` lines (-1: all); with ``follow``, then each new line as it is written, until
    the task ends or the actor dies (a file or a worker: until the caller stops)."""
    if submission_id is not None:
        raise NotImplementedError("get_log(submission_id=) needs job submission, which "
                                  "rayling does not have yet")
    if suffix not in ("out", "err"):
        raise ValueError(f"suffix must be 'out' or 'err', got {suffix!r}")
    if sum(x is not None for x in (filename, actor_id, task_id, pid)) != 1:
        raise ValueError("get_log() needs exactly one of filename=, actor_id=, task_id=, "
                         "pid=")
    ask = _asker(address, timeout)
    still_going = None  # what says a followed log is over
    view = LogView()
    if task_id is not None:
        attempts = [t for t in _one("tasks", TaskState, "task_id", task_id, address, timeout)
                    if t.attempt_number == attempt_number]
        if not attempts or attempts[0].worker_pid is None:
            raise ValueError(f"task {task_id} (attempt {attempt_number}) is not known or "
                             f"has not run yet")
        node_id, pid, view = attempts[0].node_id, attempts[0].worker_pid, LogView(task_id)
        still_going = lambda: (get_task(task_id) or {}).get("state") in (  # noqa: E731
            "RUNNING", "PENDING_NODE_ASSIGNMENT", "PENDING_ARGS_AVAIL")
    elif actor_id is not None:
        actor = get_actor(actor_id, address)
        if actor is None or actor.pid is None:
            raise ValueError(f"actor {actor_id} is not known or has no process yet")
        node_id, pid, view = actor.node_id, actor.pid, LogView(actor_id=actor_id)
        still_going = lambda: (get_actor(actor_id) or {}).get("state") != "DEAD"  # noqa: E731
    if pid is not None:
        filename = f"worker-{pid}.out"  # (stdout and stderr share the file)
    node = _node_for(ask, node_id, node_ip)
    return _lines(ask, node, filename, tail, follow, view, still_going, encoding, errors)


def _lines(ask, node: bytes, filename: str, tail: int, follow: bool, view: LogView,
           still_going, encoding: str, errors: str):
    """Read the log's end now (so following starts where the log is at this call), and
    return a generator of its lines, then of the new ones."""
    if view.task_id is not None or view.actor_id is not None or tail < 0:
        # (all of it: a task's or an actor's lines need the markers before them)
        text, offset = _read_all(ask, node, filename, encoding, errors)
    else:
        piece = ask(p.NodeLogs(node, filename, -1, tail * 2))
        text, offset = piece["data"].decode(encoding, errors), piece["end"]
    lines = view.lines(text)
    first = lines[-tail:] if tail > 0 else [] if tail == 0 else lines
    return _follow(ask, node, filename, first, offset if follow else None, view,
                   still_going, encoding, errors)


def _follow(ask, node: bytes, filename: str, first: list[str], offset: int | None,
            view: LogView, still_going, encoding: str, errors: str):
    yield from first
    if offset is None:
        return
    import time

    partial = b""
    while True:
        going = still_going() if still_going is not None else True
        piece = ask(p.NodeLogs(node, filename, offset, -1))
        offset = piece["end"]
        *complete, partial = (partial + piece["data"]).split(b"\n")
        for raw in complete:
            line = view.show(raw.decode(encoding, errors))
            if line is not None:
                yield line
        if not going and offset >= piece["size"]:
            return
        time.sleep(_LOG_POLL)


def _read_all(ask, node: bytes, filename: str, encoding: str, errors: str):
    chunks, offset = [], 0
    while True:
        piece = ask(p.NodeLogs(node, filename, offset, -1))
        chunks.append(piece["data"])
        offset = piece["end"]
        if offset >= piece["size"] or not piece["data"]:
            return b"".join(chunks).decode(encoding, errors), offset
