"""The slow series with Numba-compiled functions executed as Ray tasks (seed 002
`slowSeriesNumbaRayCore.py`, the solution to question 13 of seed 000).

Seed code with `import rayling as ray`; n shrunk from 100_000_000 to 1_000_000. The total
is labelled.
"""

from time import time

import rayling as ray
from numba import jit

ray.init(configure_logging=False)

n = 1_000_000

@jit(nopython=True)
def combined(x):
    base, x0 = 10, x
    while 9//base > 0: base *= 10
    while x > 0:
        if x%base == 9: return 0.0
        x = x//10
    return 1.0/x0

@jit(nopython=True)
def slow(interval):
    total = 0
    for i in range(interval[0],interval[1]+1):
        total += combined(i)
    return total

@ray.remote
def runCompiled(interval):
    return slow(interval)

ncores = 4
size = n//ncores   # size of each batch
intervals = [(i*size+1,(i+1)*size) for i in range(ncores)]
if n > intervals[-1][1]: intervals[-1] = (intervals[-1][0], n)   # add the remainder (if any)

r = [runCompiled.remote((1,10)) for i in range(ncores)]   # expose workers to runCompiled function
total = sum(ray.get(r))
print("warm-up total (1..10, x4):", repr(total))

start = time()
r = [runCompiled.remote(intervals[i]) for i in range(ncores)]
total = sum(ray.get(r))   # compute total sum
end = time()
print("Time in seconds:", round(end-start,3))
print("numba total:", repr(total))

ray.shutdown()
