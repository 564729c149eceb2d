"""`rayling list/get/summary/timeline/memory`: the state API from the shell, against a
cluster a script's init() started (found by its address, or as this machine's newest),
without becoming a job of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import rayling
from rayling.util import state

from .conftest import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    info = rayling.init(num_cpus=2)
    yield info["address"]
    rayling.shutdown()


def rayling_cmd(*args, env=None, check=True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rayling.scripts", *args],
                            env=env or dict(os.environ), capture_output=True, text=True,
                            timeout=60)
    if check and result.returncode != 0:
        raise AssertionError(f"rayling {' '.join(args)} failed:\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


@rayling.remote
def square(x):
    return x * x


@rayling.remote
def broken():
    raise ZeroDivisionError("nothing to divide")


@rayling.remote
def speak(text):
    print(text)


@rayling.remote
class Keeper:
    def ping(self):
        return "pong"


def test_list_tasks_json_is_the_state_api(cluster):
    refs = [square.remote(i) for i in range(4)]
    assert rayling.get(refs) == [0, 1, 4, 9]
    ids = {ref.task_id().hex() for ref in refs}
    wait_until(lambda: sum(t.state == "FINISHED" for t in state.list_tasks(limit=10_000)
                           if t.task_id in ids) == 4, what="the tasks to be recorded")
    shell = json.loads(rayling_cmd("list", "tasks", "--format", "json", "--limit", "10000",
                                   "--address", cluster).stdout)
    api = [t.asdict() for t in state.list_tasks(limit=10_000)]
    assert {(t["task_id"], t["state"]) for t in shell if t["task_id"] in ids} == \
        {(t["task_id"], t["state"]) for t in api if t["task_id"] in ids} == \
        {(i, "FINISHED") for i in ids}
    # Filters as Ray's CLI takes them, and the table.
    table = rayling_cmd("list", "tasks", "--filter", "name=square", "--address", cluster).stdout
    assert "Total: " in table and "FINISHED" in table and "square" in table
    assert "TASK_ID" in table.splitlines()[7]
    # The command is not a job of the cluster (and shows no worker output).
    assert [j.driver_pid for j in state.list_jobs()] == [os.getpid()]


def test_get_summary_timeline_and_memory(cluster, tmp_path):
    bad = broken.remote()
    keeper = Keeper.remote()
    assert rayling.get(keeper.ping.remote()) == "pong"
    held = rayling.put(b"y" * 1_500_000)
    with pytest.raises(ZeroDivisionError):
        rayling.get(bad)
    wait_until(lambda: (state.get_task(bad.task_id().hex()) or {}).get("state") == "FAILED",
               what="the failed task to be recorded")
    shown = rayling_cmd("get", "tasks", bad.task_id().hex(), "--address", cluster).stdout
    assert f'task_id: "{bad.task_id().hex()}"' in shown
    assert 'error_type: "TASK_EXECUTION_EXCEPTION"' in shown
    assert "nothing to divide" in shown
    summary = rayling_cmd("summary", "tasks", "--address", cluster).stdout
    assert "broken" in summary and "FAILED: 1" in summary
    actors = rayling_cmd("summary", "actors", "--format", "json", "--address", cluster).stdout
    assert json.loads(actors)["summary"]["Keeper"]["state_counts"]["ALIVE"] >= 1
    assert "Keeper" in rayling_cmd("list", "actors", "--format", "yaml",
                                   "--address", cluster).stdout
    trace = tmp_path / "trace.json"
    rayling_cmd("timeline", "--output", str(trace), "--address", cluster)
    assert any(e["name"] == "Keeper.ping" for e in json.loads(trace.read_text()))
    memory = rayling_cmd("memory", "--address", cluster).stdout
    assert held.hex() in memory and "LOCAL_REFERENCE" in memory
    missing = rayling_cmd("get", "actors", "ab" * 16, "--address", cluster, check=False)
    assert missing.returncode == 1 and "no actor with id" in missing.stderr
    bad_filter = rayling_cmd("list", "tasks", "--filter", "state", "--address", cluster,
                             check=False)
    assert bad_filter.returncode == 1 and "FIELD=VALUE" in bad_filter.stderr
    assert "Traceback" not in missing.stderr + bad_filter.stderr


def test_the_newest_script_cluster_is_found_and_none_is_said(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in (
        "RAYLING_ADDRESS", "RAY_ADDRESS", "RAYLING_TOKEN", "XDG_RUNTIME_DIR")}
    env["TMPDIR"] = str(tmp_path)
    env["HOME"] = str(tmp_path)
    nothing = rayling_cmd("list", "nodes", env=env, check=False)
    assert nothing.returncode == 1 and "Found no rayling cluster" in nothing.stderr
    script = textwrap.dedent("""
        import sys, rayling
        rayling.init(num_cpus=1)
        print(rayling.get_runtime_context().get_node_id(), flush=True)
        sys.stdin.read()  # until the test closes it
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        node_id = driver.stdout.readline().strip()
        nodes = json.loads(rayling_cmd("list", "nodes", "--format", "json", env=env).stdout)
        assert [n["node_id"] for n in nodes] == [node_id]
    finally:
        driver.stdin.close()
        driver.wait(30)
    assert driver.returncode == 0
    # Its record went with it.
    gone = rayling_cmd("list", "nodes", env=env, check=False)
    assert gone.returncode == 1 and "Found no rayling cluster" in gone.stderr
    assert not os.listdir(tmp_path / f"rayling-{os.getuid()}" / "local")


def test_logs(cluster):
    ref = speak.remote("spoken by a task")
    rayling.get(ref)
    task_id = ref.task_id().hex()
    wait_until(lambda: rayling_cmd("logs", "task", task_id, "--address", cluster).stdout
               == "spoken by a task\n", what="the task's log from the shell")
    pid = state.get_task(task_id).worker_pid
    assert "spoken by a task" in rayling_cmd("logs", "worker", str(pid), "--address",
                                             cluster).stdout
    listing = rayling_cmd("logs", "--address", cluster).stdout
    assert f"worker-{pid}.out" in listing and "daemon.log" in listing
    node = rayling.get_runtime_context().get_node_id()
    assert "daemon.log" in rayling_cmd("logs", "node", node, "--address", cluster).stdout
    rayling_cmd("logs", "node", node, "--file", "daemon.log", "--address", cluster)
    bad = rayling_cmd("logs", "worker", "abc", "--address", cluster, check=False)
    assert bad.returncode == 1 and "pid" in bad.stderr and "Traceback" not in bad.stderr


def test_the_state_api_before_init_leaves_the_process_free_to_init(cluster):
    script = textwrap.dedent(f"""
        import rayling
        from rayling.util import state
        nodes = state.list_nodes(address={cluster!r})
        assert len(nodes) == 1 and not rayling.is_initialized()
        rayling.init(num_cpus=1)  # (its own cluster: the observer did not take its place)
        assert rayling.get(rayling.remote(lambda: 7).remote()) == 7
        assert rayling.get_runtime_context().get_node_id() != nodes[0].node_id
        rayling.shutdown()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert [j.driver_pid for j in state.list_jobs()] == [os.getpid()]


def test_an_observer_may_only_ask(cluster):
    from rayling._private import protocol as p, session
    from rayling._private.client import CoreClient

    observer = CoreClient(cluster, session._node.token, "observer")
    try:
        assert observer.query(p.ClusterNodes())
        observer.send(p.Shutdown())  # (not a question: the head closes the connection)
        with pytest.raises(rayling.exceptions.RaySystemError):
            wait_until(lambda: observer.query(p.ClusterNodes(), timeout=2) and False,
                       timeout=20, what="the head to close the observer")
    finally:
        observer.close()
    assert rayling.get(square.remote(3)) == 9  # (the cluster goes on)
