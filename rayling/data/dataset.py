"""Dataset: a lazy plan over blocks of dict rows, and what can be done with one.

Transformations (``map``, ``filter``, ``sort``...) return a new Dataset with one more op in
its plan and run nothing. Consuming a dataset (``take``, ``count``, ``iter_batches``,
``write_parquet``...) runs its plan with the streaming executor; consuming it again runs
it again, unless it was ``materialize()``d, which keeps its blocks in the object store.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

import rayling

from . import _block as B, _plan as P, _tasks, aggregate as A
from ._datasource import WriteTransform
from ._executor import Executor, StageStats
from ._remote import Bundle, remote_fn
from ._transforms import (
    Filter,
    FlatMap,
    MapBatches,
    MapRows,
    RandomSample,
    TableFunction,
    add_column,
    drop_columns,
    rename_columns,
    select_columns,
)


class Schema:
    """A dataset's columns and their types; ``base_schema`` is the Arrow schema."""

    def __init__(self, schema: pa.Schema) -> None:
        self.base_schema = schema

    @property
    def names(self) -> list[str]:
        return list(self.base_schema.names)

    @property
    def types(self) -> list:
        return list(self.base_schema.types)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schema) and other.base_schema == self.base_schema

    def __repr__(self) -> str:
        names = ["Column", *self.names]
        types = ["Type", *(B.type_name(t) for t in self.types)]
        width = max(map(len, names))
        lines = [f"{n:<{width}}  {t}" for n, t in zip(names, types, strict=True)]
        lines.insert(1, f"{'-' * 6:<{width}}  {'-' * 4}")
        return "\n".join(lines)


def _check_callable(fn: Any, what: str) -> None:
    if not callable(fn):
        raise TypeError(f"{what} expects a function or a callable class, got "
                        f"{type(fn).__name__}: {fn!r}")


class ActorPoolStrategy:
    """Ray's older way to ask for an actor pool: ``compute=ActorPoolStrategy(size=n)``
    (the same as ``concurrency=n``; a ``(min_size, max_size)`` pool gets ``max_size``)."""

    def __init__(self, *, size: int | None = None, min_size: int | None = None,
                 max_size: int | None = None, max_tasks_in_flight_per_actor: int | None = None
                 ) -> None:
        self.size = size or max_size or min_size or 1


def _map_options(fn, what: str, concurrency, num_cpus, num_gpus, memory,
                 remote_args: dict) -> tuple[dict, int | None]:
    """The remote options and actor-pool size of a map-like op."""
    options = dict(remote_args)
    compute = options.pop("compute", None)
    if isinstance(compute, ActorPoolStrategy) and concurrency is None:
        concurrency = compute.size
    if num_cpus is not None:
        options["num_cpus"] = num_cpus
    if num_gpus is not None:
        options["num_gpus"] = num_gpus
    if memory is not None:
        options["memory"] = memory
    if concurrency is None:
        if isinstance(fn, type):
            raise ValueError(
                f"{what}: a callable class ({fn.__name__}) runs on a pool of actors; say how "
                "many with concurrency=N (or a (min, max) tuple)")
        return options, None
    size = concurrency[-1] if isinstance(concurrency, tuple) else concurrency  # the max
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"{what}: concurrency must be a positive integer or a (min, max) "
                         f"tuple, got {concurrency!r}")
    if isinstance(fn, type):
        return options, size
    # Tasks of a function: at most this many at once. It rides in the options so that
    # stages with different limits do not fuse; the executor takes it out.
    options["_concurrency"] = size
    return options, None


class Dataset:
    """A distributed collection of dict rows, computed lazily. See the module docstring."""

    def __init__(self, op: P.Op) -> None:
        self._op = op
        self._last_run: list[StageStats] | None = None  # what the last run did

    # -- building the plan ------------------------------------------------------------------
    def _with(self, op_type, name: str, **fields) -> Dataset:
        return Dataset(op_type(name, [self._op], **fields))

    def _map_op(self, transform, name: str, options: dict, pool_size: int | None,
                keeps_rows: bool = False, keeps_schema: bool = False) -> Dataset:
        return self._with(P.MapOp, name, transform=transform, remote_args=options,
                          pool_size=pool_size, keeps_rows=keeps_rows,
                          keeps_schema=keeps_schema)

    def map(self, fn: Callable[[dict], dict], *, compute=None, fn_args=None, fn_kwargs=None,
            fn_constructor_args=None, fn_constructor_kwargs=None, num_cpus=None,
            num_gpus=None, memory=None, concurrency=None, **ray_remote_args) -> Dataset:
        """Apply ``fn`` to each row (a dict); it must return a dict (the new row)."""
        _check_callable(fn, "map")
        options, pool = _map_options(fn, "map", concurrency, num_cpus, num_gpus, memory,
                                     {**ray_remote_args, "compute": compute})
        transform = MapRows(fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        return self._map_op(transform, f"Map({transform.label})", options, pool,
                            keeps_rows=True)

    def map_batches(self, fn, *, batch_size: int | None | str = None, compute=None,
                    batch_format: str | None = "default", zero_copy_batch: bool = True,
                    fn_args=None, fn_kwargs=None, fn_constructor_args=None,
                    fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
                    concurrency=None, **ray_remote_args) -> Dataset:
        """Apply ``fn`` to batches of rows: a dict of NumPy arrays by default
        (``batch_format="pandas"`` or ``"pyarrow"`` for those), of ``batch_size`` rows
        (the whole block when None). ``fn`` returns a batch, or yields several; a callable
        class is constructed once per actor of a pool of ``concurrency`` actors."""
        _check_callable(fn, "map_batches")
        if batch_format not in B.BATCH_FORMATS and batch_format is not None:
            raise ValueError(f"map_batches: batch_format must be one of {B.BATCH_FORMATS}, "
                             f"got {batch_format!r}")
        if batch_size == "default":
            batch_size = None
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"map_batches: batch_size must be a positive integer or None, "
                             f"got {batch_size!r}")
        options, pool = _map_options(fn, "map_batches", concurrency, num_cpus, num_gpus,
                                     memory, {**ray_remote_args, "compute": compute})
        transform = MapBatches(fn, batch_size, batch_format, zero_copy_batch, fn_args=fn_args,
                               fn_kwargs=fn_kwargs, fn_constructor_args=fn_constructor_args,
                               fn_constructor_kwargs=fn_constructor_kwargs)
        return self._map_op(transform, f"MapBatches({transform.label})", options, pool)

    def flat_map(self, fn: Callable[[dict], list[dict]], *, compute=None, fn_args=None,
                 fn_kwargs=None, fn_constructor_args=None, fn_constructor_kwargs=None,
                 num_cpus=None, num_gpus=None, memory=None, concurrency=None,
                 **ray_remote_args) -> Dataset:
        """Apply ``fn`` to each row; it returns a list of rows (any number)."""
        _check_callable(fn, "flat_map")
        options, pool = _map_options(fn, "flat_map", concurrency, num_cpus, num_gpus, memory,
                                     {**ray_remote_args, "compute": compute})
        transform = FlatMap(fn, fn_args, fn_kwargs, fn_constructor_args,
                            fn_constructor_kwargs)
        return self._map_op(transform, f"FlatMap({transform.label})", options, pool)

    def filter(self, fn: Callable[[dict], bool] | None = None, *, expr=None, compute=None,
               fn_args=None, fn_kwargs=None, fn_constructor_args=None,
               fn_constructor_kwargs=None, num_cpus=None, num_gpus=None, memory=None,
               concurrency=None, **ray_remote_args) -> Dataset:
        """Keep the rows for which ``fn(row)`` is true."""
        if expr is not None:
            raise NotImplementedError("filter(expr=...) is not supported by rayling; pass a "
                                      "function of the row instead")
        _check_callable(fn, "filter")
        options, pool = _map_options(fn, "filter", concurrency, num_cpus, num_gpus, memory,
                                     {**ray_remote_args, "compute": compute})
        transform = Filter(fn, fn_args, fn_kwargs, fn_constructor_args, fn_constructor_kwargs)
        return self._map_op(transform, f"Filter({transform.label})", options, pool,
                            keeps_schema=True)

    def add_column(self, col: str, fn: Callable, *, batch_format: str = "pandas",
                   compute=None, concurrency=None, **ray_remote_args) -> Dataset:
        """Add (or replace) column ``col`` with ``fn(batch)``, one value per row."""
        _check_callable(fn, "add_column")
        return self._map_op(TableFunction("AddColumn", add_column, col, fn, batch_format),
                            f"AddColumn({col})", dict(ray_remote_args), None, keeps_rows=True)

    def drop_columns(self, cols: list[str] | str, **ray_remote_args) -> Dataset:
        cols = [cols] if isinstance(cols, str) else list(cols)
        return self._map_op(TableFunction("DropColumns", drop_columns, cols),
                            f"DropColumns({cols})", dict(ray_remote_args), None,
                            keeps_rows=True)

    def select_columns(self, cols: list[str] | str, **ray_remote_args) -> Dataset:
        cols = [cols] if isinstance(cols, str) else list(cols)
        return self._map_op(TableFunction("SelectColumns", select_columns, cols),
                            f"SelectColumns({cols})", dict(ray_remote_args), None,
                            keeps_rows=True)

    def rename_columns(self, names: dict[str, str], **ray_remote_args) -> Dataset:
        if not isinstance(names, dict):
            raise TypeError("rename_columns expects a dict of {old name: new name}")
        return self._map_op(TableFunction("RenameColumns", rename_columns, dict(names)),
                            f"RenameColumns({names})", dict(ray_remote_args), None,
                            keeps_rows=True)

    def random_sample(self, fraction: float, *, seed: int | None = None) -> Dataset:
        """Keep each row with probability ``fraction``."""
        if not 0 <= fraction <= 1:
            raise ValueError(f"random_sample: fraction must be in [0, 1], got {fraction}")
        return self._map_op(RandomSample(fraction, seed), f"RandomSample({fraction})", {},
                            None, keeps_schema=True)

    def limit(self, limit: int) -> Dataset:
        """The first ``limit`` rows; only as much as they need runs."""
        if not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
        return self._with(P.Limit, f"Limit[{limit}]", limit=limit)

    def union(self, *others: Dataset) -> Dataset:
        """This dataset's rows, then each of ``others``'s, in order."""
        for other in others:
            if not isinstance(other, Dataset):
                raise TypeError(f"union expects Datasets, got {type(other).__name__}")
        return Dataset(P.Union("Union", [self._op, *(o._op for o in others)]))

    def zip(self, other: Dataset) -> Dataset:
        """Rows of this dataset side by side with the rows of ``other`` (same count);
        a column name both have gets ``_1`` on the other's side."""
        if not isinstance(other, Dataset):
            raise TypeError(f"zip expects a Dataset, got {type(other).__name__}")
        return Dataset(P.Zip("Zip", [self._op, other._op]))

    def repartition(self, num_blocks: int, *, shuffle: bool = False) -> Dataset:
        """The same rows in ``num_blocks`` blocks (in order unless ``shuffle``)."""
        if not isinstance(num_blocks, int) or num_blocks < 1:
            raise ValueError(f"repartition: num_blocks must be a positive integer, got "
                             f"{num_blocks!r}")
        return self._with(P.AllToAll, f"Repartition[{num_blocks}]", kind="repartition",
                          args={"num_blocks": num_blocks, "shuffle": shuffle,
                                "seed": None})

    def random_shuffle(self, *, seed: int | None = None,
                       num_blocks: int | None = None) -> Dataset:
        """The rows in a random order (the same order for the same ``seed``)."""
        return self._with(P.AllToAll, "RandomShuffle", kind="random_shuffle",
                          args={"seed": seed, "num_blocks": num_blocks})

    def sort(self, key: str | list[str], descending: bool | list[bool] = False) -> Dataset:
        """The rows ordered by ``key`` (a column, or a list of them)."""
        keys = _keys(key, "sort")
        if isinstance(descending, list):
            if len(set(descending)) > 1:
                raise NotImplementedError("sort: mixed ascending and descending keys are not "
                                          "supported by rayling")
            descending = bool(descending[0]) if descending else False
        return self._with(P.AllToAll, f"Sort({', '.join(keys)})", kind="sort",
                          args={"keys": keys, "descending": bool(descending)})

    def groupby(self, key: str | list[str]) -> GroupedData:
        """Rows grouped by ``key``, for aggregations and ``map_groups``."""
        return GroupedData(self, _keys(key, "groupby"))

    # -- running ----------------------------------------------------------------------------
    def _bundles(self, stats_of: Dataset | None = None) -> Iterator[Bundle]:
        """Run the plan; ``stats_of`` (this dataset by default) keeps what the run did."""
        executor = Executor(P.plan_stages(self._op), P.known_num_blocks(self._op))
        (stats_of or self)._last_run = executor.stats()
        yield from executor.run()

    def iter_internal_ref_bundles(self) -> Iterator[Bundle]:
        """(block ref, metadata) of each block, in order, as they are made."""
        return self._bundles()

    def _blocks(self, stats_of: Dataset | None = None) -> Iterator[pa.Table]:
        for ref, _ in self._bundles(stats_of):
            yield rayling.get(ref)

    # -- consuming --------------------------------------------------------------------------
    def take(self, limit: int = 20) -> list[dict]:
        """The first ``limit`` rows, as dicts."""
        rows: list[dict] = []
        for block in self.limit(limit)._blocks(self):
            rows.extend(B.block_to_rows(block.slice(0, limit - len(rows))))
            if len(rows) >= limit:
                break
        return rows

    def take_all(self, limit: int | None = None) -> list[dict]:
        """Every row, as dicts (ValueError if there are more than ``limit``)."""
        rows: list[dict] = []
        for block in self._blocks():
            rows.extend(B.block_to_rows(block))
            if limit is not None and len(rows) > limit:
                raise ValueError(f"The dataset has more than the given limit of {limit} rows.")
        return rows

    def take_batch(self, batch_size: int = 20, *, batch_format: str | None = "default"):
        """The first ``batch_size`` rows as one batch."""
        blocks = list(self.limit(batch_size)._blocks(self))
        block = B.concat(blocks)
        if block.num_rows == 0:
            raise ValueError("The dataset is empty.")
        return B.block_to_batch(block.slice(0, batch_size), batch_format)

    def show(self, limit: int = 20) -> None:
        """Print the first ``limit`` rows, one per line."""
        for row in self.take(limit):
            print(row)

    def count(self) -> int:
        """The number of rows; from the plan when every op keeps or bounds the count, else
        by running it (only block metadata comes back)."""
        known = P.known_num_rows(self._op)
        if known is not None:
            return known
        return sum(meta.num_rows for _, meta in self._bundles())

    def schema(self, fetch_if_missing: bool = True) -> Schema | None:
        """The columns and their types (runs as little of the plan as it needs)."""
        known = P.known_schema(self._op)
        if known is None and fetch_if_missing:
            for _, meta in self._bundles():
                if meta.schema.names:
                    known = meta.schema
                    break
        return Schema(known) if known is not None else None

    def columns(self, fetch_if_missing: bool = True) -> list[str] | None:
        schema = self.schema(fetch_if_missing)
        return schema.names if schema is not None else None

    def size_bytes(self) -> int:
        return sum(meta.size_bytes for _, meta in self._bundles())

    def iter_rows(self) -> Iterator[dict]:
        for block in self._blocks():
            yield from B.block_to_rows(block)

    def iter_batches(self, *, batch_size: int | None = 256,
                     batch_format: str | None = "default", drop_last: bool = False,
                     prefetch_batches: int = 1, local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[Any]:
        """Batches of ``batch_size`` rows (whole blocks when None), across block edges;
        with ``local_shuffle_buffer_size``, rows drawn at random from a buffer of at least
        that many."""
        return _batches(self._blocks(), batch_size, batch_format, drop_last,
                        local_shuffle_buffer_size, local_shuffle_seed)

    def iterator(self) -> DataIterator:
        return DataIterator(self._blocks, self.stats)

    def to_pandas(self, limit: int | None = None):
        blocks = list(self._blocks())
        block = B.concat(blocks)
        if limit is not None and block.num_rows > limit:
            raise ValueError(f"The dataset has more than the given limit of {limit} rows.")
        return B.block_to_pandas(block)

    def to_arrow_refs(self) -> list:
        """Refs of the blocks (Arrow tables)."""
        return [ref for ref, _ in self._bundles()]

    def get_internal_block_refs(self) -> list:
        return self.to_arrow_refs()

    def to_pandas_refs(self) -> list:
        """Refs of one DataFrame per block, made by tasks."""
        task = remote_fn(_tasks.block_as_batch)
        return [task.remote(ref, "pandas") for ref, _ in self._bundles()]

    def to_numpy_refs(self, *, column: str | None = None) -> list:
        """Refs of one batch per block: a dict of arrays, or one column's array."""
        task = remote_fn(_tasks.block_as_batch)
        return [task.remote(ref, "numpy", column) for ref, _ in self._bundles()]

    def materialize(self) -> MaterializedDataset:
        """Run the plan once and keep its blocks in the object store."""
        bundles = list(self._bundles())
        op = P.InputBlocks("Materialized", [], [r for r, _ in bundles], [m for _, m in bundles])
        out = MaterializedDataset(op)
        out._last_run = self._last_run
        return out

    def split(self, n: int, *, equal: bool = False, locality_hints=None
              ) -> list[MaterializedDataset]:
        """``n`` materialized datasets sharing this one's blocks (with ``equal``, the same
        number of rows each, dropping the remainder)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"split: n must be a positive integer, got {n!r}")
        bundles = list(self._bundles())
        if equal:
            total = sum(m.num_rows for _, m in bundles)
            each = total // n
            parts = Dataset(P.InputBlocks("Split", [], [r for r, _ in bundles],
                                          [m for _, m in bundles]))
            if each == 0:
                return [_empty_like(bundles) for _ in range(n)]
            pieces = parts.limit(each * n).repartition(n).materialize()
            op = pieces._op
            return [MaterializedDataset(P.InputBlocks("Split", [], [r], [m]))
                    for r, m in zip(op.refs, op.metas, strict=True)]
        shares: list[list[Bundle]] = [[] for _ in range(n)]
        rows = [0] * n
        for bundle in bundles:
            i = rows.index(min(rows))
            shares[i].append(bundle)
            rows[i] += bundle[1].num_rows
        return [MaterializedDataset(P.InputBlocks("Split", [], [r for r, _ in s],
                                                  [m for _, m in s])) for s in shares]

    def split_at_indices(self, indices: list[int]) -> list[MaterializedDataset]:
        """Datasets of the rows before ``indices[0]``, between each pair of indices, and
        after the last (indices past the end give empty datasets)."""
        if any(not isinstance(i, int) or i < 0 for i in indices) or \
                list(indices) != sorted(indices):
            raise ValueError(f"split_at_indices: indices must be non-negative integers in "
                             f"ascending order, got {indices!r}")
        from ._shuffle import gather_ranges

        bundles = [b for b in self._bundles() if b[1].num_rows]
        total = sum(m.num_rows for _, m in bundles)
        edges = [0, *(min(i, total) for i in indices), total]
        parts, _ = gather_ranges(bundles, list(zip(edges[:-1], edges[1:], strict=True)))
        return [MaterializedDataset(P.InputBlocks("Split", [], [r], [m])) for r, m in parts]

    def split_proportionately(self, proportions: list[float]) -> list[MaterializedDataset]:
        """len(proportions) + 1 datasets: each proportion's share of the rows, in order,
        and the rest."""
        if not proportions or any(p <= 0 for p in proportions) or sum(proportions) >= 1:
            raise ValueError(f"split_proportionately: proportions must be positive and add "
                             f"up to less than 1, got {proportions!r}")
        total = self.count()
        indices, at = [], 0.0
        for share in proportions:
            at += share
            indices.append(int(total * at))
        return self.split_at_indices(indices)

    def train_test_split(self, test_size: float | int, *, shuffle: bool = False,
                         seed: int | None = None) -> tuple[MaterializedDataset,
                                                           MaterializedDataset]:
        """(train, test): the last ``test_size`` rows (a fraction, or a count) are the
        test set; ``shuffle`` shuffles the rows first."""
        ds = self.random_shuffle(seed=seed) if shuffle else self
        if isinstance(test_size, float):
            if not 0 < test_size < 1:
                raise ValueError(f"train_test_split: a fractional test_size must be between "
                                 f"0 and 1, got {test_size}")
            train, test = ds.split_proportionately([1 - test_size])
            return train, test
        materialized = ds.materialize()
        total = materialized.count()
        if not isinstance(test_size, int) or not 0 < test_size < total:
            raise ValueError(f"train_test_split: test_size must be a fraction or a number of "
                             f"rows between 0 and {total}, got {test_size!r}")
        train, test = materialized.split_at_indices([total - test_size])
        return train, test

    def streaming_split(self, n: int, *, equal: bool = False,
                        locality_hints=None) -> list[DataIterator]:
        """``n`` iterators that share this dataset's blocks as they are made; they can be
        used from other tasks and actors (an actor runs the dataset and deals the blocks)."""
        from ._split import SplitBlocks, SplitCoordinator

        if not isinstance(n, int) or n < 1:
            raise ValueError(f"streaming_split: n must be a positive integer, got {n!r}")
        coordinator = rayling.remote(SplitCoordinator).options(
            num_cpus=0, max_concurrency=max(2, n + 1)).remote(self._op, n, equal, _equal_shares)
        return [DataIterator(SplitBlocks(coordinator, i)) for i in range(n)]

    def stats(self) -> str:
        """What the last run of this dataset did, stage by stage."""
        if self._last_run is None:
            return "This dataset has not run yet."
        return "\n".join(s.text() for s in self._last_run)

    # -- aggregations -----------------------------------------------------------------------
    def aggregate(self, *aggs: A.AggregateFn) -> dict[str, Any]:
        """Each aggregation's result over the whole dataset, by name."""
        results = self._aggregate(list(aggs))
        return {agg.name: value for agg, value in zip(aggs, results, strict=True)}

    def _aggregate(self, aggs: list) -> list:
        task = remote_fn(_tasks.aggregate_block)
        refs = [task.remote(ref, aggs) for ref, _ in self._bundles()]
        partials = rayling.get(refs)
        if not partials:
            return [None] * len(aggs)
        return A.merge_all(aggs, partials)

    def _column_aggregate(self, cls, on, **kwargs):
        columns = [on] if isinstance(on, str) else on
        if columns is None:
            columns = self.columns()
        aggs = [cls(c, **kwargs) for c in columns]
        results = self._aggregate(aggs)
        if isinstance(on, str):
            return results[0]
        return {agg.name: value for agg, value in zip(aggs, results, strict=True)}

    def sum(self, on: str | list[str] | None = None, ignore_nulls: bool = True):
        return self._column_aggregate(A.Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on: str | list[str] | None = None, ignore_nulls: bool = True):
        return self._column_aggregate(A.Min, on, ignore_nulls=ignore_nulls)

    def max(self, on: str | list[str] | None = None, ignore_nulls: bool = True):
        return self._column_aggregate(A.Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on: str | list[str] | None = None, ignore_nulls: bool = True):
        return self._column_aggregate(A.Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on: str | list[str] | None = None, ddof: int = 1,
            ignore_nulls: bool = True):
        return self._column_aggregate(A.Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def unique(self, column: str) -> list:
        return self._column_aggregate(A.Unique, column)

    # -- writing ----------------------------------------------------------------------------
    def _write(self, fmt: str, path: str, options: dict[str, Any],
               ray_remote_args: dict | None = None) -> None:
        import os

        path = os.path.expanduser(path.split("://", 1)[-1] if path.startswith("local://")
                                  else path)
        if "://" in path:
            raise NotImplementedError(f"write_{fmt}: {path!r} is not a local path; rayling "
                                      "writes only to local and shared file systems")
        transform = WriteTransform(fmt, path, uuid.uuid4().hex[:12], options)
        ds = self._map_op(transform, transform.name, dict(ray_remote_args or {}), None)
        for _ in ds._bundles(self):
            pass

    def write_parquet(self, path: str, *, ray_remote_args=None, **arrow_parquet_args) -> None:
        self._write("parquet", path, arrow_parquet_args, ray_remote_args)

    def write_csv(self, path: str, *, ray_remote_args=None) -> None:
        self._write("csv", path, {}, ray_remote_args)

    def write_json(self, path: str, *, ray_remote_args=None) -> None:
        """JSON lines: one object per row."""
        self._write("json", path, {}, ray_remote_args)

    def write_numpy(self, path: str, *, column: str, ray_remote_args=None) -> None:
        self._write("numpy", path, {"column": column}, ray_remote_args)

    def write_images(self, path: str, column: str, file_format: str = "png", *,
                     ray_remote_args=None) -> None:
        """One image file per row, from the arrays in ``column``."""
        self._write("images", path, {"column": column, "file_format": file_format},
                    ray_remote_args)

    def __repr__(self) -> str:
        return P.describe(self._op)

    def __iter__(self):
        raise TypeError("A Dataset is not iterable; use iter_rows() or iter_batches()")


class MaterializedDataset(Dataset):
    """A dataset whose blocks are computed and kept in the object store."""

    def num_blocks(self) -> int:
        return len(self._op.refs)

    def __repr__(self) -> str:
        return P.describe(self._op, "MaterializedDataset",
                          f"num_blocks={self.num_blocks()}, ")


class GroupedData:
    """Rows grouped by key columns; each aggregation returns a Dataset sorted by key."""

    def __init__(self, dataset: Dataset, keys: list[str]) -> None:
        self._dataset = dataset
        self._keys = keys

    def aggregate(self, *aggs: A.AggregateFn) -> Dataset:
        return self._dataset._with(P.AllToAll, f"Aggregate({', '.join(self._keys)})",
                                   kind="aggregate", args={"keys": self._keys,
                                                           "aggs": list(aggs)},
                                   keeps_rows=False, keeps_schema=False)

    def _each(self, cls, on, **kwargs) -> Dataset:
        if on is None:
            columns = [c for c in self._dataset.columns() if c not in self._keys]
        else:
            columns = [on] if isinstance(on, str) else list(on)
        return self.aggregate(*(cls(c, **kwargs) for c in columns))

    def count(self) -> Dataset:
        return self.aggregate(A.Count())

    def sum(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(A.Sum, on, ignore_nulls=ignore_nulls)

    def min(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(A.Min, on, ignore_nulls=ignore_nulls)

    def max(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(A.Max, on, ignore_nulls=ignore_nulls)

    def mean(self, on=None, ignore_nulls: bool = True) -> Dataset:
        return self._each(A.Mean, on, ignore_nulls=ignore_nulls)

    def std(self, on=None, ddof: int = 1, ignore_nulls: bool = True) -> Dataset:
        return self._each(A.Std, on, ddof=ddof, ignore_nulls=ignore_nulls)

    def map_groups(self, fn, *, compute=None, batch_format: str | None = "default",
                   fn_args=None, fn_kwargs=None, **ray_remote_args) -> Dataset:
        """``fn`` on each group's rows as one batch; it returns a batch."""
        _check_callable(fn, "map_groups")
        return self._dataset._with(
            P.AllToAll, f"MapGroups({getattr(fn, '__name__', 'fn')})", kind="map_groups",
            args={"keys": self._keys, "fn": fn, "batch_format": batch_format,
                  "fn_args": tuple(fn_args or ()), "fn_kwargs": dict(fn_kwargs or {})},
            keeps_rows=False, keeps_schema=False)


def _equal_shares(op: P.Op, n: int) -> list[list]:
    """The block refs of ``n`` parts of the dataset with the same number of rows (run in
    streaming_split's coordinator)."""
    return [part._op.refs for part in Dataset(op).split(n, equal=True)]


class DataIterator:
    """Iterates a dataset's rows or batches (from ``iterator()`` or ``streaming_split``)."""

    def __init__(self, blocks: Callable[[], Iterator[pa.Table]], stats=None) -> None:
        self._make_blocks = blocks
        self._stats = stats

    def iter_batches(self, *, batch_size: int | None = 256,
                     batch_format: str | None = "default", drop_last: bool = False,
                     prefetch_batches: int = 1, local_shuffle_buffer_size: int | None = None,
                     local_shuffle_seed: int | None = None) -> Iterator[Any]:
        return _batches(self._make_blocks(), batch_size, batch_format, drop_last,
                        local_shuffle_buffer_size, local_shuffle_seed)

    def iter_rows(self) -> Iterator[dict]:
        for block in self._make_blocks():
            yield from B.block_to_rows(block)

    def __iter__(self):
        return self.iter_rows()

    def stats(self) -> str:
        return self._stats() if self._stats else ""


def _batches(blocks: Iterator[pa.Table], batch_size: int | None, batch_format: str | None,
             drop_last: bool, shuffle_buffer: int | None = None,
             shuffle_seed: int | None = None) -> Iterator[Any]:
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size}")
    if shuffle_buffer:
        if batch_size is None:
            raise ValueError("local_shuffle_buffer_size needs a batch_size")
        blocks = _locally_shuffled(blocks, shuffle_buffer, batch_size, shuffle_seed)
    if batch_size is None:
        for block in blocks:
            if block.num_rows:
                yield B.block_to_batch(block, batch_format)
        return
    pending: list[pa.Table] = []
    count = 0
    for block in blocks:
        start = 0
        while start < block.num_rows:
            take = min(batch_size - count, block.num_rows - start)
            pending.append(block.slice(start, take))
            count += take
            start += take
            if count == batch_size:
                yield B.block_to_batch(B.concat(pending), batch_format)
                pending, count = [], 0
    if count and not drop_last:
        yield B.block_to_batch(B.concat(pending), batch_format)


def _locally_shuffled(blocks: Iterator[pa.Table], buffer_rows: int, batch_size: int,
                      seed: int | None) -> Iterator[pa.Table]:
    """Blocks of ``batch_size`` rows drawn at random from a buffer kept above
    ``buffer_rows`` rows (smaller at the end)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    buffer: pa.Table | None = None
    for block in blocks:
        buffer = block if buffer is None else B.concat([buffer, block])
        while buffer.num_rows >= buffer_rows + batch_size:
            order = rng.permutation(buffer.num_rows)
            yield buffer.take(pa.array(order[:batch_size]))
            buffer = buffer.take(pa.array(np.sort(order[batch_size:])))
    if buffer is not None and buffer.num_rows:
        yield buffer.take(pa.array(rng.permutation(buffer.num_rows)))


def _empty_like(bundles: list[Bundle]) -> MaterializedDataset:
    schema = next((m.schema for _, m in bundles), None)
    block = B.empty_block(schema)
    return MaterializedDataset(P.InputBlocks("Split", [], [rayling.put(block)],
                                             [B.metadata(block)]))


def _keys(key, what: str) -> list[str]:
    keys = [key] if isinstance(key, str) else list(key or [])
    if not keys or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"{what} needs a column name or a list of column names, got {key!r}")
    return keys
