"""ObjectRef: a future for a value in the cluster's object store.

A ref is hashable and comparable by id, prints its hex id, and can be pickled into
arguments and other objects (it stays a ref there). Each live ObjectRef counts toward
keeping its object alive; the count is kept by this process's core client.
"""

from __future__ import annotations

from typing import Any

from ._private import client as _client_mod
from ._private.ids import TASK_ID_LEN
from ._private.serialization import current_ref_collector


class ObjectRef:
    __slots__ = ("_id", "_client", "__weakref__")

    def __init__(self, object_id: bytes, _born: bool = False) -> None:
        self._id = object_id
        client = _client_mod.current
        self._client = client
        if client is not None:
            client.incref(object_id, _born)

    def __del__(self) -> None:
        client = self._client
        if client is not None:
            client.decref(self._id)

    def hex(self) -> str:
        return self._id.hex()

    def binary(self) -> bytes:
        return self._id

    def task_id(self) -> str:
        return self._id[:TASK_ID_LEN].hex()

    def __hash__(self) -> int:
        return hash(self._id)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __lt__(self, other: ObjectRef) -> bool:
        return self._id < other._id

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __reduce__(self):
        collector = current_ref_collector()
        if collector is not None:
            collector.append(self)
        return (_rebuild_ref, (self._id,))

    def __copy__(self) -> ObjectRef:
        return ObjectRef(self._id)

    def __deepcopy__(self, memo) -> ObjectRef:
        return ObjectRef(self._id)

    def future(self):
        """A concurrent.futures.Future that completes with this ref's value."""
        import concurrent.futures
        import threading

        from . import api

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def resolve() -> None:
            try:
                fut.set_result(api.get(self))
            except BaseException as e:  # noqa: BLE001 - handed to the future
                fut.set_exception(e)

        threading.Thread(target=resolve, daemon=True).start()
        return fut

    def __await__(self):
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes) -> ObjectRef:
    return ObjectRef(object_id)
