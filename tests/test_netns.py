"""Two real network hosts made with network namespaces and a veth pair: a head in one,
a node in the other, joined with `rayling start` over 10.77.0.0/24. Tasks, actors and a
large object cross between them. Skipped where namespaces cannot be made (not root, no
`ip` command, or a sandbox that forbids them)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid

import pytest

pytestmark = pytest.mark.timeout(180)

HEAD_IP, NODE_IP = "10.77.0.1", "10.77.0.2"


def _ip(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def hosts():
    if shutil.which("ip") is None:
        pytest.skip("the `ip` command (iproute2) is not installed")
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    tag = uuid.uuid4().hex[:6]
    head_ns, node_ns = f"rlh{tag}", f"rln{tag}"
    made = []
    try:
        for ns in (head_ns, node_ns):
            result = _ip("netns", "add", ns)
            if result.returncode != 0:
                pytest.skip(f"cannot make a network namespace here: {result.stderr.strip()}")
            made.append(ns)
        veth_h, veth_n = f"vh{tag}", f"vn{tag}"
        steps = [
            ("link", "add", veth_h, "type", "veth", "peer", "name", veth_n),
            ("link", "set", veth_h, "netns", head_ns),
            ("link", "set", veth_n, "netns", node_ns),
            ("-n", head_ns, "addr", "add", f"{HEAD_IP}/24", "dev", veth_h),
            ("-n", node_ns, "addr", "add", f"{NODE_IP}/24", "dev", veth_n),
            ("-n", head_ns, "link", "set", veth_h, "up"),
            ("-n", node_ns, "link", "set", veth_n, "up"),
            ("-n", head_ns, "link", "set", "lo", "up"),
            ("-n", node_ns, "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                pytest.skip(f"cannot wire namespaces ({' '.join(step)}): {result.stderr}")
        yield head_ns, node_ns
    finally:
        for ns in made:
            _ip("netns", "del", ns)


def _in(ns: str, env: dict, *args, timeout=90) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", "netns", "exec", ns, *args], env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} in {ns}:\n{result.stdout}\n{result.stderr}"
    return result


RAYLING = [sys.executable, "-m", "rayling.scripts"]


def _host_envs(tmp_path, hosts) -> dict[str, dict]:
    """Each host's environment: its own TMPDIR, and a home shared by both, as on a
    cluster (it carries the token)."""
    home = tmp_path / "home"
    home.mkdir()
    envs = {}
    for ns in hosts:
        (tmp_path / ns).mkdir()
        envs[ns] = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp_path / ns)}
        envs[ns].pop("RAYLING_TOKEN", None)
    return envs


def test_head_and_node_on_two_network_hosts(hosts, tmp_path):
    head_ns, node_ns = hosts
    envs = _host_envs(tmp_path, hosts)
    try:
        _in(head_ns, envs[head_ns], *RAYLING, "start", "--head", "--port", "0",
            "--node-ip-address", HEAD_IP, "--num-cpus", "1")
        machine = tmp_path / head_ns / f"rayling-{os.getuid()}" / "current_cluster.json"
        address = json.loads(machine.read_text())["address"]
        assert address.startswith(HEAD_IP + ":")
        _in(node_ns, envs[node_ns], *RAYLING, "start", "--address", address, "--num-cpus", "1")
        script = textwrap.dedent(f"""
            import numpy as np
            import rayling
            from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            rayling.init(address="{address}")
            nodes = {{n["NodeManagerAddress"]: n["NodeID"] for n in rayling.nodes()}}
            assert sorted(nodes) == ["{HEAD_IP}", "{NODE_IP}"], nodes
            there = NodeAffinitySchedulingStrategy(nodes["{NODE_IP}"], soft=False)

            @rayling.remote
            def make():
                return np.arange(2_000_000, dtype=np.float64)

            @rayling.remote
            def total(a):
                return float(a.sum()), rayling.get_runtime_context().get_node_id()

            @rayling.remote
            class Echo:
                def where(self, a):
                    return a.shape, rayling.get_runtime_context().get_node_id()

            ref = make.options(scheduling_strategy=there).remote()
            value, node = rayling.get(total.remote(ref))  # may run on either host
            assert value == float(np.arange(2_000_000).sum())
            assert rayling.get(ref).sum() == value  # copied to the head's host
            echo = Echo.options(scheduling_strategy=there).remote()
            # A large argument put just before each call: the worker on the other host
            # may ask the head for it before the head has read the put (a race: 1,000
            # calls).
            for _ in range(50):
                results = rayling.get([echo.where.remote(np.ones(300_000))
                                       for _ in range(20)])
                assert results == [((300_000,), nodes["{NODE_IP}"])] * 20
            print("ok")
        """)
        assert _in(head_ns, envs[head_ns], sys.executable, "-c", script).stdout.strip() == "ok"
        # A script on the joined host runs on that host's node: its puts land in that
        # node's store and are copied to the head's host when a task there reads them.
        remote_script = textwrap.dedent(f"""
            import numpy as np
            import rayling
            from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            rayling.init(address="{address}", _node_ip_address="{NODE_IP}")
            nodes = {{n["NodeManagerAddress"]: n["NodeID"] for n in rayling.nodes()}}
            assert rayling.get_runtime_context().get_node_id() == nodes["{NODE_IP}"]
            ref = rayling.put(np.ones(1_000_000))

            @rayling.remote
            def total(a):
                return float(a.sum())

            head = NodeAffinitySchedulingStrategy(nodes["{HEAD_IP}"], soft=False)
            assert rayling.get(total.options(scheduling_strategy=head).remote(ref)) == 1e6
            print("ok")
        """)
        assert _in(node_ns, envs[node_ns], sys.executable, "-c",
                   remote_script).stdout.strip() == "ok"
    finally:
        for ns in (node_ns, head_ns):
            subprocess.run(["ip", "netns", "exec", ns, *RAYLING, "stop"], env=envs.get(ns),
                           capture_output=True, timeout=60)


def test_the_seeds_by_hand_recipe_without_sleep(hosts, tmp_path):
    """The seeds' Slurm recipe: `rayling start --head ... --block &` on one host, then at
    once `rayling start --address head:port` on the other and a script: no `sleep 10`,
    the node and the script wait for the head."""
    head_ns, node_ns = hosts
    envs = _host_envs(tmp_path, hosts)
    address = f"{HEAD_IP}:34567"
    head = subprocess.Popen(["ip", "netns", "exec", head_ns, *RAYLING, "start", "--head",
                             "--node-ip-address", HEAD_IP, "--port", "34567",
                             "--num-cpus", "1", "--block"], env=envs[head_ns],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _in(node_ns, envs[node_ns], *RAYLING, "start", "--address", address,
            "--num-cpus", "1")
        script = textwrap.dedent(f"""
            import rayling
            rayling.init(address="{address}", _node_ip_address="{NODE_IP}")
            print(sorted(n["NodeManagerAddress"] for n in rayling.nodes()))
        """)
        shown = _in(node_ns, envs[node_ns], sys.executable, "-c", script).stdout
        assert shown.strip() == str(sorted([HEAD_IP, NODE_IP]))
    finally:
        for ns in (node_ns, head_ns):
            subprocess.run(["ip", "netns", "exec", ns, *RAYLING, "stop"], env=envs[ns],
                           capture_output=True, timeout=60)
        head.wait(30)
