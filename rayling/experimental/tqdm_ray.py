"""Progress bars from inside tasks, drawn on the driver's terminal.

In a task, ``tqdm(iterable, desc=..., total=...)`` does not draw anything itself: it sends
its state (a few times a second, and when it closes) to the driver with the task's output.
The driver keeps one real tqdm bar per task-side bar, stacked one per line. Used outside
any task, it simply draws like tqdm.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from typing import Any

from .._private import client as client_mod
from .._private.log_printer import TQDM_MARKER


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

    def _state(self) -> str:
        return json.dumps({
            "uuid": self._uuid, "desc": self.desc, "total": self.total, "n": self.n,
            "unit": self.unit, "closed": self._closed,
        })

    def _send(self) -> None:
        self._last_sent = time.monotonic()
        client = client_mod.current
        if client is not None and client.is_worker:
            from .._private import protocol as p
            from .._private.worker import context

            client._log_lines.append(
                p.LogLine(os.getpid(), context.name or "worker", TQDM_MARKER + self._state()))
            client.wake_flusher()
        else:
            _local_manager().update(os.getpid(), self._state())


_manager: BarManager | None = None


def _local_manager() -> BarManager:
    global _manager
    if _manager is None:
        _manager = BarManager()
    return _manager


class BarManager:
    """The driver's side: one real tqdm bar per remote bar, each on its own line."""

    def __init__(self) -> None:
        from tqdm import tqdm as real_tqdm

        self._tqdm = real_tqdm
        self._bars: dict[tuple[int, str], Any] = {}
        self._positions: dict[tuple[int, str], int] = {}

    def active(self) -> bool:
        return bool(self._bars)

    def update(self, pid: int, state_json: str) -> None:
        state = json.loads(state_json)
        key = (pid, state["uuid"])
        bar = self._bars.get(key)
        if bar is None:
            used = set(self._positions.values())
            position = next(i for i in range(len(used) + 1) if i not in used)
            self._positions[key] = position
            bar = self._tqdm(
                total=state["total"], desc=state["desc"], unit=state["unit"],
                position=position, leave=True, file=sys.stderr, dynamic_ncols=True,
            )
            self._bars[key] = bar
        if bar.desc != state["desc"]:
            bar.set_description(state["desc"], refresh=False)
        bar.total = state["total"]
        bar.n = state["n"]
        bar.refresh()
        if state["closed"]:
            bar.close()
            del self._bars[key]
            del self._positions[key]

    def write(self, text: str, stream) -> None:
        self._tqdm.write(text, file=stream)

    def close_all(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        self._positions.clear()


def safe_print(*args, **kwargs) -> None:
    """Print without breaking progress bars (Ray's tqdm_ray.safe_print)."""
    print(*args, **kwargs)
