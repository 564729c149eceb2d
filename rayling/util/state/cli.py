"""What the state commands print (`rayling list/get/summary/timeline/memory`): tables
as Ray's CLI draws them, or JSON, or YAML. The click commands are in rayling/scripts.py."""

from __future__ import annotations

import datetime
import json
from typing import Any

from ..._private import protocol as p, session
from . import (
    get_actor,
    get_job,
    get_log,
    get_node,
    get_objects,
    get_placement_group,
    get_task,
    get_worker,
    list_actors,
    list_jobs,
    list_logs,
    list_nodes,
    list_objects,
    list_placement_groups,
    list_tasks,
    list_workers,
    summarize_actors,
    summarize_objects,
    summarize_tasks,
    timeline,
)

LISTS = {"tasks": list_tasks, "actors": list_actors, "objects": list_objects,
         "nodes": list_nodes, "workers": list_workers, "jobs": list_jobs,
         "placement-groups": list_placement_groups}
GETS = {"tasks": get_task, "actors": get_actor, "objects": get_objects, "nodes": get_node,
        "workers": get_worker, "jobs": get_job, "placement-groups": get_placement_group}
SUMMARIES = {"tasks": summarize_tasks, "actors": summarize_actors,
             "objects": summarize_objects}

# The columns a table shows without --detail (all of them with it).
COLUMNS = {
    "tasks": ["task_id", "attempt_number", "name", "state", "job_id", "actor_id", "type",
              "func_or_class_name", "parent_task_id", "node_id", "worker_id", "worker_pid",
              "error_type"],
    "actors": ["actor_id", "class_name", "state", "job_id", "name", "node_id", "pid",
               "ray_namespace"],
    "objects": ["object_id", "object_size", "task_status", "reference_type", "call_site",
                "type", "pid", "ip"],
    "nodes": ["node_id", "node_ip", "is_head_node", "state", "node_name",
              "resources_total", "labels"],
    "workers": ["worker_id", "is_alive", "worker_type", "node_id", "ip", "pid"],
    "jobs": ["job_id", "submission_id", "type", "status", "entrypoint", "start_time",
             "end_time", "driver_pid"],
    "placement-groups": ["placement_group_id", "name", "state", "strategy", "is_detached"],
}


def parse_filters(filters: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """``--filter "state=RUNNING"`` or ``"name!=f"`` as the state API takes them."""
    parsed = []
    for text in filters:
        for predicate in ("!=", "="):
            field, found, value = text.partition(predicate)
            if found:
                parsed.append((field.strip(), predicate, value.strip()))
                break
        else:
            raise ValueError(f'a filter is "FIELD=VALUE" or "FIELD!=VALUE", got {text!r}')
    return parsed


def list_command(kind: str, filters: tuple[str, ...], limit: int, detail: bool, fmt: str,
                 address: str | None) -> str:
    session.observe(address)
    rows = [r.asdict() for r in LISTS[kind](filters=parse_filters(filters), limit=limit,
                                             detail=detail)]
    if fmt != "table":
        return render(rows, fmt)
    columns = list(rows[0]) if detail and rows else COLUMNS[kind]
    return "\n".join([
        f"======== List: {_now()} ========", "Stats:", "-" * 30, f"Total: {len(rows)}", "",
        "Table:", "-" * 30, table(rows, columns)])


def get_command(kind: str, ident: str, fmt: str, address: str | None) -> str:
    session.observe(address)
    found = GETS[kind](ident)
    if not found:
        raise LookupError(f"no {kind.rstrip('s')} with id {ident}")
    rows = [r.asdict() for r in found] if isinstance(found, list) else found.asdict()
    return render(rows, "yaml" if fmt == "table" else fmt)


def summary_command(kind: str, fmt: str, address: str | None) -> str:
    session.observe(address)
    summary = SUMMARIES[kind]()["cluster"]
    if fmt != "table":
        return render(summary, fmt)
    lines = [f"======== {kind.capitalize()} Summary: {_now()} ========", "Stats:",
             "-" * 30]
    lines += [f"{key}: {value}" for key, value in summary.items()
              if key not in ("summary", "summary_by")]
    lines += ["", f"Table (group by {summary['summary_by']}):", "-" * 30]
    rows = []
    for name, entry in summary["summary"].items():
        if kind == "objects":
            rows.append({"call_site": name, **entry})
        else:
            counts = ", ".join(f"{state}: {n}" for state, n in entry["state_counts"].items())
            rows.append({"func_or_class_name" if kind == "tasks" else "class_name": name,
                         "state_counts": counts, **({"type": entry["type"]}
                                                     if kind == "tasks" else {})})
    return "\n".join(lines + [table(rows, list(rows[0]) if rows else [])])


def timeline_command(output: str | None, address: str | None) -> str:
    session.observe(address)
    if output is None:  # (a new file of our own: a predictable name could be planted)
        import os
        import tempfile

        fd, output = tempfile.mkstemp(prefix="rayling-timeline-", suffix=".json")
        os.close(fd)
    path = output
    timeline(filename=path)
    return (f"Trace file written to {path}. Open it in chrome://tracing or "
            f"https://ui.perfetto.dev (the file stays on this machine).")


def memory_command(address: str | None, limit: int) -> str:
    """Objects by size with who holds them, and each node's store use."""
    client = session.observe(address)
    objects = [o.asdict() for o in list_objects(limit=limit)]
    objects.sort(key=lambda o: -(o["object_size"] or 0))
    lines = [f"======== Object references: {_now()} ========",
             table(objects, ["object_id", "object_size", "reference_type", "type", "pid",
                             "ip", "task_status"]), "", "======== Object store use ========"]
    nodes = client.query(p.ClusterNodes())
    lines.append(table([{
        "node_id": n["NodeID"], "ip": n["NodeManagerAddress"],
        "used": _size(n["ObjectStoreUsed"]), "capacity": _size(n["ObjectStoreCapacity"]),
    } for n in nodes if n["Alive"]], ["node_id", "ip", "used", "capacity"]))
    total = sum(o["object_size"] or 0 for o in {o["object_id"]: o for o in objects}.values())
    lines.append(f"\n{len({o['object_id'] for o in objects})} objects referenced, "
                 f"{_size(total)} in all")
    return "\n".join(lines)


def table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    header = [c.upper() for c in columns]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    index = len(str(len(rows) - 1))
    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))

    lines = [" " * (index + 1) + line(header)]
    lines += [f"{i:>{index}} " + line(r) for i, r in enumerate(cells)]
    return "\n".join(line.rstrip() for line in lines)


def render(value: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(value, indent=2, default=str)
    if fmt == "yaml":
        return "\n".join(_yaml(value, 0))
    raise ValueError(f"--format must be table, json or yaml, got {fmt!r}")


def _yaml(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [pad + "{}"]
        lines = []
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml(item, indent + 2)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            inner = _yaml(item, indent + 2)
            lines.append(f"{pad}- {inner[0].lstrip()}")
            lines += inner[1:]
        return lines
    return [pad + _scalar(value)]


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return json.dumps(str(value))  # (quoted: a YAML string whatever it holds)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}"
                         for k, v in value.items())
    return str(value)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _now() -> str:
    return datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def logs_command(kind: str | None, ident: str | None, filename: str | None, follow: bool,
                 tail: int, node_id: str | None, address: str | None, echo) -> None:
    """Print a log as its lines come (`rayling logs`); no kind: list a node's files."""
    session.observe(address)
    if kind is None or (kind == "node" and filename is None):
        node = ident if kind == "node" else node_id
        for group, names in sorted(list_logs(node_id=node).items()):
            echo(f"{group}:")
            for name in names:
                echo(f"  {name}")
        return
    if ident is None:
        raise ValueError(f"`rayling logs {kind}` needs the {kind}'s "
                         f"{'pid' if kind == 'worker' else 'id'}")
    if kind == "task":
        lines = get_log(task_id=ident, follow=follow, tail=tail)
    elif kind == "actor":
        lines = get_log(actor_id=ident, follow=follow, tail=tail)
    elif kind == "worker":
        if not ident.isdigit():
            raise ValueError(f"a worker is given by its pid, got {ident!r}")
        lines = get_log(pid=int(ident), node_id=node_id, follow=follow, tail=tail)
    else:
        lines = get_log(filename=filename, node_id=ident, follow=follow, tail=tail)
    for line in lines:
        echo(line)
