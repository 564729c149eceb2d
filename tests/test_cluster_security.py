"""Security on by default: every listening socket of a cluster (the head's TCP port and
unix socket, each node's object-transfer port, every client's direct-call sockets)
closes a connection that sends garbage, an oversize frame, or anything before a Hello
with the cluster token. Nothing such a connection sends runs, and the cluster keeps
working."""

from __future__ import annotations

import os
import socket
import struct

import cloudpickle
import pytest

import rayling
from rayling._private import client as client_mod, ids, protocol as p
from rayling.cluster_utils import Cluster
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

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
