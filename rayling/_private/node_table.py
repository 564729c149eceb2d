"""The head's table of nodes: who is in the cluster, how to act on each, who has died
(pure logic), and the heartbeat both ends of a node's link keep.

The head's own node is in the table from the start; a joined node from its RegisterNode
until it dies (its daemon's connection closes, or it is silent for NODE_TIMEOUT). A
NodeRecord is the node's identity and its *agent*, which acts on it: the head's own node
has the daemon's spawner, segment thread and puller; a joined node a RemoteAgent that
sends the same requests over its connection. Other parts keep their per-node state on
the record, each under its own attribute, which only that part changes:

    pool, gpus    Scheduler         resources in total and free, GPU ids
    workers       WorkerPool        idle workers, workers starting
    store         ObjectDirectory   store capacity, bytes used, peak
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import protocol as p

HEARTBEAT_INTERVAL = 1.0  # seconds between heartbeats, both ways
NODE_TIMEOUT = float(os.environ.get("RAYLING_NODE_TIMEOUT", 10))  # seconds of silence
# after which a joined node is dead (one whose daemon exits is dead at once: its
# connection closes), and after which a joined node gives its head up


class NodeRecord:
    __slots__ = ("node_id", "ip", "hostname", "agent", "shm_session", "transfer_address",
                 "conn", "alive", "pool", "gpus", "workers", "store", "load")

    def __init__(self, node_id: bytes, ip: str, hostname: str, agent, shm_session: str,
                 transfer_address: str = "", conn=None) -> None:
        self.node_id = node_id
        self.ip = ip
        self.hostname = hostname
        self.agent = agent  # spawn_worker(), kill(pid), unlink(name), pull(PullObject)
        self.shm_session = shm_session  # its segments are named /rl<shm_session>_<random>
        self.transfer_address = transfer_address  # "host:port" serving its objects
        self.conn = conn  # the joined node's connection (None for the head's own node)
        self.alive = True
        self.pool = None  # the Scheduler's ResourcePool
        self.gpus = None  # the Scheduler's GpuAllocator
        self.workers = None  # the WorkerPool's NodeWorkers
        self.store = None  # the ObjectDirectory's NodeStore
        self.load: p.NodeLoad | None = None  # its machine's CPU and memory, lately

    def __repr__(self) -> str:
        return f"NodeRecord({self.node_id.hex()[:12]}, {self.ip})"

    def info(self) -> dict:
        """The node as rayling.nodes() shows it (Ray's keys)."""
        total = self.pool.total_float()
        store = self.store
        return {
            "NodeID": self.node_id.hex(),
            "Alive": self.alive,
            "NodeManagerAddress": self.ip,
            "NodeManagerHostname": self.hostname,
            "NodeName": self.ip,
            "Resources": total if self.alive else {},
            "alive": self.alive,
            "IsHead": self.conn is None,
            "AvailableResources": self.pool.free_float() if self.alive else {},
            "ObjectStoreUsed": store.used,
            "ObjectStoreCapacity": store.capacity,
            "ObjectStorePeak": store.peak,
            "TransferAddress": self.transfer_address,
            "ObjectStoreSocketName": self.shm_session,
            "Load": None if self.load is None or not self.alive else {
                "cpu_percent": self.load.cpu_percent, "mem_used": self.load.mem_used,
                "mem_total": self.load.mem_total},
        }


class RemoteAgent:
    """Acts on a joined node by sending its daemon requests over its connection."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self._log_reads: dict[int, Callable] = {}  # ReadLogs sent -> who gets the answer
        self._next_read = 0

    def read_logs(self, name: str, offset: int, tail: int, reply: Callable) -> None:
        """Ask the node for its log files or a piece of one; ``reply(value, error)``."""
        self._next_read += 1
        self._log_reads[self._next_read] = reply
        self.conn.send(p.ReadLogs(self._next_read, name, offset, tail))

    def logs_read(self, msg: p.LogsRead) -> None:
        reply = self._log_reads.pop(msg.req_id, None)
        if reply is not None:
            reply(msg.value, msg.error)

    def gone(self) -> None:
        """The node left: every question still out gets an error."""
        reads, self._log_reads = self._log_reads, {}
        for reply in reads.values():
            reply(None, "the node left the cluster before it answered")

    def spawn_worker(self) -> None:
        self.conn.send(p.SpawnWorkers(1))

    def kill(self, pid: int) -> None:
        self.conn.send(p.KillWorker(pid))

    def unlink(self, name: str) -> None:
        self.conn.send(p.UnlinkSegments([name]))

    def pull(self, msg: p.PullObject) -> None:
        self.conn.send(msg)


class NodeTable:
    def __init__(self, local: NodeRecord) -> None:
        self.local = local  # the head's own node
        self.by_id: dict[bytes, NodeRecord] = {local.node_id: local}
        self.all: list[NodeRecord] = [local]  # in joining order, the dead included

    @property
    def several(self) -> bool:
        """More than one node has ever joined (objects may live elsewhere)."""
        return len(self.all) > 1

    def get(self, node_id: bytes) -> NodeRecord | None:
        return self.by_id.get(node_id)

    def live(self) -> list[NodeRecord]:
        return [node for node in self.all if node.alive]

    def register(self, conn, msg: p.RegisterNode) -> NodeRecord:
        """A joined node's daemon introduced itself on ``conn``."""
        if msg.node_id in self.by_id:
            raise p.ProtocolError(f"node {msg.node_id.hex()[:12]} is already registered")
        node = NodeRecord(msg.node_id, msg.ip, msg.hostname, RemoteAgent(conn),
                          msg.shm_session, msg.transfer_address, conn=conn)
        self.by_id[msg.node_id] = node
        self.all.append(node)
        return node

    def node_of_address(self, ip: str) -> NodeRecord | None:
        """The node a client connecting from ``ip`` runs on: the head's for local
        connections, otherwise the live node with that address."""
        if not ip or ip.startswith("127.") or ip == "::1" or ip == self.local.ip:
            return self.local
        for node in self.all:
            if node.alive and node.ip == ip:
                return node
        return None

    def joined_links(self) -> list:
        """The connections of the live joined nodes."""
        return [node.conn for node in self.all if node.alive and node.conn is not None]


class Heartbeat:
    """One side's liveness check of its node links, ticked every HEARTBEAT_INTERVAL: the
    head keeps one for all its joined nodes, a joined node one for its head. A peer is
    silent when nothing came from it for ``timeout`` seconds; time this side itself was
    stalled (its tick came late) is not counted against the peers.

    Peers are objects with a ``last_seen`` time, which the I/O shell sets on every receive.
    """

    def __init__(self, now: float, timeout: float = NODE_TIMEOUT) -> None:
        self.timeout = timeout
        self._due = now + HEARTBEAT_INTERVAL

    def tick(self, now: float, peers: list) -> list:
        """The peers that have been silent too long (the others are due a heartbeat)."""
        late = now - self._due
        self._due = now + HEARTBEAT_INTERVAL
        silent = []
        for peer in peers:
            if late > HEARTBEAT_INTERVAL:
                peer.last_seen = max(peer.last_seen, now - late)
            if now - peer.last_seen > self.timeout:
                silent.append(peer)
        return silent
