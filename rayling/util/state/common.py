"""The records the state API returns (Ray's names: ``TaskState``, ``ActorState``...):
dataclasses whose fields are Ray's, which also read like dicts (``task["state"]``)."""

from __future__ import annotations

import dataclasses
from typing import Any


class StateRecord:
    """What every record can do besides being a dataclass: index like a dict."""

    def __getitem__(self, key: str) -> Any:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default) if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]

    def items(self) -> list[tuple[str, Any]]:
        return [(key, getattr(self, key)) for key in self.keys()]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self):
        return iter(self.keys())

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> StateRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


@dataclasses.dataclass
class TaskState(StateRecord):
    task_id: str
    attempt_number: int
    name: str
    state: str  # PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, RUNNING, FINISHED, FAILED
    job_id: str
    type: str  # NORMAL_TASK, ACTOR_CREATION_TASK, ACTOR_TASK
    func_or_class_name: str
    actor_id: str | None = None
    parent_task_id: str | None = None
    node_id: str | None = None
    worker_id: str | None = None
    worker_pid: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    required_resources: dict | None = None
    placement_group_id: str | None = None
    creation_time_ms: int | None = None
    start_time_ms: int | None = None
    end_time_ms: int | None = None
    language: str = "PYTHON"


@dataclasses.dataclass
class ActorState(StateRecord):
    actor_id: str
    class_name: str
    state: str  # PENDING_CREATION, ALIVE, RESTARTING, DEAD
    job_id: str
    name: str = ""
    ray_namespace: str = ""
    node_id: str | None = None
    pid: int | None = None
    is_detached: bool = False
    placement_group_id: str | None = None
    repr_name: str = ""
    num_restarts: int = 0
    death_cause: str | None = None
    required_resources: dict | None = None


@dataclasses.dataclass
class ObjectState(StateRecord):
    object_id: str
    object_size: int | None
    task_status: str
    reference_type: str  # LOCAL_REFERENCE, USED_BY_PENDING_TASK, PINNED_IN_MEMORY
    call_site: str
    type: str  # DRIVER or WORKER: who holds the reference
    pid: int | None
    ip: str


@dataclasses.dataclass
class NodeState(StateRecord):
    node_id: str
    node_ip: str
    is_head_node: bool
    state: str  # ALIVE or DEAD
    node_name: str
    resources_total: dict
    labels: dict


@dataclasses.dataclass
class WorkerState(StateRecord):
    worker_id: str | None
    is_alive: bool
    worker_type: str  # WORKER or DRIVER
    node_id: str | None
    ip: str | None
    pid: int | None
    actor_id: str | None = None
    task_id: str | None = None
    job_id: str | None = None


@dataclasses.dataclass
class JobState(StateRecord):
    job_id: str
    submission_id: str | None
    type: str  # DRIVER
    status: str  # RUNNING, SUCCEEDED
    entrypoint: str
    namespace: str
    driver_pid: int | None
    start_time: int | None
    end_time: int | None


@dataclasses.dataclass
class PlacementGroupState(StateRecord):
    placement_group_id: str
    name: str
    state: str  # PENDING, CREATED, REMOVED, RESCHEDULING
    strategy: str
    is_detached: bool
    bundles: list
