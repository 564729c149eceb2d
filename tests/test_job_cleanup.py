"""A job ends with its driver, and what a task or actor starts ends with it: on a cluster
that outlives its drivers, a driver that exits (normally, by Ctrl-C, or os._exit) leaves
no queued task, no running task and no actor of its own behind (detached actors aside);
an actor created inside an actor dies with it (Ray's actor_creator_failure.py);
cancel(recursive=True) cancels what the task started."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

import rayling as ray
from rayling._private import cluster_files
from rayling.cluster_utils import Cluster
from rayling.exceptions import ActorDiedError, TaskCancelledError

from .conftest import wait_until

pytestmark = pytest.mark.timeout(150)

DRIVER = """
    import os, signal, sys, time
    import rayling as ray
    ray.init(address={address!r}, namespace="jobs")

    @ray.remote(num_cpus=1)
    def hold(path):
        with open(path, "w") as f:
            f.write(str(os.getpid()))
        time.sleep(600)

    @ray.remote
    class Kept:
        def pid(self):
            return os.getpid()

    actor = Kept.remote()
    detached = Kept.options(name="survivor", lifetime="detached").remote()
    pids = ray.get([actor.pid.remote(), detached.pid.remote()])
    with open({actor_file!r}, "w") as f:
        f.write(str(pids[0]))
    running = [hold.remote({task_file!r} + str(i)) for i in range(2)]
    queued = [hold.remote("/dev/null") for _ in range(5)]
    while not all(os.path.exists({task_file!r} + str(i)) for i in range(2)):
        time.sleep(0.01)
    print("ready", flush=True)
    how = sys.argv[1]
    if how == "os_exit":
        os._exit(0)
    if how == "sigint":
        # As in a terminal (a shell starts background jobs with SIGINT ignored).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("waiting", flush=True)
        time.sleep(600)  # the test sends Ctrl-C
    # "exit": the script just ends
"""


@pytest.fixture(scope="module")
def lasting_cluster():
    """A head that outlives its drivers, as `rayling start` makes."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    yield cluster
    cluster.shutdown()


def _pid(path) -> int:
    with open(path) as f:
        return int(f.read())


@pytest.mark.parametrize("how", ["exit", "os_exit", "sigint"])
def test_a_job_ends_with_its_driver(lasting_cluster, tmp_path, how):
    script = tmp_path / "driver.py"
    actor_file, task_file = str(tmp_path / "actor"), str(tmp_path / "task")
    script.write_text(textwrap.dedent(DRIVER.format(
        address=lasting_cluster.address, actor_file=actor_file, task_file=task_file)))
    env = {**os.environ, "RAYLING_TOKEN": cluster_files.find_token(lasting_cluster.address)}
    driver = subprocess.Popen([sys.executable, str(script), how], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert driver.stdout.readline().strip() == "ready"
        if how == "sigint":
            assert driver.stdout.readline().strip() == "waiting"
            driver.send_signal(signal.SIGINT)
        driver.wait(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    gone = [_pid(actor_file), _pid(task_file + "0"), _pid(task_file + "1")]
    wait_until(lambda: not any(psutil.pid_exists(pid) for pid in gone), timeout=30,
               what="the job's actor and the workers running its tasks to end")
    ray.init(address=lasting_cluster.address, namespace="jobs")
    try:
        wait_until(lambda: ray.available_resources().get("CPU") == 2, timeout=30,
                   what="the job's CPUs to be free (its queued tasks dropped)")

        @ray.remote(num_cpus=2)
        def whole_node():
            return "ran"

        assert ray.get(whole_node.remote(), timeout=30) == "ran"
        survivor = ray.get_actor("survivor")
        assert ray.get(survivor.pid.remote(), timeout=30)
        ray.kill(survivor)
    finally:
        ray.shutdown()


@ray.remote
class Child:
    def pid(self):
        return os.getpid()


@ray.remote
class Parent:
    def make_children(self):
        self.child = Child.remote()
        self.detached = Child.options(name="detached_child", lifetime="detached").remote()
        return self.child, self.detached

    def pid(self):
        return os.getpid()


def test_an_actor_made_by_an_actor_dies_with_it(ray_start):
    parent = Parent.remote()
    child, detached = ray.get(parent.make_children.remote(), timeout=30)
    assert ray.get([child.pid.remote(), detached.pid.remote()], timeout=30)
    os.kill(ray.get(parent.pid.remote(), timeout=30), signal.SIGKILL)

    def child_died():
        try:
            ray.get(child.pid.remote(), timeout=30)
            return False
        except ActorDiedError:
            return True

    wait_until(child_died, timeout=30, what="the child actor to die with its creator")
    assert ray.get(detached.pid.remote(), timeout=30)


@ray.remote
def sleeper(path):
    with open(path, "w") as f:
        f.write(str(os.getpid()))
    import time

    time.sleep(600)


@ray.remote
def starts_a_sleeper(path):
    return ray.get(sleeper.remote(path))


def test_cancel_is_recursive(ray_start, tmp_path):
    path = str(tmp_path / "child")
    ref = starts_a_sleeper.remote(path)
    wait_until(lambda: os.path.exists(path) and os.path.getsize(path), timeout=30,
               what="the child task to start")
    ray.cancel(ref)
    with pytest.raises(TaskCancelledError):
        ray.get(ref, timeout=30)
    wait_until(lambda: ray.available_resources().get("CPU") == 2, timeout=30,
               what="the cancelled child task to give its CPU back")


def test_a_local_cluster_whose_driver_never_connects_stops():
    """A driver interrupted between starting its cluster and connecting to it (Ctrl-C in
    init()) must not leave the daemon running for ever."""
    from rayling._private.node import LocalNode

    node = LocalNode.start({"CPU": 1}, 50 * 1024 * 1024, driver_wait=1.0)
    try:
        wait_until(lambda: node.process.poll() is not None, timeout=30,
                   what="the daemon no driver connected to to stop")
    finally:
        node.stop()
