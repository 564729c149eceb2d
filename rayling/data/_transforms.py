"""Block transforms: what a dataset's map-like operators do to one block, run in workers.

Each transform is a small picklable object; ``__call__(block, index)`` takes a block (an
Arrow table) and the index of the block in its operator's input, and returns a block.
``setup()`` runs once per worker process (or actor) before the first block: that is where a
callable class passed to ``map_batches`` is constructed. Consecutive transforms of one
stage are fused into a ``Chain`` and run in one task per block.
"""

from __future__ import annotations

import inspect
from typing import Any

import pyarrow as pa

from . import _block as B


class Transform:
    name = "Transform"

    def setup(self) -> None:
        """Prepare per-process state; runs once before the first block."""

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        raise NotImplementedError


class _UserFunction(Transform):
    """A transform around a user function, or a callable class constructed in setup()."""

    def __init__(self, fn, fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                 fn_constructor_kwargs=None) -> None:
        self.fn = fn
        self.fn_args = tuple(fn_args or ())
        self.fn_kwargs = dict(fn_kwargs or {})
        self.ctor_args = tuple(fn_constructor_args or ())
        self.ctor_kwargs = dict(fn_constructor_kwargs or {})
        self._call = None

    @property
    def is_class(self) -> bool:
        return isinstance(self.fn, type)

    @property
    def label(self) -> str:
        return getattr(self.fn, "__name__", type(self.fn).__name__)

    def setup(self) -> None:
        target = self.fn(*self.ctor_args, **self.ctor_kwargs) if self.is_class else self.fn
        args, kwargs = self.fn_args, self.fn_kwargs
        if args or kwargs:
            self._call = lambda x: target(x, *args, **kwargs)
        else:
            self._call = target

    def _user(self):
        if self._call is None:
            self.setup()
        return self._call


class MapRows(_UserFunction):
    """``map``: one dict row in, one dict row out."""

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        fn = self._user()
        out = [fn(row) for row in B.block_to_rows(block)]
        if not out:
            return B.empty_block(None)
        return B.block_from_rows(out, f"map({self.label})")


class FlatMap(_UserFunction):
    """``flat_map``: one dict row in, a list (or iterable) of dict rows out."""

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        fn = self._user()
        out: list = []
        what = f"flat_map({self.label})"
        for row in B.block_to_rows(block):
            produced = fn(row)
            if isinstance(produced, dict) or not hasattr(produced, "__iter__"):
                raise TypeError(
                    f"{what}: the function must return a list of dict rows, but it returned "
                    f"a {type(produced).__name__}: {B._short(produced)}")
            out.extend(produced)
        return B.block_from_rows(out, what)


class Filter(_UserFunction):
    """``filter``: keep the rows for which the function is true."""

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        fn = self._user()
        keep = [bool(fn(row)) for row in B.block_to_rows(block)]
        return block.filter(pa.array(keep, type=pa.bool_())) if keep else block


class MapBatches(_UserFunction):
    """``map_batches``: a batch in (of ``batch_size`` rows, or the whole block), a batch out;
    a function may also yield several batches."""

    def __init__(self, fn, batch_size, batch_format, zero_copy_batch: bool = True,
                 **kwargs) -> None:
        super().__init__(fn, **kwargs)
        self.batch_size = batch_size
        self.batch_format = batch_format
        self.zero_copy_batch = zero_copy_batch

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        fn = self._user()
        what = f"map_batches({self.label})"
        rows = block.num_rows
        if rows == 0:
            return block
        size = self.batch_size or rows
        pieces = [block] if size >= rows else [block.slice(s, size) for s in range(0, rows, size)]
        outputs = []
        for piece in pieces:
            batch = B.block_to_batch(piece, self.batch_format)
            if not self.zero_copy_batch and isinstance(batch, dict):
                batch = {k: v.copy() for k, v in batch.items()}  # writable arrays
            result = fn(batch)
            if inspect.isgenerator(result):
                outputs.extend(B.block_from_batch(r, what) for r in result)
            else:
                outputs.append(B.block_from_batch(result, what))
        return B.concat(outputs)


class TableFunction(Transform):
    """A function of the whole table, for the column operators and slicing."""

    def __init__(self, name: str, fn, *args: Any) -> None:
        self.name = name
        self.fn = fn
        self.args = args

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        return self.fn(block, *self.args)


class RandomSample(Transform):
    """``random_sample``: keep each row with probability ``fraction``."""

    name = "RandomSample"

    def __init__(self, fraction: float, seed: int | None) -> None:
        self.fraction = fraction
        self.seed = seed

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        import numpy as np

        rng = np.random.default_rng(None if self.seed is None else [self.seed, index])
        return block.filter(pa.array(rng.random(block.num_rows) < self.fraction))


class Chain(Transform):
    """Transforms fused into one task: each one's output is the next one's input."""

    def __init__(self, transforms: list[Transform]) -> None:
        self.transforms = transforms

    def setup(self) -> None:
        for t in self.transforms:
            t.setup()

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        for t in self.transforms:
            block = t(block, index)
        return block


# -- table functions used by the column operators ------------------------------------------
def select_columns(block: pa.Table, cols: list[str]) -> pa.Table:
    _check_columns(block, cols, "select_columns")
    return block.select(cols)


def drop_columns(block: pa.Table, cols: list[str]) -> pa.Table:
    _check_columns(block, cols, "drop_columns")
    return block.drop_columns(cols)


def rename_columns(block: pa.Table, mapping: dict[str, str]) -> pa.Table:
    _check_columns(block, list(mapping), "rename_columns")
    return block.rename_columns([mapping.get(n, n) for n in block.column_names])


def add_column(block: pa.Table, col: str, fn, batch_format: str) -> pa.Table:
    value = fn(B.block_to_batch(block, batch_format))
    column = B.column_from_batch_value(col, value)
    if len(column) != block.num_rows:
        raise ValueError(f"add_column({col!r}): the function returned {len(column)} values "
                         f"for a batch of {block.num_rows} rows")
    if col in block.column_names:
        return block.set_column(block.column_names.index(col), col, column)
    return block.append_column(col, column)


def _check_columns(block: pa.Table, cols: list[str], what: str) -> None:
    if block.num_columns == 0 and block.num_rows == 0:
        return
    missing = [c for c in cols if c not in block.column_names]
    if missing:
        raise ValueError(f"{what}: no column named {', '.join(map(repr, missing))}; the "
                         f"columns are {block.column_names}")
