"""Shared fixtures: local clusters, and a check that tests leave nothing behind.

The test session runs in its own namespace, so it neither sees nor counts what anything
else on the machine does with rayling:

* TMPDIR (``os.environ`` and ``tempfile.tempdir``) points at a directory made for this
  pytest run (removed at its end). rayling looks for ``rayling start``'s cluster record
  (``$TMPDIR/rayling-<uid>/current_cluster.json``) and makes session directories there,
  so ``init()`` without an address never attaches to a cluster another process started,
  and what the suite makes lands in that directory. pytest's ``tmp_path`` directories go
  there too (unless ``--basetemp`` is given), with paths short enough for unix sockets.
* The variables that would send ``init()`` to some other cluster (RAYLING_ADDRESS,
  RAY_ADDRESS, RAYLING_TOKEN, SLURM_JOB_ID, XDG_RUNTIME_DIR) are removed for the run.
* New clusters serve no dashboard unless a test asks (RAYLING_INCLUDE_DASHBOARD=0): its
  process would cost every test's cluster a start-up on two cores, and its port.
* The leftover check counts only shared-memory segments of the clusters this process
  started (every ``LocalNode.start``, which ``init()`` and ``cluster_utils`` use, is
  recorded) and only this process's child processes.
"""

from __future__ import annotations

import functools
import os
import shutil
import tempfile
import time

import psutil
import pytest

import rayling
from rayling._private.node import LocalNode

# What the machine had before this run changed it (test_suite_isolation plays another
# user of rayling on the machine with these).
MACHINE_TMPDIR = tempfile.gettempdir()
_HIDDEN = ("TMPDIR", "RAYLING_ADDRESS", "RAY_ADDRESS", "RAYLING_TOKEN", "SLURM_JOB_ID",
           "XDG_RUNTIME_DIR")
MACHINE_ENV: dict[str, str | None] = {key: os.environ.get(key) for key in _HIDDEN}
_machine_tempfile_tempdir = tempfile.tempdir

run_dir: str | None = None  # this run's TMPDIR
started_sessions: list[str] = []  # the session of every node daemon this process started
_original_start = LocalNode.__dict__["start"]


@functools.wraps(_original_start.__func__)
def _recording_start(cls, *args, **kwargs):
    node = _original_start.__func__(cls, *args, **kwargs)
    started_sessions.append(node.session)
    return node


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config):
    global run_dir
    # Short: rayling puts unix sockets in it, and past 60 characters it uses /tmp instead.
    base = MACHINE_TMPDIR if len(MACHINE_TMPDIR) <= 40 else "/tmp"
    run_dir = tempfile.mkdtemp(prefix="rlt-", dir=base)
    os.environ["TMPDIR"] = run_dir
    tempfile.tempdir = run_dir
    for key in _HIDDEN[1:]:
        os.environ.pop(key, None)
    os.environ["RAYLING_INCLUDE_DASHBOARD"] = "0"
    if config.option.basetemp is None:
        config.option.basetemp = os.path.join(run_dir, "t")
    LocalNode.start = classmethod(_recording_start)


def pytest_unconfigure(config):
    if rayling.is_initialized():
        rayling.shutdown()
    LocalNode.start = _original_start
    for key, value in MACHINE_ENV.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    tempfile.tempdir = _machine_tempfile_tempdir
    if run_dir is not None:
        shutil.rmtree(run_dir, ignore_errors=True)


def segments_of(sessions) -> list[str]:
    """Shared-memory segments (``/dev/shm/rl<session>_<n>``) of ``sessions``."""
    prefixes = tuple(f"rl{session}_" for session in sessions)
    if not prefixes:
        return []
    try:
        return [f for f in os.listdir("/dev/shm") if f.startswith(prefixes)]
    except FileNotFoundError:
        return []


def _leftovers() -> tuple[list[str], list[str]]:
    """This process's rayling child processes, and segments of the clusters it started."""
    procs = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "rayling" in " ".join(proc.cmdline()):
                procs.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            pass
    return procs, segments_of(started_sessions)


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it is truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def barrier(directory: str, parties: int, timeout: float = 30.0) -> bool:
    """Arrive at a file-system barrier in ``directory``: True once ``parties`` callers
    (tasks on any node of this machine) have arrived, False after ``timeout``.

    For tasks that must be running at the same time: unlike waiting on an actor with
    get/wait, it does not lend the task's CPUs to other tasks while it waits.
    """
    open(os.path.join(directory, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
    deadline = time.monotonic() + timeout
    while len(os.listdir(directory)) < parties:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def ray_start():
    """A fresh 2-CPU local cluster for one test."""
    rayling.init(num_cpus=2)
    yield rayling
    rayling.shutdown()


@pytest.fixture(scope="module")
def shared_cluster():
    """One 2-CPU cluster shared by the tests of a module (for quick, independent tests)."""
    rayling.init(num_cpus=2)
    yield rayling
    rayling.shutdown()


@pytest.fixture(autouse=True, scope="module")
def no_leftovers():
    """After each test module: no rayling process this one started remains, and no
    shared-memory segment of a cluster it started."""
    yield
    if rayling.is_initialized():
        rayling.shutdown()
    deadline = time.monotonic() + 10
    while True:
        procs, segments = _leftovers()
        if (not procs and not segments) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not procs, f"rayling processes left behind: {procs}"
    assert not segments, f"shared-memory segments left behind: {segments}"
