"""The state API (rayling.util.state): the head's task history with Ray's states, times,
errors and attempts; actors, objects, nodes, workers, jobs and placement groups; filters,
limits and summaries; records that read like dicts."""

from __future__ import annotations

import os
import time

import pytest

import rayling
from rayling._private import protocol as p
from rayling._private.task_events import TaskEvents
from rayling._private.task_table import TaskRecord
from rayling.cluster_utils import Cluster
from rayling.util import state
from rayling.util.placement_group import placement_group, remove_placement_group

from .conftest import wait_until

pytestmark = pytest.mark.timeout(90)


@rayling.remote
def echo(x):
    return x


@rayling.remote
def fails():
    raise KeyError("no such key")


@rayling.remote
def wait_for(path: str):
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return path


@rayling.remote(max_retries=1)
def dies_once(marker: str):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return "second attempt"


@rayling.remote
def say(text: str) -> str:
    print(text)
    return text


@rayling.remote
class Counter:
    def __init__(self):
        self.n = 0

    def add(self):
        self.n += 1
        return self.n


def _task(ref) -> state.TaskState:
    return state.get_task(ref.task_id().hex())


def test_finished_and_failed_tasks(shared_cluster):
    before = time.time() * 1000
    ok, bad = echo.remote(1), fails.remote()
    assert rayling.get(ok) == 1
    with pytest.raises(KeyError):
        rayling.get(bad)
    done = wait_until(lambda: (lambda t: t if t and t.state == "FINISHED" else None)(
        _task(ok)), what="the task to be recorded as finished")
    assert done.name == "echo" and done.type == "NORMAL_TASK" and done.attempt_number == 0
    assert done.job_id == rayling.get_runtime_context().get_job_id()
    assert done.node_id == rayling.get_runtime_context().get_node_id()
    assert done.worker_pid and done.worker_pid != os.getpid()
    assert before - 1000 <= done.creation_time_ms <= done.start_time_ms <= done.end_time_ms
    assert done["state"] == "FINISHED" and "task_id" in done and done.get("nope") is None
    failed = _task(bad)
    assert failed.state == "FAILED" and failed.error_type == "TASK_EXECUTION_EXCEPTION"
    assert "no such key" in failed.error_message
    assert state.get_task("00" * 24) is None


def test_waiting_and_running_states(shared_cluster, tmp_path):
    gate = str(tmp_path / "gate")
    first = wait_for.remote(gate)
    second = echo.remote(first)  # waits for its argument
    wait_until(lambda: _task(first) and _task(first).state == "RUNNING",
               what="the first task to run")
    assert _task(second).state == "PENDING_ARGS_AVAIL"
    running = state.list_tasks(filters=[("state", "=", "RUNNING"), ("name", "=", "wait_for")])
    assert [t.task_id for t in running] == [first.task_id().hex()]
    open(gate, "w").close()
    assert rayling.get(second) == gate
    wait_until(lambda: _task(second).state == "FINISHED", what="the second task to end")


def test_each_attempt_is_a_row(shared_cluster, tmp_path):
    ref = dies_once.remote(str(tmp_path / "marker"))
    assert rayling.get(ref) == "second attempt"
    attempts = wait_until(lambda: (lambda rows: rows if len(rows) == 2 and rows[0].state
                                   == "FINISHED" else None)(
        state.list_tasks(filters=[("task_id", "=", ref.task_id().hex())])),
        what="both attempts to be recorded")
    assert [a.attempt_number for a in attempts] == [1, 0]  # (newest first)
    attempts.reverse()
    assert attempts[0].state == "FAILED" and attempts[0].error_type == "WORKER_DIED"
    assert _task(ref).attempt_number == 1


def test_tasks_without_events_are_not_recorded(shared_cluster):
    quiet = echo.options(enable_task_events=False).remote(2)
    loud = echo.remote(3)
    assert rayling.get([quiet, loud]) == [2, 3]
    wait_until(lambda: _task(loud), what="the recorded task")
    assert _task(quiet) is None


def test_actors_and_their_calls(shared_cluster):
    counter = Counter.options(name="state-counter").remote()
    assert rayling.get(counter.add.remote()) == 1
    actor = state.get_actor(counter._ray_actor_id)
    assert actor.class_name == "Counter" and actor.state == "ALIVE"
    assert actor.name == "state-counter" and actor.pid
    calls = state.list_tasks(filters=[("actor_id", "=", counter._ray_actor_id)])
    assert {(c.name, c.type) for c in calls} == {
        ("Counter.__init__", "ACTOR_CREATION_TASK"), ("Counter.add", "ACTOR_TASK")}
    wait_until(lambda: all(c.state == "FINISHED" for c in state.list_tasks(
        filters=[("actor_id", "=", counter._ray_actor_id)])), what="the calls to finish")
    rayling.kill(counter)
    wait_until(lambda: state.get_actor(counter._ray_actor_id).state == "DEAD",
               what="the killed actor to be DEAD")
    summary = state.summarize_actors()["cluster"]["summary"]
    assert summary["Counter"]["state_counts"].get("DEAD", 0) >= 1


def test_nodes_workers_jobs_objects_and_groups(shared_cluster):
    ctx = rayling.get_runtime_context()
    assert rayling.get(echo.remote(0)) == 0  # (a worker has connected)
    [node] = state.list_nodes()
    assert node.node_id == ctx.get_node_id() and node.is_head_node and node.state == "ALIVE"
    assert node.resources_total["CPU"] == 2
    workers = state.list_workers()
    drivers = [w for w in workers if w.worker_type == "DRIVER"]
    assert [d.pid for d in drivers] == [os.getpid()]
    assert any(w.worker_type == "WORKER" for w in workers)
    [job] = state.list_jobs()
    assert job.job_id == ctx.get_job_id() and job.status == "RUNNING"
    assert job.driver_pid == os.getpid()
    kept = rayling.put(b"x" * 2_000_000)
    rows = state.get_objects(kept.hex())
    assert [(r.reference_type, r.pid, r.type) for r in rows] == [
        ("LOCAL_REFERENCE", os.getpid(), "DRIVER")]
    assert rows[0].object_size >= 2_000_000
    group = placement_group([{"CPU": 1}], name="state-group")
    assert group.wait(30)
    [row] = state.list_placement_groups(filters=[("name", "=", "state-group")])
    assert row.state == "CREATED" and row.bundles[0]["unit_resources"] == {"CPU": 1.0}
    remove_placement_group(group)


def test_filters_limits_and_summaries(shared_cluster):
    rayling.get([echo.remote(i) for i in range(5)])
    with pytest.warns(UserWarning, match="limit=2"):
        assert len(state.list_tasks(limit=2)) == 2
    assert all(t.name != "echo" for t in state.list_tasks(filters=[("name", "!=", "echo")]))
    summary = state.summarize_tasks()["cluster"]
    assert summary["summary"]["echo"]["type"] == "NORMAL_TASK"
    assert summary["summary"]["echo"]["state_counts"]["FINISHED"] >= 5
    assert summary["total_tasks"] >= 5
    for bad in ([("state", ">", "x")], [("state",)]):
        with pytest.raises(ValueError):
            state.list_tasks(filters=bad)
    with pytest.raises(ValueError):
        state.list_tasks(limit=-1)
    with pytest.raises(ValueError, match="timeout"):
        state.list_tasks(timeout=0)
    with pytest.raises(rayling.exceptions.RaySystemError, match="unknown state kind"):
        rayling._private.session.connected_client().query(p.StateRows("nope", [], 1))


def test_history_is_bounded_oldest_finished_first():
    clock = iter(range(1000))
    events = TaskEvents(capacity=3, clock=lambda: next(clock))

    def task(i, events_on=True):
        spec = p.SubmitTask(bytes([i]) * 24, b"", f"t{i}", b"", [], [], 1, {}, 0,
                            events=events_on)
        return TaskRecord(spec, None, {})

    tasks = [task(i) for i in range(5)]
    for i in (3, 0, 4, 1, 2):  # they finish in this order
        events.ended(tasks[i], [p.ObjectData(inline=b"")])
    # Past the capacity, the attempts that ended first went first (3, then 0).
    assert [e.name for e in events.records] == ["t4", "t1", "t2"]
    events.ended(task(9, events_on=False), [p.ObjectData(inline=b"", error=True)])
    assert [e.name for e in events.records] == ["t4", "t1", "t2"]  # (not recorded at all)
    # A failed attempt is a record of its own; the task's next attempt starts fresh.
    again = task(7)
    events.failed(again, "its worker (pid 1) died")
    assert again.attempt == 1 and again.started is None
    events.ended(again, [p.ObjectData(inline=b"")])
    assert [(e.name, e.attempt, e.state) for e in list(events.records)[-2:]] == [
        ("t7", 0, "FAILED"), ("t7", 1, "FINISHED")]


def test_tasks_on_two_nodes():
    rayling.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        worker_node = cluster.add_node(num_cpus=1, resources={"other": 1})
        rayling.init(address=cluster.address)
        here = echo.remote(1)
        there = echo.options(resources={"other": 1}).remote(2)
        assert rayling.get([here, there]) == [1, 2]
        spoken = say.options(resources={"other": 1}).remote("said on the other node")
        rayling.get(spoken)
        nodes = wait_until(lambda: (lambda a, b: (a.node_id, b.node_id) if a and b and
                                    b.state == "FINISHED" else None)(
            _task(here), _task(there)), what="both tasks to be recorded")
        assert nodes[1] == worker_node.node_id and nodes[0] != nodes[1]
        assert len(state.list_nodes()) == 2
        # Logs of the other node come through the head.
        wait_until(lambda: list(state.get_log(task_id=spoken.task_id().hex())) == [
            "said on the other node"], what="the task's line in the other node's log")
        files = state.list_logs(node_id=worker_node.node_id)["worker_out"]
        assert f"worker-{_task(spoken).worker_pid}.out" in files
    finally:
        rayling.shutdown()
        cluster.shutdown()


def test_timeline_is_a_chrome_trace(shared_cluster, tmp_path):
    import json

    refs = [echo.remote(i) for i in range(3)]
    rayling.get(refs)
    wanted = {ref.task_id().hex() for ref in refs}
    wait_until(lambda: all(_task(ref).state == "FINISHED" for ref in refs),
               what="the tasks to be recorded")
    path = tmp_path / "trace.json"
    assert rayling.timeline(filename=str(path)) is None
    trace = json.loads(path.read_text())
    slices = [e for e in trace if e["args"]["task_id"] in wanted]
    assert len(slices) == 3
    for event in slices:
        assert event["ph"] == "X" and event["name"] == "echo" and event["dur"] >= 0
        assert event["tid"].startswith("worker ") and event["pid"].startswith("node ")
    assert {e["args"]["task_id"] for e in rayling.timeline()} >= wanted


@rayling.remote
class Talker:
    def __init__(self):
        print("talker starts")

    def talk(self, text: str):
        print(text)


def test_logs_of_tasks_actors_and_workers(shared_cluster, tmp_path):
    refs = [say.remote(f"line {i}") for i in range(3)]
    rayling.get(refs)
    for i, ref in enumerate(refs):  # each task's own line, whichever worker ran it
        wait_until(lambda ref=ref, i=i: list(state.get_log(task_id=ref.task_id().hex()))
                   == [f"line {i}"], what=f"task {i}'s line in its log")
    talker = Talker.remote()
    rayling.get(talker.talk.remote("first"))
    wait_until(lambda: list(state.get_log(actor_id=talker._ray_actor_id)) == [
        "talker starts", "first"], what="the actor's lines")
    pid = state.get_actor(talker._ray_actor_id).pid
    assert "first" in list(state.get_log(pid=pid))
    assert list(state.get_log(actor_id=talker._ray_actor_id, tail=1)) == ["first"]
    assert f"worker-{pid}.out" in state.list_logs()["worker_out"]
    assert "daemon.log" in state.list_logs()["daemon"]
    # Following an actor's log: new lines as they are written.
    followed = state.get_log(actor_id=talker._ray_actor_id, follow=True, tail=0)
    rayling.get(talker.talk.remote("second"))
    assert next(followed) == "second"
    followed.close()
    # A task cannot forge another task's marker: its line stays its own.
    forged = f":task_id:{refs[0].task_id().hex()}:say"
    forger = say.remote(forged)
    rayling.get(forger)
    wait_until(lambda: list(state.get_log(task_id=forger.task_id().hex())) == [forged],
               what="the forged-looking line in its own task's log")
    assert forged not in list(state.get_log(task_id=refs[0].task_id().hex()))
    with pytest.raises(ValueError, match="exactly one"):
        state.get_log(task_id="ab", pid=3)
    with pytest.raises(rayling.exceptions.RaySystemError, match="cannot read log"):
        list(state.get_log(filename="../../etc/passwd"))
    with pytest.raises(rayling.exceptions.RaySystemError, match="cannot read log"):
        list(state.get_log(filename="no-such.log"))


@rayling.remote(num_returns=0)
def fails_quietly():
    raise RuntimeError("no returns to carry this")


@rayling.remote
def stream_then_fail():
    yield 1
    raise RuntimeError("the stream's last item")


@rayling.remote
class Quick:
    def ping(self):
        return "pong"


def test_failures_results_do_not_show_are_failed(shared_cluster):
    quiet = fails_quietly.remote()
    assert quiet is None
    stream = stream_then_fail.remote()
    refs = list(stream)
    with pytest.raises(RuntimeError):
        rayling.get(refs[-1])
    def failures():
        return {t.name: t for t in state.list_tasks(filters=[("state", "=", "FAILED")],
                                                   limit=10_000)
                if t.name in ("fails_quietly", "stream_then_fail")}
    failed = wait_until(lambda: len(failures()) == 2 and failures(),
                        what="both failures recorded")
    assert "raised" in failed["fails_quietly"].error_message


def test_fast_direct_actor_calls_know_their_worker(shared_cluster):
    quick = Quick.remote()
    refs = [quick.ping.remote() for _ in range(50)]
    assert rayling.get(refs) == ["pong"] * 50
    pid = state.get_actor(quick._ray_actor_id).pid
    wanted = {r.task_id().hex() for r in refs}
    calls = wait_until(lambda: (lambda rows: rows if len(rows) == 50 else None)(
        [t for t in state.list_tasks(filters=[("name", "=", "Quick.ping")], limit=10_000)
         if t.task_id in wanted and t.state == "FINISHED"]), what="the calls to be recorded")
    assert {t.worker_pid for t in calls} == {pid}
    assert all(t.start_time_ms is not None for t in calls)


@rayling.remote(max_restarts=1)
class Restarting:
    def pid(self):
        return os.getpid()

    def die(self):
        os._exit(1)


def test_a_restarted_actors_creation_is_its_next_attempt(shared_cluster):
    actor = Restarting.remote()
    rayling.get(actor.pid.remote())
    actor.die.remote()
    wait_until(lambda: state.get_actor(actor._ray_actor_id).num_restarts == 1,
               what="the actor to restart")
    rayling.get(actor.pid.remote(), timeout=30)
    creations = wait_until(lambda: (lambda rows: rows if len(rows) == 2 else None)(
        [t for t in state.list_tasks(filters=[("actor_id", "=", actor._ray_actor_id),
                                              ("type", "=", "ACTOR_CREATION_TASK")])]),
        what="both creations to be recorded")
    assert sorted(t.attempt_number for t in creations) == [0, 1]
