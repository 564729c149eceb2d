"""Printing worker output on the driver: ``(task_name pid=N) line``, folded by
LogDeduplicator; progress bars from tasks are drawn by progress.BarManager, and lines
printed while bars show are written above them. All of it on the printer's own thread."""

from __future__ import annotations

import os
import sys
import threading
import time
from queue import Empty, SimpleQueue

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
    """Prints what tasks print, draws their progress bars, and shows warnings from the
    daemon, on a thread of its own: the client's reader thread only queues them here, so
    it never imports a module or runs user code (a replaced sys.stdout, say), and a
    terminal that blocks never stops results from arriving. A task prints before it
    returns, so a get that waited for results first waits (briefly) for the output that
    arrived before them: ``caught_up``."""

    def __init__(self) -> None:
        self._dedup = LogDeduplicator(enabled=dedup_enabled())
        self._queue: SimpleQueue = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._bars: BarManager | None = None
        self._failed = False  # drawing failed once (said so; later failures are quiet)
        self._queued = 0  # items queued (by the reader thread)
        self._shown = 0  # items shown (by the printer thread)
        self._progress = threading.Condition()

    # -- called by the client's reader thread: queue only ---------------------------------
    def handle(self, lines) -> None:
        """A batch of LogLine."""
        self._put(lines)

    def progress(self, state: p.ProgressBar) -> None:
        """A progress bar's new state."""
        self._put(state)

    def warning(self, text: str) -> None:
        self._put(text)

    def _put(self, item) -> None:
        self._queued += 1
        self._queue.put(item)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="rayling-output",
                                            daemon=True)
            self._thread.start()

    # -- the printing thread ------------------------------------------------------------
    def _run(self) -> None:
        queue = self._queue
        while True:
            deadline = self._dedup.next_deadline()
            try:
                item = queue.get(timeout=None if deadline is None
                                 else max(0.0, deadline - time.monotonic()))
            except Empty:
                item = ()  # time to print lines held back for folding
            if item is None:
                return
            try:
                self._show(item)
            except Exception as e:  # noqa: BLE001 - printing must not end the thread
                if not self._failed:
                    self._failed = True
                    sys.__stderr__.write(f"(rayling) could not show task output: {e!r}\n")
            if item != ():
                with self._progress:
                    self._shown += 1
                    self._progress.notify_all()

    # -- called by the user's threads ---------------------------------------------------
    def caught_up(self, timeout: float = 1.0) -> None:
        """Wait until what was queued so far is shown (at most ``timeout`` seconds: a
        terminal that blocks does not block results)."""
        target = self._queued
        if self._shown >= target or threading.current_thread() is self._thread:
            return
        with self._progress:
            self._progress.wait_for(lambda: self._shown >= target, timeout)

    def _show(self, item) -> None:
        now = time.monotonic()
        if type(item) is p.ProgressBar:
            if self._bars is None:
                self._bars = BarManager()
            self._bars.update(item)
        elif type(item) is str:
            self._write(sys.stderr, f"(rayling) Warning: {item}")
        else:
            for line in item:
                prefix = f"({line.name} pid={line.pid})"
                stream = sys.stderr if line.is_err else sys.stdout
                for out in self._dedup.add(prefix, line.text, now):
                    self._write(stream, out)
        for out in self._dedup.flush(now):
            self._write(sys.stdout, out)

    def _write(self, stream, text: str) -> None:
        if self._bars is not None and self._bars.active():
            self._bars.write(text, stream)
        else:
            print(text, file=stream, flush=True)

    def close(self) -> None:
        """Print what is left (lines held back for folding too) and close the bars."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
        for out in self._dedup.flush(time.monotonic(), everything=True):
            self._write(sys.stdout, out)
        if self._bars is not None:
            self._bars.close_all()
