"""Task dependencies: object refs as arguments are replaced by their values, and tasks
that launch tasks (seed 004 "Concept of Task Dependencies" and the `f`/`g`/`h` cells).

Seed code with `import rayling as ray`; expressions the seed shows at the REPL are printed.
"""

import rayling as ray

ray.init(num_cpus=2)

@ray.remote
def f(x):
    return x

x1_id = f.remote(1)
print("x1:", ray.get(x1_id))

x2_id = f.remote([1, 2, 3])
print("x2:", ray.get(x2_id))

y1_id = f.remote(x1_id)
print("y1:", ray.get(y1_id))

y2_id = f.remote(x2_id)
print("y2:", ray.get(y2_id))

@ray.remote
def f():
    return 1

@ray.remote
def g():
    # Call f() 4 times and return the resulting object IDs.
    results = []
    for _ in range(4):
      results.append(f.remote())
    return results

@ray.remote
def h():
    # Call f() 4 times, block until those 4 tasks finish,
    # retrieve the results, and return the values.
    results = []
    for _ in range(4):
      results.append(f.remote())
    return ray.get(results)

refs = ray.get(g.remote())
print("g:", refs)
print("g values:", ray.get(refs))
print("h:", ray.get(h.remote()))

# Normally will want to shutdown
ray.shutdown()
