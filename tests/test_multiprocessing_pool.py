"""rayling.util.multiprocessing.Pool: multiprocessing.Pool's API on actors."""

from __future__ import annotations

import os
import threading
import time

import pytest

import rayling
from rayling.cluster_utils import Cluster
from rayling.util.multiprocessing import Pool, TimeoutError

pytestmark = pytest.mark.timeout(120)


def square(x):
    return x * x


def add(a, b):
    return a + b


def pid_of(_):
    return os.getpid()


def fails_on_three(x):
    if x == 3:
        raise ValueError("three is not allowed")
    return x


_setting = None


def remember(value):
    global _setting
    _setting = value


def setting(_):
    return _setting


def test_the_multiprocessing_api(shared_cluster):
    with Pool(processes=2) as pool:
        assert pool.map(square, range(20)) == [x * x for x in range(20)]
        assert pool.map(square, []) == []
        assert pool.starmap(add, [(1, 2), (3, 4)]) == [3, 7]
        assert pool.apply(add, (2, 3)) == 5
        assert pool.apply(add, (), {"a": 1, "b": 9}) == 10
        assert list(pool.imap(square, range(10))) == [x * x for x in range(10)]
        assert list(pool.imap(square, range(10), chunksize=3)) == [x * x for x in range(10)]
        assert sorted(pool.imap_unordered(square, range(10))) == [x * x for x in range(10)]
        done = threading.Event()
        got = []
        result = pool.map_async(square, range(5), callback=lambda v: (got.append(v),
                                                                      done.set()))
        assert result.get(timeout=30) == [0, 1, 4, 9, 16] and result.successful()
        assert done.wait(10) and got == [[0, 1, 4, 9, 16]]
        assert pool.starmap_async(add, [(1, 1)]).get(timeout=30) == [2]
        slow = pool.apply_async(time.sleep, (5,))
        with pytest.raises(TimeoutError):
            slow.get(timeout=0.1)
        assert not slow.ready()
        with pytest.raises(ValueError):
            slow.successful()
        assert len(set(pool.map(pid_of, range(40), chunksize=1))) == 2


def test_errors_reach_the_caller_as_their_own_type(shared_cluster):
    with Pool(processes=2) as pool:
        with pytest.raises(ValueError, match="three is not allowed"):
            pool.map(fails_on_three, range(10))
        results = pool.imap(fails_on_three, range(10))
        assert [next(results) for _ in range(3)] == [0, 1, 2]  # those before the error
        with pytest.raises(ValueError):
            next(results)
        errors = []
        failed = pool.apply_async(fails_on_three, (3,), error_callback=errors.append)
        failed.wait(30)
        assert failed.ready() and not failed.successful()
        assert len(errors) == 1 and isinstance(errors[0], ValueError)
        assert pool.map(square, [4]) == [16]  # the pool still works


def test_initializer_runs_in_each_process_and_maxtasksperchild_renews_them(shared_cluster):
    with Pool(processes=2, initializer=remember, initargs=("set up",)) as pool:
        assert pool.map(setting, range(8)) == ["set up"] * 8
    with Pool(processes=1, maxtasksperchild=1) as pool:
        pids = pool.map(pid_of, range(4), chunksize=1)
    assert len(set(pids)) == 4


def test_close_join_and_terminate(shared_cluster):
    pool = Pool(processes=2)
    pending = pool.map_async(square, range(10))
    with pytest.raises(ValueError, match="close"):
        pool.join()
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.map(square, [1])
    pool.join(timeout=60)
    assert pending.get(timeout=1) == [x * x for x in range(10)]
    pool = Pool(processes=1)
    stuck = pool.apply_async(time.sleep, (60,))
    pool.terminate()
    with pytest.raises(ValueError, match="terminated"):
        stuck.get(timeout=10)
    with pytest.raises(ValueError, match="not running"):
        pool.apply(square, (1,))
    with pytest.raises(ValueError):
        Pool(processes=0)
    with pytest.raises(NotImplementedError, match="context"):
        Pool(processes=1, context=object())


def test_a_pool_spreads_over_the_nodes_of_a_cluster():
    rayling.shutdown()  # (the module's local cluster, if an earlier test started it)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        rayling.init(address=cluster.address)

        def node(_):
            return rayling.get_runtime_context().get_node_id()

        with Pool() as pool:  # one process per CPU of the cluster: one per node
            nodes = set(pool.map(node, range(8), chunksize=1))
        assert nodes == {n["NodeID"] for n in rayling.nodes()}
    finally:
        rayling.shutdown()
        cluster.shutdown()
