"""Errors raised by rayling, with Ray's names so ``except ray.exceptions.X`` keeps working."""

from __future__ import annotations


class RayError(Exception):
    """Base of every rayling error."""


class RayTaskError(RayError):
    """A task raised. ``get`` raises an instance that is also of the user's exception type
    (see :meth:`as_instanceof_cause`), so ``except ValueError`` catches a remote ValueError.
    """

    def __init__(
        self,
        function_name: str = "",
        traceback_str: str = "",
        cause: BaseException | None = None,
        pid: int | None = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.pid = pid
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.function_name}()" + (f" (pid={self.pid})" if self.pid else "")
        return f"{type(self.cause).__name__ if self.cause else 'Error'} in {where}:\n" + (
            self.traceback_str.rstrip()
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):
        return (
            _rebuild_task_error,
            (self.function_name, self.traceback_str, self.cause, self.pid),
        )

    def as_instanceof_cause(self) -> RayTaskError:
        """This error as an instance of both RayTaskError and the cause's own class."""
        cause = self.cause
        if cause is None or isinstance(cause, RayTaskError):
            return self
        cause_cls = type(cause)
        if not isinstance(cause, Exception):
            return self
        try:
            dual = _dual_class(cause_cls)
            err = dual.__new__(dual)
            err.__dict__.update(getattr(cause, "__dict__", {}))
            err.args = cause.args
        except TypeError:  # classes with incompatible layouts (e.g. some C exceptions)
            return self
        err.function_name = self.function_name
        err.traceback_str = self.traceback_str
        err.cause = cause
        err.pid = self.pid
        err.__cause__ = cause
        return err


_dual_classes: dict[type, type] = {}


def _dual_class(cause_cls: type) -> type:
    dual = _dual_classes.get(cause_cls)
    if dual is None:
        dual = type(
            f"RayTaskError({cause_cls.__name__})",
            (RayTaskError, cause_cls),
            {
                "__str__": RayTaskError.__str__,
                "__reduce__": RayTaskError.__reduce__,
                "__module__": __name__,
            },
        )
        _dual_classes[cause_cls] = dual
    return dual


def _rebuild_task_error(function_name, traceback_str, cause, pid):
    return RayTaskError(function_name, traceback_str, cause, pid)


class GetTimeoutError(RayError, TimeoutError):
    """``get`` or ``wait`` did not finish within its timeout."""


class TaskCancelledError(RayError):
    """The task was cancelled with ``cancel`` before it finished."""

    def __init__(self, task_id: str | None = None, message: str | None = None) -> None:
        self.task_id = task_id
        super().__init__(message or f"Task {task_id} was cancelled.")

    def __reduce__(self):
        return (TaskCancelledError, (self.task_id, str(self)))


class TaskUnschedulableError(RayError):
    """The task can never run: the node it must run on is gone."""


class TaskPlacementGroupRemoved(RayError):
    """The placement group the task was to run in was removed."""


class WorkerCrashedError(RayError):
    """The worker process running the task died."""


class ObjectStoreFullError(RayError):
    """The node's shared-memory object store has no room for the object."""


class ObjectLostError(RayError):
    """Every copy of the object is gone (its node died or it was freed)."""


class ObjectFreedError(ObjectLostError):
    """The object was freed while a ref was still in use."""


class OwnerDiedError(ObjectLostError):
    """The process that owned the object died."""


class RayActorError(RayError):
    """The actor died or could not be created."""


class ActorDiedError(RayActorError):
    """The actor's process died; pending and later calls raise this."""


class ActorUnavailableError(RayActorError):
    """The actor is restarting and cannot take calls now."""


class RaySystemError(RayError):
    """rayling itself failed; the message says which part."""


class NodeDiedError(RayError):
    """The node running the task died."""


class OutOfMemoryError(RayError):
    """The node ran out of memory running the task."""


class ObjectReconstructionFailedError(ObjectLostError):
    """A lost object could not be rebuilt."""


class PendingCallsLimitExceeded(RayError):
    """Too many calls are waiting on one actor."""


class CrossLanguageError(RayError):
    """Not supported by rayling; here for name compatibility."""


class RuntimeEnvSetupError(RayError):
    """The task's runtime environment could not be set up."""


class LocalRayletDiedError(RayError):
    """The local node daemon died."""


class AsyncioActorExit(RayError):
    """Raised inside an async actor to exit it."""


__all__ = [
    "RayError",
    "RayTaskError",
    "GetTimeoutError",
    "TaskCancelledError",
    "TaskUnschedulableError",
    "TaskPlacementGroupRemoved",
    "WorkerCrashedError",
    "ObjectStoreFullError",
    "ObjectLostError",
    "ObjectFreedError",
    "OwnerDiedError",
    "RayActorError",
    "ActorDiedError",
    "ActorUnavailableError",
    "RaySystemError",
    "NodeDiedError",
    "OutOfMemoryError",
    "ObjectReconstructionFailedError",
    "PendingCallsLimitExceeded",
    "CrossLanguageError",
    "RuntimeEnvSetupError",
    "LocalRayletDiedError",
    "AsyncioActorExit",
]
