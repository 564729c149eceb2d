"""Task output: tasks that nap, print and return their task id (seed 000 "Task output", also 002).

Seed code with `import rayling as ray`; `sleep(10)` shrunk to `sleep(1)`. Run it as is to
see one "almost done" and a "[repeated 3x across cluster]" line, or with RAY_DEDUP_LOGS=0
to see all four. Ray task ids are 48-character hexadecimal numbers.
"""

from time import sleep, time

import rayling as ray

ray.init(num_cpus=4, configure_logging=False)

@ray.remote
def nap():
    sleep(1)
    print("almost done")
    return ray.get_runtime_context().get_task_id()

start = time()
r = [nap.remote() for i in range(4)]
ids = ray.get(r)
end = time()
print("Time in seconds:", round(end-start,3))
for task_id in ids:
    print("task id:", task_id)

ray.shutdown()
