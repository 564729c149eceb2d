"""``streaming_split``: one actor runs the dataset and deals its blocks to n iterators.

The iterators are small picklable objects, so they can be handed to tasks and actors
(trainers, say); each asks the coordinator actor for its next block and reads it from the
object store. With ``equal=False`` a block goes to whichever iterator asks first; with
``equal=True`` blocks are dealt in turn, so every iterator gets the same number of blocks
(rows may differ by up to a block).
"""

from __future__ import annotations

import threading
from collections import deque

import rayling

from . import _plan as P
from .dataset import DataIterator


class SplitCoordinator:
    def __init__(self, op: P.Op, n: int, equal: bool) -> None:
        from .context import DataContext

        DataContext.get_current().enable_progress_bars = False
        self._op = op
        self._n = n
        self._equal = equal
        self._lock = threading.Lock()
        self._blocks = None
        self._queues: list[deque] = [deque() for _ in range(n)]
        self._turn = 0
        self._done = False

    def next_block(self, index: int):
        """``[block ref]`` for iterator ``index``, or None when it has had all of its share."""
        with self._lock:
            if self._blocks is None:
                from ._executor import Executor

                self._blocks = Executor(P.plan_stages(self._op)).run()
            queue = self._queues[index]
            while not queue and not self._done:
                bundle = next(self._blocks, None)
                if bundle is None:
                    self._done = True
                    break
                target = self._turn if self._equal else index
                self._queues[target].append(bundle[0])
                self._turn = (self._turn + 1) % self._n
            return [queue.popleft()] if queue else None


class _SplitBlocks:
    """The blocks of one split, fetched one by one from the coordinator."""

    def __init__(self, coordinator, index: int) -> None:
        self.coordinator = coordinator
        self.index = index

    def __call__(self):
        while True:
            box = rayling.get(self.coordinator.next_block.remote(self.index))
            if box is None:
                return
            yield rayling.get(box[0])


def streaming_split(op: P.Op, n: int, equal: bool) -> list[DataIterator]:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"streaming_split: n must be a positive integer, got {n!r}")
    coordinator = rayling.remote(SplitCoordinator).options(
        num_cpus=0, max_concurrency=max(2, n)).remote(op, n, equal)
    return [DataIterator(_SplitBlocks(coordinator, i)) for i in range(n)]
