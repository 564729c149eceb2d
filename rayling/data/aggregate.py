"""Aggregations: Count, Sum, Min, Max, Mean, Std, Unique, and AggregateFn for your own.

An aggregation is computed in three steps, so that blocks can be reduced where they are:
``accumulate_block`` turns one block (or one group of rows) into a partial state,
``merge`` combines two states, and ``finalize`` turns the last state into the result.
This module is plain logic on Arrow tables, with no tasks in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa


def _compute():
    """pyarrow.compute, imported when first needed (it takes a while to import)."""
    import pyarrow.compute

    return pyarrow.compute


class AggregateFn:
    """A user-defined aggregation, as in Ray:

    ``AggregateFn(init=lambda k: 0, accumulate_row=lambda a, row: a + row["x"],
    merge=lambda a, b: a + b, finalize=lambda a: a, name="total")``
    """

    def __init__(self, init: Callable[[Any], Any], merge: Callable[[Any, Any], Any],
                 name: str, accumulate_row: Callable[[Any, dict], Any] | None = None,
                 accumulate_block: Callable[[Any, pa.Table], Any] | None = None,
                 finalize: Callable[[Any], Any] | None = None) -> None:
        if accumulate_row is None and accumulate_block is None:
            raise ValueError("AggregateFn needs accumulate_row or accumulate_block")
        self._init = init
        self._merge = merge
        self._accumulate_row = accumulate_row
        self._accumulate_block = accumulate_block
        self._finalize = finalize or (lambda a: a)
        self.name = name

    def accumulate_block(self, block: pa.Table, key: Any = None) -> Any:
        """The partial state of one block (of the group ``key``, in a groupby)."""
        state = self._init(key)
        if self._accumulate_block is not None:
            return self._accumulate_block(state, block)
        from ._block import block_to_rows

        for row in block_to_rows(block):
            state = self._accumulate_row(state, row)
        return state

    def merge(self, a: Any, b: Any) -> Any:
        return self._merge(a, b)

    def finalize(self, state: Any) -> Any:
        return self._finalize(state)


class _ColumnAggregate(AggregateFn):
    """An aggregation of one column; null values are skipped when ``ignore_nulls``."""

    label = ""

    def __init__(self, on: str | None = None, ignore_nulls: bool = True,
                 alias_name: str | None = None) -> None:
        self.on = on
        self.ignore_nulls = ignore_nulls
        self.name = alias_name or f"{self.label}({on or ''})"

    def _column(self, block: pa.Table) -> pa.ChunkedArray | None:
        if self.on not in block.column_names:
            if block.num_columns == 0:
                return None
            raise ValueError(f"{self.name}: no column named {self.on!r}; the columns are "
                             f"{block.column_names}")
        return block.column(self.on)

    def accumulate_block(self, block: pa.Table, key: Any = None) -> Any:
        column = self._column(block)
        if column is None or len(column) == 0:
            return None
        if column.null_count and not self.ignore_nulls:
            return _NULL
        return self._partial(column)

    def merge(self, a: Any, b: Any) -> Any:
        if a is None:
            return b
        if b is None:
            return a
        if a is _NULL or b is _NULL:
            return _NULL
        return self._merge_states(a, b)

    def finalize(self, state: Any) -> Any:
        if state is None or state is _NULL:
            return None
        return self._final(state)

    def _partial(self, column):
        raise NotImplementedError

    def _merge_states(self, a, b):
        raise NotImplementedError

    def _final(self, state):
        return state


class _NullSeen:
    """The partial state "a null was seen and nulls are not ignored". It pickles by name,
    so the one made in a worker is this same object in the driver."""

    def __reduce__(self):
        return "_NULL"


_NULL = _NullSeen()


def _scalar(value: pa.Scalar) -> Any:
    return value.as_py()


class Count(AggregateFn):
    """The number of rows (or of non-null values of ``on``)."""

    def __init__(self, on: str | None = None, ignore_nulls: bool = False,
                 alias_name: str | None = None) -> None:
        self.on = on
        self.ignore_nulls = ignore_nulls
        self.name = alias_name or f"count({on or ''})"

    def accumulate_block(self, block: pa.Table, key: Any = None) -> int:
        if self.on is None:
            return block.num_rows
        if block.num_columns == 0:
            return 0
        column = block.column(self.on)
        return len(column) - (column.null_count if self.ignore_nulls else 0)

    def merge(self, a: int, b: int) -> int:
        return a + b

    def finalize(self, state: int) -> int:
        return state


class Sum(_ColumnAggregate):
    label = "sum"

    def _partial(self, column):
        return _scalar(_compute().sum(column))

    def _merge_states(self, a, b):
        return a + b


class Min(_ColumnAggregate):
    label = "min"

    def _partial(self, column):
        return _scalar(_compute().min(column))

    def _merge_states(self, a, b):
        return min(a, b)


class Max(_ColumnAggregate):
    label = "max"

    def _partial(self, column):
        return _scalar(_compute().max(column))

    def _merge_states(self, a, b):
        return max(a, b)


class Mean(_ColumnAggregate):
    label = "mean"

    def _partial(self, column):
        count = len(column) - column.null_count
        return (_scalar(_compute().sum(column)) or 0, count) if count else None

    def _merge_states(self, a, b):
        return (a[0] + b[0], a[1] + b[1])

    def _final(self, state):
        return state[0] / state[1]


class Std(_ColumnAggregate):
    """Standard deviation with ``ddof`` (1 by default, as in Ray), merged with Chan's
    parallel formula so partial results from blocks combine exactly."""

    label = "std"

    def __init__(self, on: str | None = None, ddof: int = 1, ignore_nulls: bool = True,
                 alias_name: str | None = None) -> None:
        super().__init__(on, ignore_nulls, alias_name)
        self.ddof = ddof

    def _partial(self, column):
        values = column.drop_null().to_numpy().astype(np.float64)
        if values.size == 0:
            return None
        mean = float(values.mean())
        return (values.size, mean, float(((values - mean) ** 2).sum()))

    def _merge_states(self, a, b):
        n_a, mean_a, m2_a = a
        n_b, mean_b, m2_b = b
        n = n_a + n_b
        delta = mean_b - mean_a
        return (n, mean_a + delta * n_b / n, m2_a + m2_b + delta * delta * n_a * n_b / n)

    def _final(self, state):
        n, _, m2 = state
        if n - self.ddof <= 0:
            return math.nan
        return math.sqrt(m2 / (n - self.ddof))


class Unique(_ColumnAggregate):
    """The distinct values (nulls left out when ``ignore_nulls``)."""

    label = "unique"

    def accumulate_block(self, block: pa.Table, key: Any = None) -> Any:
        column = self._column(block)
        if column is None or len(column) == 0:
            return None
        values = set(_compute().unique(column).to_pylist())
        if self.ignore_nulls:
            values.discard(None)
        return values

    def _merge_states(self, a, b):
        return a | b

    def _final(self, state):
        return list(state)


def accumulate(aggs: list[AggregateFn], block: pa.Table) -> list[Any]:
    return [agg.accumulate_block(block) for agg in aggs]


def merge_all(aggs: list[AggregateFn], partials: list[list[Any]]) -> list[Any]:
    """The finalized result of each aggregation over a list of per-block partial states."""
    results = []
    for i, agg in enumerate(aggs):
        states = [p[i] for p in partials]
        state = states[0]
        for other in states[1:]:
            state = agg.merge(state, other)
        results.append(agg.finalize(state))
    return results


def aggregate_groups(block: pa.Table, keys: list[str], aggs: list[AggregateFn]) -> pa.Table:
    """One row per distinct key of a block sorted by ``keys``: the keys and each
    aggregation's result, in the order of the keys."""
    from ._block import column_from_values

    groups = group_bounds(block, keys)
    key_values = {k: [] for k in keys}
    results: list[list] = [[] for _ in aggs]
    for start, end in groups:
        piece = block.slice(start, end - start)
        for k in keys:
            key_values[k].append(block.column(k)[start].as_py())
        key = key_values[keys[0]][-1] if len(keys) == 1 else tuple(
            key_values[k][-1] for k in keys)
        for i, agg in enumerate(aggs):
            results[i].append(agg.finalize(agg.accumulate_block(piece, key)))
    columns = {k: pa.array(v, type=block.schema.field(k).type) for k, v in key_values.items()}
    for agg, values in zip(aggs, results, strict=True):
        columns[agg.name] = column_from_values(values)
    return pa.table(columns)


def group_bounds(block: pa.Table, keys: list[str]) -> list[tuple[int, int]]:
    """(start, end) row ranges of equal keys in a block sorted by ``keys``."""
    n = block.num_rows
    if n == 0:
        return []
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for k in keys:
        column = block.column(k)
        values = column.to_numpy(zero_copy_only=False)
        missing = np.asarray(column.is_null(nan_is_null=True))
        if values.dtype == object:
            differ = np.array([a != b for a, b in zip(values[1:], values[:-1], strict=True)],
                              dtype=bool)
        else:
            differ = values[1:] != values[:-1]
        # Nulls (and NaN) are one group: two missing keys in a row are the same key.
        both_missing = missing[1:] & missing[:-1]
        change[1:] |= (differ & ~both_missing) | (missing[1:] ^ missing[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], n)
    return list(zip(starts.tolist(), ends.tolist(), strict=True))
