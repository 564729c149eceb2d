"""Regular functions vs. remote functions, serial vs. parallel (seed 004 "Example 1: Serial
vs Parallelism").

Seed code with `import rayling as ray`; expressions the seed shows in notebook cells are
printed. The seed's `if ray.is_initialized:` (no call: always true) is kept, so
`ray.shutdown()` runs before any `ray.init()`.
"""

import logging
from pprint import pprint

import rayling as ray


# A regular Python function.
def regular_function():
    return 1

# A Ray remote function.
@ray.remote
def remote_function():
    return 1

# Let's invoke the regular function
print(regular_function())

if ray.is_initialized:
    ray.shutdown()
context = ray.init(logging_level=logging.ERROR)
pprint(context)

print(f"Dashboard url: http://{context.address_info['webui_url']}")

# Let's invoke the remote regular function.
print(remote_function.remote())

print(ray.get(remote_function.remote()))

# These are executed one at a time, back-to-back, in a list comprehension
results = [regular_function() for _ in range(10)]
assert sum(results)

# Executing these functions, in comprehension list, happens at the same time in the background,
# and we get the results using ray.get.
results = [remote_function.remote() for _ in range(10)]
assert sum(ray.get(results)) == 10
print("sum of 10 remote results:", sum(ray.get(results)))

ray.shutdown()
