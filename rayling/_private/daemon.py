"""The node daemon process: one per node, as the head or as a node that joined it.

    driver ──┐  unix socket, or TCP   ┌───────── head daemon ────────────┐
             ├──────── frames ───────>│ Connection (asyncio protocol)    │
    worker ──┘  (any node's workers)  │   └─> NodeManager.handle(...)    │ decisions
                                      │ WorkerSpawner ──> template ──fork──> worker
    node daemon ──── TCP ───────────> │ TransferServer / Puller (threads)│
                                      └──────────────────────────────────┘

    node daemon (joined): HeadLink to the head; its template forks workers that connect
    to the head themselves; TransferServer / Puller move objects to and from other nodes.

This file is the I/O shell: it accepts connections, checks that the first message is a
Hello carrying the cluster token, feeds decoded messages to the NodeManager, batches
outgoing messages into one frame per loop turn, and starts workers by asking the warm
template process to fork. A malformed frame or unauthenticated peer closes that
connection with a logged reason; the daemon keeps serving the others.

Started by ``rayling.init()`` or ``rayling start`` as
``python -m rayling._private.daemon CONFIG_JSON`` with the token in ``RAYLING_TOKEN``.
It prints ``READY {json}`` on stdout once it serves (for a joined node: once the head
registered it); the json holds the node id and, for a head, its TCP port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

AUTH_TIMEOUT = 10.0  # seconds a new connection has to introduce itself


def _start_template(config: dict) -> tuple[subprocess.Popen, socket.socket]:
    """Start the warm template first thing, so its imports overlap the daemon's."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "RAYLING_SOCKET": config["worker_address"],
           "RAYLING_NODE_ID": config["node_id"], "RAYLING_SESSION_DIR": config["session_dir"]}
    if config.get("listen_ip"):
        env["RAYLING_LISTEN_IP"] = config["listen_ip"]
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "rayling._private.template", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(config["session_dir"], "logs", "template.err"), "ab"),
    )
    theirs.close()
    return proc, ours


def main() -> None:
    config = json.loads(sys.argv[1])
    os.makedirs(os.path.join(config["session_dir"], "logs"), exist_ok=True)
    if not config.get("node_id"):
        config["node_id"] = os.urandom(28).hex()
    if config.get("head_address"):  # a node joining a cluster: its workers dial the head
        config["worker_address"] = "tcp:" + config["head_address"]
    else:
        config["worker_address"] = config["socket_path"]
    template, template_sock = _start_template(config)
    _serve(config, template, template_sock)


def _serve(config: dict, template: subprocess.Popen, template_sock: socket.socket) -> None:
    import asyncio
    import logging
    import signal
    import time

    from . import shm, transfer
    from .node_manager import SPARE_IDLE, NodeManager
    from .protocol import MAX_FRAME, FrameReader, Hello, ProtocolError, encode_frame

    logging.basicConfig(
        filename=os.path.join(config["session_dir"], "logs", "daemon.log"),
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    log = logging.getLogger("rayling.daemon")
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    stopped = loop.create_future()

    class WorkerSpawner:
        """Asks the template process to fork workers; kills workers by pid."""

        def spawn_worker(self) -> None:
            template_sock.send(b"w")

        def kill(self, pid: int) -> None:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    class BackgroundSegments:
        """Frees and preallocates shared memory in one background thread, in order."""

        def __init__(self) -> None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(1, thread_name_prefix="rayling-shm")

        def unlink(self, name: str) -> None:
            self.pool.submit(shm.unlink, name)

        def preallocate(self, name: str, size: int, done) -> None:
            def work() -> None:
                try:
                    shm.preallocate(name, size)
                    ok = True
                except OSError:
                    ok = False
                if not loop.is_closed():
                    loop.call_soon_threadsafe(done, name, size, ok)

            self.pool.submit(work)

    token = os.environ.get("RAYLING_TOKEN", "")
    node_ip = config.get("node_ip", "127.0.0.1")
    segments = BackgroundSegments()
    spawner = WorkerSpawner()
    # Objects move between nodes only in a cluster; a local one has no port for it.
    clustered = config.get("port") is not None or bool(config.get("head_address"))
    transfers = transfer.TransferServer(node_ip, token, config["session"]) if clustered else None
    puller = transfer.Puller(token) if clustered else None

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

    def ready(**info) -> None:
        sys.stdout.write("READY " + json.dumps({"node_id": config["node_id"], **info}) + "\n")
        sys.stdout.flush()

    def cleanup(worker_pids: list[int]) -> None:
        import psutil

        workers = []
        for pid in worker_pids:
            try:
                workers.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass
            spawner.kill(pid)
        template.kill()
        template.wait()
        psutil.wait_procs(workers, timeout=5)
        if clustered:
            transfers.close()
            puller.close()

    if config.get("head_address"):
        _serve_joined_node(config, loop, stopped, stop, ready, cleanup, spawner, segments,
                           transfers, puller, template_sock, log, token)
        return

    def pull_here(msg) -> None:
        def done(msg, error) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(manager.on_pull_done, manager.node_id,
                                          msg.object_id, msg.name, error)

        puller.pull(msg, done)

    manager = NodeManager(
        node_id=bytes.fromhex(config["node_id"]),
        node_ip=node_ip,
        session=config["session"],
        session_dir=config["session_dir"],
        token=token,
        resources=config["resources"],
        store_capacity=int(config["object_store_memory"]),
        spawner=spawner,
        segments=segments,
        puller=pull_here if clustered else None,
        transfer_address=transfers.address if clustered else "",
    )

    class Connection(asyncio.Protocol):
        """One peer. Before its Hello only small frames are accepted."""

        def __init__(self) -> None:
            self.reader = FrameReader(max_frame=64 * 1024)
            self.transport = None
            self.outbox: list = []
            self.authenticated = False
            self.kind = None
            self.pid = None
            self.listen_path = ""
            self.listen_tcp = ""
            self.node = None
            self.peer_ip = ""
            self.last_seen = time.monotonic()

        def connection_made(self, transport) -> None:
            self.transport = transport
            peer = transport.get_extra_info("peername")
            if isinstance(peer, tuple):
                self.peer_ip = peer[0]
            loop.call_later(AUTH_TIMEOUT, self._check_introduced)

        def _check_introduced(self) -> None:
            """Close a connection that did not say who it is in time (a stranger holding
            a socket open, or a node that never registered)."""
            if self.transport is None:
                return
            if not self.authenticated:
                self.close(f"no Hello within {AUTH_TIMEOUT:g} s")
            elif self.kind == "node" and self.node is None:
                self.close(f"no RegisterNode within {AUTH_TIMEOUT:g} s")

        def data_received(self, data: bytes) -> None:
            self.last_seen = time.monotonic()
            try:
                messages = self.reader.feed(data)
                for msg in messages:
                    if self.authenticated:
                        manager.handle(self, msg)
                    elif isinstance(msg, Hello):
                        if not manager.on_hello(self, msg):
                            self.close("rejected hello")
                            return
                        self.authenticated = True
                        self.reader._max = MAX_FRAME
                    else:
                        self.close(f"first message was {type(msg).__name__}, not Hello")
                        return
                    if manager.stopping:
                        stop()
            except ProtocolError as e:
                self.close(str(e))
            except Exception:
                log.exception("error handling a message from pid %s", self.pid)
                self.close("internal error while handling its message")

        def send(self, msg) -> None:
            if not self.outbox:
                loop.call_soon(self.flush)
            self.outbox.append(msg)

        def flush(self) -> None:
            if self.outbox and self.transport is not None and not self.transport.is_closing():
                self.transport.write(encode_frame(self.outbox))
            self.outbox = []

        def close(self, reason: str) -> None:
            log.warning("closing connection from pid %s (%s): %s", self.pid,
                        self.peer_ip or "local", reason)
            self.flush()
            if self.transport is not None:
                self.transport.close()

        def connection_lost(self, exc) -> None:
            self.transport = None
            if self.authenticated:
                self.authenticated = False
                manager.on_disconnect(self)
                if self.kind == "driver" and config.get("exit_with_driver"):
                    stop()

    async def run() -> None:
        path = config["socket_path"]
        server = await loop.create_unix_server(Connection, path)
        os.chmod(path, 0o600)
        servers = [server]
        port = None
        if config.get("port") is not None:
            try:
                tcp = await loop.create_server(Connection, node_ip, int(config["port"]),
                                               reuse_address=True)
            except OSError as e:
                sys.stderr.write(
                    f"cannot listen on {node_ip}:{config['port']}: {e.strerror or e}. Pick "
                    f"another --port (0 picks a free one), or stop what uses it (`rayling "
                    f"stop` if it is a rayling head).\n")
                server.close()
                return
            servers.append(tcp)
            port = tcp.sockets[0].getsockname()[1]
        for _ in range(int(config.get("prestart_workers", 0))):
            manager.local.starting += 1
            spawner.spawn_worker()
        manager.local.starting_since = time.monotonic()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        def tick() -> None:
            manager.drop_idle_spare(time.monotonic())
            manager.reap_idle_workers(time.monotonic())
            loop.call_later(SPARE_IDLE, tick)

        due = [time.monotonic() + 1.0]

        def check_nodes() -> None:
            now = time.monotonic()
            manager.check_nodes(now, late=now - due[0])
            due[0] = now + 1.0
            loop.call_later(1.0, check_nodes)

        loop.call_later(SPARE_IDLE, tick)
        if port is not None:
            loop.call_later(1.0, check_nodes)
        ready(port=port)
        await stopped
        for server in servers:
            server.close()
        manager.stopping = True

    try:
        loop.run_until_complete(run())
    finally:
        cleanup([worker.pid for worker in manager.workers.values()
                 if worker.node is manager.local])
        manager.release_all_segments()
        segments.pool.shutdown(wait=True)
        shm.unlink_session(config["session"])
        try:
            os.unlink(config["socket_path"])
        except FileNotFoundError:
            pass
        log.info("daemon stopped")
        if config.get("exit_with_driver"):
            # A cluster that lives and dies with its driver leaves no files behind, even
            # when the driver was killed before it could clean up.
            import shutil

            shutil.rmtree(config["session_dir"], ignore_errors=True)


def _serve_joined_node(config, loop, stopped, stop, ready, cleanup, spawner, segments,
                       transfers, puller, template_sock, log, token) -> None:
    """Run a node that joined a cluster: do what the head asks until the head goes (its
    connection closes, or it sends nothing, not even a heartbeat, for NODE_TIMEOUT)."""
    import asyncio
    import signal
    import socket as socket_mod
    import time

    import psutil

    from . import protocol as p, shm
    from .node_manager import NODE_TIMEOUT

    node_id = bytes.fromhex(config["node_id"])

    class HeadLink(asyncio.Protocol):
        def __init__(self) -> None:
            self.reader = p.FrameReader()
            self.transport = None
            self.registered = False
            self.last_seen = time.monotonic()

        def connection_made(self, transport) -> None:
            self.transport = transport
            transport.write(p.encode_frame([
                p.Hello("node", os.getpid(), node_id, token),
                p.RegisterNode(
                    node_id, config["node_ip"], os.uname().nodename, config["resources"],
                    int(config["object_store_memory"]), transfers.address,
                    config["session"]),
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
            if kind is p.SpawnWorkers:
                template_sock.send(b"w" * msg.count)
            elif kind is p.KillWorker:
                spawner.kill(msg.pid)
            elif kind is p.UnlinkSegments:
                for name in msg.names:
                    segments.unlink(name)
            elif kind is p.PullObject:
                puller.pull(msg, self.pulled)
            elif kind is p.Welcome and not self.registered:
                self.registered = True
                ready()
            elif kind is p.Rejected:
                log.error("the head refused this node: %s", msg.reason)
                sys.stderr.write(f"the head refused this node: {msg.reason}\n")
                stop()

        def pulled(self, msg: p.PullObject, error: str | None) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.send, p.PullDone(msg.object_id, msg.name, error))

        def connection_lost(self, exc) -> None:
            self.transport = None
            log.info("the head's connection closed; stopping")
            stop()

    async def run() -> None:
        host, port = p.split_address(config["head_address"])
        link = HeadLink()
        try:
            await loop.create_connection(lambda: link, host, port)
        except OSError as e:
            sys.stderr.write(f"cannot reach the head at {config['head_address']}: {e}\n")
            return
        sock = link.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket_mod.IPPROTO_TCP, socket_mod.TCP_NODELAY, 1)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        due = [time.monotonic() + 1.0]

        def heartbeat() -> None:
            now = time.monotonic()
            if now - due[0] > 1.0:  # we were stalled ourselves: do not blame the head
                link.last_seen = max(link.last_seen, due[0])
            if now - link.last_seen > NODE_TIMEOUT:
                log.error("the head sent nothing for %g s; stopping", NODE_TIMEOUT)
                stop()
                return
            link.send(p.Heartbeat())
            due[0] = now + 1.0
            loop.call_later(1.0, heartbeat)

        loop.call_later(1.0, heartbeat)
        await stopped
        if link.transport is not None:
            link.transport.close()

    try:
        loop.run_until_complete(run())
    finally:
        try:  # the template and the workers it forked
            workers = [c.pid for c in psutil.Process().children(recursive=True)]
        except psutil.Error:
            workers = []
        cleanup(workers)
        segments.pool.shutdown(wait=True)
        shm.unlink_session(config["session"])
        log.info("node daemon stopped")  # its starter removes the session directory


if __name__ == "__main__":
    main()
