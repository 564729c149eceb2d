"""``multiprocessing.Pool`` on rayling actors: the same API (``map``, ``imap``,
``imap_unordered``, ``starmap``, ``apply`` and their ``_async`` forms, ``close``,
``join``, ``terminate``, a context manager), with the pool's processes spread over the
cluster.

    Pool(processes=N) ──> N actors, each ran ``initializer(*initargs)`` once
    map(fn, items)    ──> chunks of items; a dispatcher thread keeps every actor busy
                          (at most two chunks in flight each), so a slow chunk does not
                          hold back the others, and fills each job's results in order

An exception raised by the function fails its job: ``get`` raises it (the user's own
type, with the remote traceback).
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import TimeoutError  # noqa: A004 - the exception Pool users catch
from typing import Any

from .. import api

__all__ = ["Pool", "TimeoutError"]

IN_FLIGHT_PER_ACTOR = 2  # chunks sent to one actor ahead of its results


class _PoolActor:
    """One process of the pool."""

    def __init__(self, initializer, initargs) -> None:
        if initializer is not None:
            initializer(*initargs)

    def run(self, fn, chunk: list, how: str) -> list:
        if how == "star":
            return [fn(*args) for args in chunk]
        if how == "apply":
            return [fn(*args, **kwargs) for args, kwargs in chunk]
        return [fn(item) for item in chunk]


class AsyncResult:
    """The result of an ``*_async`` call; also what ``imap`` iterates over."""

    def __init__(self, chunks: int, single: bool, callback, error_callback) -> None:
        self._values: list = [None] * chunks
        self._filled = [False] * chunks
        self._finished_order: collections.deque = collections.deque()  # chunk indexes
        self._missing = chunks
        self._single = single
        self._callback = callback
        self._error_callback = error_callback
        self._error: BaseException | None = None
        self._failed_chunk = chunks  # the first chunk that failed (imap raises there)
        self._done = threading.Event()
        self._changed = threading.Condition()
        if chunks == 0:
            self._finish()

    # -- filled by the pool's dispatcher thread -------------------------------------------
    def _set(self, index: int, values: list) -> None:
        with self._changed:
            self._values[index] = values  # (kept after a failure: imap yields them)
            self._filled[index] = True
            self._finished_order.append(index)
            self._missing -= 1
            last = self._missing == 0 and self._error is None
            self._changed.notify_all()
        if last:
            self._finish()

    def _fail(self, error: BaseException, index: int = 0) -> None:
        """Chunk ``index`` failed (0 with terminate: all that did not finish)."""
        with self._changed:
            self._failed_chunk = min(self._failed_chunk, index)
            if self._error is not None:
                return
            self._error = error
            self._changed.notify_all()
        self._finish()

    def _finish(self) -> None:
        self._done.set()
        if self._error is None and self._callback is not None:
            self._callback(self._value())
        elif self._error is not None and self._error_callback is not None:
            self._error_callback(self._error)

    def _value(self):
        values = list(itertools.chain.from_iterable(self._values))
        return values[0] if self._single else values

    # -- multiprocessing's AsyncResult ----------------------------------------------------
    def ready(self) -> bool:
        return self._done.is_set()

    def successful(self) -> bool:
        if not self.ready():
            raise ValueError("the result is not ready yet")
        return self._error is None

    def wait(self, timeout: float | None = None) -> None:
        self._done.wait(timeout)

    def get(self, timeout: float | None = None):
        if not self._done.wait(timeout):
            raise TimeoutError(f"the result was not ready within {timeout} s")
        if self._error is not None:
            raise self._error
        return self._value()

    # -- imap and imap_unordered ------------------------------------------------------
    def _iterate(self, ordered: bool) -> Iterator:
        """Each chunk's values as chunks finish: in order, or in the order they finish.
        An error is raised where its chunk would have been."""
        for position in range(len(self._values)):
            with self._changed:
                while True:
                    if ordered and self._filled[position]:
                        index = position
                        break
                    if not ordered and self._finished_order:
                        index = self._finished_order.popleft()
                        break
                    if self._error is not None and (
                            not ordered or position >= self._failed_chunk):
                        raise self._error
                    self._changed.wait()
            yield from self._values[index]


class Pool:
    """``multiprocessing.Pool`` on rayling actors (one per process; ``processes``
    defaults to the cluster's CPUs). ``ray_remote_args`` are the actors' options
    (``num_cpus`` defaults to 1); ``maxtasksperchild`` replaces an actor after it ran
    that many chunks."""

    def __init__(self, processes: int | None = None, initializer: Callable | None = None,
                 initargs: Iterable = (), maxtasksperchild: int | None = None,
                 context: Any = None, ray_address: str | None = None,
                 ray_remote_args: dict | None = None) -> None:
        if context is not None:
            raise NotImplementedError(
                "Pool(context=...) is not supported by rayling: its processes are actors, "
                "started as rayling starts workers; leave it out")
        if not api.is_initialized():
            api.init(address=ray_address)
        if processes is None:
            processes = max(1, int(api.cluster_resources().get("CPU", 1)))
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
        if maxtasksperchild is not None and (not isinstance(maxtasksperchild, int)
                                             or maxtasksperchild < 1):
            raise ValueError(f"maxtasksperchild must be an integer >= 1 or None, got "
                             f"{maxtasksperchild!r}")
        self._actor_class = api.remote(**{"num_cpus": 1, **(ray_remote_args or {})})(
            _PoolActor)
        self._init = (initializer, tuple(initargs or ()))
        self._max_tasks = maxtasksperchild
        self._actors = [self._new_actor() for _ in range(processes)]
        self._ran = [0] * processes  # chunks each actor ran
        self._busy = [0] * processes  # chunks each actor has in flight
        self._queue: collections.deque = collections.deque()  # (job, index, fn, chunk, how)
        self._inflight: dict = {}  # ref -> (job, chunk index, actor index)
        self._lock = threading.Condition()
        self._state = "running"  # -> "closed" -> (joined) ; or "terminated"
        self._jobs: set = set()
        self._thread = threading.Thread(target=self._dispatch, name="rayling-pool",
                                        daemon=True)
        self._thread.start()

    def _new_actor(self):
        return self._actor_class.remote(*self._init)

    # -- submitting -------------------------------------------------------------------
    def _submit(self, fn: Callable, items: list, chunksize: int, how: str, single: bool,
                callback=None, error_callback=None) -> AsyncResult:
        if self._state != "running":
            raise ValueError("Pool not running")
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        chunks = [items[i:i + chunksize] for i in range(0, len(items), chunksize)]
        job = AsyncResult(len(chunks), single, callback, error_callback)
        if chunks:
            fn_ref = api.put(fn)  # pickled once for every chunk
            with self._lock:
                self._jobs.add(job)
                self._queue.extend((job, i, fn_ref, c, how) for i, c in enumerate(chunks))
                self._lock.notify_all()
        return job

    def _chunksize(self, items: list, chunksize: int | None) -> int:
        if chunksize is None:  # as multiprocessing: about four chunks per process
            chunksize, extra = divmod(len(items), len(self._actors) * 4)
            chunksize = max(1, chunksize + bool(extra))
        if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
            raise ValueError(f"chunksize must be an integer >= 1, got {chunksize!r}")
        return chunksize

    def apply(self, func: Callable, args: tuple = (), kwds: dict | None = None):
        return self.apply_async(func, args, kwds).get()

    def apply_async(self, func: Callable, args: tuple = (), kwds: dict | None = None,
                    callback=None, error_callback=None) -> AsyncResult:
        return self._submit(func, [(tuple(args), dict(kwds or {}))], 1, "apply", True,
                            callback, error_callback)

    def map(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        return self.map_async(func, iterable, chunksize).get()

    def map_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                  callback=None, error_callback=None) -> AsyncResult:
        items = list(iterable)
        return self._submit(func, items, self._chunksize(items, chunksize), "one", False,
                            callback, error_callback)

    def starmap(self, func: Callable, iterable: Iterable, chunksize: int | None = None) -> list:
        return self.starmap_async(func, iterable, chunksize).get()

    def starmap_async(self, func: Callable, iterable: Iterable, chunksize: int | None = None,
                      callback=None, error_callback=None) -> AsyncResult:
        items = [tuple(args) for args in iterable]
        return self._submit(func, items, self._chunksize(items, chunksize), "star", False,
                            callback, error_callback)

    def imap(self, func: Callable, iterable: Iterable, chunksize: int = 1) -> Iterator:
        job = self._submit(func, list(iterable), self._chunksize([], chunksize), "one",
                           False)
        return job._iterate(ordered=True)

    def imap_unordered(self, func: Callable, iterable: Iterable, chunksize: int = 1
                       ) -> Iterator:
        job = self._submit(func, list(iterable), self._chunksize([], chunksize), "one",
                           False)
        return job._iterate(ordered=False)

    # -- the dispatcher thread --------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._inflight and \
                        self._state not in ("terminated", "joining"):
                    self._lock.wait()
                if self._state == "terminated" or (self._state == "joining"
                                                   and not self._queue and not self._inflight):
                    return
                self._send_queued()
                refs = list(self._inflight)
            if not refs:
                continue
            ready, _ = api.wait(refs, num_returns=1, timeout=0.05)
            for ref in ready:
                self._collect(ref)

    def _send_queued(self) -> None:
        """Send queued chunks to actors with room (lock held)."""
        queue = self._queue
        while queue:
            free = [a for a in range(len(self._actors)) if self._room(a)]
            if not free:
                return
            actor = min(free, key=self._busy.__getitem__)
            job, index, fn_ref, chunk, how = queue.popleft()
            if job.ready():  # failed already: skip its other chunks
                continue
            ref = self._actors[actor].run.remote(fn_ref, chunk, how)
            self._busy[actor] += 1
            self._inflight[ref] = (job, index, actor)

    def _room(self, actor: int) -> bool:
        """Whether actor ``actor`` may take another chunk now."""
        busy = self._busy[actor]
        return busy < IN_FLIGHT_PER_ACTOR and (
            not self._max_tasks or self._ran[actor] + busy < self._max_tasks)

    def _collect(self, ref) -> None:
        with self._lock:
            job, index, actor = self._inflight.pop(ref)
            self._busy[actor] -= 1
            self._ran[actor] += 1
            if self._max_tasks and self._ran[actor] >= self._max_tasks and \
                    not self._busy[actor]:
                api.kill(self._actors[actor])
                self._actors[actor] = self._new_actor()
                self._ran[actor] = 0
        try:
            values = api.get(ref)
        except Exception as e:  # noqa: BLE001 - the job's failure, raised by its get
            job._fail(e, index)
        else:
            job._set(index, values)
        with self._lock:
            if job.ready():
                self._jobs.discard(job)
            self._lock.notify_all()

    # -- ending ---------------------------------------------------------------------------
    def close(self) -> None:
        """Take no more work; what was submitted still runs."""
        with self._lock:
            if self._state == "running":
                self._state = "closed"

    def join(self, timeout: float | None = None) -> None:
        """Wait for the submitted work to finish (after close() or terminate())."""
        with self._lock:
            if self._state == "running":
                raise ValueError("Pool is still running: call close() or terminate() first")
            if self._state == "closed":
                self._state = "joining"
                self._lock.notify_all()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._stop_actors()

    def terminate(self) -> None:
        """Stop now: unfinished work fails, the actors end."""
        with self._lock:
            self._state = "terminated"
            self._queue.clear()
            jobs, self._jobs = list(self._jobs), set()
            self._lock.notify_all()
        for job in jobs:
            job._fail(ValueError("the pool was terminated before this work finished"))
        self._thread.join(10)
        self._stop_actors()

    def _stop_actors(self) -> None:
        actors, self._actors = self._actors, []
        for actor in actors:
            try:
                api.kill(actor)
            except Exception:  # noqa: BLE001 - (the cluster may be gone already)
                pass

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc_info) -> None:
        self.terminate()
