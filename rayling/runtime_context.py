"""``get_runtime_context()``: ids of the current job, node, worker, task and actor.

Inside threaded and async actors each call sees its own task (the current call is a
context variable, see ``rayling._private.task_context``).
"""

from __future__ import annotations

from ._private import client as client_mod, ids, session, task_context
from ._private.ids import ActorID, JobID, NodeID, TaskID
from ._private.object_ref import ObjectRef
from .actor import ActorHandle, _method_table


class RuntimeContext:
    @staticmethod
    def _client():
        return session.client_or_start()

    def get_job_id(self) -> str:
        call = task_context.current()
        return (call.job_id if call is not None else self._client().job_id).hex()

    def get_node_id(self) -> str:
        return self._client().node_id.hex()

    def get_worker_id(self) -> str:
        return self._client().worker_id.hex()

    def get_task_id(self) -> str | None:
        """The running task's id (48 hex characters); None on the driver."""
        call = task_context.current()
        return call.task_id.hex() if call is not None else None

    def get_actor_id(self) -> str | None:
        """The current actor's id (32 hex characters); None in a task or the driver."""
        actor_id = task_context.actor.actor_id
        return actor_id.hex() if actor_id else None

    def get_task_name(self) -> str | None:
        return task_context.task_name() or None

    def get_task_function_name(self) -> str | None:
        return task_context.task_name() or None

    def get_actor_name(self) -> str | None:
        """The current actor's name; None outside an actor, "" for an unnamed one."""
        if task_context.actor.actor_id is None:
            return None
        return task_context.actor.name

    def get_assigned_resources(self) -> dict[str, float]:
        """The resources the current task (or actor, for its life) was given."""
        return task_context.assigned_resources()

    def get_placement_group_id(self) -> str | None:
        """The hex id of the placement group the task or actor was placed in, or None."""
        from ._private.placement_groups import group_of

        if task_context.actor.actor_id is not None:
            return group_of(task_context.actor.resources)
        call = task_context.current()
        return group_of(call.resources) if call is not None else None

    def is_canceled(self) -> bool:
        """Whether the running task or actor call was asked to cancel (for code that
        catches the interruption, or an async call that shields itself)."""
        return task_context.is_cancelled()

    # Ray's deprecated id properties: id objects (``.hex()`` gives the string form).
    @property
    def job_id(self) -> JobID:
        return JobID(bytes.fromhex(self.get_job_id()))

    @property
    def node_id(self) -> NodeID:
        return NodeID(self._client().node_id)

    @property
    def task_id(self) -> TaskID | None:
        task = self.get_task_id()
        return TaskID(bytes.fromhex(task)) if task else None

    @property
    def actor_id(self) -> ActorID | None:
        actor = self.get_actor_id()
        return ActorID(bytes.fromhex(actor)) if actor else None

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        return {"GPU": [str(i) for i in task_context.gpu_ids()]}

    @property
    def current_actor(self):
        """A handle to the actor this code runs in."""
        actor = task_context.actor
        if actor.actor_id is None:
            raise RuntimeError("current_actor is only available inside an actor")
        cls = type(actor.instance)
        return ActorHandle(actor.actor_id, cls.__name__, _method_table(cls), ObjectRef(
            ids.object_id_for_return(actor.creation_task, 0)))

    @property
    def namespace(self) -> str:
        """The namespace of this job: init(namespace=...)'s, or its anonymous one."""
        return session.current_namespace()

    @property
    def was_current_actor_reconstructed(self) -> bool:
        """True in an actor that was restarted after its worker died."""
        return task_context.actor.reconstructed

    def get(self) -> dict:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "task_id": self.get_task_id(), "actor_id": self.get_actor_id()}

    @property
    def gcs_address(self) -> str:
        client = client_mod.current
        return client.node_ip if client else ""


_context = RuntimeContext()


def get_runtime_context() -> RuntimeContext:
    return _context
