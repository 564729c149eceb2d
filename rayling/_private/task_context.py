"""What runs in this process now: the current task or actor call, and the actor this
worker hosts.

The current call is a context variable, so each thread of a threaded actor and each
asyncio task of an async actor sees its own call (get_runtime_context(), the prefix of
printed lines). The actor a worker hosts is the same for all its calls and lasts for the
worker's life, so it is kept in plain module state.
"""

from __future__ import annotations

import contextvars
import re
from typing import Any

from .ids import JOB_ID_LEN
from .protocol import ExecuteTask

# The call running in this thread (or asyncio task): the ExecuteTask it came as.
_call: contextvars.ContextVar[ExecuteTask | None] = contextvars.ContextVar(
    "rayling_call", default=None)


class ActorExit(BaseException):
    """Raised by exit_actor() to end the actor after the current call."""


class HostedActor:
    """The actor this worker hosts (all None outside an actor's worker)."""

    env: dict[str, str] = {}  # its runtime_env env_vars
    actor_id: bytes | None = None
    creation_task: bytes | None = None
    instance: Any = None
    gpu_ids: list[int] = []  # the GPUs the actor keeps for its life
    name: str = ""  # its name, if it has one
    resources: dict[str, float] = {}  # what it holds for its life
    reconstructed = False  # a restart: its worker died before
    capture = False  # placed in a group whose tasks' children go there too


actor = HostedActor()
job_env: dict[str, str] = {}  # a driver's init(runtime_env={"env_vars": ...})
cancelled: set[bytes] = set()  # calls asked to cancel (this process's, kept for its life)


def current() -> ExecuteTask | None:
    """The call running here, or None (in the driver, or between calls)."""
    return _call.get()


def enter(call: ExecuteTask) -> contextvars.Token:
    return _call.set(call)


def leave(token: contextvars.Token) -> None:
    _call.reset(token)


def task_name() -> str:
    call = _call.get()
    return call.name if call is not None else ""


def assigned_resources() -> dict[str, float]:
    """What the running task holds, or the hosting actor's (empty elsewhere), by the
    names asked for (a placement group's renamed resources by their own names)."""
    call = _call.get()
    if actor.actor_id is not None:
        resources = actor.resources
    else:
        resources = call.resources if call is not None else {}
    assigned: dict[str, float] = {}
    for name, amount in resources.items():
        grouped = _GROUPED.fullmatch(name)
        if grouped is not None:
            if grouped.group(2) is not None or grouped.group(1) == "bundle":
                continue  # (a bundle's names come with the group-wide ones)
            name = grouped.group(1)
        assigned[name] = assigned.get(name, 0) + amount
    return assigned


_GROUPED = re.compile(r"(.+)_group_(\d+_)?[0-9a-f]{36}")  # (see placement_groups.py)


def current_job_id(default: bytes) -> bytes:
    """The job what is started here belongs to: the hosting actor's, the running task's,
    else ``default`` (a driver's own). A worker's client has no job of its own."""
    if actor.creation_task is not None:
        return actor.creation_task[-JOB_ID_LEN:]
    call = _call.get()
    return call.job_id if call is not None else default


def inherited_env() -> dict[str, str]:
    """The env_vars what is started from here runs with unless told otherwise: the
    job's (a driver), the running task's, or the hosting actor's."""
    if actor.actor_id is not None:
        return actor.env
    call = _call.get()
    return call.env if call is not None else job_env


def capturing_group() -> str | None:
    """The placement group (hex id) the tasks and actors started here go in by default:
    the running task's or the hosting actor's, if it was placed with capture."""
    if actor.actor_id is not None:
        if not actor.capture:
            return None
        resources = actor.resources
    else:
        call = _call.get()
        if call is None or not call.capture:
            return None
        resources = call.resources
    from .placement_groups import group_of

    return group_of(resources)


def is_cancelled() -> bool:
    call = _call.get()
    return call is not None and call.task_id in cancelled


def gpu_ids() -> list[int]:
    """GPU indices for the running call, or the hosting actor's (empty elsewhere)."""
    call = _call.get()
    if call is not None and call.gpu_ids:
        return list(call.gpu_ids)
    return list(actor.gpu_ids)
