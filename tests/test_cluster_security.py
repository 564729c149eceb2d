"""Security on by default: every listening socket of a cluster (the head's TCP port and
unix socket, each node's object-transfer port, every client's direct-call sockets)
closes a connection that sends garbage, an oversize frame, or anything before a Hello
with the cluster token. Nothing such a connection sends runs, and the cluster keeps
working."""

from __future__ import annotations

import os
import random
import resource
import socket
import struct
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import cloudpickle
import numpy as np
import psutil
import pytest

import rayling
from rayling._private import client as client_mod, ids, protocol as p
from rayling.cluster_utils import Cluster
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .conftest import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    rayling.init(address=cluster.address)
    yield cluster
    cluster.shutdown()


def _connect(address: str) -> socket.socket:
    if address.startswith("tcp:"):
        address = address[4:]
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(address)
        return sock
    return socket.create_connection(p.split_address(address), timeout=5)


def _closed_by_peer(sock: socket.socket, timeout: float = 5.0) -> bool:
    """True once the other side closes (whatever it said first); False on timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    finally:
        sock.close()


def _addresses(cluster) -> tuple[dict[str, str], object]:
    """Every listening address, and the actor whose worker's socket is among them (keep
    its handle alive while probing)."""
    client = client_mod.current

    @rayling.remote
    class Probe:
        def ping(self):
            return 1

    nodes = rayling.nodes()
    other = next(n for n in nodes if not n["IsHead"])["NodeID"]
    actor = Probe.remote()
    remote_actor = Probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False)).remote()
    rayling.get([a.ping.remote() for _ in range(3) for a in (actor, remote_actor)])
    route = client.actor_routes.routes[actor._actor_id]
    remote_route = client.actor_routes.routes[remote_actor._actor_id]
    assert remote_route[0].startswith("tcp:")
    return {
        "head tcp": cluster.address,
        "head unix": os.path.join(client.session_dir, "daemon.sock"),
        "head transfer": next(n for n in nodes if n["IsHead"])["TransferAddress"],
        "node transfer": next(n for n in nodes if not n["IsHead"])["TransferAddress"],
        "actor worker": route[0],
        "actor worker on the other node": remote_route[0],
        "driver tcp": client.listen_tcp,
    }, (actor, remote_actor)


def _task_that_writes(marker: str) -> list:
    """Messages that would run a task creating ``marker`` if anyone obeyed them."""
    blob = cloudpickle.dumps(lambda: open(marker, "w").close())
    fid = b"f" * 16
    task_id = ids.new_task_id(b"\x01\x00\x00\x00")
    args = cloudpickle.dumps(((), {}))
    return [
        p.RegisterFunction(fid, blob, "evil"),
        p.SubmitTask(task_id, fid, "evil", args, [], [], 1, {}, 0),
        p.ExecuteTask(task_id, b"\x01\x00\x00\x00", fid, blob, "evil", args, [], 1, []),
    ]


def test_every_port_refuses_strangers_and_the_cluster_keeps_working(cluster, tmp_path):
    addresses, _actor = _addresses(cluster)
    marker = str(tmp_path / "ran")
    evil = _task_that_writes(marker)
    for what, address in addresses.items():
        assert address, what
        # Bytes that are not a frame at all.
        sock = _connect(address)
        sock.sendall(b"\xff\xfe garbage \x00" * 100)
        assert _closed_by_peer(sock), f"{what} kept a connection that sent garbage"
        # A frame header announcing more than any unauthenticated peer may send.
        sock = _connect(address)
        sock.sendall(struct.pack("<I", 200 * 1024 * 1024) + b"x" * 1000)
        assert _closed_by_peer(sock), f"{what} kept a connection announcing a huge frame"
        # Well-formed requests, but no Hello first.
        sock = _connect(address)
        sock.sendall(p.encode_frame(evil))
        assert _closed_by_peer(sock), f"{what} kept a connection that skipped Hello"
        # A Hello with the wrong token, then the same requests.
        sock = _connect(address)
        sock.sendall(p.encode_frame(
            [p.Hello("driver", 1, b"x" * 28, "wrong-token"), *evil]))
        assert _closed_by_peer(sock), f"{what} kept a connection with a wrong token"
        # A transfer request without the token gets no bytes of any object.
        sock = _connect(address)
        sock.sendall(p.encode_frame([p.FetchSegment("/rl00_1", 10)]))
        assert _closed_by_peer(sock), f"{what} answered an unauthenticated fetch"

    @rayling.remote
    def still_works(x):
        return x + 1

    assert rayling.get([still_works.remote(i) for i in range(10)]) == list(range(1, 11))
    assert not os.path.exists(marker), "a message from an unauthenticated peer ran"
    # Strangers that connect and say nothing are dropped too (after 10 s), so they cannot
    # pile up open connections.
    silent = [_connect(address) for address in addresses.values()]
    assert all(_closed_by_peer(sock, timeout=20) for sock in silent)
    log = os.path.join(client_mod.current.session_dir, "logs", "daemon.log")
    with open(log) as f:
        text = f.read()
    assert "wrong token" in text and "not Hello" in text and "no Hello within" in text


# -- fuzzing every listening socket -------------------------------------------------------
def _hello(token: str) -> bytes:
    return p.encode_frame([p.Hello("driver", 1, b"x" * 28, token)])


def _fuzz_inputs(token: str) -> dict[str, bytes | None]:
    """What each probe sends at once (None: nothing; the probe then half-closes)."""
    rng = random.Random(12)
    hello = _hello(token)
    inputs = {f"{n} random bytes": rng.randbytes(n) for n in (1, 3, 5, 64, 4096, 200_000)}
    inputs.update({
        "an oversize length prefix": struct.pack("<I", 0xFFFFFFFF) + b"\x00" * 64,
        "a stalled frame": struct.pack("<I", 1000) + b"\x91" * 10,
        "the first half of a real Hello": hello[: len(hello) // 2],
        "half-open, nothing sent": None,
        "a Hello with an empty token": _hello(""),
        "a Hello with a prefix of the token": _hello(token[: len(token) // 2]),
        "a Hello with the token and more": _hello(token + "0"),
        "a Hello with a same-length wrong token": _hello("0" * len(token)),
    })
    return inputs


def _drip(address: str, data: bytes, interval: float, until: float) -> float | None:
    """Send ``data`` a byte every ``interval`` s; the seconds until the peer closed, or
    None if it never did before ``until`` (monotonic)."""
    sock = _connect(address)
    start = time.monotonic()
    try:
        for byte in data:
            sock.settimeout(max(0.01, min(interval, until - time.monotonic())))
            try:
                if sock.recv(1) == b"":
                    return time.monotonic() - start
            except TimeoutError:
                pass
            except ConnectionResetError:
                return time.monotonic() - start
            if time.monotonic() >= until:
                return None
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return time.monotonic() - start
        return None
    finally:
        sock.close()


def _open_many(address: str, count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        try:
            socks.append(_connect(address))
        except OSError:  # refused or reset: the listener is shedding; enough
            break
    return socks


def _fresh_driver_works(cluster, other_node: str) -> str:
    """A new script connects over TCP and runs a task on each node; '' or what failed."""
    script = textwrap.dedent(f"""
        import rayling
        from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy as N
        rayling.init(address={cluster.address!r})
        @rayling.remote
        def where():
            return rayling.get_runtime_context().get_node_id()
        nodes = [n["NodeID"] for n in rayling.nodes()]
        got = rayling.get([where.options(scheduling_strategy=N(n, soft=False)).remote()
                           for n in nodes])
        assert sorted(got) == sorted(nodes) and {other_node!r} in got, got
        print("ok")
    """)
    env = {**os.environ, "RAYLING_TOKEN": cluster._token,
           "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60)
    return "" if done.returncode == 0 and "ok" in done.stdout else done.stderr[-2000:]


def _moves_100_mb_both_ways(other_node: str) -> None:
    on_other = NodeAffinitySchedulingStrategy(other_node, soft=False)

    @rayling.remote
    def digest(array):
        return int(array[::4096].sum()), array.nbytes

    @rayling.remote
    def make(n):
        return np.full(n, 7, dtype=np.uint8)

    array = np.arange(100 * 2**20 // 8, dtype=np.int64)
    there = digest.options(scheduling_strategy=on_other).remote(rayling.put(array))
    assert rayling.get(there, timeout=60) == (int(array[::4096].sum()), array.nbytes)
    back = rayling.get(make.options(scheduling_strategy=on_other).remote(100 * 2**20),
                       timeout=60)
    assert back.nbytes == 100 * 2**20 and back[0] == 7 and back[-1] == 7


@pytest.mark.timeout(300)
def test_every_port_survives_fuzzing_and_floods_and_still_moves_100_mb(cluster):
    addresses, actors = _addresses(cluster)
    token = cluster._token
    other_node = next(n for n in rayling.nodes() if not n["IsHead"])["NodeID"]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 16384)), hard))
    try:
        # 1. Each input to every port at once; every connection must be closed, at the
        #    latest by the handshake deadline (10 s for the whole handshake).
        probes = []
        for what, address in addresses.items():
            for name, data in _fuzz_inputs(token).items():
                sock = _connect(address)
                if data is None:
                    sock.shutdown(socket.SHUT_WR)
                else:
                    try:
                        sock.sendall(data)
                    except (BrokenPipeError, ConnectionResetError):
                        pass  # (closed while we were still sending: fine)
                probes.append((f"{what}: {name}", sock))
        kept = [name for name, sock in probes if not _closed_by_peer(sock, timeout=25)]
        assert not kept, f"connections kept open: {kept}"

        # 2. A real Hello dripped a byte every 0.5 s (each byte well inside any per-read
        #    timeout) is cut off by the deadline for the whole handshake.
        hello = _hello(token)
        assert len(hello) * 0.5 > 30  # (it would take longer than the deadline)
        with ThreadPoolExecutor(len(addresses)) as pool:
            until = time.monotonic() + 40
            drips = dict(zip(addresses, pool.map(
                lambda a: _drip(a, hello, 0.5, until), addresses.values()), strict=True))
        assert all(t is not None and t < 25 for t in drips.values()), drips

        # 3. A flood: 400 connections to every port at once, held open. Each listener
        #    keeps at most 128 strangers (evicting the oldest), so real peers still get in.
        flood = {what: _open_many(address, 400) for what, address in addresses.items()}
        try:
            assert all(len(socks) >= 200 for socks in flood.values()), \
                {what: len(socks) for what, socks in flood.items()}
            assert rayling.get([a.ping.remote() for a in actors], timeout=60) == [1, 1]
            failure = _fresh_driver_works(cluster, other_node)
            assert not failure, f"a new driver could not work during the flood:\n{failure}"
            _moves_100_mb_both_ways(other_node)
        finally:
            for socks in flood.values():
                for sock in socks:
                    sock.close()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # 4. Afterwards: a new driver and 100 MB between nodes, as before any of it.
    failure = _fresh_driver_works(cluster, other_node)
    assert not failure, f"a new driver could not work after the fuzzing:\n{failure}"
    _moves_100_mb_both_ways(other_node)
    log = os.path.join(client_mod.current.session_dir, "logs", "daemon.log")
    with open(log) as f:
        text = f.read()
    assert text.count("closing an unauthenticated connection") <= 20 * 5, \
        "refusals flooded the daemon's log"


@pytest.mark.timeout(120)
def test_a_daemon_out_of_descriptors_keeps_serving_once_the_flood_ends(cluster):
    """The head daemon's own descriptor limit is lowered (prlimit) until a flood exhausts
    it: accept() fails with EMFILE for a while, and once the flood ends the same daemon
    takes new drivers and moves objects again."""
    other_node = next(n for n in rayling.nodes() if not n["IsHead"])["NodeID"]
    head = psutil.Process(cluster.head_node.pid)
    soft, hard = resource.prlimit(head.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(head.pid, resource.RLIMIT_NOFILE, (head.num_fds() + 40, hard))
    flood = []
    try:
        for _ in range(3):  # strangers get evicted as new ones come; keep coming
            flood += _open_many(cluster.address, 200)
        wait_until(lambda: _at_limit(head), timeout=20,
                   what="the head daemon to run out of descriptors")
    finally:
        for sock in flood:
            sock.close()
        resource.prlimit(head.pid, resource.RLIMIT_NOFILE, (soft, hard))
    failure = _fresh_driver_works(cluster, other_node)
    assert not failure, f"a new driver could not work after EMFILE:\n{failure}"
    _moves_100_mb_both_ways(other_node)


def _at_limit(proc: psutil.Process) -> bool:
    soft, _ = resource.prlimit(proc.pid, resource.RLIMIT_NOFILE)
    return proc.num_fds() >= soft - 1

