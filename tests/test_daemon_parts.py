"""Each part of the daemon alone, with no sockets, no processes and no controller: the
node table, the worker pool, the task table, the scheduler, the object directory, the
actor directory and the job table."""

from __future__ import annotations

import pickle

import pytest

from rayling import exceptions as exc
from rayling._private import ids, protocol as p
from rayling._private.actor_directory import ALIVE, DEAD, RESTARTING, ActorDirectory
from rayling._private.job_table import JobTable
from rayling._private.node_table import NodeRecord, NodeTable
from rayling._private.object_directory import ObjectDirectory
from rayling._private.resources import UNIT
from rayling._private.scheduler import Scheduler
from rayling._private.task_table import DONE, READY, RUNNING, WAITING, TaskRecord, TaskTable
from rayling._private.worker_pool import (
    LIMIT,
    LIMIT_ENV,
    WORKER_IDLE_TIMEOUT,
    WorkerPool,
    worker_limit,
)

from .test_controller import FakeAgent as Agent


class Conn:
    def __init__(self, node=None) -> None:
        self.node = node
        self.sent: list = []
        self.listen_path = "/tmp/w.s"
        self.listen_tcp = ""
        self.last_seen = 0.0

    def send(self, msg) -> None:
        self.sent.append(msg)


class Cluster:
    """A node table of ``len(cpus)`` nodes with every part's per-node state set up."""

    def __init__(self, *cpus: float, capacity: int = 1000, max_workers: int = 64) -> None:
        self.agents = [Agent() for _ in cpus]
        local = NodeRecord(b"a" * 28, "127.0.0.1", "a", self.agents[0], "aaaa")
        self.nodes = NodeTable(local)
        self.workers = WorkerPool()
        self.objects = ObjectDirectory(self.nodes, on_free=self.freed.append)
        self.scheduler = Scheduler(self.nodes, self.workers, self.objects.bytes_by_node)
        for i, count in enumerate(cpus):
            node = local if i == 0 else self.nodes.register(Conn(), p.RegisterNode(
                bytes([98 + i]) * 28, f"10.0.0.{i}", f"n{i}", {}, capacity, f"10.0.0.{i}:7",
                f"{i:04x}", 64))
            if i:
                node.agent = self.agents[i]
            self.scheduler.add_node(node, {"CPU": count})
            self.workers.add_node(node, count, max_workers)
            self.objects.add_node(node, capacity)

    freed: list[bytes] = []

    def node(self, i: int):
        return self.nodes.all[i]

    def worker(self, i: int, pid: int):
        conn = Conn(self.node(i))
        return self.workers.connected(conn, pid, b"w" * 28, self.node(i), now=0.0)


def task(request=None, deps=(), strategy=None, retries=0, submitter=None) -> TaskRecord:
    spec = p.SubmitTask(ids.new_task_id(b"jjjj"), b"f", "f", b"", list(deps), [], 1,
                        request or {"CPU": 1.0}, retries, strategy=strategy)
    units = {k: round(v * UNIT) for k, v in (request or {"CPU": 1.0}).items()}
    return TaskRecord(spec, submitter, units)


# -- node table ---------------------------------------------------------------------------
def test_node_table_registers_finds_by_address_and_refuses_a_second_registration():
    cluster = Cluster(1, 2)
    nodes = cluster.nodes
    b = cluster.node(1)
    assert nodes.several and nodes.get(b.node_id) is b
    assert nodes.node_of_address("127.0.0.1") is nodes.local
    assert nodes.node_of_address("") is nodes.local
    assert nodes.node_of_address("10.0.0.1") is b
    assert nodes.node_of_address("10.9.9.9") is None
    b.alive = False
    assert nodes.node_of_address("10.0.0.1") is None and nodes.live() == [nodes.local]
    with pytest.raises(p.ProtocolError):
        nodes.register(Conn(), p.RegisterNode(b.node_id, "x", "x", {}, 1, "x:1", "bbbb", 64))


def test_heartbeat_finds_silent_peers_but_forgives_its_own_stall():
    from rayling._private.node_table import Heartbeat

    beat = Heartbeat(now=100.0, timeout=10.0)
    quiet, chatty = Conn(), Conn()
    quiet.last_seen, chatty.last_seen = 100.0, 109.0
    assert beat.tick(101.0, [quiet, chatty]) == []
    # This side stalled from 102 (when it was due) to 111.5: quiet, silent since 100, is
    # not blamed for that; its silence counts from 102.
    assert beat.tick(111.5, [quiet, chatty]) == []
    chatty.last_seen = 112.0
    assert beat.tick(112.5, [quiet, chatty]) == [quiet]


# -- worker pool --------------------------------------------------------------------------
def test_worker_pool_takes_idle_workers_asks_for_one_at_a_time_and_stops_extras():
    cluster = Cluster(1)
    pool, node = cluster.workers, cluster.node(0)
    assert pool.prestart(node, 1, now=0.0) == 1 and node.workers.starting == 1
    first = cluster.worker(0, pid=1)
    assert node.workers.starting == 0 and node.workers.idle == [first]
    node.workers.idle.pop()
    assert pool.want_one(node, now=0.0) and not pool.want_one(node, now=0.0)  # one at a time
    second = cluster.worker(0, pid=2)
    pool.make_idle(first, now=0.0)
    assert pool.to_stop([node], now=1.0) == []  # not idle long enough
    stopped = pool.to_stop([node], now=WORKER_IDLE_TIMEOUT + 1)
    assert len(stopped) == 1 and stopped[0] in (first, second)  # the base pool keeps one
    assert pool.remove(second.conn) is second and len(pool) == 1


def test_a_node_at_its_worker_limit_says_so_once():
    cluster = Cluster(1, max_workers=2)
    pool, node = cluster.workers, cluster.node(0)
    cluster.worker(0, pid=1)
    assert pool.want_one(node, now=0.0) is True
    cluster.worker(0, pid=2)
    assert pool.want_one(node, now=0.0) is LIMIT
    assert pool.want_one(node, now=0.0) is False


def test_the_worker_limit_follows_memory_unless_set(monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)
    assert worker_limit(24 * 2**30) == 384 and worker_limit(2**30) == 16
    monkeypatch.setenv(LIMIT_ENV, "1000")
    assert worker_limit(2**30) == 1000


def test_a_worker_that_never_starts_is_asked_for_again():
    cluster = Cluster(1)
    pool, node = cluster.workers, cluster.node(0)
    assert pool.want_one(node, now=0.0)
    pool.to_stop([node], now=60.0)
    assert pool.want_one(node, now=60.0)


# -- task table ---------------------------------------------------------------------------
def test_task_table_releases_a_task_when_its_last_argument_arrives():
    table = TaskTable()
    waiting = task(deps=[b"x" * 28, b"y" * 28])
    table.add(waiting)
    table.wait_for(waiting, b"x" * 28)
    table.wait_for(waiting, b"y" * 28)
    assert table.object_arrived(b"x" * 28) == [] and waiting.state is WAITING
    assert table.object_arrived(b"y" * 28) == [waiting]
    table.remove(waiting)
    assert waiting.state is DONE and len(table) == 0


def test_retries_after_worker_death_count_down_and_stop_for_cancelled_tasks():
    twice, forever, cancelled = task(retries=2), task(retries=-1), task(retries=5)
    cancelled.cancelled = True
    assert [TaskTable.retry_after_worker_death(twice) for _ in range(3)] == [True, True, False]
    assert all(TaskTable.retry_after_worker_death(forever) for _ in range(10))
    assert not TaskTable.retry_after_worker_death(cancelled)


# -- scheduler ----------------------------------------------------------------------------
def test_dispatch_starts_tasks_in_order_while_resources_and_workers_last():
    cluster = Cluster(2)
    node, scheduler = cluster.node(0), cluster.scheduler
    workers = [cluster.worker(0, pid) for pid in (1, 2, 3)]
    tasks = [task() for _ in range(3)]
    for t in tasks:
        scheduler.enqueue(t)
    starts, _, starved, _ = scheduler.dispatch(note_starved=True)
    assert [t for t, _ in starts] == tasks[:2]  # 2 CPUs
    assert {w for _, w in starts} <= set(workers)
    assert node.pool.free["CPU"] == 0 and starved == [tasks[2]]
    scheduler.release(tasks[0])
    starts, *_ = scheduler.dispatch()
    assert [t for t, _ in starts] == [tasks[2]]


def test_dispatch_asks_for_a_worker_where_a_task_could_start():
    cluster = Cluster(2)
    scheduler = cluster.scheduler
    scheduler.enqueue(task())
    starts, _, _, want_workers = scheduler.dispatch()
    assert starts == [] and want_workers == [cluster.node(0)]


def test_a_blocked_task_lends_its_cpu_and_takes_it_back():
    cluster = Cluster(1)
    cluster.worker(0, 1)
    scheduler, node = cluster.scheduler, cluster.node(0)
    running = task()
    scheduler.enqueue(running)
    scheduler.dispatch()
    assert node.pool.free["CPU"] == 0
    assert scheduler.lend(running) and not scheduler.lend(running)
    assert node.pool.free["CPU"] == UNIT
    scheduler.reclaim(running)
    scheduler.release(running)
    assert node.pool.free["CPU"] == UNIT


def test_hard_affinity_to_a_dead_node_is_unschedulable_and_infeasible_requests_warn():
    cluster = Cluster(1, 1)
    scheduler = cluster.scheduler
    b = cluster.node(1)
    bound = task(strategy=p.NodeAffinity(b.node_id, soft=False))
    scheduler.enqueue(bound)
    b.alive = False
    scheduler.nodes_changed()
    _, unschedulable, _, _ = scheduler.dispatch()
    assert unschedulable == [bound]
    huge = task(request={"CPU": 8.0})
    assert not scheduler.fits_ever(huge)
    text = scheduler.infeasible_warning(huge)
    assert "CPU: 7 more" in text and scheduler.infeasible_warning(huge) is None  # once


def test_a_task_runs_where_most_of_its_argument_bytes_are():
    cluster = Cluster(1, 1)
    cluster.worker(0, 1)
    b_worker = cluster.worker(1, 2)
    objects = cluster.objects
    reply = objects.reserve(b_worker.conn, 1, b"o" * 28, 500, preallocate=None)
    objects.put(b_worker.conn, b"o" * 28, p.ObjectData(shm=reply.name, size=500))
    cluster.scheduler.enqueue(task(deps=[b"o" * 28]))
    ((_, worker),), *_ = cluster.scheduler.dispatch()
    assert worker is b_worker


# -- object directory ---------------------------------------------------------------------
def test_reservations_enforce_each_nodes_quota_and_come_back_when_not_sealed():
    cluster = Cluster(1, capacity=1000)
    objects, conn = cluster.objects, cluster.worker(0, 1).conn
    ok = objects.reserve(conn, 1, b"o" * 28, 600, preallocate=None)
    assert ok.name and ok.error is None
    full = objects.reserve(conn, 2, b"q" * 28, 600, preallocate=None)
    assert full.name is None and "600 bytes" in full.error
    objects.release_reservations(conn)
    assert cluster.node(0).store.used == 0 and cluster.agents[0].unlinked == [ok.name]


def test_a_freed_object_unlinks_its_segment_and_every_copy():
    cluster = Cluster(1, 1)
    objects = cluster.objects
    writer, reader = cluster.worker(0, 1).conn, cluster.worker(1, 2).conn
    home = objects.reserve(writer, 1, b"o" * 28, 100, preallocate=None).name
    objects.put(writer, b"o" * 28, p.ObjectData(shm=home, size=100))
    objects.table.subscribe(b"o" * 28, reader)
    assert objects.value_for(reader, b"o" * 28, objects.get(b"o" * 28)) is None  # pulling
    objects.value_for(Conn(cluster.node(1)), b"o" * 28, objects.get(b"o" * 28))
    (pull,) = cluster.agents[1].pulls  # one copy per node, however many ask
    waiting, data = objects.pull_done(cluster.node(1).node_id, b"o" * 28, pull.name, None)
    assert len(waiting) == 2 and data.shm == pull.name
    objects.table.remove_holders([b"o" * 28], writer)
    assert cluster.agents[0].unlinked == [home] and cluster.agents[1].unlinked == [pull.name]
    assert cluster.node(0).store.used == cluster.node(1).store.used == 0


def test_a_full_node_drops_copies_of_objects_whose_home_is_elsewhere():
    cluster = Cluster(1, 1, capacity=1000)
    objects = cluster.objects
    writer, reader = cluster.worker(0, 1).conn, cluster.worker(1, 2).conn
    home = objects.reserve(writer, 1, b"o" * 28, 700, preallocate=None).name
    objects.put(writer, b"o" * 28, p.ObjectData(shm=home, size=700))
    objects.value_for(reader, b"o" * 28, objects.get(b"o" * 28))
    (pull,) = cluster.agents[1].pulls
    objects.pull_done(cluster.node(1).node_id, b"o" * 28, pull.name, None)
    assert objects.reserve(reader, 2, b"q" * 28, 700, preallocate=None).name
    assert cluster.agents[1].unlinked == [pull.name] and b"o" * 28 not in objects.copies


def test_a_dead_nodes_objects_move_home_to_a_copy_or_are_lost():
    cluster = Cluster(1, 1)
    objects = cluster.objects
    b_conn, a_conn = cluster.worker(1, 2).conn, cluster.worker(0, 1).conn
    for oid in (b"o" * 28, b"x" * 28):
        name = objects.reserve(b_conn, 1, oid, 10, preallocate=None).name
        objects.put(b_conn, oid, p.ObjectData(shm=name, size=10))
        objects.table.add_holders([oid], a_conn)
    objects.value_for(a_conn, b"o" * 28, objects.get(b"o" * 28))
    (pull,) = cluster.agents[0].pulls
    objects.pull_done(cluster.node(0).node_id, b"o" * 28, pull.name, None)
    cluster.node(1).alive = False
    objects.node_lost(cluster.node(1))
    assert objects.get(b"o" * 28).shm == pull.name
    lost = objects.get(b"x" * 28)
    assert lost.error and isinstance(pickle.loads(lost.inline), exc.ObjectLostError)


# -- actor directory ----------------------------------------------------------------------
class Host:
    """What the actor directory asks of the controller, recorded."""

    def __init__(self) -> None:
        self.cluster = Cluster(2)
        self.objects = self.cluster.objects
        self.scheduler = self.cluster.scheduler
        self.tasks = TaskTable()
        self.admitted: list = []
        self.failed: list = []
        self.finished: list = []
        self.executed: list = []

    def admit_task(self, spec, submitter, pin_args=True, expect_returns=True) -> None:
        record = TaskRecord(spec, submitter, {})
        self.tasks.add(record)
        self.admitted.append(record)

    def fail_task(self, task, error) -> None:
        self.tasks.remove(task)
        self.failed.append((task, error))

    def finish_task(self, task, results, tell_submitter=True, failed=False) -> None:
        self.tasks.remove(task)
        self.finished.append((task, results, tell_submitter))

    def object_ready(self, oid, subscribers, data, also=None) -> None:
        pass

    def send_execute(self, task, worker, actor=None) -> None:
        self.executed.append(task.spec.task_id)

    def dispatch(self) -> None:
        pass


def create(actors: ActorDirectory, host: Host, name="", max_restarts=0, conn=None):
    msg = p.CreateActor(1, ids.new_actor_id(b"jjjj"), ids.new_task_id(b"jjjj"), b"c", "Cls",
                        b"", [], [], {"CPU": 1.0}, {}, max_restarts, 0, 1, False, b"", name)
    conn = conn or Conn()
    actors.create(conn, msg)
    return msg.actor_id, conn


def start(actors: ActorDirectory, host: Host, actor_id: bytes):
    """Run the creation task on a new worker and let it succeed."""
    creation = host.admitted[-1]
    worker = host.cluster.worker(0, pid=len(host.admitted))
    actors.placed(creation, worker)
    actors.creation_done(creation, worker, [p.ObjectData(inline=b"N")])
    return worker


def call(actors: ActorDirectory, actor_id: bytes, retries=0, direct_worker=None):
    spec = p.SubmitTask(ids.new_task_id(b"jjjj"), b"", "Cls.m", b"", [], [], 1, {}, retries,
                        actor_id=actor_id, method="m", direct_worker=direct_worker)
    record = TaskRecord(spec, Conn(), {})
    actors.queue_call(record)
    if record.state is WAITING:
        actors.call_ready(record)
    return record


def test_a_name_is_taken_until_its_actor_dies():
    host = Host()
    actors = ActorDirectory(host)
    actor_id, _ = create(actors, host, name="solo")
    _, conn = create(actors, host, name="solo")
    assert "already exists" in conn.sent[-1].error
    assert actors.named_actor("", "solo").spec.actor_id == actor_id
    actors.kill(p.KillActor(actor_id, no_restart=True))  # no worker yet: dead at once
    assert actors.get(actor_id).state is DEAD and actors.named_actor("", "solo") is None


def test_calls_wait_for_the_constructor_then_go_in_order():
    host = Host()
    actors = ActorDirectory(host)
    actor_id, _ = create(actors, host)
    first, second = call(actors, actor_id), call(actors, actor_id)
    assert host.executed == []
    start(actors, host, actor_id)
    assert actors.get(actor_id).state is ALIVE
    assert host.executed == [first.spec.task_id, second.spec.task_id]
    assert first.state is RUNNING and second.state is RUNNING


def test_a_direct_call_finished_before_it_was_announced_is_parked_until_then():
    host = Host()
    actors = ActorDirectory(host)
    actor_id, _ = create(actors, host)
    worker = start(actors, host, actor_id)
    task_id = ids.new_task_id(b"jjjj")
    actors.call_done(actors.get(actor_id), p.TaskDone(task_id, [p.ObjectData(inline=b"1")],
                                                      direct=True))
    spec = p.SubmitTask(task_id, b"", "Cls.m", b"", [], [], 1, {}, 0, actor_id=actor_id,
                        method="m", direct_worker=worker.worker_id)
    actors.queue_call(TaskRecord(spec, Conn(), {}))
    ((done, _, tell),) = host.finished
    assert done.spec.task_id == task_id and tell is False  # the caller has its result


def test_a_dead_worker_restarts_its_actor_and_reruns_or_fails_its_calls():
    host = Host()
    actors = ActorDirectory(host)
    actor_id, _ = create(actors, host, max_restarts=1)
    worker = start(actors, host, actor_id)
    retried, failed = call(actors, actor_id, retries=1), call(actors, actor_id, retries=0)
    actors.worker_died(actors.get(actor_id), worker)
    actor = actors.get(actor_id)
    assert actor.state is RESTARTING and list(actor.queue) == [retried]
    assert retried.state is READY and [t for t, _ in host.failed] == [failed]
    assert isinstance(host.failed[0][1], exc.ActorDiedError)
    assert "died unexpectedly" in str(host.failed[0][1])
    worker = start(actors, host, actor_id)  # the restart; then no restarts are left
    actors.worker_died(actors.get(actor_id), worker)
    assert actors.get(actor_id).state is DEAD
    later = call(actors, actor_id)
    assert host.failed[-1][0] is later


def test_the_last_handle_gone_ends_an_actor_once_its_calls_are_done():
    host = Host()
    actors = ActorDirectory(host)
    actor_id, _ = create(actors, host)
    worker = start(actors, host, actor_id)
    pending = call(actors, actor_id)
    actors.object_freed(ids.object_id_for_return(actors.get(actor_id).spec.task_id, 0))
    assert host.cluster.agents[0].killed == []  # a call is still running
    actors.call_done(actors.get(actor_id), p.TaskDone(pending.spec.task_id,
                                                      [p.ObjectData(inline=b"1")]))
    assert host.cluster.agents[0].killed == [worker.pid]


# -- job table ----------------------------------------------------------------------------
def test_each_driver_is_a_job_and_code_is_sent_to_a_worker_once():
    jobs = JobTable()
    first, second = Conn(), Conn()
    assert jobs.add_driver(first) == jobs.first_job_id
    assert jobs.add_driver(second) != jobs.first_job_id
    assert jobs.remove_driver(first) and not jobs.remove_driver(first)
    jobs.register_function(b"f", b"code", "f")
    jobs.register_function(b"f", b"other", "f")  # the first registration stays
    known: set = set()
    assert jobs.code_for(b"f", known) == b"code" and jobs.code_for(b"f", known) is None
    assert jobs.code_for(b"", known) is None  # actor calls carry no function


def test_only_the_latest_dead_actors_are_remembered():
    host = Host()
    actors = ActorDirectory(host)
    actors.DEAD_KEPT = 2
    made = [create(actors, host)[0] for _ in range(4)]
    for actor_id in made:
        actors.kill(p.KillActor(actor_id, True))
    assert [a for a in made if actors.get(a) is not None] == made[2:]
    assert all(actors.get(a).state.value == "DEAD" for a in made[2:])
    late = call(actors, made[0])  # (a call to a forgotten actor still fails, not hangs)
    assert host.failed and host.failed[-1][0] is late
