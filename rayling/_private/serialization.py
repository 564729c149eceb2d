"""Turning values into bytes and back, with zero-copy buffers for large data.

Values are pickled with cloudpickle (so lambdas and classes from ``__main__`` work) at
protocol 5. Buffers of at least ``OOB_MIN`` bytes (NumPy arrays, bytes-like data) go
out of band: they are written once, aligned, into a shared-memory segment after the
pickle stream, and readers get ``memoryview``s straight onto that segment.

Segment layout::

    magic "RLO1" | pickle length (u64) | buffer count (u32) | (offset u64, length u64)*
    pickle bytes | padding | buffer 0 | padding | buffer 1 ...

While a value is pickled, every ObjectRef inside it is recorded, so the daemon can keep
those objects alive as long as the containing object lives.
"""

from __future__ import annotations

import io
import pickle
import struct
import threading
import types
from collections import ChainMap
from typing import Any

import cloudpickle

INLINE_MAX = 100 * 1024  # values up to this size travel inline in messages
OOB_MIN = 64 * 1024  # buffers this large are kept out of the pickle stream
ALIGN = 64

_HEADER = struct.Struct("<4sQI")
_ENTRY = struct.Struct("<QQ")
_MAGIC = b"RLO1"

_local = threading.local()


class SerializationError(TypeError):
    """A value could not be pickled; the message names it and its type."""


class Serialized:
    """A pickled value: the pickle stream, its out-of-band buffers and contained refs."""

    __slots__ = ("pickled", "buffers", "contained_refs")

    def __init__(self, pickled: bytes, buffers: list, contained_refs: list) -> None:
        self.pickled = pickled
        self.buffers = buffers
        self.contained_refs = contained_refs

    @property
    def is_inline(self) -> bool:
        return not self.buffers and len(self.pickled) <= INLINE_MAX

    def total_size(self) -> int:
        size = _aligned(_HEADER.size + _ENTRY.size * len(self.buffers) + len(self.pickled))
        for buf in self.buffers:
            size = _aligned(size + buf.nbytes)
        return size

    def write_to(self, mem) -> None:
        """Write the segment layout into ``mem`` (a writable buffer of total_size())."""
        n = len(self.buffers)
        head = _HEADER.size + _ENTRY.size * n
        offset = _aligned(head + len(self.pickled))
        entries = []
        for buf in self.buffers:
            entries.append((offset, buf.nbytes))
            offset = _aligned(offset + buf.nbytes)
        _HEADER.pack_into(mem, 0, _MAGIC, len(self.pickled), n)
        for i, (off, length) in enumerate(entries):
            _ENTRY.pack_into(mem, _HEADER.size + i * _ENTRY.size, off, length)
        view = memoryview(mem)
        view[head : head + len(self.pickled)] = self.pickled
        for (off, length), buf in zip(entries, self.buffers, strict=True):
            view[off : off + length] = buf  # PickleBuffer.raw() is flat bytes
        view.release()


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


_reduce_code = cloudpickle.Pickler.dispatch_table[types.CodeType]


def _reduce_code_keeping_filename(code: types.CodeType):
    """cloudpickle names the file of every code object it pickles "<dynamic-code>";
    keep the real one, so a task's traceback shows the user's file and source lines."""
    rebuild, args = _reduce_code(code)
    return rebuild, tuple(code.co_filename if type(a) is str and a == "<dynamic-code>"
                          else a for a in args)


class _Pickler(cloudpickle.Pickler):
    dispatch_table = ChainMap({types.CodeType: _reduce_code_keeping_filename},
                              cloudpickle.Pickler.dispatch_table)


def _dumps(value: Any, buffer_callback=None) -> bytes:
    with io.BytesIO() as out:
        _Pickler(out, protocol=5, buffer_callback=buffer_callback).dump(value)
        return out.getvalue()


def current_ref_collector() -> list | None:
    """The list ObjectRef.__reduce__ appends to while a value is being serialized."""
    return getattr(_local, "refs", None)


_PLAIN_TYPES = frozenset({int, float, bool, str, bytes, type(None)})


def serialize(value: Any, what: str = "value") -> Serialized:
    """Pickle ``value``; ``what`` names it in the error raised when that fails."""
    if type(value) in _PLAIN_TYPES:  # fast path: nothing inside can need cloudpickle
        return Serialized(pickle.dumps(value, protocol=5), [], [])
    buffers: list = []

    def keep_out_of_band(pb: pickle.PickleBuffer) -> bool:
        view = pb.raw()
        if view.nbytes >= OOB_MIN:
            buffers.append(view)
            return False
        return True

    outer = getattr(_local, "refs", None)
    refs: list = []
    _local.refs = refs
    try:
        pickled = _dumps(value, buffer_callback=keep_out_of_band)
    except Exception as e:
        raise SerializationError(
            f"Could not serialize {what} of type {type(value).__name__}: {e}"
        ) from e
    finally:
        _local.refs = outer
    return Serialized(pickled, buffers, refs)


def deserialize_inline(data: bytes) -> Any:
    return pickle.loads(data)


def deserialize_segment(mem) -> Any:
    """Rebuild a value from a mapped segment; large buffers become views onto ``mem``."""
    view = memoryview(mem)
    magic, pickle_len, n = _HEADER.unpack_from(view, 0)
    if magic != _MAGIC:
        raise ValueError("shared-memory segment does not hold a rayling object")
    head = _HEADER.size + _ENTRY.size * n
    buffers = []
    for i in range(n):
        off, length = _ENTRY.unpack_from(view, _HEADER.size + i * _ENTRY.size)
        buffers.append(view[off : off + length])
    return pickle.loads(view[head : head + pickle_len], buffers=buffers)


def dumps_function(fn: Any) -> bytes:
    return _dumps(fn)
