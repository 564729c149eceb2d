"""The node daemon's directory of objects and their reference counts (pure logic).

An object lives while anything refers to it:

* holders  - processes (by connection) that have at least one ObjectRef to it; each
             process reports only its 0->1 and 1->0 transitions (RefUpdate);
* pins     - queued or running tasks that take it as an argument, and other live
             objects that contain a ref to it.

When both are empty the object is freed: its shared memory is released (through the
``on_free`` callback) and the objects it contained are unpinned in turn. An object whose
task has not finished yet is freed as soon as the result arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .protocol import ObjectData


class ObjectEntry:
    __slots__ = ("data", "holders", "pins", "subscribers")

    def __init__(self) -> None:
        self.data: ObjectData | None = None  # None until the value exists
        self.holders: set = set()
        self.pins = 0
        self.subscribers: list | None = None  # connections waiting for the value

    @property
    def ready(self) -> bool:
        return self.data is not None

    @property
    def referenced(self) -> bool:
        return bool(self.holders) or self.pins > 0


class ObjectTable:
    def __init__(self, on_free: Callable[[bytes, ObjectData], None]) -> None:
        self.entries: dict[bytes, ObjectEntry] = {}
        self._on_free = on_free
        self.by_holder: dict[object, set[bytes]] = {}

    # -- creation ---------------------------------------------------------------------
    def expect(self, object_id: bytes, holder) -> None:
        """A task will produce this object; ``holder`` (its submitter) has a ref to it."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry()
        self._add_holder(entry, object_id, holder)

    def put(self, object_id: bytes, data: ObjectData, holder) -> list:
        """A process stored a value it holds a ref to. Returns the waiting subscribers."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self.entries[object_id] = ObjectEntry()
        if holder is not None:
            self._add_holder(entry, object_id, holder)
        return self.set_ready(object_id, data)

    def set_ready(self, object_id: bytes, data: ObjectData) -> list:
        """The value of ``object_id`` now exists. Returns the subscribers to notify.

        If nobody refers to the object any more, it is freed at once (and no one is told).
        """
        entry = self.entries.get(object_id)
        if entry is None:
            # Nobody holds it (all refs dropped before the task finished): free now.
            self._release_data(object_id, data, unpin=False)
            return []
        if entry.data is not None:  # a retried task finished twice: keep the first value
            if data is not entry.data:
                self._release_data(object_id, data, unpin=False)
            return []
        entry.data = data
        for contained in data.contained:
            self.pin(contained)
        subscribers = entry.subscribers or []
        entry.subscribers = None
        if not entry.referenced:
            self._free(object_id, entry)
        return subscribers

    # -- lookups ----------------------------------------------------------------------
    def get(self, object_id: bytes) -> ObjectData | None:
        entry = self.entries.get(object_id)
        return entry.data if entry is not None else None

    def subscribe(self, object_id: bytes, conn) -> ObjectData | None:
        """The value if it exists now; otherwise remember that ``conn`` waits for it."""
        entry = self.entries.get(object_id)
        if entry is None:
            return None
        if entry.data is not None:
            return entry.data
        if entry.subscribers is None:
            entry.subscribers = [conn]
        elif conn not in entry.subscribers:
            entry.subscribers.append(conn)
        return None

    def holds(self, object_id: bytes, conn) -> bool:
        entry = self.entries.get(object_id)
        return entry is not None and conn in entry.holders

    def __contains__(self, object_id: bytes) -> bool:
        return object_id in self.entries

    # -- reference counting -----------------------------------------------------------
    def add_holders(self, object_ids: Iterable[bytes], holder) -> None:
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is not None:
                self._add_holder(entry, oid, holder)

    def remove_holders(self, object_ids: Iterable[bytes], holder) -> None:
        held = self.by_holder.get(holder)
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is None or holder not in entry.holders:
                continue
            entry.holders.discard(holder)
            if held is not None:
                held.discard(oid)
            if not entry.referenced:
                self._free(oid, entry)

    def drop_holder(self, holder) -> None:
        """A process went away: release every ref it held and stop its subscriptions."""
        held = self.by_holder.pop(holder, None)
        if held:
            for oid in held:
                entry = self.entries.get(oid)
                if entry is None:
                    continue
                entry.holders.discard(holder)
                if entry.subscribers and holder in entry.subscribers:
                    entry.subscribers.remove(holder)
                if not entry.referenced:
                    self._free(oid, entry)

    def pin(self, object_id: bytes) -> None:
        entry = self.entries.get(object_id)
        if entry is not None:
            entry.pins += 1

    def unpin(self, object_id: bytes) -> None:
        entry = self.entries.get(object_id)
        if entry is None:
            return
        entry.pins -= 1
        if not entry.referenced:
            self._free(object_id, entry)

    # -- internals --------------------------------------------------------------------
    def _add_holder(self, entry: ObjectEntry, oid: bytes, holder) -> None:
        if holder not in entry.holders:
            entry.holders.add(holder)
            held = self.by_holder.get(holder)
            if held is None:
                held = self.by_holder[holder] = set()
            held.add(oid)

    def _free(self, object_id: bytes, entry: ObjectEntry) -> None:
        if entry.data is None:
            # Still being computed and nobody wants it: forget the entry; set_ready will
            # release the value when it arrives. Subscribers cannot exist without holders.
            del self.entries[object_id]
            return
        del self.entries[object_id]
        self._release_data(object_id, entry.data)

    def _release_data(self, object_id: bytes, data: ObjectData, unpin: bool = True) -> None:
        self._on_free(object_id, data)
        if unpin:
            for contained in data.contained:
                self.unpin(contained)

    def statistics(self) -> dict:
        ready = sum(1 for e in self.entries.values() if e.data is not None)
        return {"objects": len(self.entries), "ready": ready}
