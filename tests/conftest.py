"""Shared fixtures: local clusters, and a check that tests leave nothing behind."""

from __future__ import annotations

import os
import time

import psutil
import pytest

import rayling


def _leftovers() -> tuple[list[str], list[str]]:
    procs = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if "rayling" in " ".join(proc.cmdline()):
                procs.append(f"{proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            pass
    try:
        segments = [f for f in os.listdir("/dev/shm") if f.startswith("rl")]
    except FileNotFoundError:
        segments = []
    return procs, segments


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
    """After each test module: no rayling process or shared-memory segment remains."""
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
