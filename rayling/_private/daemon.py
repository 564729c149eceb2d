"""The node daemon process: one per machine, serving drivers and workers on a unix socket.

    driver ──┐                       ┌──────────── daemon ─────────────┐
             ├─ unix socket frames ─>│ Connection (asyncio protocol)   │
    worker ──┘                       │   └─> NodeManager.handle(...)   │ decisions
                                     │ WorkerSpawner ──> template ──fork──> worker
                                     └─────────────────────────────────┘

This file is the I/O shell: it accepts connections, checks that the first message is a
Hello carrying the cluster token, feeds decoded messages to the NodeManager, batches
outgoing messages into one frame per loop turn, and starts workers by asking the warm
template process to fork. A malformed frame or unauthenticated peer closes that
connection with a logged reason; the daemon keeps serving the others.

Started by ``rayling.init()`` (or ``rayling start``) as
``python -m rayling._private.daemon CONFIG_JSON`` with the token in ``RAYLING_TOKEN``.
It prints ``READY`` on stdout once it accepts connections.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys


def _start_template(config: dict) -> tuple[subprocess.Popen, socket.socket]:
    """Start the warm template first thing, so its imports overlap the daemon's."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-m", "rayling._private.template", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        env={**os.environ, "RAYLING_SOCKET": config["socket_path"]},
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(config["session_dir"], "logs", "template.err"), "ab"),
    )
    theirs.close()
    return proc, ours


def main() -> None:
    config = json.loads(sys.argv[1])
    os.makedirs(os.path.join(config["session_dir"], "logs"), exist_ok=True)
    template, template_sock = _start_template(config)
    _serve(config, template, template_sock)


def _serve(config: dict, template: subprocess.Popen, template_sock: socket.socket) -> None:
    import asyncio
    import logging
    import signal

    from . import ids, shm
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

    segments = BackgroundSegments()
    manager = NodeManager(
        node_id=ids.random_unique_id(),
        node_ip=config.get("node_ip", "127.0.0.1"),
        session=config["session"],
        session_dir=config["session_dir"],
        token=os.environ.get("RAYLING_TOKEN", ""),
        resources=config["resources"],
        store_capacity=int(config["object_store_memory"]),
        spawner=WorkerSpawner(),
        segments=segments,
    )

    def stop() -> None:
        if not stopped.done():
            stopped.set_result(None)

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

        def connection_made(self, transport) -> None:
            self.transport = transport

        def data_received(self, data: bytes) -> None:
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
            log.warning("closing connection from pid %s: %s", self.pid, reason)
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
        for _ in range(int(config.get("prestart_workers", 0))):
            manager.starting += 1
            manager.spawner.spawn_worker()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop)
        signal.signal(signal.SIGINT, signal.SIG_IGN)

        def tick() -> None:
            manager.drop_idle_spare(loop.time())
            manager.reap_idle_workers(loop.time())
            loop.call_later(SPARE_IDLE, tick)

        loop.call_later(SPARE_IDLE, tick)
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await stopped
        server.close()
        manager.stopping = True

    try:
        loop.run_until_complete(run())
    finally:
        import psutil

        workers = []
        for worker in list(manager.workers.values()):
            try:
                workers.append(psutil.Process(worker.pid))
            except psutil.NoSuchProcess:
                pass
            manager.spawner.kill(worker.pid)
        template.kill()
        template.wait()
        psutil.wait_procs(workers, timeout=5)
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


if __name__ == "__main__":
    main()
