"""The node daemon's I/O shell: an asyncio (uvloop) loop around the controller's decisions.

    driver ──┐  unix socket, or TCP   ┌─────────── HeadDaemon ─────────────┐
             ├──────── frames ───────>│ ClientConnection (asyncio protocol)│
    worker ──┘  (any node's workers)  │   IncomingStream: Hello + token    │
                                      │   └─> Controller.handle(conn, msg) │ decisions
                                      │ LocalAgent ──> template ──fork──> worker
    joined node daemon ── TCP ──────> │ TransferServer / Puller (threads)  │
                                      └────────────────────────────────────┘

    JoinedNodeDaemon: a HeadLink to the head, doing what the head asks (SpawnWorkers,
    KillWorker, UnlinkSegments, PullObject); its template's workers connect to the head
    themselves; TransferServer / Puller move objects to and from other nodes.

Both roles share the DaemonShell: the loop, the template, the segment thread, object
transfer, signals, the heartbeat of node links (node_table.Heartbeat), and cleaning up
every process and segment at exit. Connections batch their outgoing messages into one
frame per loop turn. A malformed frame, a peer that does not authenticate in time, or a
frame that stalls closes that connection with a logged reason; the daemon serves on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from . import dashboard_process, log_files, protocol as p, shm, transfer
from .connection import (
    EVICTION_DELAY,
    HANDSHAKE_TIMEOUT,
    IncomingStream,
    RefusalLog,
    StrangerLimit,
    WrongToken,
)
from .controller import Controller
from .node_table import HEARTBEAT_INTERVAL, Heartbeat
from .object_directory import SPARE_IDLE
from .worker_pool import worker_limit

log = logging.getLogger("rayling.daemon")


class BackgroundSegments:
    """Frees and preallocates shared memory in one background thread, in order, so large
    frees and allocations never stall the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="rayling-shm")

    def unlink(self, name: str) -> None:
        self.pool.submit(shm.unlink, name)

    def preallocate(self, name: str, size: int, done) -> None:
        loop = self._loop

        def work() -> None:
            try:
                shm.preallocate(name, size)
                ok = True
            except OSError:
                ok = False
            if not loop.is_closed():
                loop.call_soon_threadsafe(done, name, size, ok)

        self.pool.submit(work)


class DaemonShell:
    """What the head and a joined node share."""

    def __init__(self, config, token: str, template, template_sock: socket.socket) -> None:
        self.config = config
        self.token = token
        self.template = template
        self._template_sock = template_sock
        logging.basicConfig(
            filename=os.path.join(config.session_dir, "logs", "daemon.log"),
            level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            import uvloop

            self.loop = uvloop.new_event_loop()
        except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
            self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.stopped = self.loop.create_future()
        self.segments = BackgroundSegments(self.loop)
        self.heartbeat = Heartbeat(time.monotonic())
        # Objects move between nodes only in a cluster; a local one has no port for it.
        self.transfers = self.puller = None
        if config.clustered:
            self.transfers = transfer.TransferServer(config.node_ip, token, config.session)
            self.puller = transfer.Puller(token)

    # -- acting on this node ----------------------------------------------------------------
    def spawn_workers(self, count: int = 1) -> None:
        self._template_sock.send(b"w" * count)

    @staticmethod
    def kill(pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def pull(self, msg: p.PullObject, done) -> None:
        """Copy an object from another node; ``done(msg, error)`` runs on the loop."""
        loop = self.loop

        def finished(msg, error) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(done, msg, error)

        self.puller.pull(msg, finished)

    # -- life -------------------------------------------------------------------------------
    def stop(self) -> None:
        if not self.stopped.done():
            self.stopped.set_result(None)

    def ready(self, **info) -> None:
        sys.stdout.write("READY " + json.dumps({"node_id": self.config.node_id, **info}) + "\n")
        sys.stdout.flush()

    def every(self, seconds: float, action) -> None:
        """Run ``action()`` every ``seconds`` while the loop runs."""
        def tick() -> None:
            action()
            self.loop.call_later(seconds, tick)

        self.loop.call_later(seconds, tick)

    def handle_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self.loop.add_signal_handler(sig, self.stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def run(self) -> None:
        try:
            self.loop.run_until_complete(self.serve())
        finally:
            self.clean_up()

    async def serve(self) -> None:
        raise NotImplementedError

    def clean_up(self) -> None:
        """Stop every process this daemon started and free its shared memory."""
        self.stop_processes(self.worker_pids())
        self.release_segments()
        self.segments.pool.shutdown(wait=True)
        shm.unlink_session(self.config.session)  # whatever a crash left behind

    def worker_pids(self) -> list[int]:
        raise NotImplementedError

    def release_segments(self) -> None:
        """Unlink the segments this daemon keeps books of (before the thread stops)."""

    def stop_processes(self, worker_pids: list[int]) -> None:
        """Kill the workers and the template, wait for them, stop transfers."""
        workers = []
        for pid in worker_pids:
            try:
                workers.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
            self.kill(pid)
        self.template.kill()
        self.template.wait()
        psutil.wait_procs(workers, timeout=5)
        if self.transfers is not None:
            self.transfers.close()
            self.puller.close()


def machine_load() -> p.NodeLoad:
    """This machine's CPU use since the last call, and its memory."""
    memory = psutil.virtual_memory()
    return p.NodeLoad(psutil.cpu_percent(None), memory.total - memory.available,
                      memory.total)


def read_logs(session_dir: str, name: str, offset: int, tail: int) -> tuple:
    """(value, error) for a ReadLogs: this node's log files, or a piece of one."""
    folder = os.path.join(session_dir, "logs")
    try:
        if not name:
            return log_files.list_logs(folder), None
        return log_files.read_log(folder, name, offset, tail), None
    except (OSError, ValueError) as e:
        return None, f"cannot read log {name!r}: {e}"


class LocalAgent:
    """Acts on the head's own node (see NodeRecord.agent)."""

    def __init__(self, daemon: HeadDaemon) -> None:
        self._daemon = daemon
        self.spawn_worker = daemon.spawn_workers
        self.kill = daemon.kill
        self.unlink = daemon.segments.unlink
        self.preallocate = daemon.segments.preallocate

    def read_logs(self, name: str, offset: int, tail: int, reply) -> None:
        reply(*read_logs(self._daemon.config.session_dir, name, offset, tail))

    def gone(self) -> None:
        pass

    def pull(self, msg: p.PullObject) -> None:
        controller = self._daemon.controller
        self._daemon.pull(msg, lambda msg, error: controller.pull_done(
            controller.nodes.local.node_id, msg.object_id, msg.name, error))


class HeadDaemon(DaemonShell):
    """The head (or a local cluster's only node): serves every client and node."""

    def __init__(self, config, token: str, template, template_sock) -> None:
        super().__init__(config, token, template, template_sock)
        self.connections: set[ClientConnection] = set()
        # Strangers on the unix socket and on TCP are counted apart, so a flood from the
        # network cannot keep this machine's own workers and drivers from connecting.
        self._started = time.monotonic()
        self._driver_came = False
        self.dashboard = None  # the dashboard's process, if it serves one
        self.local_strangers = StrangerLimit()
        self.tcp_strangers = StrangerLimit()
        self._evicting: set[StrangerLimit] = set()
        self.refusals = RefusalLog(log)
        self.controller = Controller(
            node_id=bytes.fromhex(config.node_id), node_ip=config.node_ip,
            session=config.session, session_dir=config.session_dir,
            resources=config.resources, store_capacity=int(config.object_store_memory),
            agent=LocalAgent(self),
            transfer_address=self.transfers.address if self.transfers else "",
            max_workers=worker_limit(psutil.virtual_memory().total))

    async def serve(self) -> None:
        config, loop = self.config, self.loop
        path = config.socket_path
        servers = [await loop.create_unix_server(
            lambda: ClientConnection(self, self.local_strangers), path)]
        os.chmod(path, 0o600)
        port = None
        if config.port is not None:
            try:
                tcp = await loop.create_server(
                    lambda: ClientConnection(self, self.tcp_strangers), config.node_ip,
                    config.port, reuse_address=True)
            except OSError as e:
                sys.stderr.write(
                    f"cannot listen on {config.node_ip}:{config.port}: {e.strerror or e}. Pick "
                    f"another --port (0 picks a free one), or stop what uses it (`rayling "
                    f"stop` if it is a rayling head).\n")
                servers[0].close()
                return
            servers.append(tcp)
            port = tcp.sockets[0].getsockname()[1]
        controller = self.controller
        local = controller.nodes.local
        count = controller.workers.prestart(local, config.prestart_workers, time.monotonic())
        if count:
            self.spawn_workers(count)
        self.handle_signals()
        self.every(SPARE_IDLE, self._tidy)
        self.every(HEARTBEAT_INTERVAL, self._check_connections)
        dashboard = None
        if config.dashboard_host:
            dashboard = dashboard_process.bind(config.dashboard_host, config.dashboard_port)
            if dashboard is None:
                log.warning("no free port for the dashboard from %s:%d; going on without it",
                            config.dashboard_host, config.dashboard_port)
            else:
                controller.dashboard_url = dashboard_process.url(dashboard,
                                                                 config.dashboard_host)
        metrics = None
        if config.metrics_port >= 0:
            metrics = dashboard_process.bind(config.dashboard_host or "127.0.0.1",
                                             config.metrics_port, tries=1)
            if metrics is None:
                log.warning("cannot serve metrics on port %d: it is taken",
                            config.metrics_port)
        self.ready(port=port, dashboard_url=controller.dashboard_url,
                   metrics_port=metrics.getsockname()[1] if metrics else None)
        if dashboard is not None or metrics is not None:
            try:
                self.dashboard = dashboard_process.start(
                    dashboard, metrics, config.dashboard_host or "127.0.0.1", path,
                    config.session_dir, self.token)
            except OSError as e:  # (the cluster serves on without it)
                log.error("cannot start the dashboard: %s", e)
            for sock in (dashboard, metrics):
                if sock is not None:
                    sock.close()
        await self.stopped
        for server in servers:
            server.close()
        controller.stopping = True
        controller.objects.stopping = True

    def stranger_added(self, limit: StrangerLimit) -> None:
        """A connection joined ``limit``'s strangers: past the limit, close the oldest a
        moment later. (The loop accepts a burst of connections before it reads any, so a
        real peer whose Hello is already waiting gets read, and leaves the strangers,
        before anyone is chosen.)"""
        if limit.count > limit.limit and limit not in self._evicting:
            self._evicting.add(limit)
            self.loop.call_later(EVICTION_DELAY, self._evict, limit)

    def _evict(self, limit: StrangerLimit) -> None:
        self._evicting.discard(limit)
        for conn in limit.excess():
            conn.close(f"{limit.limit} unauthenticated connections are open; closing "
                       f"the one that waited longest")

    def _tidy(self) -> None:
        now = time.monotonic()
        self.controller.objects.drop_idle_spare(now)
        self.controller.reap_idle_workers(now)

    def _check_connections(self) -> None:
        """Close connections past a deadline; check and greet joined nodes."""
        now = time.monotonic()
        for conn in list(self.connections):
            reason = conn.stream.expired(now)
            if reason is None and conn.kind == "node" and conn.node is None and \
                    now - conn.accepted >= HANDSHAKE_TIMEOUT:
                reason = f"no RegisterNode within {HANDSHAKE_TIMEOUT:g} s"
            if reason is not None:
                conn.close(reason)
        self.controller.tick()
        self.controller.nodes.local.load = machine_load()
        if self.config.port is not None:
            self.controller.check_nodes(self.heartbeat, now)
        if self.config.exit_with_driver and not self._driver_came:
            # A cluster that lives for its driver, whose driver never connected (it died
            # or was interrupted right after starting it): nothing would ever stop it.
            self._driver_came = bool(self.controller.jobs.drivers)
            wait = self.config.driver_wait
            if not self._driver_came and now - self._started >= wait:
                log.warning("no driver connected within %g s; stopping", wait)
                self.stop()

    def worker_pids(self) -> list[int]:
        controller = self.controller
        return [w.pid for w in controller.workers.by_conn.values()
                if w.node is controller.nodes.local]

    def release_segments(self) -> None:
        self.controller.objects.release_local()

    def clean_up(self) -> None:
        if self.dashboard is not None:
            self.dashboard.kill()
            self.dashboard.wait()
        super().clean_up()
        try:
            os.unlink(self.config.socket_path)
        except FileNotFoundError:
            pass
        log.info("daemon stopped")
        if self.config.exit_with_driver:
            # A cluster that lives and dies with its driver leaves no files behind, even
            # when the driver was killed before it could clean up.
            shutil.rmtree(self.config.session_dir, ignore_errors=True)


class ClientConnection(asyncio.Protocol):
    """One peer of the head: a driver, a worker, or a joined node's daemon."""

    def __init__(self, daemon: HeadDaemon, strangers: StrangerLimit) -> None:
        self.daemon = daemon
        self.strangers = strangers  # its listener's
        self.controller = daemon.controller
        self.stream: IncomingStream | None = None
        self.transport = None
        self.outbox: list = []
        self.kind = None
        self.pid = None
        self.listen_path = ""
        self.listen_tcp = ""
        self.node = None
        self.peer_ip = ""
        self.admitted = False  # the controller accepted its Hello
        self.accepted = self.last_seen = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer_ip = peer[0]
        self.stream = IncomingStream(self.daemon.token, self.accepted)
        self.daemon.connections.add(self)
        self.strangers.add(self)
        self.daemon.stranger_added(self.strangers)

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        if stream is None:
            return
        self.last_seen = now = time.monotonic()
        stranger = stream.hello is None
        try:
            messages = stream.feed(data, now)
        except WrongToken as e:
            self.send(p.Rejected("authentication failed: wrong cluster token"))
            self.close(str(e))
            return
        except p.ProtocolError as e:
            self.close(str(e))
            return
        controller = self.controller
        try:
            if stranger and stream.hello is not None:
                self.strangers.leave(self)
                self.admitted = True  # (so anything on_hello registered is undone at close)
                if not controller.on_hello(self, messages[0]):
                    self.admitted = False
                    self.close("rejected hello")
                    return
                messages = messages[1:]
            for msg in messages:
                controller.handle(self, msg)
        except p.ProtocolError as e:
            self.close(str(e))
        except Exception:
            log.exception("error handling a message from pid %s", self.pid)
            self.close("internal error while handling its message")
        if controller.stopping:
            self.daemon.stop()

    def send(self, msg) -> None:
        if not self.outbox:
            self.daemon.loop.call_soon(self.flush)
        self.outbox.append(msg)

    def flush(self) -> None:
        if self.outbox and self.transport is not None and not self.transport.is_closing():
            self.transport.write(p.encode_frame(self.outbox))
        self.outbox = []

    def close(self, reason: str) -> None:
        if self.stream is not None and self.stream.hello is None:  # (a flood must not
            self.daemon.refusals.warning(  # fill the log)
                "closing an unauthenticated connection (%s): %s", self.peer_ip or "local",
                reason)
        else:
            log.warning("closing connection from pid %s (%s): %s", self.pid,
                        self.peer_ip or "local", reason)
        self.flush()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc) -> None:
        self.transport = None
        stream = self.stream
        if stream is None:
            return
        self.stream = None
        self.daemon.connections.discard(self)
        self.strangers.leave(self)  # (a Hello may have come before what closed it)
        if stream.hello is None:
            return
        if not self.admitted:
            return  # refused at its Hello
        self.controller.on_disconnect(self)
        if self.kind == "driver" and self.daemon.config.exit_with_driver:
            self.daemon.stop()


class JoinedNodeDaemon(DaemonShell):
    """A node that joined a cluster: does what the head asks until the head goes (its
    connection closes, or it sends nothing, not even a heartbeat, for NODE_TIMEOUT)."""

    def __init__(self, config, token: str, template, template_sock) -> None:
        super().__init__(config, token, template, template_sock)
        self.link = HeadLink(self)

    async def serve(self) -> None:
        host, port = p.split_address(self.config.head_address)
        try:
            await self.loop.create_connection(lambda: self.link, host, port)
        except OSError as e:
            sys.stderr.write(f"cannot reach the head at {self.config.head_address}: {e}\n")
            return
        sock = self.link.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handle_signals()
        self.every(HEARTBEAT_INTERVAL, self._beat)
        await self.stopped
        if self.link.transport is not None:
            self.link.transport.close()

    def _beat(self) -> None:
        if self.heartbeat.tick(time.monotonic(), [self.link]):
            log.error("the head sent nothing for %g s; stopping", self.heartbeat.timeout)
            self.stop()
        else:
            self.link.send(p.Heartbeat(machine_load()))

    def worker_pids(self) -> list[int]:
        try:  # the template and the workers it forked
            return [c.pid for c in psutil.Process().children(recursive=True)]
        except psutil.Error:
            return []

    def clean_up(self) -> None:
        super().clean_up()
        log.info("node daemon stopped")  # its starter removes the session directory


class HeadLink(asyncio.Protocol):
    """A joined node's connection to its head."""

    def __init__(self, daemon: JoinedNodeDaemon) -> None:
        self.daemon = daemon
        self.reader = p.FrameReader()
        self.transport = None
        self.registered = False
        self.last_seen = time.monotonic()

    def connection_made(self, transport) -> None:
        self.transport = transport
        daemon, config = self.daemon, self.daemon.config
        transport.write(p.encode_frame([
            p.Hello("node", os.getpid(), bytes.fromhex(config.node_id), daemon.token),
            p.RegisterNode(
                bytes.fromhex(config.node_id), config.node_ip, os.uname().nodename,
                config.resources, int(config.object_store_memory), daemon.transfers.address,
                config.session, worker_limit(psutil.virtual_memory().total)),
        ]))

    def send(self, msg) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(p.encode_frame([msg]))

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        try:
            for msg in self.reader.feed(data):
                self.handle(msg)
        except p.ProtocolError as e:
            log.error("bad message from the head: %s", e)
            self.transport.close()

    def handle(self, msg) -> None:
        kind = type(msg)
        daemon = self.daemon
        if kind is p.SpawnWorkers:
            daemon.spawn_workers(msg.count)
        elif kind is p.KillWorker:
            daemon.kill(msg.pid)
        elif kind is p.UnlinkSegments:
            for name in msg.names:
                daemon.segments.unlink(name)
        elif kind is p.PullObject:
            daemon.pull(msg, lambda msg, error: self.send(
                p.PullDone(msg.object_id, msg.name, error)))
        elif kind is p.ReadLogs:
            value, error = read_logs(daemon.config.session_dir, msg.name, msg.offset,
                                     msg.tail)
            self.send(p.LogsRead(msg.req_id, value, error))
        elif kind is p.Welcome and not self.registered:
            self.registered = True
            daemon.ready()
        elif kind is p.Rejected:
            log.error("the head refused this node: %s", msg.reason)
            sys.stderr.write(f"the head refused this node: {msg.reason}\n")
            daemon.stop()

    def connection_lost(self, exc) -> None:
        self.transport = None
        log.info("the head's connection closed; stopping")
        self.daemon.stop()
