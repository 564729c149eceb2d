"""The node daemon's directory of objects and their reference counts (pure logic).

An object lives while anything refers to it:

* holders  - processes (by connection) that have at least one ObjectRef to it; each
             process reports only its 0->1 and 1->0 transitions (RefUpdate);
* pins     - queued or running tasks that take it as an argument, and other live
             objects that contain a ref to it.

When both are empty the object is freed: its shared memory is released (through the
``on_free`` callback) and the objects it contained are unpinned in turn. An object whose
task has not finished yet is freed as soon as the result arrives.

A ref can reach a process before the daemon knows its object: a caller puts a value (its
PutObject queued or in flight) and passes the ref straight to an actor's worker, whose
RefUpdate and GetObjects may be read first, from another connection. Refs and gets of an
unknown object are kept aside (*early*) and applied when the object appears; if it does
not within EARLY_GRACE_TICKS calls of ``expire_early`` (about a second each), the gets
are answered "does not exist".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .protocol import ObjectData

EARLY_GRACE_TICKS = 3  # expire_early calls an unknown object's refs and gets wait for it


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


class _Early:
    """Refs to and gets of an object the table does not know yet."""

    __slots__ = ("ticks", "holders", "getters")

    def __init__(self) -> None:
        self.ticks = 0  # expire_early calls seen
        self.holders: set = set()
        self.getters: list = []


class ObjectTable:
    def __init__(self, on_free: Callable[[bytes, ObjectData], None]) -> None:
        self.entries: dict[bytes, ObjectEntry] = {}
        self._on_free = on_free
        self.by_holder: dict[object, set[bytes]] = {}
        self._early: dict[bytes, _Early] = {}

    def _new_entry(self, object_id: bytes) -> ObjectEntry:
        """An entry for a new object, with the refs and gets that came before it."""
        entry = self.entries[object_id] = ObjectEntry()
        early = self._early.pop(object_id, None) if self._early else None
        if early is not None:
            for holder in early.holders:
                self._add_holder(entry, object_id, holder)
            entry.subscribers = early.getters or None
        return entry

    def _early_for(self, object_id: bytes) -> _Early:
        early = self._early.get(object_id)
        if early is None:
            early = self._early[object_id] = _Early()
        return early

    def expire_early(self) -> list[tuple[bytes, list]]:
        """One tick: (object id, connections waiting for it) of each unknown object whose
        grace is over; its refs are dropped, and the caller answers the gets."""
        expired = []
        for oid, early in list(self._early.items()):
            early.ticks += 1
            if early.ticks > EARLY_GRACE_TICKS:
                del self._early[oid]
                if early.getters:
                    expired.append((oid, early.getters))
        return expired

    # -- creation ---------------------------------------------------------------------
    def expect(self, object_id: bytes, holder) -> None:
        """A task will produce this object; ``holder`` (its submitter) has a ref to it."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self._new_entry(object_id)
        self._add_holder(entry, object_id, holder)

    def put(self, object_id: bytes, data: ObjectData, holder) -> list:
        """A process stored a value it holds a ref to. Returns the waiting subscribers."""
        entry = self.entries.get(object_id)
        if entry is None:
            entry = self._new_entry(object_id)
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
        """The value if it exists now; otherwise remember that ``conn`` waits for it
        (for an unknown object, only while it may still appear: see expire_early)."""
        entry = self.entries.get(object_id)
        if entry is None:
            getters = self._early_for(object_id).getters
            if conn not in getters:
                getters.append(conn)
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
            else:
                self._early_for(oid).holders.add(holder)

    def remove_holders(self, object_ids: Iterable[bytes], holder) -> None:
        held = self.by_holder.get(holder)
        for oid in object_ids:
            entry = self.entries.get(oid)
            if entry is None:
                early = self._early.get(oid) if self._early else None
                if early is not None:
                    early.holders.discard(holder)
                continue
            if holder not in entry.holders:
                continue
            entry.holders.discard(holder)
            if held is not None:
                held.discard(oid)
            if not entry.referenced:
                self._free(oid, entry)

    def drop_holder(self, holder) -> None:
        """A process went away: release every ref it held and stop its subscriptions."""
        for early in self._early.values():
            early.holders.discard(holder)
            if holder in early.getters:
                early.getters.remove(holder)
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
