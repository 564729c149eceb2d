"""What a generator task returns: ``ObjectRefGenerator`` (streaming, the default for a
generator function) and ``DynamicObjectRefGenerator`` (``num_returns="dynamic"``).

    worker: for each value the generator yields ──GeneratorItem(task, i, data)──> daemon
            ──GeneratorItem──> the submitter's reader thread: a ref to it, counted (the
            daemon counts the submitter as a holder), kept in the generator's ``_items``
    worker: when the generator ends ──TaskDone(return 0 = how many items, or an error)

``next(gen)`` takes item ``i`` once it is here (waiting for it, or for the end of the
stream). The task's own exception after k values is item k, so the k+1-th ``get``
raises it; a task that could not finish (its worker died with no retries left, say)
ends the stream with its error instead. Dropping the generator before the end cancels
the task; items that arrive after are dropped at once.
"""

from __future__ import annotations

import time

from .. import exceptions as exc
from . import ids, protocol as p
from .object_ref import ObjectRef, uncounted_refs


class ObjectRefGenerator:
    """Refs to a streaming generator task's values, in order, as it yields them."""

    def __init__(self, client, task_id: bytes, end: ObjectRef, paced: bool = False) -> None:
        self._client = client
        self._task_id = task_id
        self._paced = paced  # the task waits to hear how many values were taken
        self._end = end  # return 0: the count of items, or the error that ended the task
        self._items: dict[int, ObjectRef] = {}  # arrived, not taken yet (index -> ref)
        self._next = 0
        self._finished = False
        self._taking = None  # an async take whose caller gave up waiting

    # -- iteration --------------------------------------------------------------------
    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        return self._next_ref(None)

    def _next_ref(self, timeout: float | None) -> ObjectRef:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            ref = self._take()
            if ref is not None:
                return ref
            if self._finished:
                raise StopIteration
            client = self._client
            end_oid = self._end._id
            if end_oid in client.objects:
                # Items travel ahead of the end on the same path: none is still coming.
                ref = self._take()
                if ref is not None:
                    return ref
                self._finished = True
                if client.objects[end_oid].error:
                    return self._end  # (its get raises why the task did not finish)
                raise StopIteration
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise exc.GetTimeoutError(
                    f"the generator's next value did not come within {timeout} s")
            client.wait_for_any([end_oid], [self._item_oid(self._next)], remaining)

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        """``async for ref in gen``: waits in a thread, so the event loop goes on."""
        import asyncio

        taking, self._taking = self._taking, None
        if taking is None:  # (else: a take whose caller gave up; its value is next)
            taking = asyncio.get_running_loop().run_in_executor(None, self._next_or_none)
        try:
            ref = await asyncio.shield(taking)
        except asyncio.CancelledError:  # (a timeout, say): the next call gets its value
            self._taking = taking
            raise
        if ref is None:
            raise StopAsyncIteration
        return ref

    def _next_or_none(self) -> ObjectRef | None:
        try:
            return self._next_ref(None)
        except StopIteration:  # (a future cannot carry StopIteration)
            return None

    def _take(self) -> ObjectRef | None:
        ref = self._items.pop(self._next, None)
        if ref is not None:
            self._next += 1
            if self._paced:
                self._client.send_soon(p.GeneratorConsumed(self._task_id, self._next))
        return ref

    def _item_oid(self, index: int) -> bytes:
        return ids.object_id_for_return(self._task_id, index + 1)

    def _ready(self) -> bool:
        """Whether ``next`` would return at once (for ``wait``)."""
        return self._next in self._items or self._finished or \
            self._end._id in self._client.objects

    def _next_item(self) -> bytes:
        """The id whose arrival (or the end's) makes ``_ready`` true."""
        return self._item_oid(self._next)

    def _arrived(self, index: int, oid: bytes) -> None:
        """(The client's reader thread) item ``index`` is here, counted for us."""
        self._items[index] = uncounted_refs(self._client, [oid])[0]

    # -- Ray's methods ------------------------------------------------------------------
    def next_ready(self) -> bool:
        return self._ready()

    def is_finished(self) -> bool:
        return self._finished

    def completed(self) -> ObjectRef:
        """A ref that resolves when the task has finished (raising if it failed)."""
        return self._end

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"

    def __reduce__(self):
        raise TypeError("an ObjectRefGenerator cannot be passed to another task or actor; "
                        "pass the refs it yields, or use num_returns=\"dynamic\"")

    def __del__(self) -> None:
        # Dropped before the end: the task need not go on. (Runs anywhere, even inside
        # the garbage collector: it only queues a message and wakes the flusher.)
        if not self._finished and self._end._id not in self._client.objects:
            self._client.queue_output(p.CancelTask(self._task_id, False, True))


class DynamicObjectRefGenerator:
    """``num_returns="dynamic"``: the refs of every value the task yielded, as the value
    of its one return. It can be passed to other tasks (the refs go with it)."""

    def __init__(self, refs: list[ObjectRef]) -> None:
        self._refs = list(refs)

    def __iter__(self):
        return iter(self._refs)

    def __len__(self) -> int:
        return len(self._refs)

    def __repr__(self) -> str:
        return f"DynamicObjectRefGenerator({len(self._refs)} refs)"
