"""ActorPool: spread calls over a fixed set of actors, one call per actor at a time."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .. import api


class ActorPool:
    """Run ``fn(actor, value)`` on whichever actor is free; collect results in submission
    order (``get_next``/``map``) or as they finish (``get_next_unordered``/``map_unordered``).
    """

    def __init__(self, actors: list) -> None:
        self._idle = list(actors)
        self._busy: dict[Any, tuple[int, Any]] = {}  # ref -> (submission index, actor)
        self._by_index: dict[int, Any] = {}  # submission index -> ref
        self._next_index = 0  # index of the next submission
        self._next_return = 0  # index get_next returns next
        self._waiting: list[tuple[Callable, Any]] = []  # submitted while every actor was busy

    def map(self, fn: Callable, values: Iterable) -> Iterable:
        """Results of ``fn(actor, v)`` for each value, in order."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable, values: Iterable) -> Iterable:
        """Results of ``fn(actor, v)`` for each value, as they finish."""
        for value in values:
            self.submit(fn, value)
        while self.has_next():
            yield self.get_next_unordered()

    def submit(self, fn: Callable, value: Any) -> None:
        """Call ``fn(actor, value)`` on a free actor, or as soon as one is free."""
        if not self._idle:
            self._waiting.append((fn, value))
            return
        actor = self._idle.pop()
        ref = fn(actor, value)
        self._busy[ref] = (self._next_index, actor)
        self._by_index[self._next_index] = ref
        self._next_index += 1

    def has_next(self) -> bool:
        return bool(self._busy)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False):
        """The next result in submission order."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return not in self._by_index:
            raise ValueError("get_next() cannot be used after get_next_unordered() "
                             "skipped past this result")
        ref = self._by_index[self._next_return]
        ready, _ = api.wait([ref], timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for the next result")
        del self._by_index[self._next_return]
        self._next_return += 1
        _, actor = self._busy.pop(ref)
        self._return_actor(actor)
        return api.get(ref)

    def get_next_unordered(self, timeout: float | None = None,
                           ignore_if_timedout: bool = False):
        """Whichever result finishes first."""
        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = api.wait(list(self._busy), num_returns=1, timeout=timeout)
        if not ready:
            if ignore_if_timedout:
                return None
            raise TimeoutError("Timed out waiting for a result")
        ref = ready[0]
        index, actor = self._busy.pop(ref)
        del self._by_index[index]
        if index == self._next_return:
            self._next_return += 1
            while self._next_return < self._next_index and self._next_return not in self._by_index:
                self._next_return += 1
        self._return_actor(actor)
        return api.get(ref)

    def _return_actor(self, actor: Any) -> None:
        self._idle.append(actor)
        if self._waiting:
            fn, value = self._waiting.pop(0)
            self.submit(fn, value)

    def has_free(self) -> bool:
        """Is an actor free (and no submission waiting for one)?"""
        return bool(self._idle) and not self._waiting

    def pop_idle(self):
        """Take a free actor out of the pool (None if none is free)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool."""
        busy = {a for _, a in self._busy.values()}
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to this pool")
        self._return_actor(actor)
