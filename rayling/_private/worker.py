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

import functools
import inspect
import io
import os
import signal
import sys
import threading
import traceback
from asyncio import CancelledError as AsyncCancelledError
from concurrent.futures import CancelledError
from typing import Any

from .. import exceptions as exc
from . import client as client_mod, ids, protocol as p, serialization, task_context
from .log_files import ACTOR_MARKER, TASK_MARKER, escape
from .task_args import unpack_args
from .task_context import ActorExit
from .worker_generators import GeneratorExecution


class _FunctionLoadError:
    def __init__(self, error: BaseException, tb: str) -> None:
        self.error = error
        self.tb = tb


class TaskOutput(io.TextIOBase):
    """A text stream that sends whole lines to the driver, tagged with the running task,
    and writes them to the worker's log file (``fd``), each task's after a marker line
    (log_files.TASK_MARKER) so `rayling logs` can show one task's output."""

    _file_lock = threading.Lock()  # (stdout and stderr share the file and the marker)
    _marked: bytes | None = None  # the task whose lines the file is writing now

    def __init__(self, client, is_err: bool, fd: int) -> None:
        self._client = client
        self._is_err = is_err
        self._fd = fd
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
            call = task_context.current()
            name = call.name if call is not None else "worker"
            queue = self._client.queue_output
            for line in lines:
                queue(p.LogLine(self._pid, name, line, self._is_err))
            self._to_file(call, lines)
        else:
            self._partial = text
        return len(s)

    @staticmethod
    def mark_actor(actor_id: bytes, fd: int = 1) -> None:
        """Note in the log file that what follows is actor ``actor_id``'s."""
        with TaskOutput._file_lock:
            TaskOutput._marked = None
            try:
                os.write(fd, f"{ACTOR_MARKER}{actor_id.hex()}\n".encode())
            except OSError:
                pass

    def _to_file(self, call, lines: list[str]) -> None:
        data = "".join(escape(line) + "\n" for line in lines).encode(errors="replace")
        task_id = call.task_id if call is not None else None
        with TaskOutput._file_lock:
            if task_id != TaskOutput._marked:
                TaskOutput._marked = task_id
                name = call.name.replace("\n", " ") if call is not None else ""
                marker = f"{TASK_MARKER}{task_id.hex() if task_id else ''}:{name}\n"
                data = marker.encode() + data
            try:
                os.write(self._fd, data)
            except OSError:  # (a full disk: the driver still gets the lines)
                pass

    def flush(self) -> None:
        if self._partial:
            self.write("\n")

    def isatty(self) -> bool:
        return False


class Executor(GeneratorExecution):
    """Runs tasks, or, once a creation task has run here, the calls of one actor."""

    def __init__(self, client) -> None:
        self.client = client
        self.functions: dict[bytes, Any] = {}
        self._lock = threading.Lock()
        self._running: bytes | None = None
        self._main_thread = threading.main_thread().ident
        self._cancelled: set[bytes] = set()  # calls cancelled before they started
        self._async_calls: dict[bytes, Any] = {}  # running async actor calls
        self.actor: Any = None
        self._groups: dict[str, str] = {}  # an actor's method -> its concurrency group
        self._pools: dict[str, Any] | None = None  # a threaded actor's thread pool per group
        self._loops: dict[str, tuple] | None = None  # an async actor's (event loop,
        # semaphore) per concurrency group ("": the default group)
        self._calls: dict[bytes, int] = {}  # function id -> tasks of it run (max_calls)
        self._retry_types: dict[bytes, tuple | None] = {}  # retry_on -> exception types
        self._consumed: dict[bytes, int] = {}  # paced stream -> values its caller took
        self._failed: set[bytes] = set()  # calls that raised, until their TaskDone goes
        self._consumption = threading.Condition()
        client.on_cancel = self.cancel
        client.on_consumed = self._taken

    def cancel(self, task_id: bytes) -> None:
        """Called from the reader thread: interrupt ``task_id`` if it is still running."""
        task_context.cancelled.add(task_id)
        with self._consumption:  # (a threaded actor's paced stream looks for it)
            self._consumption.notify_all()
        with self._lock:
            if self._running == task_id:
                signal.pthread_kill(self._main_thread, signal.SIGINT)
                return
            future = self._async_calls.get(task_id)
            if future is not None:
                future.cancel()
                return
            self._cancelled.add(task_id)  # a pipelined call that has not started yet

    def run_forever(self) -> None:
        tasks = self.client.tasks
        while True:
            try:
                msg = tasks.get()
                if self._pools is not None:
                    pool = self._pools.get(self._group_of(msg))
                    if pool is None:
                        self._reject(msg)
                    else:
                        pool.submit(self.execute, msg)
                elif self._loops is not None:
                    self._start_async(msg)
                elif msg.concurrency_group and self.actor is not None:
                    self._reject(msg)  # (a plain actor has no groups of its own)
                else:
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

    def _callable(self, msg: p.ExecuteTask):
        if msg.actor_id is not None and msg.method != "__init__":
            builtin = _BUILTIN_METHODS.get(msg.method)
            if builtin is not None:
                return functools.partial(builtin, self.actor)
            return getattr(self.actor, msg.method)
        fn = self._load(msg)
        if isinstance(fn, _FunctionLoadError):
            raise exc.RayTaskError(
                msg.name, f"Failed to load the function on the worker:\n{fn.tb}", fn.error,
                os.getpid())
        return fn

    @staticmethod
    def _enter(msg: p.ExecuteTask):
        """Make ``msg`` the current call of this thread (or asyncio task)."""
        if msg.gpu_ids:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, msg.gpu_ids))
        return task_context.enter(msg)

    def _store_results(self, msg: p.ExecuteTask, result: Any, keep: list) -> list:
        if msg.generator == "dynamic":
            result = self._dynamic(msg, result)
        values, failure = _split_returns(result, msg.num_returns, msg.name)
        results = []
        for i, value in enumerate(values):
            oid = ids.object_id_for_return(msg.task_id, i)
            data, ser = self.client.store(oid, value, f"return value of {msg.name}")
            keep.append(ser)
            results.append(data)
        if failure is not None:  # a generator raised: the values it gave first stand
            results += self._error_results(msg, failure)[len(values):]
        return results

    def execute(self, msg: p.ExecuteTask) -> None:
        keep: list = []
        actor_exit = retryable = ran = False
        on_main = threading.get_ident() == self._main_thread
        entered = restore_env = None
        try:
            try:
                if msg.function is not None:
                    # The daemon sends a function's code only once to each worker: keep it
                    # even when this task was cancelled before it started.
                    self._load(msg)
                if msg.task_id in self._cancelled:
                    self._cancelled.discard(msg.task_id)
                    raise KeyboardInterrupt
                fn = self._callable(msg)
                args, kwargs = unpack_args(self.client, msg.args, msg.deps, msg.dep_ids)
                entered = self._enter(msg)
                if msg.method == "__init__":
                    TaskOutput.mark_actor(msg.actor_id)  # (its constructor's lines too)
                    task_context.actor.actor_id = msg.actor_id
                    task_context.actor.creation_task = msg.task_id
                    task_context.actor.gpu_ids = msg.gpu_ids
                    if msg.actor is not None:
                        task_context.actor.name = msg.actor.name
                        task_context.actor.resources = msg.actor.resources
                        task_context.actor.reconstructed = msg.actor.reconstructed
                        task_context.actor.capture = msg.actor.capture
                if on_main:
                    with self._lock:
                        self._running = msg.task_id
                if msg.env:
                    restore_env = _set_env(msg.env, msg.method == "__init__")
                ran = True
                try:
                    result = fn(*args, **kwargs)
                    del args, kwargs
                    if msg.generator == "streaming":  # (runs as it is iterated)
                        result = self._stream(msg, result)
                finally:
                    if on_main:
                        with self._lock:
                            self._running = None
                if msg.method == "__init__":
                    self._become_actor(msg, result)
                    result = None
                if msg.generator == "streaming":
                    results = result
                else:
                    results = self._store_results(msg, result, keep)
            except ActorExit:
                actor_exit = True
                results = _exit_results(msg)
            except BaseException as e:  # noqa: BLE001 - stored as the task's result
                if isinstance(e, SystemExit) and msg.actor_id is not None:
                    _exit_process(self.client, e)
                results = self._error_results(msg, e)
                retryable = ran and msg.retry_exceptions and self._may_retry(msg, e)
            _flush_output()
            self._reply(msg, results, actor_exit, keep, retryable)
        finally:
            if restore_env is not None:
                restore_env()
            if entered is not None:
                task_context.leave(entered)
            if self.actor is None and msg.gpu_ids:  # an actor keeps its GPUs between calls
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            del keep

    def _may_retry(self, msg: p.ExecuteTask, error: BaseException) -> bool:
        """Whether the task's retry_exceptions names ``error`` (not a cancellation)."""
        if isinstance(error, KeyboardInterrupt | CancelledError | AsyncCancelledError):
            return False
        if not msg.retry_on:
            return True
        types = self._retry_types.get(msg.retry_on, ...)
        if types is ...:
            try:
                types = serialization.deserialize_inline(msg.retry_on)
            except Exception:  # noqa: BLE001 - types that do not load here retry nothing
                types = None
            self._retry_types[msg.retry_on] = types
        if isinstance(error, exc.RayTaskError) and error.cause is not None:
            error = error.cause  # (a nested task's exception, raised by get)
        return types is not None and isinstance(error, types)

    def _retires(self, msg: p.ExecuteTask) -> bool:
        """Whether this task was the last its function's max_calls lets this worker run."""
        if not msg.max_calls or msg.actor_id is not None:
            return False
        count = self._calls[msg.fid] = self._calls.get(msg.fid, 0) + 1
        return count >= msg.max_calls

    def _reply(self, msg: p.ExecuteTask, results: list, actor_exit: bool, keep: list,
               retryable: bool = False) -> None:
        """Send the results: straight to the caller of a direct call (then tell the daemon,
        which keeps the books), otherwise to the daemon, which passes them on. ``keep``
        holds the refs inside the results until the daemon's TaskDone is queued (a ref
        the caller asks for before the daemon has read our PutObject waits for it there:
        see object_table's early refs)."""
        reply_to = msg.owner_path
        if reply_to and not actor_exit and self._pools is not None:
            # Posted: with threads replying at once, one writes for all, and each call's
            # TaskDone is queued once its reply's fate is known.
            self.client.peers.post(
                reply_to, self._ready(msg, results),
                lambda error: self._tell_daemon(msg, results, error is None, keep))
            return
        direct = bool(reply_to) and self.client.peers.send(reply_to, self._ready(msg, results))
        if actor_exit:
            # Run nothing more: calls already sent here fail as the actor's death says.
            self.client.send(p.TaskDone(msg.task_id, results, True, direct))
            _flush_output()
            os._exit(0)
        if self._retires(msg):
            self.client.send(p.TaskDone(msg.task_id, results, False, direct, retryable,
                                        retiring=True, failed=self._has_failed(msg)))
            _flush_output()
            os._exit(0)
        self._tell_daemon(msg, results, direct, keep, retryable)

    def _has_failed(self, msg: p.ExecuteTask) -> bool:
        """Whether the call raised (once: the mark goes with its TaskDone)."""
        if msg.task_id in self._failed:
            self._failed.discard(msg.task_id)
            return True
        return False

    def _ready(self, msg: p.ExecuteTask, results: list) -> list:
        return [p.ObjectReady(ids.object_id_for_return(msg.task_id, i),
                              self._for_caller(msg, data)) for i, data in enumerate(results)]

    def _tell_daemon(self, msg: p.ExecuteTask, results: list, direct: bool, keep: list,
                     retryable: bool = False) -> None:
        done = p.TaskDone(msg.task_id, results, False, direct, retryable,
                          failed=self._has_failed(msg))
        try:
            if direct:
                self.client.send_later(done)  # the caller has the results: bookkeeping
            else:
                self.client.send(done)
        except exc.RayError:  # the daemon is gone; this worker is ending
            pass
        # (``keep`` goes with this call: the refs in the results may be dropped now.)

    def _for_caller(self, msg: p.ExecuteTask, data: p.ObjectData) -> p.ObjectData:
        """A result as a caller on another node can use it: a large one is only named
        there, and the caller asks its daemon for a copy when it reads it."""
        if data.shm is None or not msg.owner_node or msg.owner_node == self.client.node_id:
            return data
        return p.ObjectData(size=data.size, error=data.error, contained=data.contained,
                            where=self.client.node_id)

    def _error_results(self, msg: p.ExecuteTask, e: BaseException) -> list:
        """The results of a call that raised ``e`` (and the mark that it failed, which
        its TaskDone carries: its results may not show it)."""
        self._failed.add(msg.task_id)
        if isinstance(e, KeyboardInterrupt | CancelledError | AsyncCancelledError):
            return _error_results(exc.TaskCancelledError(msg.task_id.hex()), msg.num_returns)
        if isinstance(e, exc.RayTaskError):  # a failed dependency or nested task: pass it on
            return _error_results(e, msg.num_returns)
        return _error_results(
            exc.RayTaskError(msg.name, _format_tb(e), e, os.getpid()), msg.num_returns)

    # -- actors -----------------------------------------------------------------------
    def _become_actor(self, msg: p.ExecuteTask, instance: Any) -> None:
        """The creation task built ``instance``: keep it, and set up the concurrency the
        actor asked for. A plain actor runs its calls one by one in the main thread; a
        threaded one (max_concurrency > 1 or concurrency groups) in a thread pool per
        group; an async one on an event loop per group, each in its own thread, with at
        most its group's limit of calls at once."""
        self.actor = task_context.actor.instance = instance
        limits = {"": msg.max_concurrency, **(msg.actor.concurrency_groups if msg.actor
                                               else {})}
        for name, member in inspect.getmembers(type(instance)):
            group = getattr(member, "__rayling_method_options__", {}).get("concurrency_group")
            if group:
                self._groups[name] = group
        if msg.is_async:
            import asyncio

            self._loops = {}
            for group, limit in limits.items():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, daemon=True,
                                 name=f"rayling-actor-loop-{group or 'default'}").start()
                self._loops[group] = (loop, asyncio.Semaphore(limit))
        elif len(limits) > 1 or msg.max_concurrency > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pools = {group: ThreadPoolExecutor(
                limit, thread_name_prefix=f"rayling-actor-{group or 'default'}")
                for group, limit in limits.items()}

    def _group_of(self, msg: p.ExecuteTask) -> str:
        """The concurrency group an actor call runs in ("": the default group)."""
        return msg.concurrency_group or self._groups.get(msg.method, "")

    def _reject(self, msg: p.ExecuteTask) -> None:
        """Fail a call that names a concurrency group the actor does not have."""
        known = ", ".join(sorted(g for g in (self._pools or self._loops or {}) if g))
        error = ValueError(f"{msg.name} was called with concurrency_group="
                           f"{self._group_of(msg)!r}, which the actor does not define "
                           f"(its groups: {known or 'none'})")
        self._reply(msg, self._error_results(msg, error), False, [])

    def _start_async(self, msg: p.ExecuteTask) -> None:
        import asyncio

        group = self._loops.get(self._group_of(msg))
        if group is None:
            self._reject(msg)
            return
        loop, limit = group
        future = asyncio.run_coroutine_threadsafe(self._execute_async(msg, limit), loop)
        with self._lock:
            if msg.task_id in self._cancelled:
                self._cancelled.discard(msg.task_id)
                future.cancel()
            else:
                self._async_calls[msg.task_id] = future
        future.add_done_callback(lambda _f: self._async_calls.pop(msg.task_id, None))

    async def _execute_async(self, msg: p.ExecuteTask, limit) -> None:
        keep: list = []
        actor_exit = False
        try:
            async with limit:
                fn = self._callable(msg)
                args, kwargs = unpack_args(self.client, msg.args, msg.deps, msg.dep_ids)
                self._enter(msg)  # (this asyncio task's context only: no need to leave)
                result = fn(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                del args, kwargs
                if msg.generator == "streaming":
                    results = await self._stream_async(msg, result)
                else:
                    results = self._store_results(msg, result, keep)
        except ActorExit:
            actor_exit = True
            results = _exit_results(msg)
        except BaseException as e:  # noqa: BLE001 - stored as the call's result
            if isinstance(e, SystemExit):
                _exit_process(self.client, e)
            results = self._error_results(msg, e)
        _flush_output()
        self._reply(msg, results, actor_exit, keep)


def _set_env(env: dict[str, str], for_life: bool):
    """Set a task's runtime_env env_vars; returns what puts the old values back (None
    for an actor's constructor: its worker keeps them for life)."""
    if for_life:
        task_context.actor.env = dict(env)
        os.environ.update(env)
        return None
    old = {name: os.environ.get(name) for name in env}
    os.environ.update(env)

    def restore() -> None:
        for name, value in old.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return restore


def _exit_process(client, e: SystemExit) -> None:
    """sys.exit() in an actor ends its process, as in Ray: the actor died (it restarts
    while max_restarts allows; its calls fail with ActorDiedError or are retried). What
    it printed and queued first still goes out."""
    _flush_output()
    try:
        client.send()
    except Exception:  # noqa: BLE001 - the daemon is gone: exit all the same
        pass
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    os._exit(code)


def _terminate(instance) -> None:
    raise ActorExit()


# Methods every actor has (see rayling.actor.BUILTIN_METHODS): called with the instance.
_BUILTIN_METHODS = {
    "__ray_ready__": lambda instance: True,
    "__ray_terminate__": _terminate,
    "__ray_call__": lambda instance, fn, *args, **kwargs: fn(instance, *args, **kwargs),
}


def _exit_results(msg: p.ExecuteTask) -> list:
    return _error_results(exc.ActorDiedError(
        f"The actor exited: {msg.name} called exit_actor()."), msg.num_returns)


def _split_returns(result: Any, num_returns: int, name: str
                   ) -> tuple[list, Exception | None]:
    """The ``num_returns`` values of a result, and the error that cut a generator short
    (the values it yielded before it raised are kept)."""
    if num_returns == 1:
        return [result], None
    if num_returns == 0:
        return [], None
    try:
        iterator = iter(result)
    except TypeError:
        raise ValueError(
            f"Task {name} was declared with num_returns={num_returns} but returned a "
            f"{type(result).__name__}, which is not a sequence or generator of values."
        ) from None
    values = []
    try:
        for value in iterator:
            values.append(value)
    except Exception as e:
        if len(values) < num_returns:
            return values, e
        if len(values) == num_returns:  # as in Ray: the values stand, the error is logged
            print(f"Unhandled error in {name} after it gave all {num_returns} values:\n"
                  f"{_format_tb(e)}", file=sys.stderr)
            return values, None
        raise
    if len(values) != num_returns:
        raise ValueError(
            f"Task {name} was declared with num_returns={num_returns} but returned "
            f"{len(values)} values."
        )
    return values, None


def _format_tb(e: BaseException) -> str:
    tb = traceback.format_exception(type(e), e, e.__traceback__)
    # Drop the executor's own frame so the user sees their code first.
    if len(tb) > 2 and "rayling/_private/worker.py" in tb[1]:
        tb = tb[:1] + tb[2:]
    return "".join(tb)


def _error_results(error: BaseException, num_returns: int) -> list:
    try:
        blob = serialization.serialize(error).pickled
        # An exception whose __init__ takes other arguments than it passes to
        # Exception.__init__ pickles but cannot be rebuilt: find out here, not in the
        # caller, whose get would fail with a bare TypeError.
        serialization.deserialize_inline(blob)
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
    client = client_mod.CoreClient(socket_path, os.environ.get("RAYLING_TOKEN", ""), "worker",
                                   listen_ip=os.environ.get("RAYLING_LISTEN_IP", ""))
    client_mod.current = client

    def interrupt(signum, frame) -> None:
        """A cancel: KeyboardInterrupt in the running task, but never in the middle of
        writing a batch to the daemon (it comes right after; see CoreClient.send)."""
        if client.main_sending:
            client.interrupt_pending = True
            return
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    os.environ["RAYLING_WORKER"] = "1"
    session_dir = os.environ.get("RAYLING_SESSION_DIR") or client.session_dir
    log_path = os.path.join(session_dir, "logs", f"worker-{os.getpid()}.out")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = TaskOutput(client, is_err=False, fd=1)
    sys.stderr = TaskOutput(client, is_err=True, fd=1)
    Executor(client).run_forever()
