"""Two nodes on this machine: moving a large object between them, and task throughput
with tasks spread over both, on rayling and on Ray side by side.

    python benchmarks/cluster.py                  # rayling, then Ray if installed
    python benchmarks/cluster.py --impl rayling   # one implementation only
    python benchmarks/cluster.py --mb 100         # a smaller array

Workloads (each written once against the name `ray`):

* transfer: a task pinned to node B makes an N MB array; once it exists, a task pinned
  to node A takes it as its argument (so A copies it from B) and returns its size. The
  rate is N MB over the time of that second task. Best of 5, a fresh array each time.
* async tasks: 2000 trivial tasks submitted, then all got; tasks/s, best of 5. Once on
  one node with 2 CPUs, then on a cluster of two nodes with 1 CPU each (the default
  strategy, which spreads them by load, and SPREAD), then two nodes with 2 CPUs each.

Ray is looked for at /tmp/rayenv/bin/python; this script re-runs itself there with
`--impl ray --json` and prints both in one table. MB and GB are 10**6 and 10**9 bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

DEFAULT_RAY_PYTHON = "/tmp/rayenv/bin/python"
REPEATS = 5
TASKS = 2000


def load(impl: str):
    if impl == "ray":
        import ray
        from ray.cluster_utils import Cluster
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    else:
        import rayling as ray
        from rayling.cluster_utils import Cluster
        from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return ray, Cluster, NodeAffinitySchedulingStrategy


def measure_transfer(ray, affinity, mb: int) -> float:
    import numpy as np

    here = ray.get_runtime_context().get_node_id()
    other = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here)
    n = mb * 10**6 // 8

    @ray.remote(num_cpus=0)
    def make(n):
        return np.ones(n)

    @ray.remote(num_cpus=0)
    def size(array):
        return array.nbytes

    best = float("inf")
    for _ in range(REPEATS):
        ref = make.options(scheduling_strategy=affinity(other, soft=False)).remote(n)
        ray.wait([ref], fetch_local=False)
        start = time.perf_counter()
        assert ray.get(size.options(scheduling_strategy=affinity(here, soft=False))
                       .remote(ref)) == n * 8
        best = min(best, time.perf_counter() - start)
        del ref
    return n * 8 / best / 1e9


def measure_async_tasks(ray, strategy: str) -> float:
    @ray.remote(num_cpus=1)
    def trivial():
        return 0

    ray.get([trivial.options(scheduling_strategy=strategy).remote() for _ in range(200)])
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        ray.get([trivial.options(scheduling_strategy=strategy).remote() for _ in range(TASKS)])
        best = min(best, time.perf_counter() - start)
    return TASKS / best


def run(impl: str, mb: int) -> dict:
    ray, Cluster, affinity = load(impl)
    results = {}
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    results["async tasks, 1 node x 2 CPUs (tasks/s)"] = measure_async_tasks(ray, "DEFAULT")
    ray.shutdown()
    store = 4 * mb * 10**6 + 200 * 10**6
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "object_store_memory": store})
    cluster.add_node(num_cpus=1, object_store_memory=store)
    ray.init(address=cluster.address)
    try:
        results["async tasks, 2 nodes x 1 CPU (tasks/s)"] = measure_async_tasks(ray, "DEFAULT")
        results["  same, SPREAD (tasks/s)"] = measure_async_tasks(ray, "SPREAD")
        results[f"transfer {mb} MB node to node (GB/s)"] = measure_transfer(ray, affinity, mb)
    finally:
        ray.shutdown()
        cluster.shutdown()
    # Each node as large as the single node above (the machine is shared, so this
    # oversubscribes its cores, as two 2-CPU nodes on one 2-core machine must).
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address)
    try:
        results["async tasks, 2 nodes x 2 CPUs (tasks/s)"] = measure_async_tasks(ray, "DEFAULT")
    finally:
        ray.shutdown()
        cluster.shutdown()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("rayling", "ray", "both"), default="both")
    parser.add_argument("--mb", type=int, default=500)
    parser.add_argument("--ray-python", default=DEFAULT_RAY_PYTHON)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        print(json.dumps(run(args.impl, args.mb)))
        return
    table = {}
    if args.impl in ("rayling", "both"):
        table["rayling"] = run("rayling", args.mb)
    if args.impl in ("ray", "both"):
        if os.path.exists(args.ray_python):
            out = subprocess.run(
                [args.ray_python, os.path.abspath(__file__), "--impl", "ray", "--json",
                 "--mb", str(args.mb)], capture_output=True, text=True, timeout=900)
            if out.returncode == 0:
                table["ray"] = json.loads(out.stdout.strip().splitlines()[-1])
            else:
                print(f"Ray run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        else:
            print(f"(Ray not found at {args.ray_python}; rayling only)", file=sys.stderr)
    rows = list(next(iter(table.values())))
    impls = list(table)
    header = f"{'workload':45}" + "".join(f"{i:>12}" for i in impls)
    if len(impls) == 2:
        header += f"{'rayling/ray':>13}"
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row:45}" + "".join(f"{table[i].get(row, float('nan')):12.2f}" for i in impls)
        if len(impls) == 2:
            line += f"{table['rayling'][row] / table['ray'][row]:12.2f}x"
        print(line)


if __name__ == "__main__":
    main()
