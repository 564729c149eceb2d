"""Using the Ray object store: one array put once, read by every task (seed 001 "Using the
Ray object store").

Seed code with `import rayling as ray`; the array shrunk from 100_000_000 to 1_000_000
normal samples (800 MB -> 8 MB). The seed calls an undefined `mycalc` with an undefined `p`
tasks; here it calls `calc` with p = 4, gets the results and prints them.
"""

import rayling as ray

ray.init()

@ray.remote
def calc(i, data):
    import numpy as np
    return([np.mean(data), np.std(data)])

import numpy as np
rng = np.random.default_rng()
## an 8 MB object
y = rng.normal(0, 1, size=(1000000))


y_ref = ray.put(y) # put the data in the object store

## One can pass the reference to the object in the object store as an argument
p = 4
futures = [calc.remote(i, y_ref) for i in range(p)]
results = ray.get(futures)
for i, (mean, std) in enumerate(results):
    print(f"task {i}: mean={mean!r} std={std!r}")
print(f"driver: mean={np.mean(y)!r} std={np.std(y)!r}")

ray.shutdown()
