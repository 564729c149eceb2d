"""How a worker runs generator tasks (a mixin of worker.Executor): a streaming one sends
each value as it is yielded (GeneratorItem, batched) and may pause while its caller has
not taken enough of them (``_generator_backpressure_num_objects``); a dynamic one puts
each value and returns a DynamicObjectRefGenerator of their refs. See generators.py for
the caller's side."""

from __future__ import annotations

import inspect
from asyncio import CancelledError as AsyncCancelledError
from concurrent.futures import CancelledError
from typing import Any

from . import ids, object_ref, protocol as p, task_context
from .task_context import ActorExit

# (SystemExit too: in an actor it ends the process, elsewhere it is the task's error.)
_ENDS_THE_TASK = (ActorExit, KeyboardInterrupt, CancelledError, AsyncCancelledError,
                  SystemExit)


class GeneratorExecution:
    """Generator tasks, for Executor (which provides client, _error_results, _may_retry,
    the _failed marks and the _consumed/_consumption pacing state)."""

    def _stream(self, msg: p.ExecuteTask, generator: Any) -> list:
        """Send each value ``generator`` yields as it comes (an exception it raises is
        the last item); the result: how many items."""
        count = 0
        self._start_stream(msg)
        try:
            for value in _iterate(generator, msg.name):
                self._item(msg, count, value)
                count += 1
                self._pace(msg, count)
        except _ENDS_THE_TASK:
            raise  # (a cancel is the task's result, as for any task; exit_actor ends it)
        except BaseException as e:  # noqa: BLE001 - the stream's last item
            if msg.retry_exceptions and self._may_retry(msg, e):
                # The task's result: the daemon runs it again while retries are left
                # (the values already sent are not sent twice), else ends the stream
                # with this error.
                raise
            self._item_error(msg, count, e)
            count += 1
        finally:
            self._consumed.pop(msg.task_id, None)
        return self._end(msg, count)

    async def _stream_async(self, msg: p.ExecuteTask, generator: Any) -> list:
        if not inspect.isasyncgen(generator):  # (a plain generator runs as in a task)
            return self._stream(msg, generator)
        count = 0
        self._start_stream(msg)
        try:
            async for value in generator:
                self._item(msg, count, value)
                count += 1
                await self._pace_async(msg, count)
        except _ENDS_THE_TASK:
            raise
        except BaseException as e:  # noqa: BLE001 - the stream's last item
            self._item_error(msg, count, e)
            count += 1
        finally:
            self._consumed.pop(msg.task_id, None)
        return self._end(msg, count)

    def _taken(self, task_id: bytes, count: int) -> None:
        """(The reader thread) the caller of a paced stream has taken ``count`` values."""
        with self._consumption:
            known = self._consumed.get(task_id)
            if known is not None and count > known:  # (not for a stream that ended)
                self._consumed[task_id] = count
                self._consumption.notify_all()

    def _may_yield(self, msg: p.ExecuteTask, index: int) -> bool:
        return index - self._consumed.get(msg.task_id, 0) < msg.backpressure

    def _pace(self, msg: p.ExecuteTask, index: int) -> None:
        """Wait while ``backpressure`` values are out and not taken. A cancel interrupts
        it (SIGINT on the main thread; a threaded actor's call looks for it)."""
        if not msg.backpressure or self._may_yield(msg, index):
            return
        self.client.send()  # (the queued values must reach the caller to be taken)
        with self._consumption:
            while not self._may_yield(msg, index):
                if msg.task_id in task_context.cancelled:
                    raise KeyboardInterrupt
                self._consumption.wait(0.1)

    async def _pace_async(self, msg: p.ExecuteTask, index: int) -> None:
        import asyncio

        if msg.backpressure and not self._may_yield(msg, index):
            self.client.send()
            while not self._may_yield(msg, index):
                await asyncio.sleep(0.002)

    def _start_stream(self, msg: p.ExecuteTask) -> None:
        if msg.backpressure:
            with self._consumption:
                self._consumed[msg.task_id] = msg.consumed

    def _item(self, msg: p.ExecuteTask, index: int, value: Any) -> None:
        # Queued, not sent: items go in batches, and before any drop of a ref inside
        # them (so the daemon holds those first).
        oid = ids.object_id_for_return(msg.task_id, index + 1)
        data, _ = self.client.store(oid, value, f"value {index} yielded by {msg.name}")
        self.client.send_soon(p.GeneratorItem(msg.task_id, index, data))

    def _item_error(self, msg: p.ExecuteTask, index: int, error: BaseException) -> None:
        data = self._error_results(msg, error)[0]
        self.client.send_soon(p.GeneratorItem(msg.task_id, index, data))

    def _end(self, msg: p.ExecuteTask, count: int) -> list:
        data, _ = self.client.store(ids.object_id_for_return(msg.task_id, 0), count)
        return [data]

    def _dynamic(self, msg: p.ExecuteTask, generator: Any):
        """num_returns="dynamic": each value becomes an object (returns 1, 2, ...), and
        the one result is a DynamicObjectRefGenerator of their refs."""
        from .generators import DynamicObjectRefGenerator

        refs = []
        try:
            for value in _iterate(generator, msg.name):
                refs.append(object_ref.put_as(
                    self.client, ids.object_id_for_return(msg.task_id, len(refs) + 1), value))
        except (KeyboardInterrupt, CancelledError, AsyncCancelledError):
            raise
        except Exception as e:  # noqa: BLE001 - as in Ray: the last ref holds the error
            oid = ids.object_id_for_return(msg.task_id, len(refs) + 1)
            self.client.stored(oid, self._error_results(msg, e)[0])
            refs.append(object_ref.ObjectRef(oid, _born=True))
        return DynamicObjectRefGenerator(refs)


def _iterate(generator: Any, name: str):
    if not hasattr(generator, "__iter__"):
        raise TypeError(f"{name} was called as a generator (num_returns=\"streaming\" or "
                        f"\"dynamic\") but returned {type(generator).__name__}, which "
                        f"cannot be iterated")
    return generator
