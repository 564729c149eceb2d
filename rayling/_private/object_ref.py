"""ObjectRef: a future for a value in the cluster's object store (re-exported as
``rayling.ObjectRef``), and ``put``, which makes one for a value stored now.

A ref is hashable and comparable by id, prints its hex id, and can be pickled into
arguments and other objects (it stays a ref there). Each live ObjectRef counts toward
keeping its object alive; the count is kept by this process's core client.
"""

from __future__ import annotations

from typing import Any

from .. import exceptions as exc
from . import client as _client_mod, ids, task_context
from .ids import TASK_ID_LEN, TaskID
from .serialization import current_ref_collector


class ObjectRef:
    __slots__ = ("_id", "_client", "__weakref__")
    __module__ = "rayling.object_ref"  # its public name, which users see and import

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

    def task_id(self) -> TaskID:
        """The id of the task that made this object (as Ray's, a TaskID)."""
        return TaskID(self._id[:TASK_ID_LEN])

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

        fut: concurrent.futures.Future = concurrent.futures.Future()

        def resolve() -> None:
            try:
                fut.set_result(get_value(self))
            except BaseException as e:  # noqa: BLE001 - handed to the future
                fut.set_exception(e)

        threading.Thread(target=resolve, daemon=True).start()
        return fut

    def __await__(self):
        import asyncio

        return asyncio.wrap_future(self.future()).__await__()


def _rebuild_ref(object_id: bytes) -> ObjectRef:
    return ObjectRef(object_id)


def uncounted_refs(client, oids: list[bytes]) -> list[ObjectRef]:
    """Refs to the results of a task about to be submitted, for the caller to count at
    once with the rest of the submission (client.expect_results / begin_actor_call)."""
    new = ObjectRef.__new__
    refs = []
    for oid in oids:
        ref = new(ObjectRef)
        ref._id = oid
        ref._client = client
        refs.append(ref)
    return refs


def put(client, value: Any) -> ObjectRef:
    """Store ``value`` (in shared memory when large) and return a ref to it."""
    oid = ids.new_put_object_id(task_context.current_job_id(client.job_id))
    data, ser = client.store(oid, value)
    ref = ObjectRef(oid, _born=True)
    client.stored(oid, data)
    del ser  # the refs inside the value may go once the PutObject is queued
    return ref


def put_as(client, oid: bytes, value: Any) -> ObjectRef:
    """``put``, under a given id (a dynamic generator's values are its task's returns)."""
    data, ser = client.store(oid, value)
    ref = ObjectRef(oid, _born=True)
    client.stored(oid, data)
    del ser
    return ref


def get_value(ref: ObjectRef) -> Any:
    """The value of ``ref``, waiting for it (raises the task's error if it failed)."""
    client = ref._client or _client_mod.current
    if client is None:
        raise exc.RaySystemError("rayling is not initialized; call rayling.init() first")
    oid = ref._id
    if oid not in client.objects:
        client.wait_for([oid], 1, None)
    return client.value_of(oid)
