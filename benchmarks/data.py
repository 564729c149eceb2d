"""rayling.data beside Ray Data: the seeds' dataset workloads, on 2 CPUs.

- map: `range(200_000).map(add a square).take_all()`, rows/s;
- map_batches: the same with a batch function, rows/s;
- slow series: the seed's `slow(row)` over 2 rows splitting 1..n (n = 1e7), seconds; and,
  for reference, the same sum serially in plain Python in this interpreter;
- Julia set: 1000x1000 points, 8 rows of 125 lines each, `map(computeStability)`, then
  the blocks stacked into the image, seconds.

Every timed run builds its dataset from scratch (datasets are lazy: each run executes the
whole plan). Results are checked (row counts, the series' sum against the serial one, the
image against a serial computation of its first block). Best of 5 (the slow workloads:
best of 3), after one warm-up run of each.

    python benchmarks/data.py                  # rayling, then Ray if installed
    python benchmarks/data.py --impl ray       # one implementation only

The workloads are written once against the name `ray`; Ray is looked for at
/tmp/rayenv/bin/python, run there with `--impl ray --json`, and both are printed in one
table (the table code is microbenchmark.py's).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from microbenchmark import (
    DEFAULT_RAY_PYTHON,
    IMPLS,
    RAY_RUN_TIMEOUT,
    load,
    report,
    run_json,
    side_by_side,
)

NUM_CPUS = 2
ROWS = 200_000
SERIES_N = 10_000_000
JULIA = 1000
JULIA_BLOCKS = 8


def add_square(row):
    row["square"] = row["id"] ** 2
    return row


def add_square_batch(batch):
    batch["square"] = batch["id"] ** 2
    return batch


def slow(row):  # the seed's function, as written there
    total = 0
    for i in range(row["a"], row["b"] + 1):
        if "9" not in str(i):
            total += 1.0 / i
    row["sum"] = total
    return row


def pixel(z):
    c = 0.355 + 0.355j
    for i in range(1, 256):
        z = z**2 + c
        if abs(z) >= 4:
            return i
    return 255


def compute_stability(row):
    offset, size = row["offset"], row["size"]
    stability = np.zeros((size, JULIA), dtype=np.int32)
    for i in range(size):
        for k in range(JULIA):
            point = 1.2 * ((2 * (offset + i + 0.5) / JULIA - 1) + (2 * (k + 0.5) / JULIA - 1) * 1j)
            stability[i, k] = pixel(point)
    row["stability"] = stability
    return row


def best(run, repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def run_impl(impl: str) -> dict[str, float]:
    serial_start = time.perf_counter()
    serial_sum = slow({"a": 1, "b": SERIES_N})["sum"]
    serial = time.perf_counter() - serial_start

    ray = load(impl)
    ray.init(num_cpus=NUM_CPUS)
    if impl == "ray":
        ray.data.DataContext.get_current().enable_progress_bars = False
    results: dict[str, float] = {}
    try:
        def rows(dataset_of):
            def run():
                out = dataset_of().take_all()
                assert len(out) == ROWS and out[-1]["square"] == (ROWS - 1) ** 2
            return run

        name = "map, 200k rows (rows/s)"
        results[name] = ROWS / best(rows(lambda: ray.data.range(ROWS).map(add_square)), 5)
        report(impl, name, results[name])
        name = "map_batches, 200k rows (rows/s)"
        results[name] = ROWS / best(
            rows(lambda: ray.data.range(ROWS).map_batches(add_square_batch)), 5)
        report(impl, name, results[name])

        half = SERIES_N // 2

        def series():
            ds = ray.data.from_items([{"a": 1, "b": half}, {"a": half + 1, "b": SERIES_N}])
            total = sum(p["sum"] for p in ds.map(slow).take())
            assert abs(total - serial_sum) < 1e-9, (total, serial_sum)

        name = "slow series, 2 rows, n=1e7 (s)"
        results[name] = best(series, 3)
        report(impl, name, results[name])

        size = JULIA // JULIA_BLOCKS
        first = compute_stability({"offset": 0, "size": size})["stability"]

        def julia():
            ds = ray.data.from_items([{"offset": i * size, "size": size}
                                      for i in range(JULIA_BLOCKS)])
            parts = ds.map(compute_stability).take_all()
            image = np.vstack([p["stability"] for p in parts])
            assert image.shape == (JULIA, JULIA) and (image[:size] == first).all()

        name = "Julia set 1000x1000, 8 rows (s)"
        results[name] = best(julia, 3)
        report(impl, name, results[name])
    finally:
        ray.shutdown()
    name = "slow series serially in plain Python (s)"
    results[name] = serial
    report(impl, name, serial)
    return results


def run_ray_subprocess(ray_python: str) -> dict[str, float]:
    command = [ray_python, os.path.abspath(__file__), "--impl", "ray", "--json"]
    return run_json(command, RAY_RUN_TIMEOUT, capture_stderr=False)["ray"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS,
                        help="run only this implementation (default: rayling, then Ray)")
    parser.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON,
                        help=f"interpreter with Ray installed (default: {DEFAULT_RAY_PYTHON})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    side_by_side(args, run_impl, lambda: run_ray_subprocess(args.ray_python),
                 f"num_cpus={NUM_CPUS}")


if __name__ == "__main__":
    main()
