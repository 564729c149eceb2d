"""Identifiers, laid out with Ray's lengths so hex strings look the same to users.

    job id     4 bytes  ( 8 hex)
    actor id  16 bytes  (32 hex)
    task id   24 bytes  (48 hex) = 20 unique bytes + job id
    object id 28 bytes  (56 hex) = task id + 4-byte return index
    node id, worker id  28 bytes (56 hex)

Unique bytes come from a per-process random prefix plus a counter, so making an id costs
one integer increment and no system call.
"""

from __future__ import annotations

import itertools
import os

JOB_ID_LEN = 4
ACTOR_ID_LEN = 16
TASK_ID_LEN = 24
OBJECT_ID_LEN = 28
UNIQUE_ID_LEN = 28

_prefix = os.urandom(12)
_counter = itertools.count(1)


def reseed_after_fork() -> None:
    """Give a forked child its own id prefix so it never repeats its parent's ids."""
    global _prefix, _counter
    _prefix = os.urandom(12)
    _counter = itertools.count(1)


def random_unique_id() -> bytes:
    """A fresh 28-byte id (nodes, workers)."""
    return os.urandom(UNIQUE_ID_LEN)


def new_job_id() -> bytes:
    return os.urandom(JOB_ID_LEN)


def new_actor_id(job_id: bytes) -> bytes:
    """An actor id: 12 random bytes + the job id."""
    return os.urandom(ACTOR_ID_LEN - JOB_ID_LEN) + job_id


def new_task_id(job_id: bytes) -> bytes:
    """A task id: 12 prefix bytes + 8 counter bytes + the job id."""
    return _prefix + next(_counter).to_bytes(8, "little") + job_id


def object_id_for_return(task_id: bytes, index: int) -> bytes:
    """The id of a task's return value number ``index`` (0-based)."""
    return task_id + (index + 1).to_bytes(4, "little")


def new_put_object_id(job_id: bytes) -> bytes:
    """The id of an object made by ``put``: index 0 marks it as not a task return."""
    return new_task_id(job_id) + b"\x00\x00\x00\x00"


def task_id_of_object(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_LEN]


class _ID(bytes):
    """An id as users see it: raw bytes that print as Ray's id classes do (``hex()``,
    ``binary()``); ``ObjectRef.task_id()`` and the runtime context's properties give
    these."""

    def binary(self) -> bytes:
        return bytes(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hex()})"

    __str__ = __repr__


class JobID(_ID):
    pass


class NodeID(_ID):
    pass


class TaskID(_ID):
    pass


class ActorID(_ID):
    pass
