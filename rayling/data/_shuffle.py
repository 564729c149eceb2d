"""The operators that need every input block first: zip, repartition, random_shuffle,
sort, and groupby (aggregations and map_groups).

Each runs as tasks over the blocks where they are; the driver only sees metadata and key
samples. Sort and groupby are sort-based: sample the first key of every block, pick
boundaries, have each block cut itself into one part per output partition
(``partition_sorted``), then one reduce task per partition merges its parts. Equal keys
land in one partition, so groups never straddle two, and the output is ordered by key.
"""

from __future__ import annotations

import math

import numpy as np

import rayling

from . import _block as B, _plan as P, _tasks
from ._remote import Bundle, remote_fn

SHUFFLE_BLOCK_BYTES = 32 * 1024 * 1024  # aim for output partitions about this size
SAMPLES_PER_BLOCK = 16


def run(op: P.AllToAll | P.Zip, inputs: list[list[Bundle]], cpus: float
        ) -> tuple[list[Bundle], int]:
    """The output blocks of ``op`` over its collected inputs, and how many tasks ran."""
    if isinstance(op, P.Zip):
        return _zip(inputs[0], inputs[1])
    bundles = [b for b in inputs[0] if b[1].num_rows]
    kind, args = op.kind, op.args
    if kind == "repartition" and not args.get("shuffle"):
        return _repartition(bundles, args["num_blocks"], inputs[0])
    if not bundles:
        return [], 0
    parts = args.get("num_blocks") or _num_partitions(bundles, cpus)
    if kind in ("random_shuffle", "repartition"):
        return _shuffle(bundles, parts, args.get("seed"))
    keys, descending = args["keys"], args.get("descending", False)
    what = "sort" if kind == "sort" else "groupby"
    boundaries, sample_tasks = _boundaries(bundles, keys[0], parts, what)
    split = _partition(bundles, keys, descending, boundaries, what)
    if kind == "sort":
        reduce, extra = _tasks.reduce_sorted, (keys, descending)
    elif kind == "aggregate":
        reduce, extra = _tasks.reduce_groups, (keys, args["aggs"])
    else:
        reduce, extra = _tasks.map_groups, (keys, args["fn"], args["batch_format"],
                                       args["fn_args"], args["fn_kwargs"])
    outputs = _reduce(reduce, extra, split)
    return outputs, sample_tasks + len(bundles) + len(split)


def _num_partitions(bundles: list[Bundle], cpus: float) -> int:
    size = sum(m.size_bytes for _, m in bundles)
    wanted = max(int(cpus) or 1, math.ceil(size / SHUFFLE_BLOCK_BYTES))
    return max(1, min(len(bundles), wanted))


def _offsets(bundles: list[Bundle]) -> list[int]:
    edges = [0]
    for _, meta in bundles:
        edges.append(edges[-1] + meta.num_rows)
    return edges


def _row_spec(bundles: list[Bundle], edges: list[int], start: int, end: int):
    """Which blocks and rows make up rows start..end: (refs, [(position, a, b)])."""
    refs, spec = [], []
    for i, (ref, _) in enumerate(bundles):
        lo, hi = max(start, edges[i]), min(end, edges[i + 1])
        if lo < hi:
            spec.append((len(refs), lo - edges[i], hi - edges[i]))
            refs.append(ref)
    return refs, spec


def _gathered(calls: list) -> list[Bundle]:
    metas = rayling.get([meta for _, meta in calls])
    return [(block, meta) for (block, _), meta in zip(calls, metas, strict=True)]


def _repartition(bundles: list[Bundle], num_blocks: int, everything: list[Bundle]):
    """Rows in order, cut into ``num_blocks`` blocks of nearly equal size."""
    if num_blocks < 1:
        raise ValueError(f"repartition: num_blocks must be at least 1, got {num_blocks}")
    total = _offsets(bundles)[-1]
    if total == 0:
        return everything[:1], 0
    return gather_ranges(bundles, [(total * j // num_blocks, total * (j + 1) // num_blocks)
                                   for j in range(num_blocks)])


def gather_ranges(bundles: list[Bundle], ranges: list[tuple[int, int]]
                  ) -> tuple[list[Bundle], int]:
    """One block per (start, end) range of rows of ``bundles`` (taken in order), made by
    tasks where the rows are; an empty range is an empty block. Also: how many tasks."""
    edges = _offsets(bundles)
    gather = remote_fn(_tasks.gather_rows, num_returns=2)
    calls, slots = [], []
    for start, end in ranges:
        refs, spec = _row_spec(bundles, edges, start, end)
        slots.append(len(calls) if spec else None)
        if spec:
            calls.append(gather.remote(spec, *refs))
    made = _gathered(calls)
    empty = None
    outputs = []
    for slot in slots:
        if slot is None:
            if empty is None:
                block = B.empty_block(bundles[0][1].schema if bundles else None)
                empty = (rayling.put(block), B.metadata(block))
            outputs.append(empty)
        else:
            outputs.append(made[slot])
    return outputs, len(calls)


def _zip(left: list[Bundle], right: list[Bundle]):
    left_rows, right_rows = _offsets(left)[-1], _offsets(right)[-1]
    if left_rows != right_rows:
        raise ValueError(f"zip: the datasets have different numbers of rows ({left_rows} and "
                         f"{right_rows}); zip pairs rows one to one")
    edges, right_edges = _offsets(left), _offsets(right)
    zip_blocks = remote_fn(_tasks.zip_blocks, num_returns=2)
    calls = []
    for i, (ref, _) in enumerate(left):
        refs, spec = _row_spec(right, right_edges, edges[i], edges[i + 1])
        calls.append(zip_blocks.remote(ref, spec, *refs))
    return _gathered(calls), len(calls)


def _shuffle(bundles: list[Bundle], parts: int, seed: int | None):
    split = remote_fn(_tasks.shuffle_partition, num_returns=parts + 1)
    pieces = []
    for i, (ref, _) in enumerate(bundles):
        pieces.append(split.remote(ref, parts, seed, i))
    rayling.get([p[-1] for p in pieces])  # the parts exist (and errors surface) here
    columns = [[p[j] for p in pieces] for j in range(parts)]
    reduce = remote_fn(_tasks.reduce_shuffled, num_returns=2)
    calls = [reduce.remote(seed, j, *column) for j, column in enumerate(columns)]
    return _gathered(calls), len(bundles) + len(calls)


def _boundaries(bundles: list[Bundle], key: str, parts: int, what: str
                ) -> tuple[list, int]:
    """``parts - 1`` ascending values of ``key`` that cut its range into even parts."""
    if parts <= 1:
        return [], 0
    sample = remote_fn(_tasks.sample_keys)
    samples = [v for s in rayling.get([sample.remote(ref, key, SAMPLES_PER_BLOCK, what)
                                       for ref, _ in bundles]) for v in s]
    if not samples:
        return [], len(bundles)
    try:
        samples.sort()
    except TypeError:
        kinds = sorted({type(v).__name__ for v in samples})
        raise TypeError(f"{what}: the values of {key!r} cannot be ordered; they are of types "
                        f"{', '.join(kinds)}") from None
    picks = np.linspace(0, len(samples) - 1, parts + 1)[1:-1].round().astype(int)
    return [samples[i] for i in picks], len(bundles)


def _partition(bundles: list[Bundle], keys: list[str], descending: bool, boundaries: list,
               what: str):
    """Each block's parts, grouped by output partition (in output order)."""
    parts = len(boundaries) + 1
    split = remote_fn(_tasks.partition_sorted, num_returns=parts + 1)
    pieces = [split.remote(ref, keys, descending, boundaries, what) for ref, _ in bundles]
    rayling.get([p[-1] for p in pieces])
    return [[p[j] for p in pieces] for j in range(parts)]


def _reduce(fn, extra: tuple, split: list[list]) -> list[Bundle]:
    reduce = remote_fn(fn, num_returns=2)
    calls = [reduce.remote(*extra, *column) for column in split]
    return [b for b in _gathered(calls) if b[1].num_rows]
