"""Several nodes on one machine, for tests and experiments (as ``ray.cluster_utils``).

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    node = cluster.add_node(num_cpus=2)
    rayling.init(address=cluster.address)
    ...
    cluster.remove_node(node)   # its daemon stops (kill it with node.kill() instead)
    cluster.shutdown()

Each node is a real daemon with its own id, resources, worker pool and object store; the
head listens on a free loopback port and the others join it over TCP, exactly as with
``rayling start``. The daemons end with the thread that started them.
"""

from __future__ import annotations

import secrets
import signal

from ._private import cluster_files
from ._private.node import LocalNode, default_store_capacity


class ClusterNode:
    """One node daemon of a Cluster."""

    def __init__(self, daemon: LocalNode, resources: dict[str, float], head: bool) -> None:
        self._daemon = daemon
        self.node_id = daemon.node_id  # hex, as get_runtime_context().get_node_id()
        self.unique_id = daemon.node_id
        self.resources = resources
        self.is_head = head
        self.pid = daemon.process.pid

    def kill(self) -> None:
        """SIGKILL the daemon, as if its machine died (its workers die with it)."""
        self._daemon.process.send_signal(signal.SIGKILL)
        self._daemon.stop()

    def stop(self, graceful: bool = True) -> None:
        if graceful:
            self._daemon.process.terminate()
        else:
            self._daemon.process.kill()
        self._daemon.stop()

    def alive(self) -> bool:
        return self._daemon.process.poll() is None

    def __repr__(self) -> str:
        return f"ClusterNode({self.node_id[:12]}, head={self.is_head})"


class Cluster:
    def __init__(self, initialize_head: bool = False, connect: bool = False,
                 head_node_args: dict | None = None, shutdown_at_exit: bool = True) -> None:
        self.head_node: ClusterNode | None = None
        self.worker_nodes: list[ClusterNode] = []
        self.address: str | None = None
        self._token = secrets.token_hex(16)
        if initialize_head:
            self.add_node(**(head_node_args or {}))
            if connect:
                self.connect()

    def add_node(self, wait: bool = True, **node_args) -> ClusterNode:
        """Start a node (the head, if there is none yet); returns once it serves."""
        resources = {"CPU": float(node_args.get("num_cpus", 1))}
        if node_args.get("num_gpus"):
            resources["GPU"] = float(node_args["num_gpus"])
        for name, amount in (node_args.get("resources") or {}).items():
            resources[name] = float(amount)
        store = int(node_args.get("object_store_memory") or
                    min(default_store_capacity(), 2 * 1024**3))
        if self.head_node is None:
            daemon = LocalNode.start(resources, store, "127.0.0.1", port=0, token=self._token,
                                     exit_with_driver=False, die_with_parent=True)
            self.address = f"127.0.0.1:{daemon.port}"
            cluster_files.remember_head(self.address, self._token, daemon.socket_path)
            node = self.head_node = ClusterNode(daemon, resources, head=True)
        else:
            daemon = LocalNode.start(resources, store, "127.0.0.1", head_address=self.address,
                                     token=self._token, exit_with_driver=False,
                                     die_with_parent=True)
            node = ClusterNode(daemon, resources, head=False)
            self.worker_nodes.append(node)
        return node

    def remove_node(self, node: ClusterNode, allow_graceful: bool = True) -> None:
        """Stop a node's daemon and its workers (the head is told by the lost connection)."""
        node.stop(graceful=allow_graceful)
        if node is self.head_node:
            self.head_node = None
        elif node in self.worker_nodes:
            self.worker_nodes.remove(node)

    def list_all_nodes(self) -> list[ClusterNode]:
        return ([self.head_node] if self.head_node else []) + list(self.worker_nodes)

    def connect(self, namespace: str | None = None):
        import rayling

        return rayling.init(address=self.address, namespace=namespace)

    def wait_for_nodes(self, timeout: float = 30) -> None:
        """Nodes are registered when add_node returns; kept for Ray's API."""

    def shutdown(self) -> None:
        import rayling

        rayling.shutdown()
        for node in list(self.worker_nodes):
            self.remove_node(node)
        if self.head_node is not None:
            self.remove_node(self.head_node)
        if self.address:
            cluster_files.forget_head(self.address)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()
