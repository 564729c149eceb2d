"""Numba-compiled functions run as Ray tasks, both ways (seed 000 and 002 "Running
Numba-compiled functions as Ray tasks").

Seed code with `import rayling as ray`. The seed's two snippets are separate sessions; here
`ray.shutdown()` separates them.
"""

import rayling as ray
from numba import jit

ray.init(num_cpus=4, configure_logging=False)

# 1. "jit" the function on the main process and send it to workers for execution.
@jit(nopython=True)
def square(x):
    return x*x

@ray.remote
def runCompiled():
    return square(5)

r = runCompiled.remote()
print("jit on driver:", ray.get(r))

ray.shutdown()

ray.init(num_cpus=4, configure_logging=False)

# 2. "jit" on the workers.
def square(x):
    return x*x

@ray.remote
def runCompiled():
    compiledSquare = jit(square)
    return compiledSquare(5)

r = runCompiled.remote()
print("jit in task:", ray.get(r))

ray.shutdown()
