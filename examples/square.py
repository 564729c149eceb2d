"""Ray tasks: the `square` remote function (seed 000 "Ray tasks", also 001 and 002).

Seed code with `import rayling as ray`; expressions the seed shows at the REPL are printed.
"""

import rayling as ray

ray.init(configure_logging=False)   # optional

@ray.remote             # declare that we want to run this function remotely
def square(x):
    return x * x

r = square.remote(10)   # launch/schedule a remote calculation (non-blocking call)
print(type(r))          # ray._raylet.ObjectRef (object reference)
print(ray.get(r))       # retrieve the result (=100) (blocking call)

a = square.remote(10)   # launch a remote calculation
ray.cancel(a)           # cancel it
try:
    print("after cancel:", ray.get(a))   # either error or 100, depending on whether the
except ray.exceptions.TaskCancelledError as e:   # calculation has finished before cancellation
    print("after cancel: TaskCancelledError:", e)

r = [square.remote(i) for i in range(4)]   # launch four parallel tasks (non-blocking call)
print([ray.get(r[i]) for i in range(4)])   # retrieve the results (multiple blocking calls)
print(ray.get(r))          # more compact way to do the same (single blocking call)

# Seed 001: the same with other names.
@ray.remote
def f(x):
    return x * x

futures = [f.remote(i) for i in range(4)]
print(ray.get(futures)) # [0, 1, 4, 9]

ray.shutdown()
