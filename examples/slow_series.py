"""The slow series as Ray tasks, serial and parallel (seed 000 "Parallelizing the slow series
with Ray tasks").

Seed code with `import rayling as ray`; n shrunk from 100_000_000 to 1_000_000. The seed's
two snippets are separate sessions; here `ray.shutdown()` separates them. Printed totals
are labelled.
"""

from time import time

import rayling as ray

ray.init(num_cpus=4, configure_logging=False)

@ray.remote
def slow(n: int):
    total = 0
    for i in range(1,n+1):
        if not "9" in str(i):
            total += 1.0 / i
    return total

start = time()
r = slow.remote(1_000_000)
total = ray.get(r)
end = time()
print("Time in seconds:", round(end-start,3))
print("one task total:", repr(total))

# ray.get() on a computed result again does not redo the calculation
start = time()
tmp = ray.get(r)
end = time()
print("Time in seconds:", round(end-start,3))   # 0.001 seconds
print("one task total again:", repr(tmp))

ray.shutdown()

# --- partial sums over intervals ---
import psutil

ray.init(num_cpus=4, configure_logging=False)

@ray.remote
def slow(interval):
    total = 0
    for i in range(interval[0],interval[1]+1):
        if not "9" in str(i):
            total += 1.0 / i
    return total

n = 1_000_000
start = time()
r = slow.remote((1, n))   # takes in one argument
total = ray.get(r)
end = time()
print("Time in seconds:", round(end-start,3))
print("serial total:", repr(total))

ncores = psutil.cpu_count(logical=False)   # good option on a standalone computer
ncores = 4                                 # on a cluster

size = n//ncores   # size of each batch
intervals = [(i*size+1,(i+1)*size) for i in range(ncores)]
if n > intervals[-1][1]: intervals[-1] = (intervals[-1][0], n)   # add the remainder (if any)

start = time()
r = [slow.remote(intervals[i]) for i in range(ncores)]
total = sum(ray.get(r))   # compute total sum
end = time()
print("Time in seconds:", round(end-start,3))
print("parallel total:", repr(total))

ray.shutdown()
