"""The distributed 1D Poisson solver of seed 002 (`poissonDual.py`), run on rayling and on Ray.

Two `ArrayStorage` actors each own half of the grid. One iteration is the seed's: get the
left half's last value (`getLastValue`), then the right half's first value
(`getFirstValue`), start `localSolve` on both halves with those ghost values, then get the
left half's new last value for the convergence diff: three calls waited for one at a time
and two that are not. The loop runs a fixed number of iterations instead of running to a
tolerance. Measured:

- 2,000,000 points, 300 iterations: seconds for the loop (1,000,000 points per actor, so
  NumPy's work is a large part of it);
- 100 points, 1000 iterations: milliseconds per iteration, nearly all of it the runtime's
  own overhead (submitting calls, running them, returning their results);
- for reference, the 2,000,000 x 300 loop serially in plain NumPy in one process (the
  seed's `poissonSerial.py`), in the same interpreter as the implementation it sits beside.

Every distributed solution and final diff is checked against the serial loop's
(np.allclose with atol=0: the values are around 1e-10); the script fails if one differs.
Times are the best of 3 runs; each distributed run gets new actors, created and given
their half of the right-hand side before the clock starts.

    python benchmarks/poisson.py                  # rayling, then Ray if installed
    python benchmarks/poisson.py --impl rayling   # one implementation only
    python benchmarks/poisson.py --quick          # 5x fewer iterations (smoke run)

The workload is written once against the name `ray`, which is `import ray` or
`import rayling as ray` depending on --impl; both run with init(num_cpus=2). By default Ray
is looked for at /tmp/rayenv/bin/python; this script re-runs itself under that interpreter
with `--impl ray --json` and prints both results in one table, whose table code and
formatting come from microbenchmark.py beside it.
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
    REPEATS,
    load,
    report,
    run_json,
    side_by_side,
)

NUM_CPUS = 2
LARGE = (2_000_000, 300)  # (points, iterations)
SMALL = (100, 1000)
QUICK_DIVISOR = 5  # --quick: this many times fewer iterations


class ArrayStorage:
    """The seed's actor: one interval's part of the right-hand side `b` and of the solution."""

    def __init__(self, n):
        self.b = None
        self.u = np.zeros(n)

    def store_b(self, arr):
        self.b = arr

    def get_u(self):
        return self.u

    def localSolve(self, n, ghostValue, side):
        self.u[1:n - 1] = (self.u[0:n - 2] + self.u[2:n] - self.b[1:n - 1]) / 2
        if side == 1:
            self.u[n - 1] = (self.u[n - 2] + ghostValue - self.b[n - 1]) / 2
        if side == 2:
            self.u[0] = (ghostValue + self.u[1] - self.b[0]) / 2

    def getLastValue(self):
        return self.u[-1]

    def getFirstValue(self):
        return self.u[0]


def right_hand_side(n: int) -> np.ndarray:
    h = 1 / (n - 1)
    return np.ones(n) * 2 * h * h


def solve_serial(n: int, iterations: int) -> tuple[float, np.ndarray, float]:
    """The seed's serial two-interval loop: its seconds, the solution and the final diff."""
    n1 = n // 2
    n2 = n - n1
    b = right_hand_side(n)
    u1 = np.zeros(n1)
    u2 = np.zeros(n2)
    start = time.perf_counter()
    for _ in range(iterations):
        ghost_left = u1[-1]
        ghost_right = u2[0]
        diff = ghost_left
        u1[1:n1 - 1] = (u1[0:n1 - 2] + u1[2:n1] - b[1:n1 - 1]) / 2
        u1[n1 - 1] = (u1[n1 - 2] + ghost_right - b[n1 - 1]) / 2
        u2[1:n2 - 1] = (u2[0:n2 - 2] + u2[2:n2] - b[n1 + 1:n - 1]) / 2
        u2[0] = (ghost_left + u2[1] - b[n1]) / 2
        diff = (diff - u1[-1]) / u1[-1]
    return time.perf_counter() - start, np.concatenate([u1, u2]), diff


def solve_distributed(ray, n: int, iterations: int) -> tuple[float, np.ndarray, float]:
    """The seed's loop on two actors: its seconds, the solution and the final diff."""
    n1 = n // 2
    n2 = n - n1
    b = right_hand_side(n)
    storage = ray.remote(ArrayStorage)
    worker1 = storage.remote(n1)
    worker2 = storage.remote(n2)
    ray.get([worker1.store_b.remote(b[0:n1]), worker2.store_b.remote(b[n1:n])])
    start = time.perf_counter()
    for _ in range(iterations):
        ghost_left = ray.get(worker1.getLastValue.remote())
        ghost_right = ray.get(worker2.getFirstValue.remote())
        diff = ghost_left
        worker1.localSolve.remote(n1, ghost_right, 1)
        worker2.localSolve.remote(n2, ghost_left, 2)
        new_left = ray.get(worker1.getLastValue.remote())
        diff = (diff - new_left) / new_left
    seconds = time.perf_counter() - start
    u = np.concatenate(ray.get([worker1.get_u.remote(), worker2.get_u.remote()]))
    return seconds, u, diff


def best_time(solve, check) -> float:
    """The fewest seconds of REPEATS calls of solve(); each result is passed to check()."""
    best = float("inf")
    for _ in range(REPEATS):
        seconds, u, diff = solve()
        check(u, diff)
        best = min(best, seconds)
    return best


def matches(reference: tuple[float, np.ndarray, float], what: str):
    """A check() that fails loudly unless a solution and diff equal the reference's."""
    _, reference_u, reference_diff = reference

    def check(u: np.ndarray, diff: float) -> None:
        if not (np.allclose(u, reference_u, atol=0) and np.allclose(diff, reference_diff, atol=0)):
            raise SystemExit(
                f"FAILED: {what}: the distributed result differs from the serial one: "
                f"max |u - serial u| = {np.max(np.abs(u - reference_u)):.3e} "
                f"(max |serial u| = {np.max(np.abs(reference_u)):.3e}), "
                f"diff = {float(diff)!r}, serial diff = {float(reference_diff)!r}")

    return check


def run_impl(impl: str, quick: bool) -> dict[str, float]:
    """Every row for `impl`, measured in this process."""
    divisor = QUICK_DIVISOR if quick else 1
    large_n, large_iterations = LARGE[0], LARGE[1] // divisor
    small_n, small_iterations = SMALL[0], SMALL[1] // divisor
    large = f"{large_n:,} points x {large_iterations} iterations"
    small = f"{small_n:,} points x {small_iterations} iterations"
    names = {"large": f"2 actors, {large} (s)",
             "small": f"2 actors, {small}: per iteration (ms)",
             "serial": f"serial NumPy, {large} (s)"}

    # The serial runs come first, while no library is started: nothing else competes.
    serial = [solve_serial(large_n, large_iterations) for _ in range(REPEATS)]
    serial_seconds = min(seconds for seconds, _, _ in serial)
    small_reference = solve_serial(small_n, small_iterations)

    results: dict[str, float] = {}
    ray = load(impl)
    ray.init(num_cpus=NUM_CPUS)
    try:
        results[names["large"]] = best_time(
            lambda: solve_distributed(ray, large_n, large_iterations),
            matches(serial[0], large))
        report(impl, names["large"], results[names["large"]])
        results[names["small"]] = 1000 / small_iterations * best_time(
            lambda: solve_distributed(ray, small_n, small_iterations),
            matches(small_reference, small))
        report(impl, names["small"], results[names["small"]])
    finally:
        ray.shutdown()
    results[names["serial"]] = serial_seconds
    report(impl, names["serial"], serial_seconds)
    return results


def run_ray_subprocess(ray_python: str, quick: bool) -> dict[str, float]:
    command = [ray_python, os.path.abspath(__file__), "--impl", "ray", "--json"]
    return run_json(command + (["--quick"] if quick else []), RAY_RUN_TIMEOUT,
                    capture_stderr=False)["ray"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=IMPLS,
                        help="run only this implementation (default: rayling, then Ray)")
    parser.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON,
                        help=f"interpreter with Ray installed (default: {DEFAULT_RAY_PYTHON})")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_DIVISOR}x fewer iterations")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    side_by_side(args, lambda impl: run_impl(impl, args.quick),
                 lambda: run_ray_subprocess(args.ray_python, args.quick),
                 f"num_cpus={NUM_CPUS}{' (quick)' if args.quick else ''}")


if __name__ == "__main__":
    main()
