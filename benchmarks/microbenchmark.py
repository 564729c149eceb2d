"""Ray's microbenchmark workloads, run on rayling and on Ray side by side.

The workload names mirror `ray microbenchmark`. Every workload is written once against the
name `ray`, which is `import ray` or `import rayling as ray` depending on --impl. Actor
methods and tasks return a small int. "in flight" workloads submit 1000 calls, then get them
all. The 1:n and n:n rows use one actor per CPU given to init() (--num-cpus): in 1:n the
driver calls them in turn; in n:n each of as many caller tasks calls its own actor.

    python benchmarks/microbenchmark.py                  # rayling, then Ray if installed
    python benchmarks/microbenchmark.py --impl rayling   # one implementation only
    python benchmarks/microbenchmark.py --quick          # workloads ~5x smaller (smoke run)
    python benchmarks/microbenchmark.py --ray-python /path/to/venv/bin/python --num-cpus 4

By default Ray is looked for at /tmp/rayenv/bin/python; this script re-runs itself under that
interpreter with `--impl ray --json` and prints both results in one table. Rates are the
best of 3 short repetitions. Start-up is timed in fresh processes (this script re-run with a
hidden --probe flag; best of 3) that have imported only a few stdlib modules, not the library,
NumPy or psutil; the idle footprint is also taken in a fresh process, once without the
dashboard and once with it. Everything else runs with include_dashboard=False on both, so
the dashboard's start does not weigh on the other rows. GB and MB are 10**9 and 10**6 bytes.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RAY_PYTHON = "/tmp/rayenv/bin/python"
IMPLS = ("rayling", "ray")
REPEATS = 3
DURATION = 1.0  # seconds per repetition of a rate workload
STARTUP_PROBES = 3
IN_FLIGHT = 1000
LARGE_ARRAY_BYTES = 100 * 1024 * 1024
GB = 1e9
MB = 1e6
SETTLE_FOR = 3.0  # the idle process set must stay the same this long ...
SETTLE_DEADLINE = 30.0  # ... within this long
PROBE_TIMEOUT = 120.0
RAY_RUN_TIMEOUT = 600.0


def load(impl: str):
    """The library under test, bound to the name every workload uses."""
    if impl == "ray":
        import ray
    else:
        import rayling as ray
    return ray


def trivial() -> int:
    return 0


STREAM_ITEMS = 10_000


def count_up(n: int):
    """A generator task: its values stream back to the caller as they are yielded."""
    for i in range(n):  # noqa: UP028 - Ray 2.60 fails on `yield from range(n)` here
        yield i


class Target:
    """The actor the actor workloads call."""

    def f(self) -> int:
        return 0


def call_round_robin(ray, actors: list) -> None:
    """IN_FLIGHT calls spread over `actors` in turn, all submitted before any is waited for."""
    ray.get([actors[i % len(actors)].f.remote() for i in range(IN_FLIGHT)])


def call_own_actor(library: str, actor) -> None:
    """A caller task of "n:n actor calls async": IN_FLIGHT calls to its own actor."""
    call_round_robin(importlib.import_module(library), [actor])


@dataclass
class Bench:
    """What a workload gets: the library, a remote no-op function, a remote actor class with a
    no-op method, the CPUs the library was started with, and its time budget."""

    ray: object
    task: object
    actor: object
    num_cpus: int
    duration: float


def best_rate(step: Callable[[], object], duration: float, units_per_step: float = 1.0) -> float:
    """Units per second of calling step() for `duration` s: the best of REPEATS runs."""
    step()  # warm-up: first-use costs (function registration, worker start) are not timed
    best = 0.0
    for _ in range(REPEATS):
        steps = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < duration:
            step()
            steps += 1
        best = max(best, steps * units_per_step / elapsed)
    return best


def tasks_sync(b: Bench) -> float:
    return best_rate(lambda: b.ray.get(b.task.remote()), b.duration)


def tasks_async(b: Bench) -> float:
    def submit_and_get_batch():
        b.ray.get([b.task.remote() for _ in range(IN_FLIGHT)])

    return best_rate(submit_and_get_batch, b.duration, IN_FLIGHT)


def get_calls(b: Bench) -> float:
    ref = b.ray.put(0)
    return best_rate(lambda: b.ray.get(ref), b.duration)


def put_calls(b: Bench) -> float:
    return best_rate(lambda: b.ray.put(0), b.duration)  # each ref is dropped at once


def large_array():
    import numpy as np  # not at the top: the start-up probe must import the library first

    return np.zeros(LARGE_ARRAY_BYTES, dtype=np.uint8)


def put_gigabytes(b: Bench) -> float:
    array = large_array()
    return best_rate(lambda: b.ray.put(array), b.duration, LARGE_ARRAY_BYTES / GB)


def get_large_object(b: Bench) -> float:
    """Seconds for the first get of a freshly put 100 MiB array: the best of REPEATS."""
    array = large_array()
    best = math.inf
    for _ in range(REPEATS):
        ref = b.ray.put(array)
        start = time.perf_counter()
        value = b.ray.get(ref)
        best = min(best, time.perf_counter() - start)
        del value, ref
    return best


def wait_1k_refs(b: Bench) -> float:
    """Rounds per second of: submit 1000 tasks, then wait for one ref at a time until none is
    left."""

    def submit_and_wait_one_by_one():
        not_ready = [b.task.remote() for _ in range(IN_FLIGHT)]
        while not_ready:
            _ready, not_ready = b.ray.wait(not_ready)

    return best_rate(submit_and_wait_one_by_one, b.duration)


def actor_calls_sync(b: Bench) -> float:
    actor = b.actor.remote()
    return best_rate(lambda: b.ray.get(actor.f.remote()), b.duration)


def actor_calls_async(b: Bench) -> float:
    actors = [b.actor.remote()]
    return best_rate(lambda: call_round_robin(b.ray, actors), b.duration, IN_FLIGHT)


def actor_calls_concurrent(b: Bench) -> float:
    actors = [b.actor.options(max_concurrency=16).remote()]
    return best_rate(lambda: call_round_robin(b.ray, actors), b.duration, IN_FLIGHT)


def actor_calls_one_to_n(b: Bench) -> float:
    """The driver calls one actor per CPU in turn."""
    actors = [b.actor.remote() for _ in range(b.num_cpus)]
    return best_rate(lambda: call_round_robin(b.ray, actors), b.duration, IN_FLIGHT)


def actor_calls_n_to_n(b: Bench) -> float:
    """One caller task per CPU, each calling its own actor; calls per second in all."""
    actors = [b.actor.remote() for _ in range(b.num_cpus)]
    caller = b.ray.remote(call_own_actor)

    def call_from_every_caller():
        b.ray.get([caller.remote(b.ray.__name__, actor) for actor in actors])

    return best_rate(call_from_every_caller, b.duration, IN_FLIGHT * len(actors))


def streaming_generator(b: Bench) -> float:
    generator = b.ray.remote(count_up)

    def consume_stream():
        for ref in generator.remote(STREAM_ITEMS):
            b.ray.get(ref)

    return best_rate(consume_stream, b.duration, STREAM_ITEMS)


def placement_groups(b: Bench) -> float:
    util = importlib.import_module(f"{b.ray.__name__}.util")

    def create_and_remove():
        group = util.placement_group([{"CPU": 0.1}])
        b.ray.get(group.ready())
        util.remove_placement_group(group)

    return best_rate(create_and_remove, b.duration)


WORKLOADS: dict[str, Callable[[Bench], float]] = {
    "single client tasks sync (/s)": tasks_sync,
    "single client tasks async (/s)": tasks_async,
    "single client get calls (/s)": get_calls,
    "single client put calls (/s)": put_calls,
    "single client put gigabytes (GB/s)": put_gigabytes,
    "single client get large object (s)": get_large_object,
    "single client wait 1k refs (/s)": wait_1k_refs,
    "1:1 actor calls sync (/s)": actor_calls_sync,
    "1:1 actor calls async (/s)": actor_calls_async,
    "1:1 actor calls concurrent (/s)": actor_calls_concurrent,
    "1:n actor calls async (/s)": actor_calls_one_to_n,
    "n:n actor calls async (/s)": actor_calls_n_to_n,
    "streaming generator items (/s)": streaming_generator,
    "placement group create+remove (/s)": placement_groups,
}


# --- probes: run in a fresh process of this script (--probe KIND) -------------------------


def startup_probe(impl: str, num_cpus: int) -> dict[str, float]:
    start = time.perf_counter()
    ray = load(impl)
    imported = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False)
    ray.get(ray.remote(trivial).remote())
    done = time.perf_counter()
    ray.shutdown()
    return {
        "init to first result (s)": done - imported,
        "import + init + first result (s)": done - start,
    }


def footprint_probe(impl: str, num_cpus: int, settle_for: float, dashboard: bool
                    ) -> dict[str, float]:
    ray = load(impl)
    context = ray.init(num_cpus=num_cpus, include_dashboard=dashboard)
    ray.get(ray.remote(trivial).remote())
    pids = settled_pids(context.address_info["session_dir"], settle_for)
    uss = [size for size in map(uss_bytes, pids) if size is not None]
    ray.shutdown()
    prefix = "with dashboard: " if dashboard else ""
    return {f"{prefix}idle processes": len(uss), f"{prefix}idle USS (MB)": sum(uss) / MB}


def cluster_pids(session_dir: str) -> set[int]:
    """The driver's descendants, and any process naming the session directory.

    Ray starts some of its processes detached from the driver; they all carry the session
    directory on their command line.
    """
    import psutil  # after the library: Ray ships its own psutil and puts it on sys.path

    me = os.getpid()
    pids = {child.pid for child in psutil.Process(me).children(recursive=True)}
    for process in psutil.process_iter(["cmdline"]):
        if process.pid != me and session_dir in " ".join(process.info["cmdline"] or ()):
            pids.add(process.pid)
    return pids


def settled_pids(session_dir: str, settle_for: float) -> set[int]:
    """The cluster's processes once the set has not changed for `settle_for` seconds."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    pids, unchanged_since = None, time.monotonic()
    while True:
        current, now = cluster_pids(session_dir), time.monotonic()
        if current != pids:
            pids, unchanged_since = current, now
        elif now - unchanged_since >= settle_for:
            return pids
        if now >= deadline:
            print(f"warning: processes still changing after {SETTLE_DEADLINE:.0f} s",
                  file=sys.stderr)
            return pids
        time.sleep(0.2)


def uss_bytes(pid: int) -> int | None:
    """Memory unique to the process (None if it is gone or a zombie)."""
    import psutil

    try:
        return psutil.Process(pid).memory_full_info().uss
    except psutil.Error:
        return None


def run_probe(impl: str, kind: str, num_cpus: int, quick: bool) -> dict[str, float]:
    command = [sys.executable, os.path.abspath(__file__), "--impl", impl,
               "--num-cpus", str(num_cpus), "--probe", kind] + (["--quick"] if quick else [])
    return run_json(command, PROBE_TIMEOUT, capture_stderr=True)


def run_json(command: list[str], timeout: float, capture_stderr: bool) -> dict:
    """Run `command` and parse the JSON it prints on its last line of output."""
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=timeout,
                          stderr=subprocess.PIPE if capture_stderr else None)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {done.returncode}:\n"
                           f"{(done.stderr or '')[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- a whole run of one implementation --------------------------------------------------------


def report(impl: str, name: str, value: float) -> None:
    print(f"[{impl}] {name}: {format_value(value)}", file=sys.stderr, flush=True)


def run_impl(impl: str, num_cpus: int, quick: bool) -> dict[str, float]:
    """Every row for `impl`, measured in this process (and the probes it starts)."""
    results: dict[str, float] = {}
    probes = [run_probe(impl, "startup", num_cpus, quick)
              for _ in range(1 if quick else STARTUP_PROBES)]
    for name in probes[0]:
        results[name] = min(probe[name] for probe in probes)
        report(impl, name, results[name])

    ray = load(impl)
    ray.init(num_cpus=num_cpus, include_dashboard=False)
    try:
        bench = Bench(ray, ray.remote(trivial), ray.remote(Target), num_cpus,
                      DURATION / 5 if quick else DURATION)
        for name, workload in WORKLOADS.items():
            results[name] = workload(bench)
            report(impl, name, results[name])
    finally:
        ray.shutdown()

    for kind in ("footprint", "footprint-dashboard"):
        for name, value in run_probe(impl, kind, num_cpus, quick).items():
            results[name] = value
            report(impl, name, value)
    return results


def run_ray_subprocess(ray_python: str, num_cpus: int, quick: bool) -> dict[str, float]:
    command = [ray_python, os.path.abspath(__file__), "--impl", "ray", "--json",
               "--num-cpus", str(num_cpus)] + (["--quick"] if quick else [])
    return run_json(command, RAY_RUN_TIMEOUT, capture_stderr=False)["ray"]


# --- output ----------------------------------------------------------------------------------


def format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.{2 - math.floor(math.log10(value))}f}"  # 3 significant digits


# Rows where lower is better, by name suffix: the words for "rayling is better / worse".
# poisson.py uses this table code too; its per-iteration rows are in ms.
LOWER_IS_BETTER = {"(s)": ("faster", "slower"), "(ms)": ("faster", "slower"),
                   "(MB)": ("less", "more"), "processes": ("fewer", "more")}


def ratio(name: str, rayling: float, ray: float) -> str:
    if not rayling or not ray:
        return "n/a"
    for suffix, (better, worse) in LOWER_IS_BETTER.items():
        if name.endswith(suffix):
            factor = ray / rayling
            return f"{factor:.2f}x {better}" if factor >= 1 else f"{1 / factor:.2f}x {worse}"
    return f"{rayling / ray:.2f}x"


def print_table(columns: dict[str, dict[str, float]]) -> None:
    """One row per benchmark, one column per implementation, and their ratio if both ran."""
    header = ["benchmark", *columns]
    if len(columns) == 2:
        header.append("ratio (rayling/ray)")
    names = list(next(iter(columns.values())))
    rows = []
    for name in names:
        row = [name, *(format_value(results[name]) for results in columns.values())]
        if len(columns) == 2:
            row.append(ratio(name, columns["rayling"][name], columns["ray"][name]))
        rows.append(row)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:  # names left-aligned, numbers right-aligned
        return " | ".join(cell.rjust(width) if i else cell.ljust(width)
                          for i, (cell, width) in enumerate(zip(cells, widths, strict=True)))

    print(line(header))
    print("-+-".join("-" * width for width in widths))
    for row in rows:
        print(line(row))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS,
                        help="run only this implementation (default: rayling, then Ray)")
    parser.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON,
                        help=f"interpreter with Ray installed (default: {DEFAULT_RAY_PYTHON})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--num-cpus", type=int, default=2, help="init(num_cpus=...) (default 2)")
    parser.add_argument("--quick", action="store_true", help="shrink every workload ~5x")
    parser.add_argument("--probe", choices=("startup", "footprint", "footprint-dashboard"),
                        help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.probe == "startup":
        print(json.dumps(startup_probe(args.impl, args.num_cpus)))
        return
    if args.probe in ("footprint", "footprint-dashboard"):
        settle_for = SETTLE_FOR / 3 if args.quick else SETTLE_FOR
        print(json.dumps(footprint_probe(args.impl, args.num_cpus, settle_for,
                                         args.probe == "footprint-dashboard")))
        return

    side_by_side(args, lambda impl: run_impl(impl, args.num_cpus, args.quick),
                 lambda: run_ray_subprocess(args.ray_python, args.num_cpus, args.quick),
                 f"num_cpus={args.num_cpus}{' (quick)' if args.quick else ''}")


def side_by_side(args: argparse.Namespace, run_impl: Callable[[str], dict],
                 run_ray: Callable[[], dict], heading: str) -> None:
    """Run `args.impl`, or rayling and then Ray (when `args.ray_python` exists), and print
    the results as one table (or as JSON with `--json`). The benchmarks share this."""
    if args.impl:
        columns = {args.impl: run_impl(args.impl)}
    else:
        columns = {"rayling": run_impl("rayling")}
        if os.path.exists(args.ray_python):
            columns["ray"] = run_ray()
        else:
            print(f"Ray not found at {args.ray_python}; showing rayling only", file=sys.stderr)
    if args.json:
        print(json.dumps(columns))
    else:
        print(f"\n{heading}")
        print_table(columns)


if __name__ == "__main__":
    main()
