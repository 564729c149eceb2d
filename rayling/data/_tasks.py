"""What a dataset's tasks and actors run in workers.

Every task returns two objects: the block (an Arrow table, stored in the object store and
read zero-copy by the next task) and its ``BlockMetadata`` (small, fetched by the driver
to plan and count without touching the block). Shuffle tasks return one block per output
partition and then one list of their metadata.

A stage's fused transforms travel once, as an object in the store; each worker keeps the
last few it used, set up, keyed by that object's id.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa

from . import _block as B, aggregate as A
from ._datasource import ReadTask
from ._transforms import Chain

_CHAINS_KEPT = 16
_chains: OrderedDict[bytes, Chain] = OrderedDict()


def _chain(ref) -> Chain:
    import rayling

    key = ref.binary()
    chain = _chains.get(key)
    if chain is None:
        chain = rayling.get(ref)
        chain.setup()
        _chains[key] = chain
        while len(_chains) > _CHAINS_KEPT:
            _chains.popitem(last=False)
    else:
        _chains.move_to_end(key)
    return chain


def _apply(chain: Chain, index: int, spec: list | None, sources: tuple
           ) -> tuple[pa.Table, B.BlockMetadata]:
    start = time.perf_counter()
    if isinstance(sources[0], ReadTask):
        block = sources[0]()
    elif spec is None:
        block = sources[0]
    else:
        block = B.concat([sources[i].slice(a, b - a) for i, a, b in spec])
    out = B.compact(chain(block, index))
    return out, B.metadata(out, time.perf_counter() - start)


def run_stage(chain_box: list, index: int, spec: list | None, *sources
              ) -> tuple[pa.Table, B.BlockMetadata]:
    """One block through a stage. ``sources`` is a ReadTask, or blocks: one whole block
    (``spec`` None), or the rows ``spec`` names — (position, start, end) — of a few, made
    into one batch. ``chain_box`` is ``[ref of the stage's Chain]`` (boxed, so the worker
    fetches it only when it has not cached it)."""
    return _apply(_chain(chain_box[0]), index, spec, sources)


class MapWorker:
    """The actor of a pool stage (a callable class): sets the chain up once."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        chain.setup()

    def ready(self) -> bool:
        return True

    def run(self, index: int, spec: list | None, *sources) -> tuple[pa.Table, B.BlockMetadata]:
        return _apply(self.chain, index, spec, sources)


# -- slicing and gathering rows -------------------------------------------------------------
def gather_rows(spec: list[tuple[int, int, int]], *blocks: pa.Table):
    """The rows ``spec`` names — (block position, start, end) — concatenated in order."""
    start_time = time.perf_counter()
    pieces = [blocks[i].slice(a, b - a) for i, a, b in spec]
    out = B.compact(B.concat(pieces)) if pieces else B.empty_block(blocks[0].schema)
    return out, B.metadata(out, time.perf_counter() - start_time)


def zip_blocks(left: pa.Table, spec: list[tuple[int, int, int]], *rights: pa.Table):
    """``left``'s columns beside the rows of ``rights`` that ``spec`` names; a right column
    whose name the left has already gets a ``_1`` suffix, as in Ray."""
    start_time = time.perf_counter()
    right = B.concat([rights[i].slice(a, b - a) for i, a, b in spec])
    out = left
    for name, column in zip(right.column_names, right.columns, strict=True):
        new_name = name
        while new_name in out.column_names:
            new_name = f"{new_name}_1"
        out = out.append_column(new_name, column)
    out = B.compact(out)
    return out, B.metadata(out, time.perf_counter() - start_time)


# -- sorting, grouping and shuffling --------------------------------------------------------
def sample_keys(block: pa.Table, key: str, count: int, what: str) -> list:
    """Up to ``count`` non-null values of the first sort key, spread over the block."""
    if block.num_rows == 0:
        return []
    _check_keys(block, [key], what)
    picks = np.linspace(0, block.num_rows - 1, min(count, block.num_rows)).astype(np.int64)
    values = block.column(key).take(pa.array(picks)).to_pylist()
    return [v for v in values if v is not None and v == v]  # no nulls, no NaN


def _check_keys(block: pa.Table, keys: list[str], what: str) -> None:
    missing = [k for k in keys if k not in block.column_names]
    if missing and block.num_columns:
        raise ValueError(f"{what}: no column named {', '.join(map(repr, missing))}; the "
                         f"columns are {block.column_names}")


def _sort(block: pa.Table, keys: list[str], descending: bool) -> pa.Table:
    """``block`` sorted by ``keys``; nulls (and NaN) last either way, as Arrow does."""
    order = "descending" if descending else "ascending"
    return block.sort_by([(k, order) for k in keys]) if block.num_rows else block


def _valid_count(values: np.ndarray) -> int:
    """How many leading values of a sorted key are neither null nor NaN (those sort last)."""
    if values.dtype == object:
        return sum(1 for v in values if v is not None and v == v)
    if values.dtype.kind == "f":
        return int(np.count_nonzero(~np.isnan(values)))
    return len(values)


def partition_sorted(block: pa.Table, keys: list[str], descending: bool,
                     boundaries: list, what: str) -> list:
    """``block`` sorted and cut at ``boundaries`` (ascending values of the first key):
    len(boundaries) + 1 parts, in output order, then their metadata. Part i holds the keys
    in (boundaries[i-1], boundaries[i]] (reversed when descending), so equal keys always
    fall in the same part; rows whose first key is null or NaN go to the last part."""
    if block.num_rows:
        _check_keys(block, keys, what)
    block = _sort(block, keys, descending)
    if block.num_rows == 0:
        parts = [block] * (len(boundaries) + 1)
    else:
        values = B.column_numpy(block.column(keys[0]))
        valid = values[:_valid_count(values)]
        if descending:
            cuts = len(valid) - np.searchsorted(valid[::-1], boundaries[::-1], side="right")
        else:
            cuts = np.searchsorted(valid, boundaries, side="right")
        edges = [0, *np.asarray(cuts, dtype=np.int64).tolist(), block.num_rows]
        parts = [B.compact(block.slice(a, b - a)) for a, b in zip(edges[:-1], edges[1:],
                                                                   strict=True)]
    return [*parts, [B.metadata(p) for p in parts]]


def shuffle_partition(block: pa.Table, num_parts: int, seed: int | None, index: int) -> list:
    """``block``'s rows dealt at random into ``num_parts`` parts, then their metadata."""
    rng = np.random.default_rng(None if seed is None else [seed, index])
    where = rng.integers(0, num_parts, block.num_rows)
    parts = [block.filter(pa.array(where == i)) for i in range(num_parts)]
    return [*parts, [B.metadata(p) for p in parts]]


def reduce_sorted(keys: list[str], descending: bool, *parts: pa.Table):
    start_time = time.perf_counter()
    out = B.compact(_sort(B.concat(list(parts)), keys, descending))
    return out, B.metadata(out, time.perf_counter() - start_time)


def reduce_shuffled(seed: int | None, index: int, *parts: pa.Table):
    start_time = time.perf_counter()
    block = B.concat(list(parts))
    rng = np.random.default_rng(None if seed is None else [seed, index, 1])
    out = B.compact(block.take(pa.array(rng.permutation(block.num_rows)))
                    if block.num_rows else block)
    return out, B.metadata(out, time.perf_counter() - start_time)


def reduce_groups(keys: list[str], aggs: list, *parts: pa.Table):
    """Each group's aggregations, for the groups of one sorted partition."""
    start_time = time.perf_counter()
    block = _sort(B.concat(list(parts)), keys, False)
    out = A.aggregate_groups(block, keys, aggs) if block.num_rows else B.empty_block(None)
    return out, B.metadata(out, time.perf_counter() - start_time)


def map_groups(keys: list[str], fn, batch_format: str, fn_args: tuple, fn_kwargs: dict,
               *parts: pa.Table):
    """``fn`` on each group of one sorted partition (a batch of the group's rows)."""
    start_time = time.perf_counter()
    block = _sort(B.concat(list(parts)), keys, False)
    outputs = []
    label = getattr(fn, "__name__", type(fn).__name__)
    for a, b in A.group_bounds(block, keys):
        result = fn(B.block_to_batch(block.slice(a, b - a), batch_format), *fn_args,
                    **fn_kwargs)
        outputs.append(B.block_from_batch(result, f"map_groups({label})"))
    out = B.compact(B.concat(outputs)) if outputs else B.empty_block(None)
    return out, B.metadata(out, time.perf_counter() - start_time)


def block_as_batch(block: pa.Table, batch_format: str, column: str | None = None):
    """A block as a batch (for to_pandas_refs and to_numpy_refs)."""
    batch = B.block_to_batch(block, batch_format)
    return batch[column] if column is not None else batch


def aggregate_block(block: pa.Table, aggs: list) -> list[Any]:
    """Partial states of dataset-wide aggregations for one block."""
    return A.accumulate(aggs, block)
