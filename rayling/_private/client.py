"""The core client: how a driver or a worker talks to its node daemon and to peers. This
is the threaded shell; what it knows and decides is in client_core.py.

    user thread(s)                     reader thread               flusher thread
    ─────────────                      ─────────────               ──────────────
    submit / put / get / wait          recv frames from the daemon wakes when refs are
      │  send(): one frame =           and from peers (direct      dropped, output or
      │  queued messages + ref         calls); ObjectReady ->      submissions wait;
      │  updates + the message         Arrivals; Reply -> its      sends them within
      ▼                                request; ExecuteTask ->     ~2 ms, batched
    blocks on a Waiter until the       the task queue (workers)
    values it needs have arrived

Locks: ``_state`` guards the RefCounter, Arrivals and ActorRoutes; ``_send_lock`` the
Outbox and the daemon socket, so batches leave whole and in order. ``ObjectRef.__del__``
takes neither: it queues the id and writes a byte to the flusher's pipe, which is safe
even inside the garbage collector. The reader thread never imports or runs user code: it
only files what arrives and wakes whoever waits for it.
"""

from __future__ import annotations

import os
import selectors
import socket
import sys
import threading
import time
import weakref
from collections import deque
from queue import SimpleQueue
from typing import Any

from .. import exceptions as exc
from . import ids, peers, protocol as p, serialization, shm
from .client_core import ActorRoutes, Arrivals, Outbox, RefCounter, Requests
from .connection import Acceptor, Channel, IncomingStream

current: CoreClient | None = None  # this process's client, once connected
FLUSH_DELAY = 0.002  # seconds the flusher lets a batch gather
DRAIN_TIMEOUT = 5.0  # seconds to read what a dead actor worker sent before its end


class DaemonConnectionError(exc.RaySystemError):
    """The connection to the node daemon is gone."""


class CoreClient:
    def __init__(self, address: str, token: str, kind: str, listen_ip: str = "",
                 namespace: str = "") -> None:
        """Connect to the daemon at ``address``: a unix socket path, or ``tcp:host:port``
        for a head on another node. ``listen_ip``: also accept direct calls on TCP there
        (set in clusters, so callers on other nodes can reach this process)."""
        self.kind = kind
        self.is_worker = kind == "worker"
        self.address = address
        self.worker_id = ids.random_unique_id()
        self._token = token
        self.namespace = namespace  # a driver's job's
        self._listeners: list[socket.socket] = []
        self.listen_path = self.listen_tcp = ""
        self._channel: Channel | None = None
        try:
            welcome = self._connect(address, token, listen_ip)
        except BaseException:
            self._close_sockets()
            raise
        self._sock = self._channel.sock
        self.peers = peers.PeerSender(token, self.worker_id)
        self.node_id: bytes = welcome.node_id
        self.job_id: bytes = welcome.job_id
        self.node_ip: str = welcome.node_ip
        self.session_dir: str = welcome.session_dir
        self.node_resources: dict[str, float] = welcome.resources
        self.dashboard_url: str = welcome.dashboard_url

        self._send_lock = threading.Lock()
        self._main_ident = threading.main_thread().ident
        self.main_sending = False  # the main thread is writing a batch (see worker.py)
        self.interrupt_pending = False  # ... and a cancel came meanwhile
        self._state = threading.Lock()
        self._refs = RefCounter()
        self._arrivals = Arrivals()
        self.objects = self._arrivals.objects  # read freely; changed under ``_state``
        self.actor_routes = ActorRoutes()
        self._outbox = Outbox()
        self._requests = Requests()
        self._mapped: dict[bytes, Any] = {}  # shared-memory mappings of objects read
        self._output: deque = deque()  # log lines and progress bars waiting to go
        self._wake_r, self._wake_w = os.pipe()  # wakes the flusher
        self._stop_r, self._stop_w = socket.socketpair()  # stops the reader
        os.set_blocking(self._wake_w, False)  # a full pipe already means "wake up"
        self._flush_armed = False  # a wake-up is already on its way to the flusher
        self.closed = False  # no more sending: the daemon is gone or close() was called
        self._released = False  # close() has run
        self.tasks: SimpleQueue = SimpleQueue()  # ExecuteTask messages, for workers
        self.on_cancel = None  # set by the worker executor
        self.on_consumed = None  # ... which also paces streaming generators
        self.on_logs = None  # set by the driver to print worker output
        self.on_progress = None  # ... and to draw progress bars
        self.on_warning = None
        self.output_caught_up = None  # set by the driver: wait for output already here
        self._generators: dict[bytes, weakref.ref] = {}  # streaming task -> its generator

        self._reader_thread = threading.Thread(
            target=self._read_loop, name="rayling-reader", daemon=True)
        self._reader_thread.start()
        self._flusher_thread = threading.Thread(
            target=self._flush_loop, name="rayling-flusher", daemon=True)
        self._flusher_thread.start()

    def _connect(self, address: str, token: str, listen_ip: str) -> p.Welcome:
        """Listen for peers, connect to the daemon, say Hello, read its Welcome."""
        over_tcp = address.startswith("tcp:")
        if not over_tcp:
            listener, self.listen_path = peers.listen(os.path.dirname(address))
            self._listeners.append(listener)
        self._channel = Channel(address)
        if over_tcp:
            # Callers on other nodes reach us where we reach the head from.
            listen_ip = listen_ip or self._channel.sock.getsockname()[0]
        if listen_ip:
            listener, self.listen_tcp = peers.listen_tcp(listen_ip)
            self._listeners.append(listener)
        node_hint = os.environ.get("RAYLING_NODE_ID", "") if self.is_worker else ""
        self._channel.send([p.Hello(
            self.kind, os.getpid(), self.worker_id, token, listen_path=self.listen_path,
            listen_tcp=self.listen_tcp, node_id=bytes.fromhex(node_hint),
            namespace=self.namespace)])
        self._reader = p.FrameReader()
        while True:
            data = self._channel.sock.recv(65536)
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

    def _close_sockets(self) -> None:
        """Close the daemon connection and the listeners; remove the listening path."""
        if self._channel is not None:
            self._channel.close()
        for listener in self._listeners:
            listener.close()
        if self.listen_path:
            try:
                os.unlink(self.listen_path)
            except FileNotFoundError:
                pass

    # -- sending --------------------------------------------------------------------------
    def send(self, *messages) -> None:
        """Send ``messages`` now, after everything queued before them, in one frame."""
        main = threading.get_ident() == self._main_ident
        with self._send_lock:
            self._write_all(messages, main)
        if main and self.interrupt_pending:
            self._deliver_interrupt()

    def _write_all(self, messages, main: bool) -> None:
        """(Send lock held) write everything queued, then ``messages``, as one frame. On
        the main thread a cancel's interruption waits until it is written (see
        worker.main): half a batch would lose messages or cut a frame."""
        if main:
            self.main_sending = True
        try:
            batch = self._outbox.take()
            batch += self._pending_updates()
            batch.extend(messages)
            if batch:
                self._write(batch)
        finally:
            if main:
                self.main_sending = False

    def _deliver_interrupt(self) -> None:
        """The cancel that came while the main thread was writing: it happens now."""
        self.interrupt_pending = False
        raise KeyboardInterrupt

    def send_soon(self, *messages, register: tuple | None = None) -> None:
        """Queue ``messages`` to go with the next send, or within a few milliseconds.

        Task submissions and puts use this, so a loop submitting many tasks costs one
        system call per batch; anything that waits for an answer sends at once, which
        flushes the queue first. Queued messages always go before ref drops made after
        them, so a ref passed to a queued task is never released before the task pins it.
        ``register``: (fid, code, name) of the function these messages use, sent first
        unless it was already.
        """
        with self._send_lock:
            outbox = self._outbox
            if register is not None:
                outbox.register(*register)
            if not outbox.queue(messages):
                self.wake_flusher()
                return
            main = threading.get_ident() == self._main_ident
            self._write_all((), main)
        if main and self.interrupt_pending:
            self._deliver_interrupt()

    def send_later(self, *messages) -> None:
        """Queue bookkeeping ``messages`` that nobody waits for (the daemon's record of a
        direct actor call): they go with the next send or within a few milliseconds, and a
        waiting get/wait does not send them early."""
        with self._send_lock:
            self._outbox.queue(messages, urgent=False)
        self.wake_flusher()

    def _write(self, batch: list) -> None:
        if self.closed:
            raise DaemonConnectionError(
                "lost the connection to the rayling node daemon; call rayling.shutdown() and "
                "rayling.init() again")
        try:
            self._sock.sendall(p.encode_frame(batch))
        except OSError as e:
            self.closed = True
            raise DaemonConnectionError(f"lost the connection to the node daemon: {e}") from e

    def _pending_updates(self) -> list:
        """Queued ref changes and output as messages (send lock held)."""
        out: list = []
        refs = self._refs
        if refs.has_changes():
            with self._state:
                adds, dels = refs.take_changes()
                forget = self._arrivals.forget
                mapped = self._mapped
                for oid in dels:
                    forget(oid)
                    mapped.pop(oid, None)
            if adds or dels:
                out.append(p.RefUpdate(adds, dels))
        output = self._output
        if output:
            lines = []
            while output:
                message = output.popleft()
                if type(message) is p.LogLine:
                    lines.append(message)
                else:
                    out.append(message)
            if lines:
                out.append(p.Logs(lines))
        return out

    def _flush_loop(self) -> None:
        """Batch ref drops, output and queued messages that no other send carries."""
        while not self.closed:
            os.read(self._wake_r, 4096)
            time.sleep(FLUSH_DELAY)  # gather a batch
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

    def queue_output(self, message) -> None:
        """A line a task printed, a progress bar's state, or another message that nothing
        waits on: sent within a few ms. Safe anywhere, even inside __del__."""
        self._output.append(message)
        self.wake_flusher()

    # -- reference counting ---------------------------------------------------------------
    def incref(self, oid: bytes, born: bool) -> None:
        with self._state:
            if self._refs.created(oid, born):
                self.wake_flusher()

    def decref(self, oid: bytes) -> None:
        self._refs.dropped(oid)
        if not self._flush_armed:
            self.wake_flusher()

    def expect_results(self, oids: list[bytes]) -> None:
        """Refs to the results of a task this process submits were made: count them, and
        expect the results (the daemon sends them unasked). One lock for all of it: the
        submit path is hot and the reader thread takes the same lock for every result."""
        with self._state:
            self._refs.born(oids)
            self._arrivals.own_pending.update(oids)

    # -- receiving ------------------------------------------------------------------------
    def _read_loop(self) -> None:
        """Read the daemon's socket and peers' direct messages until the daemon goes."""
        daemon_sock = self._sock
        daemon_reader = self._reader
        selector = selectors.DefaultSelector()
        selector.register(daemon_sock, selectors.EVENT_READ, None)
        selector.register(self._stop_r, selectors.EVENT_READ, None)
        acceptor = Acceptor(selector, self._token, peers.ACCEPTED)
        for listener in self._listeners:
            acceptor.listen(listener)
        buf = bytearray(256 * 1024)
        view = memoryview(buf)
        handle = self._handle
        try:
            for msg in self._early:
                handle(msg)
            while True:
                for key, _ in selector.select(acceptor.timeout()):
                    sock, stream = key.fileobj, key.data
                    if stream is acceptor:
                        acceptor.accept(sock)
                        continue
                    if sock is self._stop_r:
                        return
                    if sock.fileno() < 0:  # dropped while an earlier one was handled
                        continue
                    try:
                        n = sock.recv_into(buf)
                    except OSError:
                        n = 0
                    if sock is daemon_sock:
                        if not n:
                            return
                        for msg in daemon_reader.feed(view[:n]):
                            if type(msg) is p.CallsInDoubt:
                                self._answer_doubt(msg, selector, acceptor)
                            else:
                                handle(msg)
                        continue
                    if not n:
                        acceptor.drop(sock)
                        continue
                    stranger = stream.hello is None
                    try:
                        messages = stream.feed(view[:n], time.monotonic())
                    except p.ProtocolError:
                        acceptor.drop(sock)
                        continue
                    acceptor.fed(sock, stream, stranger)
                    for msg in messages:
                        handle(msg)
                acceptor.expire()
        except (OSError, ValueError, p.ProtocolError):
            pass
        finally:
            acceptor.close()
            selector.close()
            self._connection_lost()

    def _handle(self, msg) -> None:
        kind = type(msg)
        if kind is p.ObjectReady:
            oid = msg.object_id
            with self._state:
                if oid in self._refs.counts:
                    self._arrivals.arrived(oid, msg.data)
                released = self.actor_routes.finished(oid)
            if released:
                self.send_soon(*released)
        elif kind is p.ExecuteTask:
            self.tasks.put(msg)
        elif kind is p.GeneratorItem:
            self._generator_item(msg)
        elif kind is p.GeneratorConsumed:
            if self.on_consumed is not None:
                self.on_consumed(msg.task_id, msg.count)
        elif kind is p.Reply or kind is p.ShmReserved:
            slot = self._requests.answered(msg)
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
        elif kind is p.ProgressBar:
            if self.on_progress is not None:
                self.on_progress(msg)
        elif kind is p.Warning:
            if self.on_warning is not None:
                self.on_warning(msg.text)
            else:
                print(f"(rayling) Warning: {msg.text}", file=sys.stderr)

    def _answer_doubt(self, msg: p.CallsInDoubt, selector, acceptor) -> None:
        """An actor's worker died with calls we sent it straight: read all it sent us,
        then tell the daemon which calls returned, so it reruns only the others."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        for key in list(selector.get_map().values()):
            stream = key.data
            if (isinstance(stream, IncomingStream) and stream.hello is not None
                    and stream.hello.worker_id == msg.worker_id):
                if not peers.drain(key.fileobj, stream, deadline, self._handle):
                    print("(rayling) Warning: an actor's dead worker did not close its "
                          "connection in time; calls it may have finished will run again",
                          file=sys.stderr)
                acceptor.drop(key.fileobj)
        received = []
        with self._state:
            pending = self.actor_routes.pending
            objects = self._arrivals.objects
            for task_id, count in msg.calls:
                oids = [ids.object_id_for_return(task_id, i) for i in range(max(count, 1))]
                if not pending(oids[0]):
                    received.append((task_id, [objects.get(o) for o in oids[:count]]))
        try:
            self.send(p.CallsReceived(msg.actor_id, [task_id for task_id, _ in msg.calls],
                                      received))
        except exc.RayError:  # the daemon is gone too; the reader sees it next
            pass

    def _connection_lost(self) -> None:
        self.closed = True
        with self._state:
            self._arrivals.wake_all()
        for slot in self._requests.abandon_all():
            if not callable(slot):
                slot[0].set()
        self._stop_flusher()
        if self.is_worker:
            os._exit(1)  # the daemon is gone: a worker has nothing left to do

    # -- requests -------------------------------------------------------------------------
    def request(self, make_message, timeout: float = 60.0):
        """Send ``make_message(req_id)`` and wait for the Reply/ShmReserved to it."""
        slot = [threading.Event(), None]
        req_id = self._requests.new(slot)
        self.send(make_message(req_id))
        if not slot[0].wait(timeout):
            self._requests.forget(req_id)
            raise exc.GetTimeoutError(
                f"the node daemon did not answer within {timeout} s; it may be overloaded or "
                f"stuck (see its log in {self.session_dir}/logs/daemon.log)")
        if slot[1] is None:
            raise DaemonConnectionError("lost the connection to the node daemon")
        return slot[1]

    def request_async(self, make_message, callback) -> None:
        """Send ``make_message(req_id)``; the reader thread calls ``callback(reply)``."""
        self.send_soon(make_message(self._requests.new(callback)))

    def query(self, what: p.QueryKind, timeout: float = 60.0):
        reply = self.request(lambda rid: p.Query(rid, what), timeout)
        if reply.error:
            raise exc.RaySystemError(
                f"query {type(what).__name__} failed in the daemon: {reply.error}")
        return reply.value

    # -- actor calls ----------------------------------------------------------------------
    def begin_actor_call(self, actor_id: bytes, oids: list[bytes], keep, direct: bool = True
                         ) -> tuple[str, bytes, bytes] | None:
        """A call to ``actor_id`` whose results are ``oids`` (refs made, not yet counted;
        ``keep`` is the first, held until it arrives) is about to go: where to send it
        directly, or None to send it via the daemon, which is asked, the first time,
        where the actor's worker listens. Counting the refs, expecting the results and
        choosing the path take one lock (see expect_results). ``direct=False``: a
        streaming call, whose values come via the daemon (send_actor_call holds it back
        until the calls sent straight to the actor have returned, so calls still run in
        the order made)."""
        with self._state:
            self._refs.born(oids)
            self._arrivals.own_pending.update(oids)
            routes = self.actor_routes
            route, ask = routes.route(actor_id, direct)
            routes.called(actor_id, oids[0], route is not None, keep)
        if ask:
            self.request_async(lambda rid: p.Query(rid, p.ActorAddress(actor_id)),
                               lambda reply: self._got_route(actor_id, reply))
        return route

    def pending_actor_calls(self, actor_id: bytes) -> int:
        with self._state:
            return self.actor_routes.unfinished(actor_id)

    def send_actor_call(self, actor_id: bytes, message, streaming: bool) -> None:
        """Send a call to the actor via the daemon, or hold it back until the calls sent
        straight to the actor have returned (ActorRoutes.defer)."""
        with self._state:
            held = self.actor_routes.defer(actor_id, message, streaming)
        if not held:
            self.send_soon(message)

    def _got_route(self, actor_id: bytes, reply) -> None:
        with self._state:
            self.actor_routes.answered(actor_id, reply.value)

    def kill_actor(self, actor_id: bytes, no_restart: bool) -> None:
        """Kill an actor; calls this process makes after it never reach the old worker."""
        with self._state:
            self.actor_routes.killed(actor_id)
        self.send(p.KillActor(actor_id, no_restart))

    def direct_call_failed(self, actor_id: bytes, path: str) -> None:
        """The actor's worker cannot be reached: its calls' results (the last one's too)
        come via the daemon."""
        self.peers.forget(path)
        with self._state:
            released = self.actor_routes.unreachable(actor_id)
        if released:
            self.send_soon(*released)

    # -- objects --------------------------------------------------------------------------
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
        mem, name = self._new_segment(oid, size, what)
        try:
            ser.write_to(mem)
        finally:
            mem.close()
        return p.ObjectData(shm=name, size=size, contained=contained), ser

    def _new_segment(self, oid: bytes, size: int, what: str):
        """A segment of ``size`` bytes the daemon reserved for ``oid``, mapped for writing,
        and its name. A name someone else took first (only another local user could: the
        names are random) is given back and another one asked for."""
        for _attempt in range(3):
            reply = self.request(lambda rid: p.ReserveShm(rid, oid, size))
            if reply.error:
                raise exc.ObjectStoreFullError(reply.error)
            try:
                if reply.preallocated:
                    return shm.open_for_write(reply.name, size), reply.name
                return shm.create(reply.name, size), reply.name
            except (FileExistsError, shm.ForeignSegmentError):
                self.send(p.ReleaseShm(reply.name))
                taken = reply.name
            except OSError as e:  # /dev/shm is smaller than the store: give the room back
                self.send(p.ReleaseShm(reply.name))
                raise exc.ObjectStoreFullError(
                    f"Could not store {what} ({size / 1e6:.1f} MB) in shared memory: {e}. "
                    f"/dev/shm has less room than the object store was given (a container's "
                    f"/dev/shm is often small): start the cluster with a smaller "
                    f"object_store_memory, or give /dev/shm more room.") from e
        raise exc.ObjectStoreFullError(
            f"Could not store {what}: three shared-memory names in a row (the last "
            f"{taken}) were taken by another user. Someone on this machine is interfering "
            f"with rayling's segments in /dev/shm.")

    def stored(self, oid: bytes, data: p.ObjectData) -> None:
        """This process put ``data`` as ``oid`` (it holds a ref): tell the daemon soon."""
        with self._state:
            self._arrivals.objects[oid] = data
        self.send_soon(p.PutObject(oid, data))

    def _generator_item(self, msg: p.GeneratorItem) -> None:
        """A streaming task's value came: the daemon counts us as its holder already. Its
        generator takes it, or, if the generator is gone, it is dropped at once."""
        oid = ids.object_id_for_return(msg.task_id, msg.index + 1)
        holder = self._generators.get(msg.task_id)
        generator = holder() if holder is not None else None
        with self._state:
            self._refs.born([oid])
            self._arrivals.arrived(oid, msg.data)
        if generator is not None:
            generator._arrived(msg.index, oid)
        else:
            self._refs.dropped(oid)
            self.wake_flusher()

    def track_generator(self, task_id: bytes, generator) -> None:
        """``generator`` takes the items of streaming task ``task_id`` (until it is gone)."""
        self._generators[task_id] = weakref.ref(
            generator, lambda _ref: self._generators.pop(task_id, None))

    def wait_for_any(self, oids: list[bytes], items: list[bytes], timeout: float | None
                     ) -> None:
        """Wait until one of ``oids`` or ``items`` is here; ``items`` are streaming tasks'
        values, which the daemon sends unasked as they are yielded."""
        pending = self._arrivals.own_pending
        with self._state:
            added = [i for i in items if i not in self.objects and i not in pending]
            pending.update(added)
        try:
            self.wait_for(oids + items, 1, timeout)
        finally:
            with self._state:
                pending.difference_update(added)

    def wait_for(self, oids: list[bytes], num_ready: int, timeout: float | None) -> list[bytes]:
        """Block until ``num_ready`` of ``oids`` have arrived (or timeout); return those."""
        arrivals = self._arrivals
        with self._state:
            waiter, missing, ask = arrivals.plan_wait(oids, num_ready)
        objects = self.objects
        if waiter is None:
            return [o for o in oids if o in objects]
        blocked = self.is_worker and timeout != 0
        try:
            # This also flushes queued submissions we may be waiting for.
            if ask or blocked or self._outbox.urgent:
                self.send(*([p.GetObjects(ask)] if ask else []),
                          *([p.Blocked()] if blocked else []))
            if not self.closed:
                waiter.wait(timeout)
        finally:
            with self._state:
                arrivals.stop_waiting(waiter, missing)
            if blocked and not self.closed:
                self.send(p.Unblocked())
        ready = [o for o in oids if o in objects]
        if self.output_caught_up is not None:  # what the tasks printed shows first
            self.output_caught_up()
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
            self._arrivals.objects.pop(oid, None)
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

    # -- shutdown -------------------------------------------------------------------------
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
        self._stop_flusher()
        if threading.current_thread() is not self._reader_thread:
            self._reader_thread.join(timeout=5)
        self._flusher_thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._stop_r.close()
        self._stop_w.close()
        self.peers.close()
        self._close_sockets()

    def _stop_flusher(self) -> None:
        try:
            os.write(self._wake_w, b"x")  # it sees ``closed`` and returns
        except OSError:
            pass
