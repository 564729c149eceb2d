"""rayling against an earlier rayling: the same benchmark script run in this checkout and
in another one, alternately, so both face the same machine in the same run.

    git worktree add /tmp/rayling_base <commit>
    python benchmarks/versus.py /tmp/rayling_base                 # microbenchmark.py
    python benchmarks/versus.py /tmp/rayling_base --script cluster.py --rounds 2
    python benchmarks/versus.py /tmp/rayling_base --quick        # other options: the script's

Each round runs the script once per checkout (``--impl rayling --json``, with that
checkout first on PYTHONPATH), the two taking turns to go first; a figure is the best of
the rounds (the highest rate, the lowest time or memory). The table gives both and their
ratio, this checkout over the other, with "better" or "worse" where they differ by more
than --tolerance.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER_IS_BETTER = ("(s)", "(ms)", "(MB)", "processes")


def run_once(checkout: str, script: str, extra: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [checkout] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}
    command = [sys.executable, os.path.join(checkout, "benchmarks", script),
               "--impl", "rayling", "--json", *extra]
    # (In the checkout: a local cluster's processes import rayling from the driver's
    # working directory first.)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env, cwd=checkout,
                          timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed in {checkout}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result.get("rayling", result)  # microbenchmark.py nests its columns


def better(name: str, a: float, b: float) -> bool:
    lower = name.endswith(LOWER_IS_BETTER)
    return a < b if lower else a > b


def best_of(runs: list[dict[str, float]]) -> dict[str, float]:
    best: dict[str, float] = {}
    for run in runs:
        for name, value in run.items():
            if name not in best or better(name, value, best[name]):
                best[name] = value
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="the other checkout (a git worktree, say)")
    parser.add_argument("--script", default="microbenchmark.py",
                        help="a benchmark in benchmarks/ that takes --impl and --json")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args, extra = parser.parse_known_args()  # the rest goes to the script (e.g. --quick)
    runs: dict[str, list] = {"this": [], "baseline": []}
    order = [("baseline", args.baseline), ("this", HERE)]
    for i in range(args.rounds):
        # Each goes first in every other round: what runs just after another run (its
        # processes still exiting, say) is not always the same side.
        for label, checkout in order if i % 2 == 0 else order[::-1]:
            print(f"round {i + 1}/{args.rounds}: {label} ({checkout})", file=sys.stderr)
            runs[label].append(run_once(checkout, args.script, extra))
    this, base = best_of(runs["this"]), best_of(runs["baseline"])
    width = max(len(name) for name in this)
    print(f"{'benchmark':{width}} | {'this':>12} | {'baseline':>12} | this/baseline")
    print("-" * (width + 48))
    for name in this:
        a, b = this[name], base.get(name, float("nan"))
        ratio = a / b if b else float("nan")
        verdict = ""
        if abs(ratio - 1) > args.tolerance:
            verdict = "better" if better(name, a, b) else "WORSE"
        print(f"{name:{width}} | {a:12,.4g} | {b:12,.4g} | {ratio:6.3f} {verdict}")


if __name__ == "__main__":
    main()
