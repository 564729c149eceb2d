"""Shared-memory segments that hold large objects: one POSIX shm segment per object.

A writer creates the segment (named by the node daemon, which accounts for capacity),
fills it and seals it by telling the daemon. Readers map it read-only, so NumPy arrays
built on it are read-only views with no copy. The daemon unlinks a segment when the last
ref to its object is gone; mappings that still exist stay valid until they are dropped,
which is what makes handing out zero-copy views safe.

Segments live in /dev/shm, which every local user can list and create names in. So a
segment's name ends in 64 random bits (another user sees the names that exist, never the
next one, and cannot pre-create it), every segment is mode 0600, a segment opened for
reading or writing must belong to this user, and cleaning up after a session removes only
this user's segments with that session's exact prefix.
"""

from __future__ import annotations

import mmap
import os
import re
import stat

try:
    import _posixshmem
except ImportError:  # pragma: no cover - every POSIX CPython has it
    _posixshmem = None

SESSION = re.compile(r"[0-9a-f]{8}")  # a session id: secrets.token_hex(4)


def segment_name(session: str) -> str:
    """A new segment's name: ``/rl<session>_<16 random hex digits>`` (28 characters;
    macOS allows 31)."""
    return f"/rl{session}_{os.urandom(8).hex()}"


class ForeignSegmentError(PermissionError):
    """A segment of ours by name belongs to another user: it was planted, never read."""


_OPEN_FLAGS = os.O_NONBLOCK  # (a FIFO planted under a segment's name must not block)
_HAS_DEV_SHM = os.path.isdir("/dev/shm")


def _own(fd: int, name: str) -> None:
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ForeignSegmentError(
            f"shared-memory segment {name} belongs to another user (or is not a segment); "
            f"rayling neither reads nor writes it")


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
    fd = _posixshmem.shm_open(name, os.O_RDWR | _OPEN_FLAGS, mode=0o600)
    _own(fd, name)
    try:
        return mmap.mmap(fd, max(size, 1), flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)


def open_readonly(name: str, size: int) -> mmap.mmap:
    """Map an existing segment read-only."""
    fd = _posixshmem.shm_open(name, os.O_RDONLY | _OPEN_FLAGS, mode=0o600)
    _own(fd, name)
    try:
        return mmap.mmap(fd, max(size, 1), prot=mmap.PROT_READ, flags=mmap.MAP_SHARED)
    finally:
        os.close(fd)


def unlink(name: str) -> None:
    """Remove a segment's name; memory is returned once no process maps it. Another
    user's segment (one planted under a name of ours) is left alone, even by root."""
    if _HAS_DEV_SHM:  # (elsewhere, macOS say, shm_unlink alone decides)
        try:
            if os.lstat(f"/dev/shm{name}").st_uid != os.geteuid():
                return
        except FileNotFoundError:
            return
    try:
        _posixshmem.shm_unlink(name)
    except (FileNotFoundError, PermissionError):
        pass


def unlink_session(session: str) -> int:
    """Remove every segment of this user left by ``session`` (after a crash). Returns how
    many. A malformed session id (an empty one would match every rayling segment) removes
    nothing."""
    if not isinstance(session, str) or not SESSION.fullmatch(session):
        return 0
    count = 0
    prefix = f"rl{session}_"
    uid = os.geteuid()
    try:
        entries = list(os.scandir("/dev/shm"))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.startswith(prefix):
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
            except FileNotFoundError:
                continue
            unlink("/" + entry.name)
            count += 1
    return count
