"""The 1D Poisson solver with the two intervals stored on two Ray actors (seed 002 "Back to
the Poisson solver", `poissonDual.py`).

Seed code with `import rayling as ray`; sizes shrunk as in poisson_serial.py (n = 1_000
instead of 20_000_000, relativeTolerance = 1e-3 instead of 1e-4). Added at the end: labelled
prints of the iteration count, the final diff and the whole solution at full precision, and
`ray.shutdown()`.
"""

##### this is poissonDual.py #####
from time import time
import numpy as np
import rayling as ray

n, relativeTolerance = 1_000, 1e-3
n1 = n//2; n2 = n - n1
h = 1/(n-1)

ray.init(num_cpus=2, configure_logging=False)

b = np.ones(n)*2*h*h

@ray.remote
class ArrayStorage:
    def __init__(self, n):
        self.b = None         # persistent variable
        self.u = np.zeros(n)  # persistent variable
    def store_b(self, arr):   # store an array in the actor's state
        self.b = arr
    def get_u(self):
        return self.u
    def localSolve(self, n, ghostValue, side):
        self.u[1:n-1] = (self.u[0:n-2] + self.u[2:n] - self.b[1:n-1]) / 2
        if side == 1: self.u[n-1] = (self.u[n-2] + ghostValue - self.b[n-1]) / 2
        if side == 2: self.u[0] = (ghostValue + self.u[1] - self.b[0]) / 2
    def getLastValue(self):
        return self.u[-1]
    def getFirstValue(self):
        return self.u[0]

worker1 = ArrayStorage.remote(n1)
worker2 = ArrayStorage.remote(n2)

worker1.store_b.remote(b[0:n1])
worker2.store_b.remote(b[n1:n])

diff = 999.0   # difference between two successive values of u1[-1]
count = 0
start = time()
while abs(diff) > relativeTolerance:
    count += 1
    ghostLeft = ray.get(worker1.getLastValue.remote()) if count > 1 else 0.0
    ghostRight = ray.get(worker2.getFirstValue.remote()) if count > 1 else 0.0
    diff = ghostLeft
    worker1.localSolve.remote(n1, ghostRight, 1)   # compute new u1
    worker2.localSolve.remote(n2, ghostLeft,  2)   # compute new u2
    newLeft = ray.get(worker1.getLastValue.remote())
    diff = (diff-newLeft) / newLeft
    if count%100 == 0:
        u1 = ray.get(worker1.get_u.remote())
        u2 = ray.get(worker2.get_u.remote())
        print(u1[-3:], u2[:3], diff)

end = time()
print("Time in seconds:", round(end-start,3))
print("Converged after", count, "iterations", "with diff =", diff)
u1 = ray.get(worker1.get_u.remote())
u2 = ray.get(worker2.get_u.remote())
print("Solution:", u1[-3:], u2[:3])

print("iterations:", count)
print("final diff:", repr(float(diff)))
print("solution:", np.concatenate([u1, u2]).tolist())

ray.shutdown()
