"""``streaming_split``: one actor runs the dataset and deals its blocks to n iterators.

The iterators are small picklable objects, so they can be handed to tasks and actors
(trainers, say); each asks the coordinator actor for its next block and reads it from the
object store. With ``equal=False`` a block goes to whichever iterator asks first, as the
dataset streams. With ``equal=True`` every iterator gets the same number of rows (the
remainder is dropped): the coordinator runs the dataset to the end first and cuts it
exactly, so that mode does not stream.

Each pass over an iterator is an epoch; the dataset runs again for epoch k + 1 once all n
iterators have asked for it (they wait for each other, as in Ray). An error in the run is
raised to every iterator, not only to the one that met it.
"""

from __future__ import annotations

import threading
from collections import deque

import rayling

from . import _plan as P


class SplitCoordinator:
    """The actor that runs the dataset once per epoch and deals its blocks.
    ``equal_shares(op, n)``: the block refs of n equal parts of the dataset (run)."""

    def __init__(self, op: P.Op, n: int, equal: bool, equal_shares) -> None:
        from .context import DataContext

        DataContext.get_current().enable_progress_bars = False
        self._op = op
        self._n = n
        self._equal = equal
        self._equal_shares = equal_shares
        self._cond = threading.Condition()
        self._epoch = -1
        self._asked: set[int] = set()  # iterators waiting for the next epoch
        self._start_epoch(0)

    def _start_epoch(self, epoch: int) -> None:
        self._epoch = epoch
        self._asked.clear()
        self._queues: list[deque] = [deque() for _ in range(self._n)]
        self._blocks = None  # the run's generator, started by the first ask
        self._done = False
        self._error: BaseException | None = None

    def next_block(self, index: int, epoch: int):
        """``[block ref]`` for iterator ``index`` in ``epoch``, or None when its share of
        that epoch is over."""
        with self._cond:
            if epoch > self._epoch:
                self._asked.add(index)
                if len(self._asked) == self._n:
                    self._start_epoch(epoch)
                    self._cond.notify_all()
                else:
                    self._cond.wait_for(lambda: self._epoch >= epoch)
            if epoch < self._epoch:
                return None
            if self._error is not None:
                raise self._error
            queue = self._queues[index]
            try:
                while not queue and not self._done:
                    self._deal(index)
            except BaseException as error:
                self._error = error
                self._done = True
                raise
            return [queue.popleft()] if queue else None

    def _deal(self, index: int) -> None:
        """Put the next block(s) of the run in the queues."""
        if self._equal:
            shares = self._equal_shares(self._op, self._n)
            for queue, refs in zip(self._queues, shares, strict=True):
                queue.extend(refs)
            self._done = True
            return
        if self._blocks is None:
            from ._executor import Executor

            self._blocks = Executor(P.plan_stages(self._op)).run()
        bundle = next(self._blocks, None)
        if bundle is None:
            self._done = True
        else:
            self._queues[index].append(bundle[0])


class SplitBlocks:
    """The blocks of one split, fetched one by one from the coordinator; each call is
    the next epoch."""

    def __init__(self, coordinator, index: int) -> None:
        self.coordinator = coordinator
        self.index = index
        self.epoch = -1

    def __call__(self):
        self.epoch += 1
        epoch = self.epoch
        while True:
            box = rayling.get(self.coordinator.next_block.remote(self.index, epoch))
            if box is None:
                return
            yield rayling.get(box[0])
