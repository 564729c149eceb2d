"""Making datasets: from ranges, from data in the driver, and from files.

``range`` and the readers make a plan of read tasks that run in workers (files are read in
parallel, one task per file until there are more files than blocks wanted). ``from_*``
cut the driver's data into blocks and put them in the object store at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

import rayling

from . import _block as B, _plan as P
from ._datasource import (
    IMAGE_EXTENSIONS,
    FileReadTask,
    RangeTask,
    expand_paths,
    group_files,
    split_range as _split_range,
)
from .context import DataContext
from .dataset import Dataset, MaterializedDataset

MIN_BLOCK_BYTES = 1024 * 1024


def _num_blocks(rows: int, override_num_blocks: int | None, parallelism: int,
                size_bytes: int | None = None) -> int:
    """How many blocks to cut ``rows`` rows (about ``size_bytes``) into: as asked, else
    enough to keep every CPU busy twice over, more for data over 1 MiB a block (up to
    ``read_op_min_num_blocks``), and at least enough to keep blocks under
    ``target_max_block_size``; never more blocks than rows. Without a size, as many as
    ``read_op_min_num_blocks`` (files: one per file)."""
    wanted = override_num_blocks if override_num_blocks is not None else parallelism
    if wanted is not None and wanted > 0:
        return max(1, min(wanted, rows) if rows else 1)
    context = DataContext.get_current()
    if size_bytes is None:
        return max(1, min(rows, context.read_op_min_num_blocks))
    cpus = int(rayling.cluster_resources().get("CPU", 1))
    blocks = max(min(context.read_op_min_num_blocks, size_bytes // MIN_BLOCK_BYTES),
                 2 * cpus, -(-size_bytes // context.target_max_block_size))
    return max(1, min(rows, blocks))


def range(n: int, *, override_num_blocks: int | None = None,  # noqa: A001 - Ray's name
          parallelism: int = -1, concurrency: int | None = None) -> Dataset:
    """Rows ``{"id": 0}`` ... ``{"id": n - 1}``."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"range: n must be a non-negative integer, got {n!r}")
    blocks = _num_blocks(n, override_num_blocks, parallelism, 8 * n)
    tasks = [RangeTask(a, b) for a, b in _split_range(n, blocks)]
    return Dataset(P.Read("ReadRange", tasks=tasks, schema=pa.schema([("id", pa.int64())])))


def range_tensor(n: int, *, shape: tuple[int, ...] = (1,),
                 override_num_blocks: int | None = None, parallelism: int = -1) -> Dataset:
    """Rows ``{"data": array of shape filled with i}`` for i in 0..n-1."""
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"range_tensor: n must be a non-negative integer, got {n!r}")
    shape = tuple(shape)
    size = 8 * n * int(np.prod(shape))
    tasks = [RangeTask(a, b, shape) for a, b in _split_range(
        n, _num_blocks(n, override_num_blocks, parallelism, size))]
    schema = pa.schema([("data", pa.fixed_shape_tensor(pa.int64(), shape))])
    return Dataset(P.Read("ReadRangeTensor", tasks=tasks, schema=schema))


def _from_blocks(blocks: list[pa.Table], name: str) -> MaterializedDataset:
    refs = [rayling.put(b) for b in blocks]
    return MaterializedDataset(P.InputBlocks(name, [], refs, [B.metadata(b) for b in blocks]))


def from_items(items: list, *, override_num_blocks: int | None = None,
               parallelism: int = -1) -> MaterializedDataset:
    """A dataset of ``items``: dicts are rows, anything else becomes ``{"item": x}``."""
    if not isinstance(items, list | tuple):
        raise TypeError(f"from_items expects a list, got {type(items).__name__}")
    rows = [x if isinstance(x, dict) else {"item": x} for x in items]
    ranges = _split_range(len(rows), _num_blocks(len(rows), override_num_blocks, parallelism,
                                                 _items_size(rows)))
    blocks = [B.block_from_rows(rows[a:b], "from_items") for a, b in ranges]
    return _from_blocks(blocks or [pa.table({})], "FromItems")


def _items_size(rows: list[dict]) -> int:
    """A rough size of items: NumPy arrays by their bytes, anything else as 8 bytes."""
    size = 0
    for row in rows[:1000]:
        for value in row.values():
            size += value.nbytes if isinstance(value, np.ndarray) else 8
    return size * max(1, len(rows) // 1000) if len(rows) > 1000 else size


def from_numpy(ndarrays) -> MaterializedDataset:
    """One block per array, in column ``data`` (rows along the first axis)."""
    arrays = [ndarrays] if isinstance(ndarrays, np.ndarray) else list(ndarrays)
    return _from_blocks([B.block_from_batch({"data": a}, "from_numpy") for a in arrays],
                        "FromNumpy")


def from_pandas(dfs) -> MaterializedDataset:
    """One block per DataFrame."""
    frames = dfs if isinstance(dfs, list | tuple) else [dfs]
    return _from_blocks([B.block_from_batch(df, "from_pandas") for df in frames], "FromPandas")


def from_arrow(tables) -> MaterializedDataset:
    """One block per Arrow table."""
    tables = tables if isinstance(tables, list | tuple) else [tables]
    return _from_blocks([t if isinstance(t, pa.Table) else pa.table(t) for t in tables],
                        "FromArrow")


def _read_files(reader: str, paths, *, extensions: tuple[str, ...] | None,
                include_paths: bool, override_num_blocks: int | None, parallelism: int,
                options: dict[str, Any], ray_remote_args: dict | None = None) -> Dataset:
    files = expand_paths(paths, extensions, f"read_{reader}")
    groups = group_files(files, _num_blocks(len(files), override_num_blocks, parallelism))
    tasks = [FileReadTask(g, reader, include_paths, options) for g in groups]
    name = "Read" + "".join(part.title() for part in reader.split("_"))
    return Dataset(P.Read(name, tasks=tasks, remote_args=dict(ray_remote_args or {})))


def read_csv(paths, *, include_paths: bool = False, override_num_blocks: int | None = None,
             parallelism: int = -1, file_extensions=None, ray_remote_args=None,
             **arrow_csv_args) -> Dataset:
    """CSV files (a header line, then rows), parsed by pyarrow.csv (its options pass on)."""
    return _read_files("csv", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options=arrow_csv_args,
                       ray_remote_args=ray_remote_args)


def read_json(paths, *, lines: bool | None = None, include_paths: bool = False,
              override_num_blocks: int | None = None, parallelism: int = -1,
              file_extensions=None, ray_remote_args=None, **arrow_json_args) -> Dataset:
    """JSON lines files (one object per line), or files holding one JSON array of objects."""
    return _read_files("json", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options={"lines": lines, **arrow_json_args},
                       ray_remote_args=ray_remote_args)


def read_parquet(paths, *, columns: list[str] | None = None, include_paths: bool = False,
                 override_num_blocks: int | None = None, parallelism: int = -1,
                 file_extensions=("parquet",), ray_remote_args=None, **arrow_args) -> Dataset:
    return _read_files("parquet", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options={"columns": columns, **arrow_args},
                       ray_remote_args=ray_remote_args)


def read_text(paths, *, encoding: str = "utf-8", drop_empty_lines: bool = True,
              include_paths: bool = False, override_num_blocks: int | None = None,
              parallelism: int = -1, file_extensions=None, ray_remote_args=None) -> Dataset:
    """One row ``{"text": line}`` per line (empty lines left out unless
    ``drop_empty_lines=False``)."""
    return _read_files("text", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism,
                       options={"encoding": encoding, "drop_empty_lines": drop_empty_lines},
                       ray_remote_args=ray_remote_args)


def read_numpy(paths, *, include_paths: bool = False, override_num_blocks: int | None = None,
               parallelism: int = -1, file_extensions=("npy",), ray_remote_args=None
               ) -> Dataset:
    """``.npy`` files; each array's first axis is rows of column ``data``."""
    return _read_files("numpy", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options={}, ray_remote_args=ray_remote_args)


def read_images(paths, *, size: tuple[int, int] | None = None, mode: str | None = None,
                include_paths: bool = False, override_num_blocks: int | None = None,
                parallelism: int = -1, file_extensions=IMAGE_EXTENSIONS,
                ray_remote_args=None) -> Dataset:
    """One row ``{"image": array (height, width[, channels])}`` per image file, read with
    Pillow; ``size=(height, width)`` resizes, ``mode`` ("RGB", "L"...) converts."""
    if size is not None and (len(size) != 2 or not all(isinstance(s, int) and s > 0
                                                        for s in size)):
        raise ValueError(f"read_images: size must be (height, width), got {size!r}")
    return _read_files("images", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options={"size": size, "mode": mode},
                       ray_remote_args=ray_remote_args)


def read_binary_files(paths, *, include_paths: bool = False,
                      override_num_blocks: int | None = None, parallelism: int = -1,
                      file_extensions=None, ray_remote_args=None) -> Dataset:
    """One row ``{"bytes": file contents}`` per file."""
    return _read_files("binary_files", paths, extensions=_exts(file_extensions),
                       include_paths=include_paths, override_num_blocks=override_num_blocks,
                       parallelism=parallelism, options={}, ray_remote_args=ray_remote_args)


def _exts(extensions) -> tuple[str, ...] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):
        extensions = [extensions]
    return tuple(e.lower().lstrip(".") for e in extensions)
