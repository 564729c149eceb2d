"""rayling.util.joblib: joblib's Parallel on the cluster, as Ray's register_ray()."""

from __future__ import annotations

import os

import pytest

import rayling

joblib = pytest.importorskip("joblib")

pytestmark = pytest.mark.timeout(120)


def negate(x):
    return -x


def pid(_):
    return os.getpid()


def assigned(_):
    return rayling.get_runtime_context().get_assigned_resources()


def fails(x):
    if x == 2:
        raise KeyError("two")
    return x


def test_parallel_runs_on_the_cluster(shared_cluster):
    from rayling.util.joblib import register_ray

    register_ray()
    with joblib.parallel_backend("ray"):
        assert joblib.Parallel()(joblib.delayed(negate)(i + 1) for i in range(5)) == [
            -1, -2, -3, -4, -5]
        pids = joblib.Parallel(n_jobs=-1)(joblib.delayed(pid)(i) for i in range(200))
    assert os.getpid() not in pids and 1 <= len(set(pids)) <= 2  # the cluster's 2 CPUs
    with joblib.parallel_backend("rayling", n_jobs=2):
        with pytest.raises(KeyError, match="two"):
            joblib.Parallel()(joblib.delayed(fails)(i) for i in range(5))
    # Ray-style actor options reach the pool's processes.
    with joblib.parallel_backend("ray", n_jobs=2, ray_remote_args={"num_cpus": 0.5}):
        held = joblib.Parallel()(joblib.delayed(assigned)(i) for i in range(3))
    assert held == [{"CPU": 0.5}] * 3
