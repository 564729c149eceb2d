"""Task dependencies: aggregating values, slow (linear chain) and fast (tree) (seed 004
"Example 4: Task Dependencies: Aggregating Values Efficiently").

Seed code with `import rayling as ray`; `time.sleep(1)` shrunk to `time.sleep(0.1)`. In the
seed the faster approach starts from `values` that the slow approach has already reduced to
one element (so it does nothing); here `values` is reset to [1..8] before it. Prints of the
intermediate lists are kept.
"""

import time

import rayling as ray

ray.init(num_cpus=4)

# define a task to add two intergers
@ray.remote
def add(x, y):
    time.sleep(0.1)
    return x + y

# Add values the slow approach
values = [i for i in range(1, 9)]
print(values)

start = time.time()
while len(values) > 1:
    values = [add.remote(values[0], values[1])] + values[2:]
    print(values)
result = ray.get(values[0])
print("slow approach result:", result)
print("Wall time:", round(time.time() - start, 3))

# Add values the faster approach
values = [i for i in range(1, 9)]
start = time.time()
while len(values) > 1:
    values = values[2:] + [add.remote(values[0], values[1])]
result = ray.get(values[0])
print("fast approach result:", result)
print("Wall time:", round(time.time() - start, 3))

ray.shutdown()
