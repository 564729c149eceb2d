"""Cancellation, crashing workers, retries."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

import rayling as ray
from rayling import exceptions as exc

from .conftest import wait_until

pytestmark = pytest.mark.timeout(60)


def test_cancel_queued_task_never_runs(ray_start, tmp_path):
    marker = tmp_path / "ran"
    gate = tmp_path / "gate"

    @ray.remote
    def block(gate):
        while not os.path.exists(gate):
            time.sleep(0.01)

    @ray.remote
    def mark(path):
        open(path, "w").close()

    blockers = [block.remote(str(gate)) for _ in range(2)]
    victim = mark.remote(str(marker))
    ray.cancel(victim)
    gate.touch()
    ray.get(blockers)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(victim)
    assert not marker.exists()


def test_cancel_running_task_interrupts_it(ray_start, tmp_path):
    started = tmp_path / "started"
    interrupted = tmp_path / "interrupted"

    @ray.remote
    def long(started, interrupted):
        try:
            open(started, "w").close()
            time.sleep(60)
        except KeyboardInterrupt:
            open(interrupted, "w").close()
            raise

    ref = long.remote(str(started), str(interrupted))
    wait_until(started.exists, what="the task to start")
    ray.cancel(ref)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(ref, timeout=30)
    assert interrupted.exists()

    @ray.remote
    def still_works():
        return "ok"

    assert ray.get(still_works.remote()) == "ok"


def test_force_cancel_kills_the_worker(ray_start, tmp_path):
    pid_file = tmp_path / "pid"

    @ray.remote
    def stuck(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(0.1)

    ref = stuck.remote(str(pid_file))
    wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the task to start")
    pid = int(pid_file.read_text())
    ray.cancel(ref, force=True)
    with pytest.raises(exc.TaskCancelledError):
        ray.get(ref, timeout=30)
    wait_until(lambda: not psutil.pid_exists(pid), what="the worker to die")


@pytest.mark.parametrize("how", ["exit", "sigkill", "segfault"])
def test_crashed_worker_task_is_retried(ray_start, tmp_path, how):
    attempts = tmp_path / "attempts"

    @ray.remote(max_retries=3)
    def flaky(path, how):
        with open(path, "a") as f:
            f.write("x")
        if len(open(path).read()) < 3:
            if how == "exit":
                os._exit(1)
            elif how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            else:
                import ctypes

                ctypes.string_at(0)  # segmentation fault
        return "survived"

    assert ray.get(flaky.remote(str(attempts), how)) == "survived"
    assert attempts.read_text() == "xxx"


def test_crash_past_max_retries_raises_worker_crashed(ray_start):
    @ray.remote(max_retries=1)
    def always_dies():
        os._exit(3)

    with pytest.raises(exc.WorkerCrashedError, match="always_dies"):
        ray.get(always_dies.remote())

    @ray.remote
    def fine():
        return 1

    assert ray.get(fine.remote()) == 1


def test_application_errors_are_not_retried(ray_start, tmp_path):
    attempts = tmp_path / "attempts"

    @ray.remote(max_retries=3)
    def fails(path):
        with open(path, "a") as f:
            f.write("x")
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        ray.get(fails.remote(str(attempts)))
    assert attempts.read_text() == "x"
