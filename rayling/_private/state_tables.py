"""The rows of the state API (``rayling.util.state``), read on the head from the
controller's parts, with Ray's field names and states: tasks, actors, objects, nodes,
workers, jobs and placement groups. Filters and the limit are applied here, so a
listing sends only what was asked for. No state of its own."""

from __future__ import annotations

import itertools

from . import ids
from .placement_groups import group_of
from .task_events import live_info

KINDS = ("tasks", "actors", "objects", "nodes", "workers", "jobs", "placement_groups")
PREDICATES = ("=", "!=")


def rows(controller, kind: str, filters: list, limit: int) -> dict:
    """``{"rows": [...], "total": n}``: the rows of ``kind`` matching every filter
    ``(field, "=" | "!=", value)``, at most ``limit`` of them (total: all that match)."""
    if kind not in KINDS:
        raise ValueError(f"unknown state kind {kind!r} (known: {', '.join(KINDS)})")
    source = _SOURCES[kind](controller, filters)
    matching = (row for row in source if _matches(row, filters))
    kept = list(itertools.islice(matching, limit))
    total = len(kept) + sum(1 for _ in matching)
    return {"rows": kept, "total": total}


def _matches(row: dict, filters: list) -> bool:
    for field, predicate, value in filters:
        have = row.get(field)
        if field in ("state", "type", "status", "reference_type"):
            equal = str(have).upper() == str(value).upper()
        else:
            equal = str(have) == str(value)
        if equal != (predicate == "="):
            return False
    return True


def _tasks(controller, filters):
    """The unfinished tasks, then the ended attempts, newest first. A task id filter
    picks its records before any row is made (get_task, a followed task log)."""
    wanted = {bytes.fromhex(v) for f, op, v in filters if f == "task_id" and op == "="
              and _is_hex(v)}
    if any(f == "task_id" and op == "=" for f, op, _ in filters) and not wanted:
        return
    for task in list(controller.tasks.tasks.values()):
        if task.spec.events and (not wanted or task.spec.task_id in wanted):
            yield live_info(task)
    for event in reversed(list(controller.events.records)):
        if not wanted or event.task_id in wanted:
            yield event.info()


def _is_hex(value: str) -> bool:
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return True


_ACTOR_STATES = {"PENDING": "PENDING_CREATION", "ALIVE": "ALIVE",
                 "RESTARTING": "RESTARTING", "DEAD": "DEAD"}


def _actors(controller, filters):
    for actor in list(controller.actors.actors.values()):
        spec, worker = actor.spec, actor.worker
        yield {
            "actor_id": spec.actor_id.hex(), "class_name": spec.class_name,
            "state": _ACTOR_STATES[actor.state.value],
            "job_id": spec.task_id[-ids.JOB_ID_LEN:].hex(),
            "name": spec.name, "ray_namespace": spec.namespace,
            "node_id": worker.node.node_id.hex() if worker is not None else None,
            "pid": worker.pid if worker is not None else None,
            "is_detached": spec.detached, "placement_group_id": group_of(spec.hold),
            "repr_name": "", "num_restarts": actor.restarts,
            "death_cause": actor.cause or None, "required_resources": dict(spec.hold),
        }


def _reference_type(entry, holder) -> str:
    return "LOCAL_REFERENCE" if holder is not None else (
        "USED_BY_PENDING_TASK" if entry.pins else "PINNED_IN_MEMORY")


def _objects(controller, filters):
    """One row per process holding a ref to an object (as Ray's), and one for objects
    only tasks or other objects keep."""
    for oid, entry in list(controller.objects.table.entries.items()):
        data = entry.data
        size = None if data is None else (data.size if data.shm is not None
                                          else len(data.inline or b""))
        base = {
            "object_id": oid.hex(), "object_size": size,
            "task_status": "FINISHED" if data is not None else "PENDING",
            "call_site": "disabled",
        }
        holders = list(entry.holders) or [None]
        for holder in holders:
            node = getattr(holder, "node", None)
            yield {
                **base, "reference_type": _reference_type(entry, holder),
                "pid": getattr(holder, "pid", None),
                "ip": node.ip if node is not None else controller.nodes.local.ip,
                "type": "DRIVER" if getattr(holder, "kind", "") == "driver" else "WORKER",
            }


def _nodes(controller, filters):
    local = controller.nodes.local
    for node in controller.nodes.all:
        yield {
            "node_id": node.node_id.hex(), "node_ip": node.ip,
            "is_head_node": node is local, "state": "ALIVE" if node.alive else "DEAD",
            "node_name": node.hostname, "resources_total": node.pool.total_float(),
            "labels": {"ray.io/node-id": node.node_id.hex()},
        }


def _workers(controller, filters):
    for worker in list(controller.workers.by_conn.values()):
        yield {
            "worker_id": worker.worker_id.hex(), "is_alive": True, "worker_type": "WORKER",
            "node_id": worker.node.node_id.hex(), "ip": worker.node.ip, "pid": worker.pid,
            "actor_id": worker.actor.spec.actor_id.hex() if worker.actor else None,
            "task_id": worker.task.spec.task_id.hex() if worker.task else None,
        }
    for conn, job_id in list(controller.jobs.drivers.items()):
        node = getattr(conn, "node", None)
        yield {
            "worker_id": None, "is_alive": True, "worker_type": "DRIVER",
            "node_id": node.node_id.hex() if node is not None else None,
            "ip": node.ip if node is not None else None, "pid": getattr(conn, "pid", None),
            "job_id": job_id.hex(),
        }


def _jobs(controller, filters):
    return (dict(job) for job in list(controller.jobs.history.values()))


def _placement_groups(controller, filters):
    for info in controller.groups.table():
        yield {
            "placement_group_id": info["placement_group_id"], "name": info["name"],
            "state": info["state"], "strategy": info["strategy"],
            "is_detached": info["is_detached"],
            "bundles": [{"bundle_id": i, "unit_resources": bundle,
                         "node_id": info["bundles_to_node_id"].get(i)}
                        for i, bundle in info["bundles"].items()],
        }


_SOURCES = {"tasks": _tasks, "actors": _actors, "objects": _objects, "nodes": _nodes,
            "workers": _workers, "jobs": _jobs, "placement_groups": _placement_groups}
