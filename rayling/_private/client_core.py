"""What a client (a driver or a worker) knows and decides, with no sockets or threads:
the sans-I/O core that client.py wraps in threads.

    RefCounter     live ObjectRefs per object; the RefUpdate the daemon must hear next
    Outbox         messages waiting to go, batched; what each batch must carry first
    Arrivals       object values that arrived, and the get/wait calls blocked on them
    ActorRoutes    where to send each actor's calls directly, and which calls are due
    Requests       requests waiting for their Reply (or ShmReserved)

The shell guards RefCounter, Arrivals and ActorRoutes with its state lock, and Outbox
with its send lock (held while a batch is written, so batches leave in order). The
methods here never block and never touch a socket.
"""

from __future__ import annotations

import itertools
import threading
from queue import Empty, SimpleQueue

from . import protocol as p

OUTBOX_MAX = 256  # queued messages that make a batch go at once


class RefCounter:
    """Counts this process's live ObjectRefs per object id. The daemon hears only of the
    0->1 and 1->0 transitions, in a RefUpdate that goes before anything sent later, so a
    ref pickled into a submitted task is pinned by that task before its drop arrives.

    ``dropped`` may be called anywhere, even inside the garbage collector (it only puts
    the id on a SimpleQueue); the rest needs the state lock."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self._adds: list[bytes] = []
        self._drops: SimpleQueue = SimpleQueue()

    def created(self, oid: bytes, born: bool) -> bool:
        """A ref to ``oid`` was made (``born``: the daemon already counts us as a holder,
        e.g. for our own put or task). True if the daemon must hear of it."""
        count = self.counts.get(oid, 0)
        self.counts[oid] = count + 1
        if count == 0 and not born:
            self._adds.append(oid)
            return True
        return False

    def born(self, oids: list[bytes]) -> None:
        """Refs to the results of a task we submitted: the daemon counts us already."""
        counts = self.counts
        for oid in oids:
            counts[oid] = counts.get(oid, 0) + 1

    def dropped(self, oid: bytes) -> None:
        self._drops.put(oid)

    def has_changes(self) -> bool:
        return bool(self._adds) or not self._drops.empty()

    def take_changes(self) -> tuple[list[bytes], list[bytes]]:
        """(ids newly held, ids no longer held) since the last call."""
        adds, self._adds = self._adds, []
        dels = []
        counts = self.counts
        drops = self._drops
        while True:
            try:
                oid = drops.get_nowait()
            except Empty:
                break
            count = counts.get(oid)
            if count is None:
                continue
            if count <= 1:
                del counts[oid]
                dels.append(oid)
            else:
                counts[oid] = count - 1
        return adds, dels


class Outbox:
    """Messages queued to go with the next send: task submissions and puts, so a loop
    submitting many tasks costs one system call per batch. ``urgent`` says the queue holds
    something a get/wait may be waiting for (bookkeeping that nobody waits on is not)."""

    def __init__(self) -> None:
        self.messages: list = []
        self.urgent = False
        self._registered: set[bytes] = set()  # functions whose code was queued already

    def queue(self, messages, urgent: bool = True) -> bool:
        """Queue ``messages``; True if the batch is big enough to go now."""
        self.messages.extend(messages)
        if urgent:
            self.urgent = True
        return len(self.messages) >= OUTBOX_MAX

    def register(self, fid: bytes, blob: bytes, name: str) -> None:
        """Queue a function's code unless it was queued before: the first task of it is
        queued after this, in the same batch or a later one, so the daemon always knows
        the code of a task it receives."""
        if fid not in self._registered:
            self._registered.add(fid)
            self.messages.append(p.RegisterFunction(fid, blob, name))

    def take(self) -> list:
        batch, self.messages = self.messages, []
        self.urgent = False
        return batch


class Waiter:
    """One blocked get/wait: woken when ``needed`` more of its objects have arrived.

    A held lock is the cheapest one-shot wake-up: ``wait`` acquires it again, ``wake``
    releases it (once).
    """

    __slots__ = ("needed", "_lock")

    def __init__(self, needed: int) -> None:
        self.needed = needed
        self._lock = threading.Lock()
        self._lock.acquire()

    def wait(self, timeout: float | None) -> None:
        self._lock.acquire(timeout=-1 if timeout is None else max(timeout, 0))

    def wake(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # already woken
            pass


class Arrivals:
    """Values (or where they are) of objects this process holds refs to, and the get/wait
    calls waiting for more of them. ``own_pending``: results of our own tasks, which the
    daemon sends without being asked."""

    def __init__(self) -> None:
        self.objects: dict[bytes, p.ObjectData] = {}
        self.own_pending: set[bytes] = set()
        self._waiters: dict[bytes, list[Waiter]] = {}

    def arrived(self, oid: bytes, data: p.ObjectData) -> None:
        self.objects[oid] = data
        self.own_pending.discard(oid)
        waiting = self._waiters.pop(oid, None)
        if waiting:
            for waiter in waiting:
                waiter.needed -= 1
                if waiter.needed == 0:
                    waiter.wake()

    def forget(self, oid: bytes) -> None:
        """No ref to ``oid`` is left here."""
        self.objects.pop(oid, None)
        self.own_pending.discard(oid)

    def plan_wait(self, oids: list[bytes], num_ready: int
                  ) -> tuple[Waiter | None, list[bytes], list[bytes]]:
        """To wait until ``num_ready`` of ``oids`` are here: the waiter to block on (None:
        they are here already), the ids it waits for, and those to ask the daemon for."""
        objects = self.objects
        missing = [o for o in oids if o not in objects]
        needed = num_ready - (len(oids) - len(missing))
        if needed <= 0:
            return None, [], []
        waiter = Waiter(needed)
        for oid in missing:
            self._waiters.setdefault(oid, []).append(waiter)
        ask = [o for o in missing if o not in self.own_pending]
        return waiter, missing, ask

    def stop_waiting(self, waiter: Waiter, oids: list[bytes]) -> None:
        for oid in oids:
            waiting = self._waiters.get(oid)
            if waiting and waiter in waiting:
                waiting.remove(waiter)
                if not waiting:
                    del self._waiters[oid]

    def wake_all(self) -> None:
        """The connection is gone: nothing more will arrive."""
        for waiting in self._waiters.values():
            for waiter in waiting:
                waiter.wake()


class ActorRoutes:
    """Where each actor's worker listens, and which calls to each actor are unfinished,
    by path. A caller switches between the daemon path and the direct path only when none
    of its earlier calls to that actor is unfinished, so calls run in the order made.
    Every call keeps its first result referenced until it arrives (``hidden``), which is
    how the caller knows it finished."""

    def __init__(self) -> None:
        self.routes: dict[bytes, tuple[str, bytes, bytes]] = {}  # actor -> (path,
        # worker id, node id)
        self._asked: set[bytes] = set()
        self._killed: set[bytes] = set()  # actors this process killed
        self._via_daemon: dict[bytes, set[bytes]] = {}  # actor -> results due via daemon
        self._direct: dict[bytes, set[bytes]] = {}  # actor -> results due from its worker
        self._call_actor: dict[bytes, bytes] = {}  # result id -> actor
        self._hidden: dict[bytes, object] = {}  # refs kept until the call finishes
        self._deferred: dict[bytes, list] = {}  # actor -> via-daemon calls held back
        # until its direct calls return (see defer)

    def route(self, actor_id: bytes, direct: bool = True
              ) -> tuple[tuple[str, bytes, bytes] | None, bool]:
        """(where to send a call directly, or None to go via the daemon; whether to ask
        the daemon where the actor's worker listens). ``direct``: may it go directly."""
        route = self.routes.get(actor_id)
        if route is not None and not self._via_daemon.get(actor_id):
            return (route if direct else None), False
        if route is None and actor_id not in self._asked and actor_id not in self._killed:
            self._asked.add(actor_id)
            return None, True
        return None, False

    def answered(self, actor_id: bytes, value: dict | None) -> None:
        """The daemon said where the actor's worker listens (None: nowhere reachable)."""
        self._asked.discard(actor_id)
        if value and not self._direct.get(actor_id) and actor_id not in self._killed:
            self.routes[actor_id] = (value["path"], value["worker_id"], value["node_id"])

    def called(self, actor_id: bytes, oid: bytes, direct: bool, keep) -> None:
        """A call whose first result is ``oid`` was sent (directly or not)."""
        pending = self._direct if direct else self._via_daemon
        pending.setdefault(actor_id, set()).add(oid)
        self._call_actor[oid] = actor_id
        self._hidden[oid] = keep

    def finished(self, oid: bytes) -> list | None:
        """``oid`` arrived: if it was a call's first result, that call is done. Returns
        the calls held back for that actor that may go now, if any."""
        actor = self._call_actor.pop(oid, None)
        if actor is not None:
            self._via_daemon.get(actor, set()).discard(oid)
            self._direct.get(actor, set()).discard(oid)
            self._hidden.pop(oid, None)  # (its __del__ only queues the drop)
            if actor in self._deferred and not self._direct.get(actor):
                return self._deferred.pop(actor)
        return None

    def defer(self, actor_id: bytes, message, streaming: bool) -> bool:
        """Hold ``message`` (a call via the daemon) back if it must wait: a streaming call
        while calls sent straight to the actor have not returned (its values come via the
        daemon, and the worker must run the calls in order), or any call made after a
        held one. True if held."""
        held = self._deferred.get(actor_id)
        if held is None and not (streaming and self._direct.get(actor_id)):
            return False
        self._deferred.setdefault(actor_id, []).append(message)
        return True

    def unfinished(self, actor_id: bytes) -> int:
        """Calls to the actor that have not returned (either path)."""
        return len(self._via_daemon.get(actor_id, ())) + len(self._direct.get(actor_id, ()))

    def pending(self, oid: bytes) -> bool:
        """Is ``oid`` the first result of a call that has not returned?"""
        return oid in self._call_actor

    def killed(self, actor_id: bytes) -> None:
        """This process killed the actor: its later calls go via the daemon, which
        sends nothing more to the dying worker."""
        self.routes.pop(actor_id, None)
        self._killed.add(actor_id)

    def unreachable(self, actor_id: bytes) -> list | None:
        """The actor's worker cannot be reached: its calls' results come via the daemon.
        Returns the calls held back for it, which may go now."""
        self.routes.pop(actor_id, None)
        moved = self._direct.pop(actor_id, set())
        self._via_daemon.setdefault(actor_id, set()).update(moved)
        return self._deferred.pop(actor_id, None)


class Requests:
    """Requests waiting for their Reply or ShmReserved, by request id. A slot is a
    callback (run by the reader thread) or a [threading.Event, reply] pair."""

    def __init__(self) -> None:
        self._slots: dict[int, object] = {}
        self._ids = itertools.count(1)

    def new(self, slot) -> int:
        req_id = next(self._ids)
        self._slots[req_id] = slot
        return req_id

    def forget(self, req_id: int) -> None:
        self._slots.pop(req_id, None)

    def answered(self, reply) -> object | None:
        """The slot ``reply`` completes (the caller runs or fills it)."""
        return self._slots.pop(reply.req_id, None)

    def abandon_all(self) -> list:
        """The connection is gone: every slot still waiting."""
        slots, self._slots = list(self._slots.values()), {}
        return slots
