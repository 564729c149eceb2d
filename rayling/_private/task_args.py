"""Packing a task's arguments on the caller and unpacking them in the worker.

Top-level ObjectRef arguments become dependencies: the daemon runs the task only once
they exist, and the worker gets their values in place of ``DepArg`` markers. Refs nested
inside other arguments stay refs. A large argument is put in the object store once and
passed as a dependency, so the task message stays small.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import serialization
from .object_ref import ObjectRef, put
from .serialization import SerializationError


class DepArg:
    """Stands for the value of dependency number ``index``."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self):
        return (DepArg, (self.index,))


_NO_ARGS = serialization.serialize(((), {})).pickled
_PLAIN = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class SignatureCheck:
    """Checks a call's arguments against the function's signature at ``.remote()``, so
    missing or extra arguments raise TypeError in the caller, not later in the worker.
    Positional-only calls of plain functions are checked by counting (the hot path)."""

    __slots__ = ("_signature", "_fewest", "_most")

    def __init__(self, fn, skip_first: bool = False) -> None:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # no signature to check (a builtin, say)
            signature = None
        self._fewest = self._most = -1
        if signature is not None:
            params = list(signature.parameters.values())
            if skip_first and params and params[0].kind in _PLAIN:
                params = params[1:]
                signature = signature.replace(parameters=params)
            if all(p.kind in _PLAIN for p in params):
                self._fewest = sum(1 for p in params if p.default is p.empty)
                self._most = len(params)
        self._signature = signature

    def check(self, name: str, args: tuple, kwargs: dict) -> None:
        if not kwargs and self._fewest <= len(args) <= self._most:
            return
        if self._signature is None:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as e:
            raise TypeError(f"{name}() was called with arguments its signature does not "
                            f"accept: {e}") from None


def pack_args(client, fn, name: str, args: tuple, kwargs: dict):
    """Returns (args blob, dependency ids, contained refs, objects to keep alive)."""
    if not args and not kwargs:
        return _NO_ARGS, [], [], None
    deps: list[bytes] = []
    keep: list = []
    if any(type(a) is ObjectRef for a in args) or any(
        type(v) is ObjectRef for v in kwargs.values()
    ):
        args, kwargs = _replace_refs(args, kwargs, deps, keep)
    try:
        ser = serialization.serialize((args, kwargs))
    except SerializationError:
        _raise_naming_argument(fn, name, args, kwargs)
        raise
    if not ser.is_inline:
        args, kwargs = _put_large_args(client, args, kwargs, deps, keep)
        ser = serialization.serialize((args, kwargs))
    keep.append(ser)
    return ser.pickled, deps, [r._id for r in ser.contained_refs], keep


def _replace_refs(args, kwargs, deps, keep):
    def sub(value):
        if type(value) is ObjectRef:
            keep.append(value)
            deps.append(value._id)
            return DepArg(len(deps) - 1)
        return value

    return tuple(sub(a) for a in args), {k: sub(v) for k, v in kwargs.items()}


def _put_large_args(client, args, kwargs, deps, keep):
    def sub(value):
        if isinstance(value, DepArg):
            return value
        if not serialization.serialize(value).is_inline:
            ref = put(client, value)
            keep.append(ref)
            deps.append(ref._id)
            return DepArg(len(deps) - 1)
        return value

    return tuple(sub(a) for a in args), {k: sub(v) for k, v in kwargs.items()}


def _raise_naming_argument(fn, name: str, args: tuple, kwargs: dict) -> None:
    try:
        bound = inspect.signature(fn).bind_partial(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = {**{f"#{i}": a for i, a in enumerate(args)}, **kwargs}
    for param, value in bound.items():
        try:
            serialization.serialize(value)
        except SerializationError as e:
            raise SerializationError(
                f"Could not serialize argument {param!r} of type {type(value).__name__} "
                f"passed to {name}: {e.__cause__ or e}. Arguments of remote calls are "
                f"pickled; pass something picklable (create locks, sockets and open files "
                f"inside the task instead)."
            ) from e.__cause__


def unpack_args(client, blob: bytes, deps: list, dep_ids: list | None = None) -> tuple:
    args, kwargs = serialization.deserialize_inline(blob)
    if deps:
        values = [_dep_value(client, d, dep_ids[i] if dep_ids else None)
                  for i, d in enumerate(deps)]

        def sub(value: Any):
            return values[value.index] if type(value) is DepArg else value

        args = tuple(sub(a) for a in args)
        kwargs = {k: sub(v) for k, v in kwargs.items()}
    return args, kwargs


def _dep_value(client, data, oid: bytes | None) -> Any:
    """A dependency's value; one the caller did not have (a direct actor call) is fetched."""
    if data.inline is not None or data.shm is not None or oid is None:
        return client.value_from_data(data)
    ref = ObjectRef(oid)  # holding a ref is what lets its value arrive here
    client.wait_for([oid], 1, None)
    value = client.value_of(oid)
    del ref
    return value
