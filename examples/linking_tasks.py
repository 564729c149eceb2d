"""Linking remote tasks: passing an object ref as an argument (seed 000 "Linking remote
tasks").

Seed code with `import rayling as ray`.
"""

import rayling as ray


@ray.remote
def one():
    return 1

@ray.remote
def increment(value):
    return value + 1

r1 = one.remote()                    # create the first Ray task
r2 = increment.remote(ray.get(r1))   # pass its result as an argument to another Ray task
print("via value:", ray.get(r2))

r1 = one.remote()           # create the first Ray task
r2 = increment.remote(r1)   # pass its object ref as an argument to another Ray task
print("via ref:", ray.get(r2))

ray.shutdown()
