"""A first-in first-out queue shared by tasks and actors, kept in an async actor."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from typing import Any

from .. import api


class Empty(_stdlib_queue.Empty):
    """get_nowait() (or get with a timeout) found the queue empty."""


class Full(_stdlib_queue.Full):
    """put_nowait() (or put with a timeout) found the queue full."""


class _QueueActor:
    """The actor behind Queue: an asyncio.Queue, so blocked gets and puts wait cheaply."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except TimeoutError:
            raise Full(f"the queue stayed full for {timeout} s") from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise Empty(f"the queue stayed empty for {timeout} s") from None

    def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full("the queue is full") from None

    def put_nowait_batch(self, items: list) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            raise Full(f"cannot add {len(items)} items: only "
                       f"{self.maxsize - self.qsize()} places are free")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty("the queue is empty") from None

    def get_nowait_batch(self, num_items: int) -> list:
        if num_items > self.qsize():
            raise Empty(f"cannot take {num_items} items: the queue holds {self.qsize()}")
        return [self.queue.get_nowait() for _ in range(num_items)]


class Queue:
    """A queue usable from the driver, tasks and actors (pass it as an argument)."""

    def __init__(self, maxsize: int = 0, actor_options: dict | None = None) -> None:
        self.maxsize = maxsize
        self.actor = api.remote(**(actor_options or {}))(_QueueActor).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        return api.get(self.actor.qsize.remote())

    def qsize(self) -> int:
        return self.size()

    def empty(self) -> bool:
        return api.get(self.actor.empty.remote())

    def full(self) -> bool:
        return api.get(self.actor.full.remote())

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add ``item``; if the queue is full, wait (up to ``timeout``) or raise Full."""
        if not block:
            return self.put_nowait(item)
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        _unwrap(lambda: api.get(self.actor.put.remote(item, timeout)))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Take the oldest item; if there is none, wait (up to ``timeout``) or raise Empty."""
        if not block:
            return self.get_nowait()
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return _unwrap(lambda: api.get(self.actor.get.remote(timeout)))

    def put_nowait(self, item: Any) -> None:
        _unwrap(lambda: api.get(self.actor.put_nowait.remote(item)))

    def put_nowait_batch(self, items: list) -> None:
        _unwrap(lambda: api.get(self.actor.put_nowait_batch.remote(list(items))))

    def get_nowait(self) -> Any:
        return _unwrap(lambda: api.get(self.actor.get_nowait.remote()))

    def get_nowait_batch(self, num_items: int) -> list:
        return _unwrap(lambda: api.get(self.actor.get_nowait_batch.remote(num_items)))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        """End the queue's actor."""
        if self.actor is not None:
            api.kill(self.actor)
            self.actor = None


def _unwrap(call):
    """Raise Empty/Full themselves rather than the remote-error wrapper around them."""
    try:
        return call()
    except Empty as e:
        raise Empty(*e.cause.args if getattr(e, "cause", None) else e.args) from None
    except Full as e:
        raise Full(*e.cause.args if getattr(e, "cause", None) else e.args) from None
