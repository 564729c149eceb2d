"""Task options that change what happens, as in Ray: ``retry_exceptions`` (True, or the
exception types to retry) spends ``max_retries`` on exceptions the task raises;
``max_calls`` makes a worker exit after running a function that many times."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import rayling

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


def _attempts(path) -> int:
    try:
        with open(path) as f:
            return len(f.read())
    except FileNotFoundError:
        return 0


@rayling.remote
def flaky(path: str, failures: int, error: type = ValueError):
    """Fails ``failures`` times (counted in a file, as a task that ran would be), then
    returns the attempt number."""
    with open(path, "a") as f:
        f.write("x")
    attempt = _attempts(path)
    if attempt <= failures:
        raise error(f"attempt {attempt} fails")
    return attempt


def test_retry_exceptions_true_retries_any_exception_up_to_max_retries(shared_cluster,
                                                                      tmp_path):
    path = str(tmp_path / "a")
    assert rayling.get(flaky.options(retry_exceptions=True).remote(path, 2)) == 3
    path = str(tmp_path / "b")
    with pytest.raises(ValueError, match="attempt 3 fails"):
        rayling.get(flaky.options(retry_exceptions=True, max_retries=2).remote(path, 9))
    assert _attempts(path) == 3  # the first run and two retries
    path = str(tmp_path / "c")
    with pytest.raises(ValueError, match="attempt 1 fails"):  # by default: no retry
        rayling.get(flaky.remote(path, 1))
    assert _attempts(path) == 1


def test_retry_exceptions_with_types_retries_only_those(shared_cluster, tmp_path):
    retry_value_errors = flaky.options(retry_exceptions=[KeyError, ValueError])
    path = str(tmp_path / "a")
    assert rayling.get(retry_value_errors.remote(path, 2)) == 3
    path = str(tmp_path / "b")
    with pytest.raises(TypeError):
        rayling.get(retry_value_errors.remote(path, 2, TypeError))
    assert _attempts(path) == 1
    # A subclass of a named type is retried too.
    path = str(tmp_path / "c")
    assert rayling.get(retry_value_errors.remote(path, 1, UnicodeError)) == 2


@rayling.remote
def fails_inside(path: str):
    """Re-raises (through get) a nested task's ValueError the first time."""
    return rayling.get(flaky.remote(path, 1))


def test_an_exception_from_a_nested_task_counts_as_its_own_type(shared_cluster, tmp_path):
    path = str(tmp_path / "a")
    outer = fails_inside.options(retry_exceptions=[ValueError])
    assert rayling.get(outer.remote(path)) == 2


def test_a_cancelled_task_is_not_retried(shared_cluster, tmp_path):
    @rayling.remote(retry_exceptions=True)
    def slow(path):
        with open(path, "a") as f:
            f.write("x")
        time.sleep(30)

    path = str(tmp_path / "a")
    ref = slow.remote(path)
    wait_until(lambda: _attempts(path) == 1, timeout=20, what="the task to start")
    rayling.cancel(ref)
    with pytest.raises(rayling.exceptions.TaskCancelledError):
        rayling.get(ref, timeout=20)
    assert _attempts(path) == 1


def test_actor_methods_refuse_retry_exceptions_they_would_ignore(shared_cluster):
    @rayling.remote
    class A:
        def f(self):
            return 1

    with pytest.raises(NotImplementedError, match="retry_exceptions"):
        A.remote().f.options(retry_exceptions=True)


@rayling.remote
def pid():
    return os.getpid()


def test_max_calls_gives_each_call_budget_a_fresh_worker(shared_cluster):
    # Sequential calls: a worker that ran its max_calls exits, and no call is lost or
    # retried because of it (max_retries=0 would turn a lost call into an error).
    once = pid.options(max_calls=1, max_retries=0)
    pids = [rayling.get(once.remote()) for _ in range(6)]
    assert len(set(pids)) == 6
    twice = pid.options(max_calls=2, max_retries=0)
    pids = [rayling.get(twice.remote()) for _ in range(6)]
    assert len(set(pids)) >= 3 and all(pids.count(p) <= 2 for p in pids)
    # Many at once: every one runs exactly once, on workers that each ran at most one.
    pids = rayling.get([once.remote() for _ in range(30)], timeout=60)
    assert len(set(pids)) == 30
    wait_until(lambda: not any(_running(p) for p in pids), timeout=20,
               what="workers to exit after max_calls")


def _running(pid_: int) -> bool:
    try:
        return psutil.Process(pid_).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
