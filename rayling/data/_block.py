"""Blocks: the Arrow tables a dataset's rows live in, and conversions to and from them.

A block is a ``pyarrow.Table``. Columns hold what Arrow holds natively (numbers, strings,
lists, structs); a column of NumPy arrays is a tensor column (Arrow's fixed-shape tensor
type when every row has one shape, ``rayling.var_tensor`` otherwise) and reads back as
NumPy arrays without a copy; anything else (arbitrary Python objects, mixed types) is kept
pickled in a ``rayling.pickled`` column. Blocks travel through the object store as pickle
protocol 5 with their buffers out of band, so a worker reads a block from shared memory
without copying it.

Rows are dicts; batches are a dict of NumPy arrays ("numpy", the default), a pandas
DataFrame ("pandas") or the table itself ("pyarrow").
"""

from __future__ import annotations

import gc
import json
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
import pyarrow as pa

BATCH_FORMATS = ("default", "numpy", "pandas", "pyarrow")


# -- extension types ------------------------------------------------------------------------
class VarTensorType(pa.ExtensionType):
    """NumPy arrays of one dtype and number of dimensions but different shapes."""

    def __init__(self, value_type: pa.DataType, ndim: int) -> None:
        self._value_type = value_type
        self._ndim = ndim
        storage = pa.struct([("data", pa.large_list(value_type)),
                             ("shape", pa.list_(pa.int64(), ndim))])
        super().__init__(storage, "rayling.var_tensor")

    @property
    def value_type(self) -> pa.DataType:
        return self._value_type

    @property
    def ndim(self) -> int:
        return self._ndim

    def __arrow_ext_serialize__(self) -> bytes:
        return json.dumps({"ndim": self._ndim}).encode()

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        value_type = storage_type.field("data").type.value_type
        return cls(value_type, json.loads(serialized)["ndim"])

    def __reduce__(self):
        return VarTensorType, (self._value_type, self._ndim)

    def __str__(self) -> str:
        return f"var_tensor<{self._value_type}, ndim={self._ndim}>"


class PickledType(pa.ExtensionType):
    """Python objects Arrow cannot hold, each pickled with cloudpickle."""

    def __init__(self) -> None:
        super().__init__(pa.large_binary(), "rayling.pickled")

    def __arrow_ext_serialize__(self) -> bytes:
        return b""

    @classmethod
    def __arrow_ext_deserialize__(cls, storage_type, serialized):
        return cls()

    def __reduce__(self):
        return PickledType, ()

    def __str__(self) -> str:
        return "object"


for _type in (VarTensorType(pa.int8(), 1), PickledType()):
    try:
        pa.register_extension_type(_type)
    except pa.ArrowKeyError:  # registered already (module reloaded)
        pass


def is_tensor_type(t: pa.DataType) -> bool:
    return isinstance(t, pa.FixedShapeTensorType | VarTensorType)


def type_name(t: pa.DataType) -> str:
    """A column type as ``schema`` shows it (``numpy.ndarray(shape=(2, 3), dtype=double)``)."""
    if isinstance(t, pa.FixedShapeTensorType):
        return f"numpy.ndarray(shape={tuple(t.shape)}, dtype={t.value_type})"
    if isinstance(t, VarTensorType):
        return f"numpy.ndarray(ndim={t.ndim}, dtype={t.value_type})"
    return str(t)


# -- Python values -> Arrow -----------------------------------------------------------------
def tensor_array(values: list) -> pa.Array:
    """One tensor column from a list of NumPy arrays (copies them into one buffer)."""
    first = values[0]
    if all(v.shape == first.shape and v.dtype == first.dtype for v in values):
        stacked = (np.ascontiguousarray(first).reshape((1, *first.shape)) if len(values) == 1
                   else np.stack(values))
        return pa.FixedShapeTensorArray.from_numpy_ndarray(stacked)
    return var_tensor_array(values)


def var_tensor_array(values: list, dtype=None) -> pa.Array:
    """A variable-shape tensor column (arrays of one number of dimensions)."""
    dtype = dtype or np.result_type(*values)
    ndim = values[0].ndim
    if any(v.ndim != ndim for v in values):
        raise _NotATensor
    value_type = pa.from_numpy_dtype(dtype)
    flat = [np.ascontiguousarray(v, dtype=dtype).ravel() for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum([f.size for f in flat], out=offsets[1:])
    data = pa.LargeListArray.from_arrays(pa.array(offsets),
                                         pa.array(np.concatenate(flat)))
    shapes = pa.FixedSizeListArray.from_arrays(
        pa.array(np.array([v.shape for v in values], dtype=np.int64).ravel()), ndim)
    storage = pa.StructArray.from_arrays([data, shapes], names=["data", "shape"])
    return pa.ExtensionArray.from_storage(VarTensorType(value_type, ndim), storage)


class _NotATensor(Exception):
    pass


def pickled_array(values: list) -> pa.Array:
    storage = pa.array([cloudpickle.dumps(v) for v in values], type=pa.large_binary())
    return pa.ExtensionArray.from_storage(PickledType(), storage)


def column_from_values(values: list) -> pa.Array:
    """An Arrow column holding ``values`` (Python objects), in the best type that fits."""
    first = next((v for v in values if v is not None), None)
    if isinstance(first, np.ndarray) and first.dtype != object:
        if all(isinstance(v, np.ndarray) for v in values):
            try:
                return tensor_array(values)
            except (_NotATensor, pa.ArrowException, TypeError, ValueError):
                pass
        return pickled_array(values)
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pickled_array(values)


def column_from_batch_value(name: str, value: Any) -> pa.Array | pa.ChunkedArray:
    """A column from one value of a batch dict: a NumPy array, a list, or an Arrow array."""
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise TypeError(_scalar_column_text(name, value))
        if value.ndim > 1:
            if value.dtype == object:
                return pickled_array(list(value))
            return pa.FixedShapeTensorArray.from_numpy_ndarray(np.ascontiguousarray(value))
        if value.dtype == object:
            return column_from_values(list(value))
        return pa.array(value)
    if isinstance(value, list | tuple):
        return column_from_values(list(value))
    if _is_pandas_series(value):
        return column_from_batch_value(name, value.to_numpy())
    raise TypeError(_scalar_column_text(name, value))


def _scalar_column_text(name: str, value: Any) -> str:
    return (f"column {name!r} of the batch is a {type(value).__name__} ({_short(value)}), "
            "not an array or list: each value of a batch dict must be a column with one "
            "entry per row, e.g. np.array([...])")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_pandas_series(value: Any) -> bool:
    return type(value).__name__ == "Series" and hasattr(value, "to_numpy")


def block_from_rows(rows: list[dict], what: str = "map") -> pa.Table:
    """A block from a list of dict rows; rows missing a key get None there."""
    if not rows:
        return pa.table({})
    keys: dict[str, None] = {}
    if not isinstance(rows[0], dict):
        raise TypeError(
            f"{what}: the function must return a dict (one row), but it returned a "
            f"{type(rows[0]).__name__}: {_short(rows[0])}")
    first_keys = rows[0].keys()
    same = True
    for row in rows:
        if not isinstance(row, dict):
            raise TypeError(
                f"{what}: the function must return a dict (one row), but it returned a "
                f"{type(row).__name__}: {_short(row)}")
        if row.keys() != first_keys:
            same = False
            keys.update(dict.fromkeys(row))
    if same:
        names = list(first_keys)
        columns = [column_from_values([row[k] for row in rows]) for k in names]
    else:
        names = list(dict.fromkeys(first_keys) | keys)
        columns = [column_from_values([row.get(k) for row in rows]) for k in names]
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"{what}: row keys must be strings, got {type(name).__name__} "
                            f"{name!r}")
    return pa.Table.from_arrays(columns, names=names)


def block_from_batch(batch: Any, what: str = "map_batches") -> pa.Table:
    """A block from what a batch function returned: a dict of columns, a DataFrame or a
    table. Raises TypeError or ValueError naming what is wrong with it."""
    if isinstance(batch, pa.Table):
        return batch
    if type(batch).__name__ == "DataFrame" and hasattr(batch, "to_dict"):
        return _block_from_pandas(batch)
    if not isinstance(batch, dict):
        raise TypeError(
            f"{what}: the function must return a batch (a dict of columns, a pandas "
            f"DataFrame or a pyarrow Table), but it returned a {type(batch).__name__}: "
            f"{_short(batch)}")
    if not batch:
        return pa.table({})
    names = list(batch)
    columns = [column_from_batch_value(str(k), batch[k]) for k in names]
    lengths = {str(k): len(c) for k, c in zip(names, columns, strict=True)}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise ValueError(
            f"{what}: the function returned columns of different lengths ({sizes}); every "
            "column of a batch needs one entry per row")
    return pa.Table.from_arrays(columns, names=[str(k) for k in names])


def _block_from_pandas(df) -> pa.Table:
    """Arrow's conversion (NaN and pandas' missing values become nulls), except that
    object columns go through column_from_values (arrays become tensor columns)."""
    columns = {}
    for name in df.columns:
        series = df[name]
        if series.dtype == object:
            columns[str(name)] = column_from_values(series.tolist())
        else:
            columns[str(name)] = pa.array(series, from_pandas=True)
    return pa.table(columns)


# -- Arrow -> Python values -----------------------------------------------------------------
def column_values(column: pa.ChunkedArray | pa.Array) -> list:
    """The values of a column as Python objects (NumPy arrays for tensor columns)."""
    t = column.type
    if is_tensor_type(t):
        return list(tensor_numpy(column))
    if isinstance(t, PickledType):
        loads = cloudpickle.loads
        return [loads(b) for b in _storage(column).to_pylist()]
    if column.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)
                                   or pa.types.is_boolean(t)):
        return column.to_numpy().tolist()
    return column.to_pylist()


def _storage(column):
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([c.storage for c in column.chunks], type=column.type.storage_type)
    return column.storage


def tensor_numpy(column: pa.ChunkedArray | pa.Array):
    """A tensor column as one ndarray (fixed shape) or an object array of ndarrays."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    t = column.type
    if isinstance(t, pa.FixedShapeTensorType):
        parts = [c.to_numpy_ndarray() for c in chunks if len(c)]
        if not parts:
            return np.empty((0, *t.shape), dtype=t.value_type.to_pandas_dtype())
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
    out = np.empty(len(column), dtype=object)
    i = 0
    for chunk in chunks:
        data, shapes = chunk.storage.flatten()
        offsets = data.offsets.to_numpy()
        values = data.values.to_numpy(zero_copy_only=False)
        dims = shapes.flatten().to_numpy().reshape(-1, t.ndim)
        for k in range(len(chunk)):
            out[i] = values[offsets[k]:offsets[k + 1]].reshape(dims[k])
            i += 1
    return out


_row_makers: dict[tuple, Any] = {}


def _row_maker(names: tuple[str, ...]):
    """A function turning column value lists into dict rows, with a dict literal for
    these column names (about twice as fast as ``dict(zip(...))``)."""
    maker = _row_makers.get(names)
    if maker is None:
        args = ", ".join(f"c{i}" for i in range(len(names)))
        items = ", ".join(f"{name!r}: c{i}" for i, name in enumerate(names))
        source = f"lambda columns: [{{{items}}} for {args}, in zip(*columns)]"
        maker = _row_makers[names] = eval(source)  # noqa: S307 - names are repr()'d literals
    return maker


def block_to_rows(block: pa.Table) -> list[dict]:
    names = tuple(block.column_names)
    if not names:
        return [{} for _ in range(block.num_rows)]
    columns = [column_values(c) for c in block.columns]
    # Making many dicts would run the cyclic collector over and over, for nothing: dicts
    # of plain values make no cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _row_maker(names)(columns)
    finally:
        if collecting:
            gc.enable()


def block_to_batch(block: pa.Table, batch_format: str | None = "default"):
    if batch_format in ("default", "numpy"):
        return {name: column_numpy(col) for name, col in zip(block.column_names, block.columns,
                                                             strict=True)}
    if batch_format == "pandas":
        return block_to_pandas(block)
    if batch_format in ("pyarrow", None):
        return block
    raise ValueError(f"batch_format must be one of {BATCH_FORMATS}, got {batch_format!r}")


def column_numpy(column: pa.ChunkedArray):
    t = column.type
    if is_tensor_type(t):
        return tensor_numpy(column)
    if isinstance(t, PickledType):
        values = column_values(column)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_nested(t) \
            or pa.types.is_binary(t) or pa.types.is_large_binary(t):
        out = np.empty(len(column), dtype=object)
        out[:] = column.to_pylist()
        return out
    return column.to_numpy()


def block_to_pandas(block: pa.Table):
    import pandas as pd

    plain = {}
    for name, col in zip(block.column_names, block.columns, strict=True):
        if isinstance(col.type, pa.ExtensionType):
            plain[name] = pd.Series(list(column_numpy(col)) if len(col) else [], dtype=object)
        else:
            plain[name] = col.to_pandas()
    return pd.DataFrame(plain) if plain else pd.DataFrame(index=range(block.num_rows))


# -- whole blocks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class BlockMetadata:
    """What the driver knows of a block without fetching it."""

    num_rows: int
    size_bytes: int
    schema: pa.Schema
    wall_time: float = 0.0  # seconds the task that made it took (for stats)


def metadata(block: pa.Table, wall_time: float = 0.0) -> BlockMetadata:
    return BlockMetadata(block.num_rows, block.nbytes, block.schema, wall_time)


def concat(blocks: list[pa.Table]) -> pa.Table:
    """One table of ``blocks``' rows in order; columns missing from some get nulls, and
    tensor columns of different shapes become variable-shaped."""
    blocks = [b for b in blocks if b.num_columns or b.num_rows]
    if not blocks:
        return pa.table({})
    if len(blocks) == 1:
        return blocks[0]
    blocks = _unify_tensor_columns(blocks)
    try:
        return pa.concat_tables(blocks, promote_options="permissive")
    except pa.ArrowException as error:
        raise TypeError(f"blocks cannot be combined, their columns' types differ: {error}") \
            from None


def _unify_tensor_columns(blocks: list[pa.Table]) -> list[pa.Table]:
    types: dict[str, set] = {}
    tensors: set[str] = set()
    for block in blocks:
        for field in block.schema:
            types.setdefault(field.name, set()).add(str(field.type))
            if is_tensor_type(field.type):
                tensors.add(field.name)
    mixed = [n for n in tensors if len(types[n]) > 1]
    if not mixed:
        return blocks
    values = {name: [column_values(b.column(name)) if name in b.column_names else None
                     for b in blocks] for name in mixed}
    dtypes = {name: np.result_type(*(v for vs in per_block if vs for v in vs))
              for name, per_block in values.items()}
    out = []
    for k, block in enumerate(blocks):
        for name in mixed:
            if values[name][k]:
                i = block.column_names.index(name)
                block = block.set_column(i, name, var_tensor_array(values[name][k],
                                                                   dtypes[name]))
        out.append(block)
    return out


def empty_block(schema: pa.Schema | None = None) -> pa.Table:
    return schema.empty_table() if schema is not None else pa.table({})



def compact(block: pa.Table) -> pa.Table:
    """``block`` holding only its own rows' bytes. A slice of a table pickles its parent's
    whole buffers, so every block a task returns goes through here."""
    if block.num_rows and block.get_total_buffer_size() > 2 * block.nbytes + 65536:
        return block.take(np.arange(block.num_rows))
    return block
