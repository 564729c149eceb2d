"""Initializing Ray (seed 000 "Initializing Ray", also 002).

Seed code with `import rayling as ray`. In the seed each snippet starts a fresh Python
session; in this one script `ray.shutdown()` separates them. The printed lines are added so
the script shows what each call did.
"""

import os

import rayling as ray

ray.init()   # start a Ray cluster  and connect to it
             # no longer necessary, will run by default when you first use it
print("initialized:", ray.is_initialized())
print("default CPUs:", ray.cluster_resources()["CPU"])
ray.shutdown()
print("after shutdown, initialized:", ray.is_initialized())

ray.init(configure_logging=False)   # hide Ray's copious logging output

# "You can run `ray.init()` only once. If you want to re-run it, first you need to run
# `ray.shutdown()`. Alternatively, you can pass the argument `ignore_reinit_error=True`."
try:
    ray.init()
except RuntimeError as e:
    print("second init raised RuntimeError:", e)
ray.init(ignore_reinit_error=True)
print("second init with ignore_reinit_error=True: ok")
ray.shutdown()

ray.init(num_cpus=4, configure_logging=False)
print("num_cpus=4 CPUs:", ray.cluster_resources()["CPU"])
ray.shutdown()

# Question 11, option 1: pass the number of cores from a Slurm environment variable.
ray.init(num_cpus=int(os.environ.get("SLURM_CPUS_PER_TASK", "2")), configure_logging=False)
print("Slurm-style CPUs:", ray.cluster_resources()["CPU"])
print("nodes:", len(ray.nodes()), "alive:", all(n["Alive"] for n in ray.nodes()))
ray.shutdown()
