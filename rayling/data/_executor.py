"""The streaming executor: runs a plan's stages at once, block by block, in the driver.

```
 stage A (read+map tasks) ──blocks──▶ stage B (actor pool) ──blocks──▶ consumer (take, write…)
        ▲ launches while the bytes held stay under the budget ▲
```

Each stage has a runtime here that takes input blocks, launches tasks (or actor calls) for
them and hands its outputs, in input order, to the stages that read it. One loop in the
driver moves outputs downstream, launches what it may (the stages nearest the consumer
first, so memory drains before more is made), then waits for any task to finish. Only
block metadata comes to the driver; blocks stay in the object store until a consumer asks.

Backpressure: the bytes of blocks made but not yet consumed, plus what running tasks pin
and are estimated to make, stay under ``DataContext.execution_memory_fraction`` of the
cluster's object store. A task that makes no more than it reads may always start (it
frees memory when it ends), and so may any task when nothing runs at all, so a pipeline
never stalls; blocks that were in the store before the run (a materialized dataset's)
do not count. When a limit has all it needs, or the consumer stops early, the stages
above it stop and their running tasks are cancelled.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterator

import rayling

from . import _block as B, _plan as P, _tasks
from ._remote import Bundle, remote_fn
from ._transforms import MapBatches
from .context import DataContext


def cluster_info() -> tuple[float, int]:
    """(CPUs, object store bytes) of the live nodes."""
    cpus, store = 0.0, 0
    for node in rayling.nodes():
        if node["Alive"]:
            cpus += node["Resources"].get("CPU", 0.0)
            store += node.get("ObjectStoreCapacity", 0)
    return cpus, store


class StageStats:
    """What one stage did, for ``Dataset.stats()``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tasks = 0
        self.blocks_out = 0
        self.rows_out = 0
        self.bytes_out = 0
        self.task_time = 0.0
        self.started: float | None = None
        self.finished: float | None = None

    def record(self, meta: B.BlockMetadata) -> None:
        self.blocks_out += 1
        self.rows_out += meta.num_rows
        self.bytes_out += meta.size_bytes
        self.task_time += meta.wall_time

    def text(self) -> str:
        wall = (self.finished or time.perf_counter()) - (self.started or time.perf_counter())
        return (f"Stage {self.name}: {self.tasks} tasks, {self.blocks_out} blocks, "
                f"{self.rows_out} rows, {self.bytes_out / 1e6:.2f} MB out; "
                f"{wall:.3f} s wall, {self.task_time:.3f} s in tasks")


class _Runtime:
    """The running state of one stage."""

    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        self.stage = stage
        self.executor = executor
        self.stats = StageStats(stage.name)
        self.inputs: deque[tuple[int, Bundle]] = deque()  # (sequence, bundle)
        self.inputs_done = False
        self.outputs: deque[Bundle] = deque()  # ready, in order, for the consumers
        self.consumers: list[_Runtime] = []
        self.stopped = False  # nobody wants more of its output
        self._next_in = 0
        self._input_bytes = 0

    # inputs, in order
    def add_input(self, item, which: int = 0) -> None:
        """Queue a bundle (or, for a read stage, a read task)."""
        self.inputs.append((self._next_in, item))
        self._next_in += 1
        if isinstance(item, tuple):
            self._input_bytes += self.executor.counted(item)

    def pop_input(self):
        seq, item = self.inputs.popleft()
        if isinstance(item, tuple):
            self._input_bytes -= self.executor.counted(item)
        return seq, item

    def input_finished(self, which: int = 0) -> None:
        self.inputs_done = True

    def launch_one(self) -> bool:
        """Start one piece of work if there is any; True if it did."""
        return False

    def pending(self) -> dict:
        """{ref to wait on: callback} for work under way."""
        return {}

    @property
    def finished(self) -> bool:
        return self.inputs_done and not self.inputs and not self.pending()

    def wants_input(self) -> bool:
        return not self.stopped

    def held_bytes(self) -> int:
        return self._input_bytes + sum(map(self.executor.counted, self.outputs))

    def stop(self) -> None:
        self.stopped = True
        self.inputs.clear()
        self._input_bytes = 0

    def close(self) -> None:
        """The run is over: stop what still runs and drop every block this stage holds."""
        self.stop()
        self.outputs.clear()


class _MapRuntime(_Runtime):
    """read, input and tasks stages: one task per block through the fused transforms."""

    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        super().__init__(stage, executor)
        self._chain_ref = None
        self._running: dict = {}  # meta ref -> (sequence, block ref, input bytes pinned)
        self._running_input_bytes = 0  # inputs pinned by running tasks
        self._completed = 0
        self._done: dict[int, Bundle] = {}
        self._emit_next = 0
        self._out_bytes_avg: float | None = None
        op = stage.op
        if stage.kind == "read":
            for task in op.tasks:
                self.add_input(task)
            self.inputs_done = True
        elif stage.kind == "input":
            for bundle in zip(op.refs, op.metas, strict=True):
                self.add_input(bundle)
            self.inputs_done = True
        # A batch function with a batch size gets whole batches: small blocks are bundled
        # into one task until they hold batch_size rows.
        first = stage.transforms[0] if stage.transforms else None
        self._bundle_rows = (first.batch_size if stage.kind in ("tasks", "pool")
                             and isinstance(first, MapBatches) else None)
        self._launched = 0  # tasks started: each task's sequence number
        self._head_offset = 0  # rows of the first queued block that earlier batches took
        self._options = dict(stage.remote_args)
        concurrency = self._options.pop("_concurrency", None)
        cpus = self._options.get("num_cpus", 1) or 1
        self.max_running = concurrency or max(2, int(4 * executor.cpus / cpus) + 2)
        self._remote = None

    def estimate(self, input_bytes: int) -> int:
        """The bytes a task will make: the average so far, else as much as it reads."""
        if self._out_bytes_avg is None:
            return input_bytes
        return int(self._out_bytes_avg)

    def launch_one(self) -> bool:
        if self.stopped or not self.inputs or len(self._running) >= self.max_running:
            return False
        if self.stage.kind == "input":  # blocks already made: pass them on
            seq, bundle = self.pop_input()
            self._done[seq] = bundle
            self._emit()
            return True
        if self.stage.kind == "read":
            if not self._may_start(0):
                return False
            spec, sources, pinned = None, [self.pop_input()[1]], 0
        elif self._bundle_rows:
            plan = self._next_batch()
            if plan is None or not self._may_start(sum(m.size_bytes for _, m in plan[1])):
                return False
            spec, bundles = plan
            sources = [ref for ref, _ in bundles]
            pinned = self._take_batch(spec, bundles)
        else:
            bundle = self.inputs[0][1]
            if not self._may_start(bundle[1].size_bytes):
                return False
            self.pop_input()
            spec, sources, pinned = None, [bundle[0]], self.executor.counted(bundle)
        seq = self._launched
        self._launched += 1
        block_ref, meta_ref = self._submit(seq, spec, sources)
        self._running[meta_ref] = (seq, block_ref, pinned)
        self._running_input_bytes += pinned
        self.stats.tasks += 1
        if self.stats.started is None:
            self.stats.started = time.perf_counter()
        return True

    def _may_start(self, input_bytes: int) -> bool:
        """Whether memory allows one more task: a task that makes no more than it reads
        always may (finishing it frees memory); others while the bytes held stay under the
        budget, or when nothing runs anywhere (so the pipeline never stalls). Until a task
        of this stage has finished, its output size is unknown: one per CPU starts."""
        if self._out_bytes_avg is None:
            return len(self._running) < max(1, self.executor.cpus)
        estimate = self.estimate(input_bytes)
        if self.stage.kind != "read" and estimate <= input_bytes:
            return True
        return self.executor.room_for(estimate) or not self.executor.anything_running()

    def _next_batch(self):
        """The rows of the next task's batches, across block edges: ([(position, start,
        end)], the bundles they are in); None to wait for more blocks. The last batch is
        what is left once the input is done."""
        size = self._bundle_rows
        offset = self._head_offset
        # As many whole batches as the first block holds (one task does them all), else
        # one batch gathered from several blocks.
        wanted = size * max(1, (self.inputs[0][1][1].num_rows - offset) // size)
        spec, bundles = [], []
        for _, bundle in self.inputs:
            take = min(wanted, bundle[1].num_rows - offset)
            if take > 0:
                spec.append((len(bundles), offset, offset + take))
                bundles.append(bundle)
                wanted -= take
            offset = 0
            if wanted == 0:
                return spec, bundles
        return (spec, bundles) if spec and self.inputs_done else None

    def _take_batch(self, spec: list, bundles: list) -> int:
        """Drop the blocks the batch uses up; returns the bytes the task pins."""
        pinned = 0
        for (_, _, end), bundle in zip(spec, bundles, strict=True):
            pinned += self.executor.counted(bundle)
            if end == bundle[1].num_rows:
                self.pop_input()
                self._head_offset = 0
            else:
                self._head_offset = end  # the rest of this block starts the next batch
        return pinned

    def _submit(self, seq: int, spec: list | None, sources: list):
        if self._chain_ref is None:
            from ._transforms import Chain

            self._chain_ref = rayling.put(Chain(self.stage.transforms))
            self._remote = remote_fn(_tasks.run_stage, num_returns=2, **self._options)
        return self._remote.remote([self._chain_ref], seq, spec, *sources)

    def pending(self) -> dict:
        return self._running

    def running_bytes(self) -> int:
        """What running tasks pin (their inputs) and will make (estimated)."""
        return self._running_input_bytes + sum(self.estimate(b) for _, _, b in
                                               self._running.values())

    def on_ready(self, meta_ref) -> None:
        seq, block_ref, pinned = self._running.pop(meta_ref)
        self._running_input_bytes -= pinned
        meta = rayling.get(meta_ref)
        n = self._completed
        self._completed += 1
        self._out_bytes_avg = ((self._out_bytes_avg or 0) * n + meta.size_bytes) / (n + 1)
        self._done[seq] = (block_ref, meta)
        self._emit()

    def _emit(self) -> None:
        while self._emit_next in self._done:
            bundle = self._done.pop(self._emit_next)
            self._emit_next += 1
            self.stats.record(bundle[1])
            self.outputs.append(bundle)

    def held_bytes(self) -> int:
        return super().held_bytes() + sum(map(self.executor.counted, self._done.values()))

    def stop(self) -> None:
        super().stop()
        for _, block_ref, _ in self._running.values():
            rayling.cancel(block_ref)
        self._running.clear()
        self._running_input_bytes = 0

    def close(self) -> None:
        super().close()
        self._done.clear()
        self._chain_ref = None


class _PoolRuntime(_MapRuntime):
    """A pool of actors, each with the stage's transforms set up once (callable classes).

    Calls go only to actors that have started, so a pool larger than the cluster can place
    runs on the actors it has (the others start when resources free up, or never)."""

    PER_ACTOR = 2  # calls queued at each actor

    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        super().__init__(stage, executor)
        self._actors: list = []
        self._starting: dict = {}  # ready() ref -> actor index
        self._ready: list[int] = []  # indices of actors that have started
        self._load: dict[int, int] = {}  # calls in flight per started actor
        self._actor_of: dict = {}  # meta ref -> actor index
        self._turn = 0

    def launch_one(self) -> bool:
        if not self._actors and self.inputs and not self.stopped:
            self._start_pool()
        if len(self._running) >= len(self._ready) * self.PER_ACTOR:
            return False
        return super().launch_one()

    def _start_pool(self) -> None:
        from ._transforms import Chain

        worker = rayling.remote(_tasks.MapWorker).options(**self._options)
        chain = Chain(self.stage.transforms)
        self._actors = [worker.remote(chain) for _ in range(self.stage.pool_size)]
        self._starting = {a.ready.remote(): i for i, a in enumerate(self._actors)}

    def _submit(self, seq: int, spec: list | None, sources: list):
        # The least loaded started actor; ties go round the pool, so every actor gets work.
        count = len(self._ready)
        order = [self._ready[(self._turn + k) % count] for k in range(count)]
        index = min(order, key=self._load.__getitem__)
        self._turn = self._ready.index(index) + 1
        self._load[index] += 1
        refs = self._actors[index].run.options(num_returns=2).remote(seq, spec, *sources)
        self._actor_of[refs[1]] = index
        return refs

    def pending(self) -> dict:
        return {**self._running, **self._starting} if self._starting else self._running

    @property
    def finished(self) -> bool:
        return self.inputs_done and not self.inputs and not self._running

    def on_ready(self, ref) -> None:
        index = self._starting.pop(ref, None)
        if index is not None:
            rayling.get(ref)  # raises the constructor's error if the actor died
            self._ready.append(index)
            self._load[index] = 0
            return
        self._load[self._actor_of.pop(ref)] -= 1
        super().on_ready(ref)

    def close(self) -> None:
        self._running.clear()
        super().close()
        for actor in self._actors:
            rayling.kill(actor)
        self._actors = []
        self._starting.clear()


class _LimitRuntime(_Runtime):
    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        super().__init__(stage, executor)
        self.remaining = stage.op.limit
        self._slicing: dict = {}
        if self.remaining <= 0:
            self.stopped = True

    def wants_input(self) -> bool:
        return self.remaining > 0

    def launch_one(self) -> bool:
        if not self.inputs:
            return False
        _, (block_ref, meta) = self.pop_input()
        if self.remaining <= 0:
            return True
        if meta.num_rows <= self.remaining:
            self.remaining -= meta.num_rows
            self.stats.record(meta)
            self.outputs.append((block_ref, meta))
        else:
            refs = remote_fn(_tasks.gather_rows, num_returns=2).remote(
                [(0, 0, self.remaining)], block_ref)
            self.stats.tasks += 1
            self.remaining = 0
            self._slicing[refs[1]] = refs[0]
        return True

    def pending(self) -> dict:
        return self._slicing

    def on_ready(self, meta_ref) -> None:
        block_ref = self._slicing.pop(meta_ref)
        meta = rayling.get(meta_ref)
        self.stats.record(meta)
        self.outputs.append((block_ref, meta))

    @property
    def finished(self) -> bool:
        return (self.inputs_done or self.remaining <= 0) and not self.inputs \
            and not self._slicing


class _UnionRuntime(_Runtime):
    """Outputs every block of input 0, then of input 1, and so on."""

    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        super().__init__(stage, executor)
        self._queues: list[deque] = [deque() for _ in stage.inputs]
        self._done = [False] * len(stage.inputs)
        self._current = 0

    def add_input(self, bundle: Bundle, which: int = 0) -> None:
        self._queues[which].append(bundle)

    def input_finished(self, which: int = 0) -> None:
        self._done[which] = True

    def launch_one(self) -> bool:
        moved = False
        while self._current < len(self._queues):
            queue = self._queues[self._current]
            while queue:
                bundle = queue.popleft()
                self.stats.record(bundle[1])
                self.outputs.append(bundle)
                moved = True
            if not self._done[self._current]:
                break
            self._current += 1
        return moved

    @property
    def finished(self) -> bool:
        return self._current >= len(self._queues)

    def held_bytes(self) -> int:
        return super().held_bytes() + sum(self.executor.counted(b) for q in self._queues
                                          for b in q)

    def close(self) -> None:
        super().close()
        for queue in self._queues:
            queue.clear()


class _BarrierRuntime(_Runtime):
    """zip and the all-to-all operators: wait for every input block, then run."""

    def __init__(self, stage: P.Stage, executor: Executor) -> None:
        super().__init__(stage, executor)
        self._collected: list[list[Bundle]] = [[] for _ in stage.inputs]
        self._done = [False] * len(stage.inputs)
        self._ran = False

    def add_input(self, bundle: Bundle, which: int = 0) -> None:
        self._collected[which].append(bundle)

    def input_finished(self, which: int = 0) -> None:
        self._done[which] = True

    def launch_one(self) -> bool:
        if self._ran or not all(self._done):
            return False
        from . import _shuffle

        self._ran = True
        self.stats.started = time.perf_counter()
        outputs, tasks = _shuffle.run(self.stage.op, self._collected, self.executor.cpus)
        self._collected = []
        self.stats.tasks += tasks
        for bundle in outputs:
            self.stats.record(bundle[1])
            self.outputs.append(bundle)
        return True

    @property
    def finished(self) -> bool:
        return self._ran

    def held_bytes(self) -> int:
        return super().held_bytes() + sum(self.executor.counted(b) for c in self._collected
                                          for b in c)

    def close(self) -> None:
        super().close()
        self._collected = []


_RUNTIMES = {"read": _MapRuntime, "input": _MapRuntime, "tasks": _MapRuntime,
             "pool": _PoolRuntime, "limit": _LimitRuntime, "union": _UnionRuntime,
             "zip": _BarrierRuntime, "all_to_all": _BarrierRuntime}


class Executor:
    """Runs the stages of one plan; ``run()`` yields the final stage's blocks in order."""

    def __init__(self, final: P.Stage, total_blocks: int | None = None) -> None:
        self.cpus, store = cluster_info()
        context = DataContext.get_current()
        self.budget = int(store * context.execution_memory_fraction)
        stages = P.stage_list(final)
        self._preexisting = {ref for s in stages if s.kind == "input" for ref in s.op.refs}
        self.runtimes = [_RUNTIMES[s.kind](s, self) for s in stages]
        by_stage = {id(s): r for s, r in zip(stages, self.runtimes, strict=True)}
        # Each stage has one consumer: plan_stages makes a tree, even when two branches
        # come from the same dataset.
        self._links: list[tuple[_Runtime, _Runtime, int]] = []
        for stage, runtime in zip(stages, self.runtimes, strict=True):
            for which, child in enumerate(stage.inputs):
                upstream = by_stage[id(child)]
                upstream.consumers.append(runtime)
                self._links.append((upstream, runtime, which))
        self.final = self.runtimes[-1]
        self._finished_links: set[int] = set()
        self._bar = _progress_bar(final.name, total_blocks, context)

    # budget
    def used_bytes(self) -> int:
        total = 0
        for r in self.runtimes:
            total += r.held_bytes()
            if isinstance(r, _MapRuntime):
                total += r.running_bytes()
        return total

    def counted(self, bundle: Bundle) -> int:
        """The bytes of ``bundle`` this run answers for: none for blocks that were in the
        store before it began (a materialized dataset's)."""
        return 0 if bundle[0] in self._preexisting else bundle[1].size_bytes

    def room_for(self, size: int) -> bool:
        return self.used_bytes() + size <= self.budget

    def anything_running(self) -> bool:
        return any(r.pending() for r in self.runtimes)

    # the loop
    def run(self) -> Iterator[Bundle]:
        final = self.final
        try:
            while True:
                self._move()
                while final.outputs:
                    bundle = final.outputs.popleft()
                    if self._bar is not None:
                        self._bar.update(1)
                    yield bundle
                if final.finished:
                    return
                self._launch()
                self._move()
                if final.outputs or final.finished:
                    continue
                self._wait()
        finally:
            self.close()

    def _move(self) -> None:
        """Hand finished outputs downstream; stop stages nobody needs any more."""
        for i, (upstream, downstream, which) in enumerate(self._links):
            while upstream.outputs:
                downstream.add_input(upstream.outputs.popleft(), which)
            if upstream.finished and not upstream.outputs and i not in self._finished_links:
                self._finished_links.add(i)
                downstream.input_finished(which)
        for runtime in reversed(self.runtimes):
            if runtime.consumers and not runtime.stopped and \
                    not any(c.wants_input() for c in runtime.consumers):
                runtime.stop()
                runtime.inputs_done = True

    def _launch(self) -> None:
        progress = True
        while progress:
            progress = False
            for runtime in reversed(self.runtimes):
                while runtime.launch_one():
                    progress = True
                    self._move()

    def _wait(self) -> None:
        callbacks: dict = {}
        for runtime in self.runtimes:
            for ref in runtime.pending():
                callbacks[ref] = runtime
        if not callbacks:
            stuck = [r.stage.name for r in self.runtimes if not r.finished]
            raise RuntimeError(f"dataset execution stalled: nothing runs, and these stages "
                               f"are not done: {stuck}. This is a bug in rayling.data.")
        refs = list(callbacks)
        ready, rest = rayling.wait(refs, num_returns=1)
        if rest:
            more, _ = rayling.wait(rest, num_returns=len(rest), timeout=0)
            ready += more
        for ref in ready:
            callbacks[ref].on_ready(ref)

    def close(self) -> None:
        self._preexisting = set()  # runtimes point back here: hold no refs after the run
        for runtime in self.runtimes:
            runtime.close()
            if runtime.stats.started is not None and runtime.stats.finished is None:
                runtime.stats.finished = time.perf_counter()
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def stats(self) -> list[StageStats]:
        return [r.stats for r in self.runtimes]


def _progress_bar(name: str, total: int | None, context: DataContext):
    """A bar on the driver's terminal (none when stderr is not a terminal)."""
    if not context.enable_progress_bars or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=f"Running {name}", unit=" blocks", leave=False,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.2)

