"""The head's multi-node decisions, driven through its controller with fake connections:
joining, placing tasks on nodes, copying objects once per node, and a node's death."""

from __future__ import annotations

import pickle

from rayling import exceptions as exc
from rayling._private import ids, protocol as p
from rayling._private.scheduler import Placement

from .test_controller import TOKEN, FakeConn, connect, make_manager, submit

NODE_B = b"b" * 28


def join(manager, cpus=2, node_id=NODE_B, capacity=10**9):
    conn = FakeConn()
    assert manager.on_hello(conn, p.Hello("node", 99, node_id, TOKEN))
    manager.handle(conn, p.RegisterNode(node_id, "10.0.0.2", "b", {"CPU": cpus}, capacity,
                                        "10.0.0.2:7000", "bbbb", 64))
    assert conn.take(p.Welcome)
    assert conn.take(p.SpawnWorkers) == [p.SpawnWorkers(cpus)]
    return conn


def worker_on(manager, node_id, pid):
    conn = FakeConn()
    assert manager.on_hello(conn, p.Hello("worker", pid, b"w" * 28, TOKEN, node_id=node_id))
    conn.take(p.Welcome)
    return conn


def test_tasks_alternate_between_equally_loaded_nodes():
    manager, _spawner, _ = make_manager(cpus=2)
    join(manager)
    head_workers = [connect(manager, "worker", pid) for pid in (1, 2)]
    b_workers = [worker_on(manager, NODE_B, pid) for pid in (3, 4)]
    driver = connect(manager, "driver", 10)
    for _ in range(4):
        submit(manager, driver)
    for conn in head_workers + b_workers:
        assert len(conn.take(p.ExecuteTask)) == 1
    assert manager.query(p.AvailableResources()) == {}
    assert manager.query(p.ClusterResources()) == {"CPU": 4.0}


def test_placement_prefers_home_on_a_tie_and_spread_round_robins():
    manager, _, _ = make_manager(cpus=2)
    join(manager)
    nodes, by_id = manager.nodes.all, manager.nodes.by_id
    placement = Placement()
    assert placement.pick(nodes, by_id, {"CPU": 10000}, None, nodes[1]) is nodes[1]
    assert placement.pick(nodes, by_id, {"CPU": 10000}, None, nodes[0]) is nodes[0]
    picks = {placement.pick(nodes, by_id, {"CPU": 10000}, p.SpreadStrategy(), nodes[0]).node_id
             for _ in range(4)}
    assert picks == {nodes[0].node_id, NODE_B}
    hard = p.NodeAffinity(NODE_B, soft=False)
    nodes[1].pool.acquire({"CPU": 20000})
    assert placement.pick(nodes, by_id, {"CPU": 10000}, hard, nodes[0]) is None
    soft = p.NodeAffinity(NODE_B, soft=True)  # waits while B is only busy ...
    assert placement.pick(nodes, by_id, {"CPU": 10000}, soft, nodes[0]) is None
    spill = p.NodeAffinity(NODE_B, soft=True, spill=True)  # ... unless it may spill elsewhere
    assert placement.pick(nodes, by_id, {"CPU": 10000}, spill, nodes[0]) is nodes[0]
    # ... and runs elsewhere when B could never fit it, or is dead.
    assert placement.pick(nodes, by_id, {"CPU": 30000}, soft, nodes[0]) is None
    assert placement.pick(nodes, by_id, {"CPU": 10000}, p.NodeAffinity(b"c" * 28, soft=True),
                          nodes[0]) is nodes[0]
    nodes[1].alive = False
    assert placement.pick(nodes, by_id, {"CPU": 10000}, soft, nodes[0]) is nodes[0]


def test_an_object_on_another_node_is_pulled_once_per_node():
    manager, spawner, _ = make_manager()
    node_conn = join(manager)
    writer = worker_on(manager, NODE_B, 3)
    manager.handle(writer, p.ReserveShm(1, b"o" * 28, 5000))
    name = writer.take(p.ShmReserved)[0].name
    assert name.startswith("/rlbbbb_")
    manager.handle(writer, p.PutObject(b"o" * 28, p.ObjectData(shm=name, size=5000)))
    readers = [connect(manager, "driver", pid) for pid in (10, 11)]
    for reader in readers:
        manager.handle(reader, p.GetObjects([b"o" * 28]))
        assert reader.take(p.ObjectReady) == []  # waits for the copy
    assert node_conn.take(p.PullObject) == []  # the head's own node pulls, not B
    (pull,) = spawner.pulls
    assert (pull.address, pull.source, pull.size) == ("10.0.0.2:7000", name, 5000)
    copy = pull.name
    manager.pull_done(manager.nodes.local.node_id, b"o" * 28, copy, None)
    for reader in readers:
        (ready,) = reader.take(p.ObjectReady)
        assert ready.data.shm == copy and ready.data.where is None
    # The writer's node reads its own segment; others see where it is until they ask.
    assert manager.objects.readable(writer, b"o" * 28, manager.objects.get(b"o" * 28)).shm == name


def test_a_dead_node_loses_its_only_copies_and_frees_its_resources():
    manager, _, _ = make_manager(cpus=1)
    node_conn = join(manager, cpus=2)
    worker = worker_on(manager, NODE_B, 3)
    driver = connect(manager, "driver", 10)
    task_id = submit(manager, driver, resources={"CPU": 2.0}, max_retries=0)
    assert worker.take(p.ExecuteTask)
    manager.handle(worker, p.ReserveShm(1, b"x" * 28, 100))
    name = worker.take(p.ShmReserved)[0].name
    manager.handle(worker, p.PutObject(b"x" * 28, p.ObjectData(shm=name, size=100)))
    manager.handle(driver, p.RefUpdate([b"x" * 28], []))
    manager.on_disconnect(node_conn)
    nodes = {n["NodeID"]: n for n in manager.query(p.ClusterNodes())}
    assert nodes[NODE_B.hex()]["Alive"] is False
    assert manager.query(p.ClusterResources()) == {"CPU": 1.0}
    # The task running there failed (no retries left); the object is lost.
    result = ids.object_id_for_return(task_id, 0)
    (ready,) = [m for m in driver.take(p.ObjectReady) if m.object_id == result]
    assert isinstance(pickle.loads(ready.data.inline), exc.WorkerCrashedError)
    manager.handle(driver, p.GetObjects([b"x" * 28]))
    (lost,) = driver.take(p.ObjectReady)
    assert lost.data.error and "died" in str(pickle.loads(lost.data.inline))


def test_a_hard_affinity_to_an_unknown_node_fails_the_task():
    manager, _, _ = make_manager()
    connect(manager, "worker", 1)
    driver = connect(manager, "driver", 10)
    task_id = ids.new_task_id(b"jjjj")
    manager.handle(driver, p.RegisterFunction(b"fid", b"code", "f"))
    manager.handle(driver, p.SubmitTask(task_id, b"fid", "f", b"", [], [], 1, {"CPU": 1.0}, 0,
                                        strategy=p.NodeAffinity(b"\xab" * 28, soft=False)))
    (ready,) = driver.take(p.ObjectReady)
    assert isinstance(pickle.loads(ready.data.inline), exc.TaskUnschedulableError)


def test_a_worker_of_an_unknown_node_is_refused():
    manager, _, _ = make_manager()
    conn = FakeConn()
    assert not manager.on_hello(conn, p.Hello("worker", 1, b"w" * 28, TOKEN, node_id=NODE_B))
    assert conn.take(p.Rejected)


def test_a_task_runs_where_its_large_argument_is_when_it_can():
    manager, _, _ = make_manager(cpus=2)
    join(manager)
    connect(manager, "worker", 1)
    b_worker = worker_on(manager, NODE_B, 3)
    driver = connect(manager, "driver", 10)
    manager.handle(b_worker, p.ReserveShm(1, b"o" * 28, 50_000_000))
    name = b_worker.take(p.ShmReserved)[0].name
    manager.handle(b_worker, p.PutObject(b"o" * 28, p.ObjectData(shm=name, size=50_000_000)))
    manager.handle(driver, p.RefUpdate([b"o" * 28], []))
    # Both nodes are idle (a tie goes to the driver's node), but the argument is on B.
    submit(manager, driver, deps=[b"o" * 28])
    (execute,) = b_worker.take(p.ExecuteTask)
    assert execute.deps[0].shm == name
