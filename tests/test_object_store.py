"""The shared-memory object store: zero-copy reads, freeing, capacity."""

from __future__ import annotations

import os

import numpy as np
import pytest

import rayling as ray
from rayling import exceptions as exc
from rayling._private.object_directory import SPARE_MIN

from . import conftest
from .conftest import segments_of, wait_until

pytestmark = pytest.mark.timeout(120)

MB = 1024 * 1024


def stats() -> dict:
    from rayling.api import _object_store_stats

    return _object_store_stats()


def anonymous_bytes() -> int:
    """This process's private (anonymous) memory; pages of shared memory are not in it."""
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no Anonymous line in smaps_rollup")


def _session_bytes(session: str) -> int:
    """Memory the shared-memory segments of ``session`` take (this cluster's only: the
    machine's Shmem also counts whatever else runs beside the test)."""
    total = 0
    for name in segments_of([session]):
        try:
            total += os.stat(f"/dev/shm/{name}").st_blocks * 512
        except FileNotFoundError:
            pass
    return total


def test_large_array_is_a_read_only_view(ray_start):
    arr = np.arange(2 * MB, dtype=np.float64)
    ref = ray.put(arr)
    out = ray.get(ref)
    assert out.flags.writeable is False
    np.testing.assert_array_equal(out, arr)
    again = ray.get(ref)
    assert again.__array_interface__["data"][0] == out.__array_interface__["data"][0]


def test_large_task_results_and_arguments(ray_start):
    @ray.remote
    def make(n):
        return np.ones(n, dtype=np.uint8)

    @ray.remote
    def total(a):
        return int(a.sum()), a.flags.writeable

    big = make.remote(20 * MB)
    assert ray.get(total.remote(big)) == (20 * MB, False)
    assert ray.get(total.remote(np.ones(3 * MB, dtype=np.uint8))) == (3 * MB, False)


def test_four_workers_share_one_copy():
    ray.init(num_cpus=4)
    try:
        size = 500 * MB
        session = conftest.started_sessions[-1]
        ref = ray.put(np.ones(size, dtype=np.uint8))

        @ray.remote
        def touch(a):
            checksum = int(a[:: 4096].sum())  # touch every page of the array
            return checksum, anonymous_bytes()

        results = ray.get([touch.remote(ref) for _ in range(4)])
        grown = _session_bytes(session)
        assert all(r[0] == size // 4096 for r in results)
        # One copy in shared memory, not five; no worker made a private copy.
        assert grown < 1.3 * size, f"shared memory grew by {grown / MB:.0f} MB"
        assert all(r[1] < 100 * MB for r in results), [r[1] // MB for r in results]
        del ref
    finally:
        ray.shutdown()


def test_put_and_drop_keeps_store_flat():
    ray.init(num_cpus=1, object_store_memory=160 * MB)
    try:
        session = conftest.started_sessions[-1]
        arr = np.zeros(50 * MB, dtype=np.uint8)
        peak = 0
        for _ in range(200):
            ref = ray.put(arr)
            del ref
            peak = max(peak, _session_bytes(session))
        assert peak <= 160 * MB, f"shared memory peaked at {peak / MB:.0f} MB"
        wait_until(lambda: stats()["store_used"] == 0,
                   what="the store to be empty")
    finally:
        ray.shutdown()


def test_store_full_raises_with_sizes():
    ray.init(num_cpus=1, object_store_memory=100 * MB)
    try:
        keep = ray.put(np.zeros(60 * MB, dtype=np.uint8))
        with pytest.raises(exc.ObjectStoreFullError, match=r"[0-9,]+ bytes"):
            ray.put(np.zeros(60 * MB, dtype=np.uint8))
        del keep
        # Freed space is usable again.
        wait_until(lambda: stats()["store_used"] == 0, what="free space")
        ray.put(np.zeros(60 * MB, dtype=np.uint8))
    finally:
        ray.shutdown()


def test_refs_in_objects_keep_their_targets_alive(ray_start):
    inner = ray.put(np.ones(MB, dtype=np.uint8))
    outer = ray.put([inner])
    inner_id = inner.hex()
    del inner
    (got,) = ray.get(outer)
    assert got.hex() == inner_id
    assert ray.get(got).sum() == MB


def test_results_of_dropped_refs_are_freed(ray_start):
    @ray.remote
    def make():
        return np.ones(5 * MB, dtype=np.uint8)

    refs = [make.remote() for _ in range(6)]
    ray.get(refs)
    assert stats()["segments"] == 6
    del refs
    wait_until(lambda: stats()["segments"] == 0, what="segments to be freed")


def test_a_put_whose_segment_cannot_be_made_returns_its_room(ray_start):
    """The store thinks there is room, the operating system refuses the segment (as a
    container's small /dev/shm does): the put raises ObjectStoreFullError saying why,
    and the room it reserved is free again. Here the refusal is a file-size limit."""
    import resource
    import signal

    before = stats()["store_used"]
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 * MB, hard))
    try:
        # 4 MB: under the size the daemon keeps a preallocated spare segment for (a put
        # that gets the spare grows no file, so the limit would not refuse it).
        assert 4 * MB < SPARE_MIN
        for _ in range(3):
            with pytest.raises(exc.ObjectStoreFullError, match="/dev/shm"):
                ray.put(np.zeros(4 * MB // 8))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    wait_until(lambda: stats()["store_used"] == before, what="the reserved room to be freed")
    assert ray.get(ray.put(np.ones(40 * MB // 8)))[0] == 1  # and the store still works


def test_a_store_larger_than_dev_shm_is_cut_to_fit(capfd):
    import shutil

    room = shutil.disk_usage("/dev/shm").free
    ray.init(num_cpus=1, object_store_memory=room * 4)
    try:
        assert stats()["store_capacity"] <= room
        assert "/dev/shm can hold only" in capfd.readouterr().err
    finally:
        ray.shutdown()
