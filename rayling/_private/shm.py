"""Shared-memory segments that hold large objects: one POSIX shm segment per object.

A writer creates the segment (named by the node daemon, which accounts for capacity),
fills it and seals it by telling the daemon. Readers map it read-only, so NumPy arrays
built on it are read-only views with no copy. The daemon unlinks a segment when the last
ref to its object is gone; mappings that still exist stay valid until they are dropped,
which is what makes handing out zero-copy views safe.
"""

from __future__ import annotations

import mmap
import os

try:
    import _posixshmem
except ImportError:  # pragma: no cover - every POSIX CPython has it
    _posixshmem = None



def segment_name(session: str, number: int) -> str:
    """Short names: macOS limits shm names to 31 characters."""
    return f"/rl{session}_{number:x}"


def _allocate(fd: int, size: int) -> None:
    os.ftruncate(fd, max(size, 1))
    if hasattr(os, "posix_fallocate"):
        # Allocating every page in one call is faster than faulting them in one by one.
        os.posix_fallocate(fd, 0, max(size, 1))


def create(name: str, size: int) -> mmap.mmap:
    """Create segment ``name`` of ``size`` bytes and map it for writing."""
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        _allocate(fd, size)
        return mmap.mmap(fd, max(size, 1), flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)


def create_unallocated(name: str, size: int) -> int:
    """Create segment ``name`` of ``size`` bytes, pages not allocated yet; returns its fd
    (the caller allocates and fills parts, see allocate_range, then closes it)."""
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    os.ftruncate(fd, max(size, 1))
    return fd


def allocate_range(fd: int, offset: int, length: int) -> None:
    if hasattr(os, "posix_fallocate") and length:
        os.posix_fallocate(fd, offset, length)


def preallocate(name: str, size: int) -> None:
    """Create segment ``name`` with all its pages allocated, for a writer to fill later."""
    fd = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        _allocate(fd, size)
    finally:
        os.close(fd)


def open_for_write(name: str, size: int) -> mmap.mmap:
    """Map a preallocated segment for writing."""
    fd = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
    try:
        return mmap.mmap(fd, max(size, 1), flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)


def open_readonly(name: str, size: int) -> mmap.mmap:
    """Map an existing segment read-only."""
    fd = _posixshmem.shm_open(name, os.O_RDONLY, mode=0o600)
    try:
        return mmap.mmap(fd, max(size, 1), prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)


def unlink(name: str) -> None:
    """Remove a segment's name; memory is returned once no process maps it."""
    try:
        _posixshmem.shm_unlink(name)
    except FileNotFoundError:
        pass


def unlink_session(session: str) -> int:
    """Remove every segment left by ``session`` (after a crash). Returns how many."""
    count = 0
    prefix = f"rl{session}_"
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        return 0
    for entry in names:
        if entry.startswith(prefix):
            unlink("/" + entry)
            count += 1
    return count
