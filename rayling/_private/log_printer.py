"""Printing worker output on the driver: ``(task_name pid=N) line``, folded by
LogDeduplicator; progress bars from tasks are drawn by progress.BarManager, and lines
printed while bars show are written above them."""

from __future__ import annotations

import os
import sys
import threading
import time

from . import protocol as p
from .log_dedup import LogDeduplicator
from .progress import BarManager


def dedup_enabled() -> bool:
    for var in ("RAYLING_DEDUP_LOGS", "RAY_DEDUP_LOGS"):
        value = os.environ.get(var)
        if value is not None:
            return value.strip().lower() not in ("0", "false", "no", "off")
    return True


class LogPrinter:
    def __init__(self) -> None:
        self._dedup = LogDeduplicator(enabled=dedup_enabled())
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._bars = None

    def handle(self, lines) -> None:
        """Called by the client's reader thread with a batch of LogLine."""
        with self._lock:
            now = time.monotonic()
            for line in lines:
                prefix = f"({line.name} pid={line.pid})"
                stream = sys.stderr if line.is_err else sys.stdout
                for out in self._dedup.add(prefix, line.text, now):
                    self._write(stream, out)
            self._schedule()

    def progress(self, state: p.ProgressBar) -> None:
        """Called by the client's reader thread with a progress bar's new state."""
        with self._lock:
            if self._bars is None:
                self._bars = BarManager()
            self._bars.update(state)

    def _write(self, stream, text: str) -> None:
        if self._bars is not None and self._bars.active():
            self._bars.write(text, stream)
        else:
            print(text, file=stream, flush=True)

    def _schedule(self) -> None:
        deadline = self._dedup.next_deadline()
        if deadline is None or self._timer is not None:
            return
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._on_timer)
        self._timer.daemon = True
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            for out in self._dedup.flush(time.monotonic()):
                self._write(sys.stdout, out)
            self._schedule()

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for out in self._dedup.flush(time.monotonic(), everything=True):
                self._write(sys.stdout, out)
            if self._bars is not None:
                self._bars.close_all()
