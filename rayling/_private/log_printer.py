"""Printing worker output on the driver: ``(task_name pid=N) line``, folded by
LogDeduplicator, with progress-bar updates from tqdm_ray handed to the bar manager."""

from __future__ import annotations

import os
import sys
import threading
import time

from .log_dedup import LogDeduplicator

TQDM_MARKER = "\x1brayling-tqdm:"


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
                if line.text.startswith(TQDM_MARKER):
                    self._bar_manager().update(line.pid, line.text[len(TQDM_MARKER):])
                    continue
                prefix = f"({line.name} pid={line.pid})"
                stream = sys.stderr if line.is_err else sys.stdout
                for out in self._dedup.add(prefix, line.text, now):
                    self._write(stream, out)
            self._schedule()

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

    def _bar_manager(self):
        if self._bars is None:
            from ..experimental.tqdm_ray import BarManager

            self._bars = BarManager()
        return self._bars
