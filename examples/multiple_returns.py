"""Multiple returns from Ray tasks: a tuple, num_returns=3, and a generator (seed 000
"Multiple returns from Ray tasks").

Seed code with `import rayling as ray`; expressions the seed shows at the REPL are printed.
"""

import rayling as ray


@ray.remote
def threeNumbers():
    return 10, 20, 30

r = threeNumbers.remote()
print("tuple:", ray.get(r))
print(ray.get(r)[0])        # get the result (tuple) and show its first element

@ray.remote(num_returns=3)
def threeNumbers():
    return 10, 20, 30

r1, r2, r3 = threeNumbers.remote()
print("num_returns=3 first:", ray.get(r1))   # get the first result only
print("num_returns=3 all:", ray.get([r1, r2, r3]))

@ray.remote(num_returns=3)
def threeNumbers():
    for i in range(3):
        yield i

r1, r2, r3 = threeNumbers.remote()
print("generator first:", ray.get(r1))   # get the first number only
print("generator all:", ray.get([r1, r2, r3]))

ray.shutdown()
