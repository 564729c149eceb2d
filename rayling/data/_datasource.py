"""Where blocks come from and go to: read tasks (ranges and files) and file writers.

A ``ReadTask`` is a small picklable object that a worker calls to make one block; the
driver only lists files and splits ranges. Readers name the file they could not read.
Writers write one file per block (``write_images``: one file per row) into a directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from . import _block as B
from ._transforms import Transform

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "gif", "webp")


class FileReadError(OSError):
    """A file of a dataset could not be read; the message names the file."""


class ReadTask:
    """Makes one block when called (in a worker)."""

    num_rows: int | None = None  # rows it will make, when known before reading

    def __call__(self) -> pa.Table:
        raise NotImplementedError


@dataclass
class RangeTask(ReadTask):
    start: int
    end: int
    tensor_shape: tuple[int, ...] | None = None

    @property
    def num_rows(self) -> int:
        return self.end - self.start

    def __call__(self) -> pa.Table:
        ids = np.arange(self.start, self.end, dtype=np.int64)
        if self.tensor_shape is None:
            return pa.table({"id": ids})
        data = np.ascontiguousarray(
            np.broadcast_to(ids.reshape((-1,) + (1,) * len(self.tensor_shape)),
                            (len(ids), *self.tensor_shape)))
        return pa.table({"data": pa.FixedShapeTensorArray.from_numpy_ndarray(data)})


def split_range(n: int, num_blocks: int) -> list[tuple[int, int]]:
    """``num_blocks`` contiguous ranges covering 0..n, sizes differing by at most one."""
    num_blocks = max(1, min(num_blocks, n)) if n else 1
    edges = [n * i // num_blocks for i in range(num_blocks + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


@dataclass
class FileReadTask(ReadTask):
    """Reads some files with one of the readers below and concatenates their rows."""

    paths: list[str]
    reader: str
    include_paths: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> pa.Table:
        read = READERS[self.reader]
        blocks = []
        for path in self.paths:
            try:
                block = read(path, **self.options)
            except Exception as error:
                raise FileReadError(
                    f"Could not read {path!r} with read_{self.reader}: "
                    f"{type(error).__name__}: {error}") from error
            if self.include_paths:
                block = block.append_column("path", pa.array([path] * block.num_rows,
                                                             type=pa.string()))
            blocks.append(block)
        return B.concat(blocks)


# -- listing files --------------------------------------------------------------------------
def expand_paths(paths: str | list[str], extensions: tuple[str, ...] | None,
                 what: str) -> list[str]:
    """Every file named by ``paths`` (files, directories walked recursively, in sorted
    order), keeping those with one of ``extensions`` when given. Hidden files and files
    starting with ``_`` inside directories are skipped."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    found: list[str] = []
    for path in map(os.fspath, paths):
        if "://" in path:
            scheme = path.split("://", 1)[0]
            if scheme != "local":
                raise NotImplementedError(
                    f"{what}: {path!r} is on {scheme}://, but rayling reads only local and "
                    "shared file systems; copy the data to a local path first")
            path = path.split("://", 1)[1]
        path = os.path.expanduser(path)
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
                found.extend(os.path.join(root, f) for f in sorted(files)
                             if not f.startswith((".", "_")) and _has_extension(f, extensions))
        elif os.path.exists(path):
            found.append(path)
        else:
            raise FileNotFoundError(f"{what}: no such file or directory: {path!r}")
    if not found:
        kinds = f" with extension {', '.join(extensions)}" if extensions else ""
        raise FileNotFoundError(f"{what}: no files{kinds} found in {list(paths)}")
    return found


def _has_extension(name: str, extensions: tuple[str, ...] | None) -> bool:
    return extensions is None or name.lower().rsplit(".", 1)[-1] in extensions


def group_files(paths: list[str], num_tasks: int) -> list[list[str]]:
    """Contiguous groups of files, one group per read task."""
    return [paths[a:b] for a, b in split_range(len(paths), num_tasks) if b > a]


# -- readers: each reads one file into a block ----------------------------------------------
def _read_csv(path: str, **options) -> pa.Table:
    import pyarrow.csv as csv

    return csv.read_csv(path, **options)


def _read_json(path: str, lines: bool | None = None, **options) -> pa.Table:
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if lines is False or (lines is None and head.startswith(b"[")):
        import json

        with open(path) as f:
            records = json.load(f)
        if isinstance(records, dict):
            records = [records]
        return B.block_from_rows(records, "read_json")
    import pyarrow.json as pj

    return pj.read_json(path, **options)


def _read_parquet(path: str, columns: list[str] | None = None, **options) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns, **options)


def _read_text(path: str, encoding: str = "utf-8", drop_empty_lines: bool = True):
    with open(path, encoding=encoding, newline="") as f:
        lines = [line.removesuffix("\r") for line in f.read().split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    if drop_empty_lines:
        lines = [line for line in lines if line.strip()]
    return pa.table({"text": pa.array(lines, type=pa.string())})


def _read_numpy(path: str) -> pa.Table:
    array = np.load(path, allow_pickle=False)
    return B.block_from_batch({"data": array}, "read_numpy")


def _read_binary(path: str) -> pa.Table:
    with open(path, "rb") as f:
        return pa.table({"bytes": pa.array([f.read()], type=pa.binary())})


def _read_image(path: str, size: tuple[int, int] | None = None, mode: str | None = None):
    from PIL import Image

    with Image.open(path) as image:
        if mode is not None:
            image = image.convert(mode)
        if size is not None:
            height, width = size
            image = image.resize((width, height))
        array = np.asarray(image)
    return pa.table({"image": B.tensor_array([array])})


READERS = {
    "csv": _read_csv,
    "json": _read_json,
    "parquet": _read_parquet,
    "text": _read_text,
    "numpy": _read_numpy,
    "binary_files": _read_binary,
    "images": _read_image,
}


# -- writers: each writes one block ---------------------------------------------------------
def write_block(block: pa.Table, index: int, fmt: str, path: str, prefix: str,
                options: dict[str, Any]) -> pa.Table:
    """Write ``block`` under directory ``path``; returns a table of the files written."""
    os.makedirs(path, exist_ok=True)
    base = os.path.join(path, f"{prefix}_{index:06d}")
    if fmt == "images":
        written = _write_images(block, base, **options)
    elif block.num_rows == 0:
        written = []
    else:
        target = f"{base}_000000.{_EXTENSIONS[fmt]}"
        WRITERS[fmt](block, target, **options)
        written = [target]
    return pa.table({"path": pa.array(written, type=pa.string()),
                     "num_rows": pa.array([block.num_rows] * len(written), type=pa.int64())})


def _write_csv(block: pa.Table, target: str) -> None:
    import pyarrow.csv as csv

    csv.write_csv(_plain(block, "write_csv"), target)


def _write_json(block: pa.Table, target: str) -> None:
    import json

    with open(target, "w") as f:
        for row in B.block_to_rows(block):
            f.write(json.dumps(row, default=_json_default))
            f.write("\n")


def _json_default(value: Any):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    raise TypeError(f"write_json cannot write a {type(value).__name__}")


def _write_parquet(block: pa.Table, target: str, **options) -> None:
    import pyarrow.parquet as pq

    pq.write_table(block, target, **options)


def _write_numpy(block: pa.Table, target: str, column: str) -> None:
    if column not in block.column_names:
        raise ValueError(f"write_numpy: no column named {column!r}; the columns are "
                         f"{block.column_names}")
    values = B.column_numpy(block.column(column))
    if values.dtype == object:
        values = np.stack(list(values))
    np.save(target, values)


def _write_images(block: pa.Table, base: str, column: str, file_format: str = "png"):
    from PIL import Image

    if column not in block.column_names:
        raise ValueError(f"write_images: no column named {column!r}; the columns are "
                         f"{block.column_names}")
    written = []
    for i, image in enumerate(B.column_values(block.column(column))):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = np.clip(array, 0, 255).astype(np.uint8)
        target = f"{base}_{i:06d}.{file_format}"
        Image.fromarray(array).save(target)
        written.append(target)
    return written


def _plain(block: pa.Table, what: str) -> pa.Table:
    for field_ in block.schema:
        if isinstance(field_.type, pa.ExtensionType):
            raise TypeError(f"{what} cannot write column {field_.name!r} of "
                            f"{B.type_name(field_.type)}; use write_parquet or write_numpy")
    return block


WRITERS = {"csv": _write_csv, "json": _write_json, "parquet": _write_parquet,
           "numpy": _write_numpy}
_EXTENSIONS = {"csv": "csv", "json": "json", "parquet": "parquet", "numpy": "npy"}


class WriteTransform(Transform):
    """The last transform of a write: writes the block, returns the files it wrote."""

    def __init__(self, fmt: str, path: str, prefix: str, options: dict[str, Any]) -> None:
        self.name = f"Write{fmt.title().replace('_', '')}"
        self.fmt = fmt
        self.path = path
        self.prefix = prefix
        self.options = options

    def __call__(self, block: pa.Table, index: int) -> pa.Table:
        return write_block(block, index, self.fmt, self.path, self.prefix, self.options)
