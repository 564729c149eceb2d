"""A dataset's plan: the logical operators it was built from, and the stages they run as.

Each ``Dataset`` holds the last ``Op`` of its plan; ops point at their inputs, so datasets
share their common prefix. Nothing here runs anything. ``plan_stages`` fuses consecutive
map-like ops into one ``Stage`` (one task per block does them all) when they ask for the
same resources; a callable class starts an actor-pool stage, and later stateless maps
with no resource requests of their own join it. Limits, unions, zips and the all-to-all
operators (repartition, shuffle, sort, groupby) are stages of their own.

```
 Read(range) → Map(f) → MapBatches(g) → Limit(5)      logical ops
 └──────── stage "ReadRange->Map(f)->MapBatches(g)" ┘ → stage "Limit[5]"
```

The same ops answer, without running anything, what is known ahead: the number of rows
(when every op keeps or bounds it), the schema, and how many blocks will come out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa

from ._block import BlockMetadata, type_name
from ._datasource import ReadTask
from ._transforms import Transform


# -- logical operators ----------------------------------------------------------------------
@dataclass(eq=False)
class Op:
    name: str
    inputs: list[Op] = field(default_factory=list)


@dataclass(eq=False)
class Read(Op):
    tasks: list[ReadTask] = field(default_factory=list)
    schema: pa.Schema | None = None
    remote_args: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class InputBlocks(Op):
    """Blocks already in the object store (from_items, from_numpy, materialize())."""

    refs: list = field(default_factory=list)
    metas: list[BlockMetadata] = field(default_factory=list)


@dataclass(eq=False)
class MapOp(Op):
    transform: Transform | None = None
    remote_args: dict[str, Any] = field(default_factory=dict)
    pool_size: int | None = None     # actors in the pool, for callable classes
    keeps_rows: bool = False         # one row out per row in (so counts are known)
    keeps_schema: bool = False       # the same columns come out (filter, sample)


@dataclass(eq=False)
class Limit(Op):
    limit: int = 0


@dataclass(eq=False)
class Union(Op):
    pass


@dataclass(eq=False)
class Zip(Op):
    pass


@dataclass(eq=False)
class AllToAll(Op):
    """repartition, random_shuffle, sort, groupby aggregations and map_groups."""

    kind: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    keeps_rows: bool = True
    keeps_schema: bool = True


# -- what is known without running ----------------------------------------------------------
def known_num_rows(op: Op) -> int | None:
    if isinstance(op, Read):
        counts = [t.num_rows for t in op.tasks]
        return None if any(c is None for c in counts) else sum(counts)
    if isinstance(op, InputBlocks):
        return sum(m.num_rows for m in op.metas)
    if isinstance(op, MapOp | AllToAll):
        return known_num_rows(op.inputs[0]) if op.keeps_rows else None
    if isinstance(op, Limit):
        below = known_num_rows(op.inputs[0])
        return None if below is None else min(below, op.limit)
    if isinstance(op, Union):
        counts = [known_num_rows(i) for i in op.inputs]
        return None if any(c is None for c in counts) else sum(counts)
    if isinstance(op, Zip):
        return known_num_rows(op.inputs[0])
    return None


def known_schema(op: Op) -> pa.Schema | None:
    if isinstance(op, Read):
        return op.schema
    if isinstance(op, InputBlocks):
        return next((m.schema for m in op.metas if m.schema.names), None)
    if isinstance(op, MapOp | AllToAll):
        return known_schema(op.inputs[0]) if op.keeps_schema else None
    if isinstance(op, Limit | Union):
        return known_schema(op.inputs[0])
    return None


def known_num_blocks(op: Op) -> int | None:
    """How many blocks the plan will make (for progress bars), when known."""
    if isinstance(op, Read):
        return len(op.tasks)
    if isinstance(op, InputBlocks):
        return len(op.refs)
    if isinstance(op, MapOp | Zip):
        return known_num_blocks(op.inputs[0])
    if isinstance(op, AllToAll):
        return op.args.get("num_blocks") or known_num_blocks(op.inputs[0])
    if isinstance(op, Union):
        counts = [known_num_blocks(i) for i in op.inputs]
        return None if any(c is None for c in counts) else sum(counts)
    return None


def schema_text(schema: pa.Schema | None) -> str:
    if schema is None:
        return "Unknown schema"
    return "{" + ", ".join(f"{f.name}: {type_name(f.type)}" for f in schema) + "}"


def describe(op: Op, label: str = "Dataset", extra: str = "") -> str:
    """The plan as Ray prints it: ``Map(f)`` over ``+- Dataset(num_rows=..., schema=...)``."""
    if isinstance(op, Read | InputBlocks) or not op.inputs:
        rows = known_num_rows(op)
        return (f"{label}({extra}num_rows={'?' if rows is None else rows}, "
                f"schema={schema_text(known_schema(op))})")
    lines = [op.name]
    for child in op.inputs:
        sub = describe(child).splitlines()
        lines.append("+- " + sub[0])
        lines.extend("   " + line for line in sub[1:])
    return "\n".join(lines)


# -- stages ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Stage:
    """What the executor runs: ``kind`` is read, input, tasks, pool, limit, union, zip or
    all_to_all. Read, input, tasks and pool stages apply ``transforms`` to each block."""

    kind: str
    name: str
    inputs: list[Stage] = field(default_factory=list)
    transforms: list[Transform] = field(default_factory=list)
    remote_args: dict[str, Any] = field(default_factory=dict)
    pool_size: int | None = None
    op: Op | None = None


_MAPPABLE = ("read", "input", "tasks", "pool")


def plan_stages(op: Op) -> Stage:
    """The stages that compute ``op``, with map-like ops fused."""
    if isinstance(op, Read):
        return Stage("read", op.name, remote_args=dict(op.remote_args), op=op)
    if isinstance(op, InputBlocks):
        return Stage("input", op.name, op=op)
    if isinstance(op, MapOp):
        below = plan_stages(op.inputs[0])
        if _fuses(below, op):
            return replace(below, name=f"{below.name}->{op.name}",
                           transforms=[*below.transforms, op.transform])
        kind = "pool" if op.pool_size else "tasks"
        return Stage(kind, op.name, [below], [op.transform], dict(op.remote_args),
                     op.pool_size, op)
    kinds = {Limit: "limit", Union: "union", Zip: "zip", AllToAll: "all_to_all"}
    return Stage(kinds[type(op)], op.name, [plan_stages(i) for i in op.inputs], op=op)


def _fuses(below: Stage, op: MapOp) -> bool:
    if below.kind not in _MAPPABLE or op.pool_size:
        return False
    if below.kind == "pool":
        return not op.remote_args
    if below.kind == "input":
        return False
    return op.remote_args == below.remote_args


def stage_list(final: Stage) -> list[Stage]:
    """Every stage once, inputs before the stages that read them."""
    order: list[Stage] = []
    seen: set[int] = set()

    def visit(stage: Stage) -> None:
        if id(stage) in seen:
            return
        seen.add(id(stage))
        for child in stage.inputs:
            visit(child)
        order.append(stage)

    visit(final)
    return order
