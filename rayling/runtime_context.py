"""``get_runtime_context()``: ids of the current job, node, worker, task and actor."""

from __future__ import annotations

from ._private import client as client_mod


class RuntimeContext:
    def _client(self):
        from .api import _client_or_auto_init

        return _client_or_auto_init()

    def get_job_id(self) -> str:
        from ._private.worker import context

        return (context.job_id or self._client().job_id).hex()

    def get_node_id(self) -> str:
        return self._client().node_id.hex()

    def get_worker_id(self) -> str:
        return self._client().worker_id.hex()

    def get_task_id(self) -> str | None:
        """The running task's id (48 hex characters); None on the driver."""
        from ._private.worker import context

        return context.task_id.hex() if context.task_id else None

    def get_actor_id(self) -> str | None:
        """The current actor's id (32 hex characters); None in a task or the driver."""
        from ._private.worker import context

        return context.actor_id.hex() if context.actor_id else None

    def get_task_name(self) -> str | None:
        from ._private.worker import context

        return context.name or None

    def get_assigned_resources(self) -> dict[str, float]:
        return {}

    def get_accelerator_ids(self) -> dict[str, list[str]]:
        from ._private.worker import context

        return {"GPU": [str(i) for i in context.gpu_ids]}

    @property
    def current_actor(self):
        """A handle to the actor this code runs in."""
        from ._private import ids
        from ._private.worker import context
        from .actor import ActorHandle, _method_table
        from .object_ref import ObjectRef

        if context.actor_id is None:
            raise RuntimeError("current_actor is only available inside an actor")
        executor_actor = _current_instance()
        cls = type(executor_actor)
        return ActorHandle(context.actor_id, cls.__name__, _method_table(cls), ObjectRef(
            ids.object_id_for_return(context.actor_creation_task, 0)))

    @property
    def namespace(self) -> str:
        return "default"

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return False

    def get(self) -> dict:
        return {"job_id": self.get_job_id(), "node_id": self.get_node_id(),
                "task_id": self.get_task_id(), "actor_id": self.get_actor_id()}

    @property
    def gcs_address(self) -> str:
        client = client_mod.current
        return client.node_ip if client else ""


def _current_instance():
    from ._private import worker

    return worker.executor.actor if worker.executor else None


_context = RuntimeContext()


def get_runtime_context() -> RuntimeContext:
    return _context
