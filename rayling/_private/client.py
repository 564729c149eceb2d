"""The core client: how a driver or a worker talks to its node daemon.

    user thread(s)                     reader thread               flusher thread
    ─────────────                      ─────────────               ──────────────
    submit / put / get / wait          recv frames from daemon     wakes when refs are
      │  send(): one frame =           ObjectReady -> objects{}    dropped or log lines
      │  pending RefUpdate/Logs +      Reply -> waiting request    wait; batches them
      │  the message, one sendall      ExecuteTask -> task queue   into one frame
      ▼                                Logs -> printed (driver)
    blocks on a _Waiter until the values it needs are in ``objects``

Reference counting: each ObjectRef increments ``counts`` when made; its ``__del__`` only
puts the id on a SimpleQueue (safe from any thread, even inside the garbage collector).
Before every send, and from the flusher, that queue is drained: ids whose count reaches
zero are reported to the daemon in a RefUpdate, in order with everything else this
process sends, so a ref serialized into a submitted task is never released early.

State owned here (guarded by ``_state``): ``counts`` (live ObjectRefs per id),
``objects`` (values or shared-memory locations that arrived), ``own_pending`` (returns of
our own tasks, which the daemon pushes to us when they finish).
"""

from __future__ import annotations

import itertools
import os
import selectors
import socket
import sys
import threading
import time
from queue import Empty, SimpleQueue
from typing import Any

from .. import exceptions as exc
from . import ids, peers, protocol as p, serialization, shm
from .protocol import FrameReader, encode_frame

current: CoreClient | None = None  # this process's client, once connected
OUTBOX_MAX = 256  # queued messages that trigger an immediate send


class DaemonConnectionError(exc.RaySystemError):
    """The connection to the node daemon is gone."""


class _Waiter:
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


class CoreClient:
    def __init__(self, address: str, token: str, kind: str, listen_ip: str = "") -> None:
        """Connect to the daemon at ``address``: a unix socket path, or ``tcp:host:port``
        for a head on another node. ``listen_ip``: also accept direct calls on TCP there
        (set in clusters, so callers on other nodes can reach this process)."""
        self.kind = kind
        self.is_worker = kind == "worker"
        self.address = address
        self.worker_id = ids.random_unique_id()
        self._token = token
        if address.startswith("tcp:"):
            sock = socket.create_connection(p.split_address(address[4:]), timeout=30)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Callers on other nodes reach us where we reached the head from.
            listen_ip = listen_ip or sock.getsockname()[0]
        else:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(address)
        self._sock = sock
        self._listeners: list[socket.socket] = []
        self.listen_path = self.listen_tcp = ""
        if not address.startswith("tcp:"):
            listener, self.listen_path = peers.listen(os.path.dirname(address))
            self._listeners.append(listener)
        if listen_ip:
            listener, self.listen_tcp = peers.listen_tcp(listen_ip)
            self._listeners.append(listener)
        self.peers = peers.PeerSender(token, self.worker_id)
        self._reader = FrameReader()
        node_hint = os.environ.get("RAYLING_NODE_ID", "") if self.is_worker else ""
        sock.sendall(encode_frame([p.Hello(
            kind, os.getpid(), self.worker_id, token, listen_path=self.listen_path,
            listen_tcp=self.listen_tcp, node_id=bytes.fromhex(node_hint))]))
        welcome = self._read_welcome()
        self.node_id: bytes = welcome.node_id
        self.job_id: bytes = welcome.job_id
        self.node_ip: str = welcome.node_ip
        self.session_dir: str = welcome.session_dir
        self.node_resources: dict[str, float] = welcome.resources

        self._send_lock = threading.Lock()
        self._state = threading.Lock()
        self._waiters: dict[bytes, list[_Waiter]] = {}  # get/wait calls blocked on ids
        self.counts: dict[bytes, int] = {}
        self.objects: dict[bytes, p.ObjectData] = {}
        self.own_pending: set[bytes] = set()
        self._mapped: dict[bytes, Any] = {}
        self._outbox: list = []  # messages queued by send_soon / send_later
        self._outbox_urgent = False  # it holds something a waiter may be waiting for
        self._refq: SimpleQueue = SimpleQueue()  # dropped ids (None: nothing, just wake)
        self._wake_r, self._wake_w = os.pipe()  # wakes the flusher
        self._stop_r, self._stop_w = socket.socketpair()  # stops the reader
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._flush_armed = False  # a wake-up is already on its way to the flusher
        self._adds: list[bytes] = []
        self._log_lines: list[p.LogLine] = []
        self._registered_functions: set[bytes] = set()
        self._replies: dict[int, list] = {}
        self._req_ids = itertools.count(1)
        self.closed = False  # no more sending: the daemon is gone or close() was called
        self._released = False  # close() has run
        self.tasks: SimpleQueue = SimpleQueue()  # ExecuteTask messages, for workers
        self.on_cancel = None  # set by the worker executor
        self.on_logs = None  # set by the driver to print worker output
        self.on_warning = None
        # Actor calls: where each actor's worker listens, and calls whose results are due.
        self._actor_routes: dict[bytes, tuple[str, bytes, bytes]] = {}  # actor -> (path,
        # worker id, node id)
        self._route_asked: set[bytes] = set()
        self._via_daemon: dict[bytes, set[bytes]] = {}  # actor -> results due via daemon
        self._direct: dict[bytes, set[bytes]] = {}  # actor -> results due from its worker
        self._call_actor: dict[bytes, bytes] = {}  # result id -> actor
        self._hidden: dict[bytes, Any] = {}  # refs kept for calls with num_returns=0

        self._reader_thread = threading.Thread(
            target=self._read_loop, name="rayling-reader", daemon=True)
        self._reader_thread.start()
        self._flusher_thread = threading.Thread(
            target=self._flush_loop, name="rayling-flusher", daemon=True)
        self._flusher_thread.start()

    def _read_welcome(self) -> p.Welcome:
        while True:
            data = self._sock.recv(65536)
            if not data:
                raise DaemonConnectionError("the node daemon closed the connection at hello")
            messages = self._reader.feed(data)
            if messages:
                msg = messages[0]
                self._early = messages[1:]  # handled by the reader thread when it starts
                if isinstance(msg, p.Rejected):
                    raise exc.RaySystemError(f"the node daemon refused us: {msg.reason}")
                if not isinstance(msg, p.Welcome):
                    raise DaemonConnectionError(f"expected Welcome, got {type(msg).__name__}")
                return msg

    # -- sending ----------------------------------------------------------------------
    def send(self, *messages) -> None:
        """Send ``messages`` now, after everything queued before them, in one frame."""
        with self._send_lock:
            batch = self._outbox
            self._outbox = []
            self._outbox_urgent = False
            batch += self._drain_pending()
            batch.extend(messages)
            if batch:
                self._write(batch)

    def send_soon(self, *messages) -> None:
        """Queue ``messages`` to go with the next send, or within a few milliseconds.

        Task submissions and puts use this, so a loop submitting many tasks costs one
        system call per batch; anything that waits for an answer sends at once, which
        flushes the queue first. Queued messages always go before ref drops made after
        them, so a ref passed to a queued task is never released before the task pins it.
        """
        with self._send_lock:
            self._outbox.extend(messages)
            self._outbox_urgent = True
            if len(self._outbox) < OUTBOX_MAX:
                self.wake_flusher()
                return
            batch = self._outbox
            self._outbox = []
            self._outbox_urgent = False
            batch += self._drain_pending()
            self._write(batch)

    def send_later(self, *messages) -> None:
        """Queue bookkeeping ``messages`` that nobody waits for (the daemon's record of a
        direct actor call): they go with the next send or within a few milliseconds, and a
        waiting get/wait does not send them early."""
        with self._send_lock:
            self._outbox.extend(messages)
        self.wake_flusher()

    def _write(self, batch: list) -> None:
        if self.closed:
            raise DaemonConnectionError(
                "lost the connection to the rayling node daemon; call rayling.shutdown() and "
                "rayling.init() again")
        try:
            self._sock.sendall(encode_frame(batch))
        except OSError as e:
            self.closed = True
            raise DaemonConnectionError(f"lost the connection to the node daemon: {e}") from e

    def _drain_pending(self) -> list:
        """Turn queued ref drops, new refs and log lines into messages (send lock held)."""
        out: list = []
        refq = self._refq
        if self._adds or not refq.empty():
            dels = []
            with self._state:
                adds, self._adds = self._adds, []
                counts = self.counts
                while True:
                    try:
                        oid = refq.get_nowait()
                    except Empty:
                        break
                    if oid is None:
                        continue
                    count = counts.get(oid)
                    if count is None:
                        continue
                    if count <= 1:
                        del counts[oid]
                        self.objects.pop(oid, None)
                        self._mapped.pop(oid, None)
                        self.own_pending.discard(oid)
                        dels.append(oid)
                    else:
                        counts[oid] = count - 1
            if adds or dels:
                out.append(p.RefUpdate(adds, dels))
        if self._log_lines:
            lines, self._log_lines = self._log_lines, []
            out.append(p.Logs(lines))
        return out

    def _flush_loop(self) -> None:
        """Batch ref drops and log lines that no other send carries, a few ms at a time."""
        while not self.closed:
            os.read(self._wake_r, 4096)
            time.sleep(0.002)  # gather a batch
            self._flush_armed = False
            try:
                self.send()
            except DaemonConnectionError:
                return
            except Exception as e:  # keep flushing; a lost batch is reported, not fatal
                print(f"(rayling) Warning: could not send queued messages: {e!r}",
                      file=sys.stderr)

    def wake_flusher(self) -> None:
        """Make sure the flusher runs soon. Safe anywhere, even inside __del__: a pipe
        write takes no Python lock."""
        if not self._flush_armed and not self.closed:
            self._flush_armed = True
            try:
                os.write(self._wake_w, b"x")
            except OSError:  # closed at shutdown
                pass

    # -- reference counting -----------------------------------------------------------
    def incref(self, oid: bytes, born: bool) -> None:
        with self._state:
            count = self.counts.get(oid, 0)
            self.counts[oid] = count + 1
            if count == 0 and not born:
                self._adds.append(oid)
                self.wake_flusher()

    def decref(self, oid: bytes) -> None:
        self._refq.put(oid)
        if not self._flush_armed:
            self.wake_flusher()

    # -- receiving --------------------------------------------------------------------
    def _read_loop(self) -> None:
        """Read the daemon's socket and peers' direct messages until the daemon goes."""
        daemon_sock = self._sock
        daemon_reader = self._reader
        listeners = self._listeners
        token = self._token
        selector = selectors.DefaultSelector()
        selector.register(daemon_sock, selectors.EVENT_READ, None)
        for listener in listeners:
            selector.register(listener, selectors.EVENT_READ, None)
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        handle = self._handle
        strangers: dict = {}  # accepted peers that have not authenticated -> deadline
        try:
            for msg in self._early:
                handle(msg)
            while True:
                timeout = None
                if strangers:  # drop those past their deadline; wake for the next one
                    now = time.monotonic()
                    for peer in [s for s, t in strangers.items() if t <= now]:
                        del strangers[peer]
                        selector.unregister(peer)
                        peer.close()
                    if strangers:
                        timeout = min(strangers.values()) - now
                for key, _ in selector.select(timeout):
                    sock = key.fileobj
                    if sock is self._stop_r:
                        return
                    if sock in listeners:
                        try:
                            peer, _ = sock.accept()
                        except OSError:  # e.g. out of descriptors: refuse this one only
                            continue
                        selector.register(peer, selectors.EVENT_READ, peers.IncomingPeer())
                        strangers[peer] = time.monotonic() + peers.AUTH_TIMEOUT
                        continue
                    try:
                        n = sock.recv_into(buf)
                    except OSError:
                        n = 0
                    if sock is daemon_sock:
                        if not n:
                            return
                        for msg in daemon_reader.feed(view[:n]):
                            handle(msg)
                        continue
                    try:
                        if not n:
                            raise p.ProtocolError("peer closed the connection")
                        for msg in key.data.feed(view[:n], token):
                            handle(msg)
                        if key.data.authenticated:
                            strangers.pop(sock, None)
                    except p.ProtocolError:
                        strangers.pop(sock, None)
                        selector.unregister(sock)
                        sock.close()
        except (OSError, ValueError, p.ProtocolError):
            pass
        finally:
            for key in list(selector.get_map().values()):
                if key.fileobj not in (daemon_sock, self._stop_r) and \
                        key.fileobj not in listeners:
                    key.fileobj.close()
            selector.close()
            self._connection_lost()

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is p.ObjectReady:
            oid = msg.object_id
            with self._state:
                if oid in self.counts:
                    self.objects[oid] = msg.data
                    self.own_pending.discard(oid)
                    waiting = self._waiters.pop(oid, None)
                    if waiting:
                        for waiter in waiting:
                            waiter.needed -= 1
                            if waiter.needed == 0:
                                waiter.wake()
                actor = self._call_actor.pop(oid, None)
                if actor is not None:
                    self._via_daemon.get(actor, set()).discard(oid)
                    self._direct.get(actor, set()).discard(oid)
                    self._hidden.pop(oid, None)
        elif kind is p.ExecuteTask:
            self.tasks.put(msg)
        elif kind is p.Reply or kind is p.ShmReserved:
            slot = self._replies.pop(msg.req_id, None)
            if callable(slot):
                slot(msg)
            elif slot is not None:
                slot[1] = msg
                slot[0].set()
        elif kind is p.CancelTask:
            if self.on_cancel is not None:
                self.on_cancel(msg.task_id)
        elif kind is p.Logs:
            if self.on_logs is not None:
                self.on_logs(msg.lines)
        elif kind is p.Warning:
            if self.on_warning is not None:
                self.on_warning(msg.text)
            else:
                print(f"(rayling) Warning: {msg.text}", file=sys.stderr)

    def _connection_lost(self) -> None:
        self.closed = True
        with self._state:
            for waiting in self._waiters.values():
                for waiter in waiting:
                    waiter.wake()
        for slot in list(self._replies.values()):
            if not callable(slot):
                slot[0].set()
        self._stop_flusher()
        if self.is_worker:
            os._exit(1)  # the daemon is gone: a worker has nothing left to do

    # -- requests ---------------------------------------------------------------------
    def request(self, make_message, timeout: float = 60.0):
        """Send ``make_message(req_id)`` and wait for the Reply/ShmReserved to it."""
        req_id = next(self._req_ids)
        slot = [threading.Event(), None]
        self._replies[req_id] = slot
        self.send(make_message(req_id))
        if not slot[0].wait(timeout):
            self._replies.pop(req_id, None)
            raise exc.GetTimeoutError(
                f"the node daemon did not answer within {timeout} s; it may be overloaded or "
                f"stuck (see its log in {self.session_dir}/logs/daemon.log)")
        if slot[1] is None:
            raise DaemonConnectionError("lost the connection to the node daemon")
        return slot[1]

    def request_async(self, make_message, callback) -> None:
        """Send ``make_message(req_id)``; the reader thread calls ``callback(reply)``."""
        req_id = next(self._req_ids)
        self._replies[req_id] = callback
        self.send_soon(make_message(req_id))

    # -- actor calls ------------------------------------------------------------------
    def actor_route(self, actor_id: bytes) -> tuple[str, bytes, bytes] | None:
        """Where to send a call to ``actor_id`` directly, or None to go via the daemon.

        Calls switch between the two paths only when none of this caller's earlier calls
        to the actor is still running, so they always run in the order they were made.
        """
        with self._state:
            route = self._actor_routes.get(actor_id)
            if route is not None and not self._via_daemon.get(actor_id):
                return route
            if route is None and actor_id not in self._route_asked:
                self._route_asked.add(actor_id)
                ask = True
            else:
                ask = False
        if ask:
            self.request_async(lambda rid: p.Query(rid, "actor_address", actor_id),
                               lambda reply: self._got_route(actor_id, reply))
        return None

    def _got_route(self, actor_id: bytes, reply) -> None:
        with self._state:
            self._route_asked.discard(actor_id)
            if reply.value and not self._direct.get(actor_id):
                value = reply.value
                self._actor_routes[actor_id] = (
                    value["path"], value["worker_id"], value["node_id"])

    def note_actor_call(self, actor_id: bytes, oid: bytes, direct: bool, hidden=None) -> None:
        """Remember that the result ``oid`` of a call to ``actor_id`` is due."""
        with self._state:
            pending = self._direct if direct else self._via_daemon
            pending.setdefault(actor_id, set()).add(oid)
            self._call_actor[oid] = actor_id
            if hidden is not None:
                self._hidden[oid] = hidden

    def direct_call_failed(self, actor_id: bytes, path: str) -> None:
        """The actor's worker cannot be reached: its calls' results come via the daemon."""
        self.peers.forget(path)
        with self._state:
            self._actor_routes.pop(actor_id, None)
            moved = self._direct.pop(actor_id, set())
            self._via_daemon.setdefault(actor_id, set()).update(moved)

    def query(self, what: str, arg=None):
        reply = self.request(lambda rid: p.Query(rid, what, arg))
        if reply.error:
            raise exc.RaySystemError(f"query {what!r} failed in the daemon: {reply.error}")
        return reply.value

    # -- objects ----------------------------------------------------------------------
    def register_function(self, fid: bytes, blob: bytes, name: str) -> list:
        """The RegisterFunction message to send before the first task of ``fid``, if any."""
        if fid in self._registered_functions:
            return []
        self._registered_functions.add(fid)
        return [p.RegisterFunction(fid, blob, name)]

    def store(self, oid: bytes, value: Any, what: str = "value") -> tuple[p.ObjectData, Any]:
        """Serialize ``value`` into an ObjectData; large values go to shared memory.

        Returns the data and the serialized form, whose contained refs must stay alive until
        the message carrying the data is sent.
        """
        ser = serialization.serialize(value, what)
        contained = [ref._id for ref in ser.contained_refs]
        if ser.is_inline:
            return p.ObjectData(inline=ser.pickled, contained=contained), ser
        size = ser.total_size()
        reply = self.request(lambda rid: p.ReserveShm(rid, oid, size))
        if reply.error:
            raise exc.ObjectStoreFullError(reply.error)
        if reply.preallocated:
            mem = shm.open_for_write(reply.name, size)
        else:
            mem = shm.create(reply.name, size)
        try:
            ser.write_to(mem)
        finally:
            mem.close()
        return p.ObjectData(shm=reply.name, size=size, contained=contained), ser

    def put(self, value: Any):
        from ..object_ref import ObjectRef

        oid = ids.new_put_object_id(self.job_id)
        data, ser = self.store(oid, value)
        ref = ObjectRef(oid, _born=True)
        with self._state:
            self.objects[oid] = data
        self.send_soon(p.PutObject(oid, data))
        del ser
        return ref

    def wait_for(self, oids: list[bytes], num_ready: int, timeout: float | None) -> list[bytes]:
        """Block until ``num_ready`` of ``oids`` have arrived (or timeout); return those."""
        objects = self.objects
        with self._state:
            missing = [o for o in oids if o not in objects]
            needed = num_ready - (len(oids) - len(missing))
            if needed <= 0:
                return [o for o in oids if o in objects]
            waiter = _Waiter(needed)
            for oid in missing:
                self._waiters.setdefault(oid, []).append(waiter)
            to_subscribe = [o for o in missing if o not in self.own_pending]
        blocked = self.is_worker and timeout != 0
        try:
            # This also flushes queued submissions we may be waiting for.
            if to_subscribe or blocked or self._outbox_urgent:
                self.send(*([p.GetObjects(to_subscribe)] if to_subscribe else []),
                          *([p.Blocked()] if blocked else []))
            if not self.closed:
                waiter.wait(timeout)
        finally:
            with self._state:
                for oid in missing:
                    waiting = self._waiters.get(oid)
                    if waiting and waiter in waiting:
                        waiting.remove(waiter)
                        if not waiting:
                            del self._waiters[oid]
            if blocked and not self.closed:
                self.send(p.Unblocked())
        ready = [o for o in oids if o in objects]
        if self.closed and len(ready) < num_ready:
            raise DaemonConnectionError(
                "lost the connection to the rayling node daemon while waiting for objects")
        return ready

    def value_of(self, oid: bytes) -> Any:
        """The value of an object that has arrived; raises the stored error if it failed."""
        data = self.objects[oid]
        if data.where is not None:
            data = self._copy_here(oid)
        if data.inline is not None:
            value = serialization.deserialize_inline(data.inline)
        else:
            mem = self._mapped.get(oid)
            if mem is None:
                try:
                    mem = shm.open_readonly(data.shm, data.size)
                except FileNotFoundError:
                    # A copy from another node may have been evicted: ask where it is now.
                    if self._copy_here(oid).shm == data.shm:
                        raise exc.ObjectLostError(
                            f"Object {oid.hex()} was freed from the object store") from None
                    return self.value_of(oid)
                self._mapped[oid] = mem
            value = serialization.deserialize_segment(mem)
        if data.error:
            if isinstance(value, exc.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def _copy_here(self, oid: bytes) -> p.ObjectData:
        """Ask for a copy, in this node's store, of a large object on another node."""
        with self._state:
            self.objects.pop(oid, None)
        self.wait_for([oid], 1, None)
        data = self.objects.get(oid)
        if data is None or data.where is not None:
            raise exc.ObjectLostError(f"Object {oid.hex()} could not be copied to this node")
        return data

    def value_from_data(self, data: p.ObjectData) -> Any:
        """Deserialize data handed over directly (task arguments), raising stored errors."""
        if data.inline is not None:
            value = serialization.deserialize_inline(data.inline)
        else:
            value = serialization.deserialize_segment(shm.open_readonly(data.shm, data.size))
        if data.error:
            if isinstance(value, exc.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    # -- shutdown ---------------------------------------------------------------------
    def close(self) -> None:
        """Flush, disconnect, stop both threads and release every file descriptor.

        Also right after the daemon went away (``closed`` already set). ObjectRefs that
        outlive their client check ``closed`` before touching its descriptors, whose
        numbers the next client may reuse."""
        if self._released:
            return
        self._released = True
        if not self.closed:
            try:
                self.send()
            except exc.RayError:
                pass
        self.closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._stop_w.send(b"x")
        self._sock.close()
        self._stop_flusher()
        if threading.current_thread() is not self._reader_thread:
            self._reader_thread.join(timeout=5)
        self._flusher_thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._stop_r.close()
        self._stop_w.close()
        self.peers.close()
        for listener in self._listeners:
            listener.close()
        if self.listen_path:
            try:
                os.unlink(self.listen_path)
            except FileNotFoundError:
                pass

    def _stop_flusher(self) -> None:
        try:
            os.write(self._wake_w, b"x")  # it sees ``closed`` and returns
        except OSError:
            pass
