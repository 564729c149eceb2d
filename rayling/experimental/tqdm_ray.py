"""Progress bars from inside tasks, drawn on the driver's terminal.

In a task, ``tqdm(iterable, desc=..., total=...)`` does not draw anything itself: it sends
its state (a few times a second, and when it closes) to the driver with the task's output.
The driver keeps one real tqdm bar per task-side bar, stacked one per line. Used outside
any task, it simply draws like tqdm.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from .._private import client as client_mod, protocol as p
from .._private.progress import BarManager


class tqdm:  # noqa: N801 - the name users import
    def __init__(
        self,
        iterable=None,
        desc: str | None = None,
        total: int | None = None,
        unit: str = "it",
        position: int | None = None,
        flush_interval_s: float = 0.1,
        **kwargs: Any,
    ) -> None:
        self.iterable = iterable
        if total is None and iterable is not None:
            try:
                total = len(iterable)
            except TypeError:
                total = None
        self.total = total
        self.desc = desc or ""
        self.unit = unit
        self.n = 0
        self._uuid = uuid.uuid4().hex
        self._interval = flush_interval_s
        self._last_sent = 0.0
        self._closed = False
        self._send()

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> tqdm:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._last_sent >= self._interval:
            self._send()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        if refresh:
            self._send()

    def refresh(self) -> None:
        self._send()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send()

    def _state(self) -> p.ProgressBar:
        total = None if self.total is None else float(self.total)
        return p.ProgressBar(os.getpid(), self._uuid, str(self.desc), total, float(self.n),
                             str(self.unit), self._closed)

    def _send(self) -> None:
        self._last_sent = time.monotonic()
        client = client_mod.current
        if client is not None and client.is_worker:
            client.queue_output(self._state())
        else:
            _local_manager().update(self._state())


_manager: BarManager | None = None


def _local_manager() -> BarManager:
    global _manager
    if _manager is None:
        _manager = BarManager()
    return _manager


def safe_print(*args, **kwargs) -> None:
    """Print without breaking progress bars (Ray's tqdm_ray.safe_print)."""
    print(*args, **kwargs)
