"""A worker process: runs the tasks its node daemon sends, one at a time, in its main
thread, and sends each result back (inline, or written once to shared memory).

    daemon ──ExecuteTask──> reader thread ──queue──> main thread: load function,
                                                    resolve args, run, store results
    daemon <──TaskDone───────────────────────────── (errors stored as RayTaskError)

``cancel`` arrives as CancelTask: if that task is still running, the main thread gets
SIGINT, so the task sees KeyboardInterrupt and its result becomes TaskCancelledError.
Worker output (print, logging) goes to the driver as Logs, prefixed with the task name.
"""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
import traceback
from typing import Any

from .. import exceptions as exc
from . import client as client_mod, ids, protocol as p, serialization
from .task_args import unpack_args


class TaskContext:
    """What is running in this worker now (read by get_runtime_context and prints)."""

    task_id: bytes | None = None
    job_id: bytes | None = None
    name: str = ""
    gpu_ids: list[int] = []


context = TaskContext()


class _FunctionLoadError:
    def __init__(self, error: BaseException, tb: str) -> None:
        self.error = error
        self.tb = tb


class TaskOutput(io.TextIOBase):
    """A text stream that sends whole lines to the driver, tagged with the running task."""

    def __init__(self, client, is_err: bool) -> None:
        self._client = client
        self._is_err = is_err
        self._partial = ""
        self._pid = os.getpid()

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        text = self._partial + s
        if "\n" in text:
            *lines, self._partial = text.split("\n")
            name = context.name or "worker"
            out = self._client._log_lines
            for line in lines:
                out.append(p.LogLine(self._pid, name, line, self._is_err))
            self._client.wake_flusher()
        else:
            self._partial = text
        return len(s)

    def flush(self) -> None:
        if self._partial:
            self.write("\n")

    def isatty(self) -> bool:
        return False


class Executor:
    def __init__(self, client) -> None:
        self.client = client
        self.functions: dict[bytes, Any] = {}
        self._lock = threading.Lock()
        self._running: bytes | None = None
        self._main_thread = threading.main_thread().ident
        client.on_cancel = self.cancel

    def cancel(self, task_id: bytes) -> None:
        """Called from the reader thread: interrupt ``task_id`` if it is still running."""
        with self._lock:
            if self._running == task_id:
                signal.pthread_kill(self._main_thread, signal.SIGINT)

    def run_forever(self) -> None:
        tasks = self.client.tasks
        while True:
            try:
                msg = tasks.get()
                self.execute(msg)
            except KeyboardInterrupt:
                continue  # a cancel that arrived just as its task finished

    def _load(self, msg: p.ExecuteTask):
        fn = self.functions.get(msg.fid)
        if fn is None:
            if msg.function is None:
                raise exc.RaySystemError(f"worker has no code for function {msg.name}")
            try:
                fn = serialization.deserialize_inline(msg.function)
            except BaseException as e:  # noqa: BLE001 - reported as the task's error
                fn = _FunctionLoadError(e, traceback.format_exc())
            self.functions[msg.fid] = fn
        return fn

    def execute(self, msg: p.ExecuteTask) -> None:
        client = self.client
        keep: list = []
        try:
            try:
                fn = self._load(msg)
                if isinstance(fn, _FunctionLoadError):
                    raise exc.RayTaskError(
                        msg.name,
                        f"Failed to load the function on the worker:\n{fn.tb}",
                        fn.error,
                        os.getpid(),
                    )
                args, kwargs = unpack_args(client, msg.args, msg.deps)
                context.task_id = msg.task_id
                context.job_id = msg.job_id
                context.name = msg.name
                context.gpu_ids = msg.gpu_ids
                if msg.gpu_ids:
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, msg.gpu_ids))
                with self._lock:
                    self._running = msg.task_id
                try:
                    result = fn(*args, **kwargs)
                finally:
                    with self._lock:
                        self._running = None
                del args, kwargs
                values = _split_returns(result, msg.num_returns, msg.name)
                results = []
                for i, value in enumerate(values):
                    oid = ids.object_id_for_return(msg.task_id, i)
                    data, ser = client.store(oid, value, f"return value of {msg.name}")
                    keep.append(ser)
                    results.append(data)
            except KeyboardInterrupt:
                results = _error_results(
                    exc.TaskCancelledError(msg.task_id.hex()), msg.num_returns)
            except exc.RayTaskError as e:  # a failed dependency or nested task: pass it on
                results = _error_results(e, msg.num_returns)
            except BaseException as e:  # noqa: BLE001 - stored as the task's result
                results = _error_results(
                    exc.RayTaskError(msg.name, _format_tb(e), e, os.getpid()), msg.num_returns)
            _flush_output()
            client.send(p.TaskDone(msg.task_id, results))
        finally:
            context.task_id = None
            context.name = ""
            context.gpu_ids = []
            if msg.gpu_ids:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            del keep


def _split_returns(result: Any, num_returns: int, name: str) -> list:
    if num_returns == 1:
        return [result]
    if num_returns == 0:
        return []
    try:
        values = list(result)
    except TypeError:
        raise ValueError(
            f"Task {name} was declared with num_returns={num_returns} but returned a "
            f"{type(result).__name__}, which is not a sequence or generator of values."
        ) from None
    if len(values) != num_returns:
        raise ValueError(
            f"Task {name} was declared with num_returns={num_returns} but returned "
            f"{len(values)} values."
        )
    return values


def _format_tb(e: BaseException) -> str:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    # Drop the executor's own frame so the user sees their code first.
    if len(tb) > 2 and "rayling/_private/worker.py" in tb[1]:
        tb = tb[:1] + tb[2:]
    return "".join(tb)


def _error_results(error: BaseException, num_returns: int) -> list:
    try:
        blob = serialization.serialize(error).pickled
    except Exception:  # the user's exception cannot be pickled: keep its text
        if isinstance(error, exc.RayTaskError):
            fallback = exc.RayTaskError(
                error.function_name, error.traceback_str, None, error.pid)
        else:
            fallback = exc.RaySystemError(repr(error))
        blob = serialization.serialize(fallback).pickled
    return [p.ObjectData(inline=blob, error=True)] * max(num_returns, 0)


def _flush_output() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def main(socket_path: str) -> None:
    """Entry point of a freshly forked worker."""
    ids.reseed_after_fork()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client = client_mod.CoreClient(socket_path, os.environ.get("RAYLING_TOKEN", ""), "worker")
    client_mod.current = client
    os.environ["RAYLING_WORKER"] = "1"
    log_path = os.path.join(client.session_dir, "logs", f"worker-{os.getpid()}.out")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = TaskOutput(client, is_err=False)
    sys.stderr = TaskOutput(client, is_err=True)
    Executor(client).run_forever()
