"""The head's directory of objects: their values or locations, who refers to them, and
the shared-memory quota of every node's store (pure logic).

Reference counts live in the ObjectTable (object_table.py); this part adds where large
objects are and what their bytes cost:

* ``segments``: every shared-memory segment of every node: (node, size, object id). A
  segment is created by the writer after a reservation here (ReserveShm), which is where
  each node's ``object_store_memory`` is enforced.
* ``copies``: objects copied to other nodes than their home, by node. A client on another
  node is first told where an object is (ObjectData.where); when it asks for the value
  its node pulls a copy once (transfer.py) and every client there maps it. A node whose
  store is full drops copies whose home is elsewhere, oldest first.
* the spare: after a reservation of 8-128 MiB on the head's own node, one segment of that
  size is preallocated in the background, so a loop of puts of one size finds the next
  segment with its pages ready (it is given back after SPARE_IDLE seconds unused).

When an object is freed, every copy of it on every node is unlinked (through the node's
agent) and its bytes return to the quota.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import cloudpickle

from .. import exceptions as exc
from . import protocol as p, shm
from .object_table import ObjectTable

log = logging.getLogger("rayling.daemon")

SPARE_MIN = 8 * 1024 * 1024  # objects from this size ...
SPARE_MAX = 128 * 1024 * 1024  # ... to this size get a preallocated segment ready
SPARE_IDLE = 5.0  # seconds an unused spare segment is kept


class NodeStore:
    """One node's store quota (``NodeRecord.store``)."""

    __slots__ = ("capacity", "_used", "peak")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self.peak = 0  # the most ``used`` has been (for tests and benchmarks)

    @property
    def used(self) -> int:
        """Bytes of this node's store reserved or in use."""
        return self._used

    @used.setter
    def used(self, value: int) -> None:
        self._used = value
        if value > self.peak:
            self.peak = value

    def fits(self, size: int) -> bool:
        return self._used + size <= self.capacity


def error_data(error: BaseException) -> p.ObjectData:
    """An object whose value is ``error`` (raised by get). cloudpickle, because an actor's
    death carries its constructor's exception, whose class may exist only by value."""
    return p.ObjectData(inline=cloudpickle.dumps(error), error=True)


def _with_segment(data: p.ObjectData, name: str) -> p.ObjectData:
    return p.ObjectData(shm=name, size=data.size, error=data.error, contained=data.contained)


class ObjectDirectory:
    def __init__(self, nodes, on_free: Callable[[bytes], None]) -> None:
        """``nodes``: the NodeTable; ``on_free(oid)`` is told of every freed object."""
        self._nodes = nodes
        self._on_free = on_free
        self.table = ObjectTable(self._release)
        self.segments: dict[str, tuple[object, int, bytes]] = {}  # name -> node, size, id
        self.copies: dict[bytes, dict[bytes, str]] = {}  # object -> {node id: segment}
        self._pulls: dict[tuple[bytes, bytes], list] = {}  # (object, node id) -> waiters
        self._reservations: dict[object, dict[str, int]] = {}  # conn -> {segment: size}
        self.pulls_started = 0
        self.spare: tuple[str, int] | None = None  # a preallocated segment (name, size)
        self._spare_pending = False
        self._spare_since = 0.0
        self.stopping = False  # no new spare once the daemon stops

    def add_node(self, node, capacity: int) -> None:
        node.store = NodeStore(capacity)

    # -- values ---------------------------------------------------------------------------
    def get(self, oid: bytes) -> p.ObjectData | None:
        return self.table.get(oid)

    def put(self, conn, oid: bytes, data: p.ObjectData) -> list:
        """``conn`` stored a value it holds a ref to; returns the subscribers waiting."""
        if data.shm is not None:
            self.seal(conn, data.shm)
        return self.table.put(oid, data, conn)

    def set_ready(self, oid: bytes, data: p.ObjectData) -> list:
        """A task's result exists; returns the subscribers waiting for it."""
        return self.table.set_ready(oid, data)

    def seal(self, conn, name: str) -> None:
        """The segment ``conn`` reserved is written: it is an object's now."""
        reservations = self._reservations.get(conn)
        if reservations is not None:
            reservations.pop(name, None)

    def readable(self, conn, oid: bytes, data: p.ObjectData) -> p.ObjectData:
        """``data`` as ``conn`` can use it: a segment on its own node, or a ``where``
        marker naming the node that has the object."""
        if data.shm is None or not self._nodes.several:
            return data
        home = self.segments.get(data.shm)
        node = getattr(conn, "node", None)
        if home is None or home[0] is node or node is None:
            return data
        copy = self.copies.get(oid, {}).get(node.node_id)
        if copy is not None:
            return _with_segment(data, copy)
        return p.ObjectData(size=data.size, error=data.error, contained=data.contained,
                            where=home[0].node_id)

    def value_for(self, conn, oid: bytes, data: p.ObjectData) -> p.ObjectData | None:
        """What to send ``conn`` that asked for the value: readable on its node now, or
        None while its node copies the object (``pull_done`` says who waits for it)."""
        readable = self.readable(conn, oid, data)
        if readable.where is None:
            return readable
        return self._pull(conn, oid, data)

    def _pull(self, conn, oid: bytes, data: p.ObjectData) -> p.ObjectData | None:
        node = conn.node
        key = (oid, node.node_id)
        waiting = self._pulls.get(key)
        if waiting is not None:
            waiting.append(conn)
            return None
        source, size, _ = self.segments[data.shm]
        if not node.alive:
            return None
        if not self._make_room(node, size):
            return error_data(exc.ObjectStoreFullError(store_full_text(node, size)))
        self._pulls[key] = [conn]
        self.pulls_started += 1
        name = self._new_segment(node, size, oid)
        node.agent.pull(p.PullObject(oid, source.transfer_address, data.shm, size, name))
        return None

    def pull_done(self, node_id: bytes, oid: bytes, name: str, error: str | None
                  ) -> tuple[list, p.ObjectData]:
        """A node finished copying ``oid`` into its segment ``name`` (or failed to):
        the connections waiting for it, and what to send them."""
        waiting = self._pulls.pop((oid, node_id), [])
        data = self.table.get(oid)
        home = self.segments.get(name)
        if error is not None or data is None or home is None:
            if home is not None:
                self._release_segment(name)
            if error is not None:
                log.warning("copying object %s to node %s failed: %s", oid.hex(),
                            node_id.hex()[:12], error)
            return waiting, error_data(exc.ObjectLostError(
                f"Object {oid.hex()} could not be copied to node {node_id.hex()}: "
                f"{error or 'it was freed meanwhile'}"))
        self.copies.setdefault(oid, {})[node_id] = name
        return waiting, _with_segment(data, name)

    def bytes_by_node(self, oids: list[bytes]) -> dict:
        """How many bytes of these objects each node holds in its store."""
        bytes_on: dict = {}
        for oid in oids:
            data = self.table.get(oid)
            if data is None or data.shm is None:
                continue
            home = self.segments.get(data.shm)
            if home is not None:
                bytes_on[home[0]] = bytes_on.get(home[0], 0) + home[1]
            for node_id in self.copies.get(oid, ()):
                node = self._nodes.by_id[node_id]
                bytes_on[node] = bytes_on.get(node, 0) + data.size
        return bytes_on

    # -- the quota ------------------------------------------------------------------------
    def reserve(self, conn, req_id: int, oid: bytes, size: int, preallocate
                ) -> p.ShmReserved:
        """Reserve ``size`` bytes on ``conn``'s node for the segment of ``oid``.
        ``preallocate(name, size, done)`` prepares the spare (the head's node only)."""
        node = conn.node
        if not node.alive:
            return p.ShmReserved(req_id, None, "this process's node is dead")
        local = node is self._nodes.local
        spare = self.spare if local else None
        if spare is not None and spare[1] == size:
            name = spare[0]  # its bytes are already counted
            self.spare = None
            self.segments[name] = (node, size, oid)
            preallocated = True
        else:
            if not self._make_room(node, size):
                return p.ShmReserved(req_id, None, store_full_text(node, size))
            name = self._new_segment(node, size, oid)
            preallocated = False
        self._reservations.setdefault(conn, {})[name] = size
        if local:
            self._prepare_spare(size, preallocate)
        return p.ShmReserved(req_id, name, preallocated=preallocated)

    def abandon(self, conn, name: str) -> None:
        """``conn`` could not make the segment it reserved: its room is free again."""
        reservations = self._reservations.get(conn)
        if reservations is not None and reservations.pop(name, None) is not None:
            self._release_segment(name)

    def reserved_segment(self, holder, oid: bytes, data: p.ObjectData
                         ) -> p.ObjectData | None:
        """``data`` (an object only named by its node) as the segment ``holder``
        reserved for ``oid``, or None if it reserved none."""
        for name in self._reservations.get(holder, {}):
            if self.segments[name][2] == oid:
                return _with_segment(data, name)
        return None

    def adopt_reservations(self, conn, holder) -> bool:
        """Segments ``conn`` reserved and never sealed are ``holder``'s now: sealed or
        released through it (a dead worker's results its callers may have received).
        True if there were any."""
        taken = self._reservations.pop(conn, None)
        if taken:
            self._reservations.setdefault(holder, {}).update(taken)
        return bool(taken)

    def release_reservations(self, conn) -> None:
        """``conn`` is gone: segments it reserved and never sealed are given back."""
        for name in self._reservations.pop(conn, {}):
            self._release_segment(name)

    def _new_segment(self, node, size: int, oid: bytes) -> str:
        name = shm.segment_name(node.shm_session)
        node.store.used += size
        self.segments[name] = (node, size, oid)
        return name

    def _make_room(self, node, size: int) -> bool:
        """Whether ``size`` more bytes fit on ``node``, after dropping the spare and copies
        of objects whose home is elsewhere if need be."""
        store = node.store
        if store.fits(size):
            return True
        if node is self._nodes.local and self.spare is not None:
            self._drop_spare()
        if not store.fits(size):
            self._evict_copies(node, size)
        return store.fits(size)

    def _evict_copies(self, node, size: int) -> None:
        """Drop copies on ``node`` of objects whose home is another node, oldest first
        (they can be copied again; processes that mapped one keep their mapping)."""
        for oid, copies in list(self.copies.items()):
            if node.store.fits(size):
                return
            name = copies.pop(node.node_id, None)
            if name is not None:
                if not copies:
                    del self.copies[oid]
                self._release_segment(name)

    def _release_segment(self, name: str) -> None:
        home = self.segments.pop(name, None)
        if home is None:
            return
        node, size, _ = home
        node.store.used -= size
        if node.alive:
            node.agent.unlink(name)

    def _release(self, oid: bytes, data: p.ObjectData) -> None:
        """The ObjectTable freed ``oid``: unlink its segment and every copy."""
        self._on_free(oid)
        if data.shm is not None:
            self._release_segment(data.shm)
            for name in self.copies.pop(oid, {}).values():
                self._release_segment(name)

    # -- the spare segment ----------------------------------------------------------------
    def _prepare_spare(self, size: int, preallocate) -> None:
        """Allocate, in the background, a segment of the size just asked for.

        Zeroing fresh pages is most of the cost of writing a large object; a loop that puts
        objects of one size finds the next segment ready and only copies its data.
        """
        local = self._nodes.local
        store = local.store
        if (self.spare is not None or self._spare_pending or not SPARE_MIN <= size <= SPARE_MAX
                or size > store.capacity // 8 or not store.fits(size) or self.stopping):
            return
        self._spare_pending = True
        name = shm.segment_name(local.shm_session)
        store.used += size
        preallocate(name, size, self.preallocated)

    def preallocated(self, name: str, size: int, ok: bool) -> None:
        """The spare segment ``name`` is ready (or could not be made)."""
        self._spare_pending = False
        if ok and not self.stopping:
            self.spare = (name, size)
            self._spare_since = time.monotonic()
        else:
            self._nodes.local.store.used -= size
            self._nodes.local.agent.unlink(name)

    def drop_idle_spare(self, now: float) -> None:
        """Give back a spare nobody used for SPARE_IDLE seconds (called periodically)."""
        if self.spare is not None and now - self._spare_since >= SPARE_IDLE:
            self._drop_spare()

    def _drop_spare(self) -> None:
        name, size = self.spare
        self.spare = None
        self._nodes.local.store.used -= size
        self._nodes.local.agent.unlink(name)

    # -- nodes going away -----------------------------------------------------------------
    def node_lost(self, node) -> None:
        """``node`` died: its segments are gone. Objects with a copy elsewhere move their
        home there; objects whose only copy it held are lost."""
        for name, (where, _size, oid) in list(self.segments.items()):
            if where is node:
                del self.segments[name]
                self._segment_lost(oid, node, name)
        for key in [k for k in self._pulls if k[1] == node.node_id]:
            del self._pulls[key]

    def _segment_lost(self, oid: bytes, node, name: str) -> None:
        copies = self.copies.get(oid)
        if copies is not None and copies.get(node.node_id) == name:
            del copies[node.node_id]
            return
        entry = self.table.entries.get(oid)
        if entry is None or entry.data is None or entry.data.shm != name:
            return
        data = entry.data
        if copies:  # another node has a copy: it becomes the object's home
            _node_id, copy = copies.popitem()
            entry.data = _with_segment(data, copy)
            return
        lost = error_data(exc.ObjectLostError(
            f"Object {oid.hex()} was lost: the only copy was on node "
            f"{node.node_id.hex()} ({node.ip}), which died."))
        entry.data = p.ObjectData(inline=lost.inline, error=True, contained=data.contained)

    def release_local(self) -> None:
        """Unlink every segment on the head's own node (the daemon is stopping)."""
        local = self._nodes.local
        if self.spare is not None:
            self._drop_spare()
        for name, (node, _size, _oid) in list(self.segments.items()):
            if node is local:
                local.agent.unlink(name)
                del self.segments[name]
        local.store.used = 0

    def stats(self) -> dict:
        local = self._nodes.local.store
        return {
            "store_used": local.used - (self.spare[1] if self.spare else 0),
            "store_capacity": local.capacity,
            "segments": len(self.segments),
            "pulls": self.pulls_started,
            "copies": sum(len(c) for c in self.copies.values()),
            **self.table.statistics(),
        }


def store_full_text(node, size: int) -> str:
    used, capacity = node.store.used, node.store.capacity
    return (f"Cannot store an object of {size:,} bytes: the object store of node "
            f"{node.node_id.hex()[:12]} has {capacity - used:,} of {capacity:,} bytes free "
            f"({used:,} in use by live objects). Drop refs you no longer need or start with "
            f"a larger object_store_memory.")
