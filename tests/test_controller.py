"""The daemon's decisions, driven directly through its controller with fake connections
and a fake node agent (no sockets, no processes)."""

from __future__ import annotations

import pickle

import pytest

from rayling import exceptions as exc
from rayling._private import ids, protocol as p
from rayling._private.connection import IncomingStream, WrongToken
from rayling._private.controller import Controller

TOKEN = "secret"


class FakeConn:
    def __init__(self) -> None:
        self.sent: list = []
        self.kind = None
        self.pid = None
        self.listen_path = ""

    def send(self, msg) -> None:
        self.sent.append(msg)

    def close(self, reason: str) -> None:
        self.closed = reason

    def take(self, kind=None) -> list:
        out = [m for m in self.sent if kind is None or isinstance(m, kind)]
        self.sent = [m for m in self.sent if m not in out]
        return out


class FakeAgent:
    """Records what the controller asks of the head's own node."""

    def __init__(self) -> None:
        self.spawned = 0
        self.killed: list[int] = []
        self.pulls: list = []  # PullObject requests
        self.unlinked: list[str] = []
        self.pending: list = []  # spare segments being preallocated: (name, size, done)

    def spawn_worker(self) -> None:
        self.spawned += 1

    def kill(self, pid: int) -> None:
        self.killed.append(pid)

    def unlink(self, name: str) -> None:
        self.unlinked.append(name)

    def pull(self, msg) -> None:
        self.pulls.append(msg)

    def preallocate(self, name: str, size: int, done) -> None:
        self.pending.append((name, size, done))


def make_manager(cpus=2, capacity=10**9, **resources):
    """A controller, and its node agent twice (as the spawner, and as the segments)."""
    agent = FakeAgent()
    manager = Controller(
        node_id=b"n" * 28, node_ip="127.0.0.1", session="abcd1234", session_dir="/tmp/x",
        resources={"CPU": cpus, **resources}, store_capacity=capacity, agent=agent,
    )
    return manager, agent, agent


def free_cpu(manager) -> int:
    return manager.nodes.local.pool.free["CPU"]


def connect(manager, kind, pid=1):
    conn = FakeConn()
    assert manager.on_hello(conn, p.Hello(kind, pid, b"w" * 28, TOKEN))
    conn.take(p.Welcome)
    return conn


def submit(manager, driver, name="f", resources=None, deps=(), max_retries=3):
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.RegisterFunction(b"fid", b"code", name))
    manager.handle(driver, p.SubmitTask(task_id, b"fid", name, b"args", list(deps), [], 1,
                                        resources or {"CPU": 1.0}, max_retries))
    return task_id


def test_wrong_token_is_rejected():
    stream = IncomingStream(TOKEN, now=0.0)
    with pytest.raises(WrongToken):
        stream.feed(p.encode_frame([p.Hello("driver", 1, b"w" * 28, "wrong")]), now=0.0)


def test_task_runs_on_idle_worker_and_result_reaches_submitter():
    manager, _, _ = make_manager()
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=10)
    task_id = submit(manager, driver)
    (execute,) = worker.take(p.ExecuteTask)
    assert execute.function == b"code" and execute.task_id == task_id
    assert free_cpu(manager) == 10_000
    result = p.ObjectData(inline=b"42")
    manager.handle(worker, p.TaskDone(task_id, [result]))
    (ready,) = driver.take(p.ObjectReady)
    assert ready.object_id == ids.object_id_for_return(task_id, 0) and ready.data == result
    assert free_cpu(manager) == 20_000
    # The function's code is sent to a worker only once.
    submit(manager, driver)
    assert worker.take(p.ExecuteTask)[0].function is None


def test_no_more_tasks_than_cpus_and_a_worker_is_requested():
    manager, spawner, _ = make_manager(cpus=2)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker")
    for _ in range(3):
        submit(manager, driver)
    assert len(worker.take(p.ExecuteTask)) == 1
    assert spawner.spawned == 1  # a CPU is free but no worker is idle
    second = connect(manager, "worker", pid=2)
    assert len(second.take(p.ExecuteTask)) == 1
    third = connect(manager, "worker", pid=3)
    assert third.take(p.ExecuteTask) == []  # both CPUs are taken


def test_dependencies_hold_a_task_back():
    manager, _, _ = make_manager()
    driver = connect(manager, "driver")
    worker = connect(manager, "worker")
    first = submit(manager, driver)
    (run_first,) = worker.take(p.ExecuteTask)
    dep = ids.object_id_for_return(first, 0)
    second = submit(manager, driver, deps=[dep])
    other = connect(manager, "worker", pid=2)
    assert other.take(p.ExecuteTask) == []
    manager.handle(worker, p.TaskDone(first, [p.ObjectData(inline=b"1")]))
    (run_second,) = worker.take(p.ExecuteTask) + other.take(p.ExecuteTask)
    assert run_second.task_id == second and run_second.deps[0].inline == b"1"


def test_infeasible_request_warns_once_naming_task_and_resource():
    manager, _, _ = make_manager()
    driver = connect(manager, "driver")
    submit(manager, driver, name="big", resources={"CPU": 1.0, "GPU": 1.0})
    submit(manager, driver, name="big", resources={"CPU": 1.0, "GPU": 1.0})
    (warning,) = driver.take(p.Warning)
    assert "big" in warning.text and "GPU: 1 more" in warning.text


def test_dead_worker_task_is_retried_then_fails():
    manager, _, _ = make_manager()
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=7)
    task_id = submit(manager, driver, max_retries=1)
    worker.take(p.ExecuteTask)
    manager.on_disconnect(worker)
    second = connect(manager, "worker", pid=8)
    assert second.take(p.ExecuteTask)[0].task_id == task_id  # retried
    manager.on_disconnect(second)
    (ready,) = driver.take(p.ObjectReady)
    error = pickle.loads(ready.data.inline)
    assert ready.data.error and isinstance(error, exc.WorkerCrashedError)
    assert "pid 8" in str(error) and "f" in str(error)
    assert free_cpu(manager) == 20_000


def test_blocked_worker_lends_its_cpu():
    manager, _, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker")
    submit(manager, driver)
    worker.take(p.ExecuteTask)
    submit(manager, driver)
    manager.handle(worker, p.Blocked())
    other = connect(manager, "worker", pid=2)
    assert len(other.take(p.ExecuteTask)) == 1
    manager.handle(worker, p.Unblocked())
    assert free_cpu(manager) == -10_000  # briefly oversubscribed, as in Ray


def test_store_capacity_and_spare_segment():
    mb = 1024 * 1024
    manager, _, segments = make_manager(capacity=400 * mb)
    driver = connect(manager, "driver")
    manager.handle(driver, p.ReserveShm(1, b"o" * 28, 40 * mb))
    (reply,) = driver.take(p.ShmReserved)
    assert reply.name and not reply.preallocated
    (name, size, done) = segments.pending.pop()
    done(name, size, True)
    manager.handle(driver, p.ReserveShm(2, b"q" * 28, 40 * mb))
    (again,) = driver.take(p.ShmReserved)
    assert again.preallocated and again.name == name
    manager.handle(driver, p.ReserveShm(3, b"r" * 28, 500 * mb))
    (full,) = driver.take(p.ShmReserved)
    assert full.name is None and "524,288,000 bytes" in full.error
    manager.on_disconnect(driver)  # unsealed reservations are given back
    (name, size, done) = segments.pending.pop()
    done(name, size, True)
    assert manager.nodes.local.store.used == 40 * mb  # only the new spare
    assert manager.query(p.StoreStats())["store_used"] == 0
    manager.objects.drop_idle_spare(now=float("inf"))
    assert manager.nodes.local.store.used == 0 and name in segments.unlinked


def test_extra_idle_workers_are_reaped_but_the_base_pool_stays():
    import time

    manager, spawner, _ = make_manager(cpus=1)
    connect(manager, "driver")
    for pid in (1, 2, 3):
        connect(manager, "worker", pid=pid)
    manager.reap_idle_workers(time.monotonic())  # not idle long enough yet
    assert spawner.killed == []
    manager.reap_idle_workers(time.monotonic() + 60)
    assert len(spawner.killed) == 2  # one worker per CPU is kept


def create_actor(manager, driver, hold=None, max_restarts=0, name=""):
    actor_id = ids.new_actor_id(b"jjjj")
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.RegisterFunction(b"cls", b"class-code", "Cls"))
    manager.handle(driver, p.CreateActor(
        0, actor_id, task_id, b"cls", "Cls", b"args", [], [], {"CPU": 1.0}, hold or {},
        max_restarts, 0, 1, False, b"", name))
    return actor_id


def call(manager, driver, actor_id, method="m"):
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.SubmitTask(task_id, b"", f"Cls.{method}", b"args", [], [], 1, {},
                                        0, False, actor_id, method))
    return task_id


def test_actor_calls_are_pipelined_in_order_and_restart_after_death():
    manager, spawner, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=5)
    actor_id = create_actor(manager, driver, max_restarts=1)
    (init,) = worker.take(p.ExecuteTask)
    assert init.method == "__init__" and init.function == b"class-code"
    first, second = call(manager, driver, actor_id), call(manager, driver, actor_id)
    assert worker.take(p.ExecuteTask) == []  # not before the constructor finished
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    assert [m.task_id for m in worker.take(p.ExecuteTask)] == [first, second]
    assert free_cpu(manager) == 10_000  # placed with 1 CPU, holds none
    manager.handle(worker, p.TaskDone(first, [p.ObjectData(inline=b"1")]))
    manager.on_disconnect(worker)  # dies while running `second`
    (failed,) = driver.take(p.ObjectReady)[-1:]
    assert failed.object_id == ids.object_id_for_return(second, 0) and failed.data.error
    replacement = connect(manager, "worker", pid=6)
    (again,) = replacement.take(p.ExecuteTask)
    assert again.method == "__init__"  # restarted
    manager.handle(replacement, p.TaskDone(again.task_id, [p.ObjectData(inline=b"N")]))
    third = call(manager, driver, actor_id)
    assert replacement.take(p.ExecuteTask)[0].task_id == third
    manager.on_disconnect(replacement)  # no restarts left
    later = call(manager, driver, actor_id)
    (dead,) = [m for m in driver.take(p.ObjectReady)
               if m.object_id == ids.object_id_for_return(later, 0)]
    error = pickle.loads(dead.data.inline)
    assert isinstance(error, exc.ActorDiedError) and "died unexpectedly" in str(error)


def direct_call(manager, driver, actor_id, worker_id, method="m"):
    """A call the driver sent straight to the actor's worker: only its bookkeeping."""
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.SubmitTask(task_id, b"", f"Cls.{method}", b"args", [], [], 1, {},
                                        -1, False, actor_id, method, worker_id))
    return task_id


def test_direct_calls_in_doubt_are_settled_by_what_their_caller_received():
    manager, _, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=5)  # its worker id is b"w" * 28
    actor_id = create_actor(manager, driver, max_restarts=1)
    (init,) = worker.take(p.ExecuteTask)
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    returned, running = (direct_call(manager, driver, actor_id, b"w" * 28) for _ in range(2))
    manager.on_disconnect(worker)  # died with both TaskDones unsent
    (doubt,) = driver.take(p.CallsInDoubt)
    assert doubt.worker_id == b"w" * 28 and doubt.calls == [(returned, 1), (running, 1)]
    late = direct_call(manager, driver, actor_id, b"w" * 28)  # its bookkeeping came late
    (late_doubt,) = driver.take(p.CallsInDoubt)
    assert late_doubt.calls == [(late, 1)]
    replacement = connect(manager, "worker", pid=6)
    (again,) = replacement.take(p.ExecuteTask)
    manager.handle(replacement, p.TaskDone(again.task_id, [p.ObjectData(inline=b"N")]))
    assert replacement.take(p.ExecuteTask) == []  # nothing runs while calls are in doubt
    # The answer settles only what it was asked: `late` stays in doubt.
    manager.handle(driver, p.CallsReceived(actor_id, [returned, running], [
        (returned, [p.ObjectData(inline=b"1")])]))
    assert replacement.take(p.ExecuteTask) == []
    manager.handle(driver, p.CallsReceived(actor_id, [late], []))
    assert [m.task_id for m in replacement.take(p.ExecuteTask)] == [running, late]
    assert manager.objects.get(ids.object_id_for_return(returned, 0)).inline == b"1"


def test_a_large_result_held_by_name_survives_its_worker_until_claimed():
    """A call's bookkeeping arrives after its worker died; the caller holds its large
    result only by name: the dead worker's segment is kept for it, and released later
    if nobody claims it."""
    from rayling._private.actor_directory import ADOPTED_TICKS

    manager, agent, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=5)
    actor_id = create_actor(manager, driver, max_restarts=1)
    (init,) = worker.take(p.ExecuteTask)
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    task_id = ids.new_task_id(b"jjjj")
    result = ids.object_id_for_return(task_id, 0)
    manager.handle(worker, p.ReserveShm(1, result, 10**6))
    (claimed,) = worker.take(p.ShmReserved)
    manager.handle(worker, p.ReserveShm(2, b"u" * 28, 10**6))
    (unclaimed,) = worker.take(p.ShmReserved)
    manager.on_disconnect(worker)  # died before its TaskDone, and before the bookkeeping
    manager.handle(driver, p.SubmitTask(task_id, b"", "Cls.m", b"args", [], [], 1, {}, -1,
                                        False, actor_id, "m", b"w" * 28))
    (doubt,) = driver.take(p.CallsInDoubt)
    by_name = p.ObjectData(size=10**6, where=manager.nodes.local.node_id)
    manager.handle(driver, p.CallsReceived(actor_id, [task_id], [(task_id, [by_name])]))
    assert manager.objects.get(result).shm == claimed.name
    for _ in range(ADOPTED_TICKS + 1):
        manager.tick()
    assert unclaimed.name in agent.unlinked and claimed.name not in agent.unlinked


def test_calls_in_doubt_of_a_caller_that_left_are_not_run_again():
    manager, _, _ = make_manager(cpus=1)
    driver, other = connect(manager, "driver"), connect(manager, "driver", pid=2)
    worker = connect(manager, "worker", pid=5)
    actor_id = create_actor(manager, other, max_restarts=1)
    (init,) = worker.take(p.ExecuteTask)
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    direct_call(manager, driver, actor_id, b"w" * 28)
    manager.on_disconnect(worker)
    assert driver.take(p.CallsInDoubt)
    manager.on_disconnect(driver)
    replacement = connect(manager, "worker", pid=6)
    (again,) = replacement.take(p.ExecuteTask)
    manager.handle(replacement, p.TaskDone(again.task_id, [p.ObjectData(inline=b"N")]))
    assert replacement.take(p.ExecuteTask) == []


def test_a_killed_actor_is_sent_nothing_more_and_has_no_address():
    manager, spawner, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker", pid=5)
    actor_id = create_actor(manager, driver)
    (init,) = worker.take(p.ExecuteTask)
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    manager.handle(driver, p.KillActor(actor_id, True))
    assert spawner.killed == [5]
    after = call(manager, driver, actor_id)
    assert worker.take(p.ExecuteTask) == []  # the worker is still up, but dying
    manager.handle(driver, p.Query(7, p.ActorAddress(actor_id)))
    assert driver.take(p.Reply) == []  # answered once the actor is dead
    manager.on_disconnect(worker)
    (reply,) = driver.take(p.Reply)
    assert reply.value is None
    (dead,) = [m for m in driver.take(p.ObjectReady)
               if m.object_id == ids.object_id_for_return(after, 0)]
    assert isinstance(pickle.loads(dead.data.inline), exc.ActorDiedError)


def test_a_message_that_cannot_be_carried_out_fails_alone():
    manager, _, _ = make_manager()
    driver = connect(manager, "driver")
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.RegisterFunction(b"fid", b"code", "f"))
    manager.handle(driver, p.SubmitTask(task_id, b"fid", "f", b"", [], [], 1,
                                        {"CPU": float("nan")}, 0))
    (failed,) = driver.take(p.ObjectReady)
    assert failed.data.error and "could not accept task f" in str(
        pickle.loads(failed.data.inline))
    assert not getattr(driver, "closed", None)
    assert submit(manager, driver) and manager.tasks.get(task_id) is None


def test_a_segment_that_could_not_be_made_gives_its_room_back():
    manager, _, segments = make_manager(capacity=10**9)
    driver = connect(manager, "driver")
    manager.handle(driver, p.ReserveShm(1, b"o" * 28, 10**6))
    (reply,) = driver.take(p.ShmReserved)
    used = manager.nodes.local.store.used
    manager.handle(driver, p.ReleaseShm(reply.name))
    assert manager.nodes.local.store.used == used - 10**6
    assert reply.name in segments.unlinked


def test_actor_holding_cpu_and_named_actor_conflict():
    manager, _, _ = make_manager(cpus=1)
    driver = connect(manager, "driver")
    worker = connect(manager, "worker")
    create_actor(manager, driver, hold={"CPU": 1.0}, name="solo")
    (init,) = worker.take(p.ExecuteTask)
    manager.handle(worker, p.TaskDone(init.task_id, [p.ObjectData(inline=b"N")]))
    assert free_cpu(manager) == 0
    manager.handle(driver, p.CreateActor(
        7, ids.new_actor_id(b"jjjj"), ids.new_task_id(b"jjjj"), b"cls", "Cls", b"", [], [],
        {"CPU": 1.0}, {}, 0, 0, 1, False, b"", "solo"))
    (reply,) = driver.take(p.Reply)
    assert reply.req_id == 7 and "already exists" in reply.error
    submit(manager, driver, name="starved")
    (warning,) = driver.take(p.Warning)
    assert "starved" in warning.text and "Cls" in warning.text
