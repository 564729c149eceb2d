"""The 1D Poisson solver in serial NumPy, in two intervals (seed 002 "Tightly coupled
parallel problem", `poissonSerial.py`): the reference the Ray actor versions reproduce.

Seed code (no Ray in it); sizes shrunk: n = 1_000 grid points instead of 20_000_000 and
relativeTolerance = 1e-3 instead of 1e-4 (988 iterations instead of 9961). Added at the end:
labelled prints of the iteration count, the final diff and the whole solution at full
precision, for the tests.
"""

##### this is poissonSerial.py #####
from time import time
import numpy as np

n, relativeTolerance = 1_000, 1e-3
n1 = n//2; n2 = n - n1
h = 1/(n-1)

b = np.ones(n)*2*h*h

u1 = np.zeros(n1)   # the initial guess (first interval)
u2 = np.zeros(n2)   # the initial guess (second interval)

diff = 999.0   # difference between two successive values of u1[-1]
count = 0
start = time()
while abs(diff) > relativeTolerance:
    count += 1
    ghostLeft = u1[-1]
    ghostRight = u2[0]
    diff = ghostLeft
    # compute new u1
    u1[1:n1-1] = (u1[0:n1-2] + u1[2:n1] - b[1:n1-1]) / 2   # update at inner points 1..n1-2
    u1[n1-1] = (u1[n1-2] + ghostRight - b[n1-1]) / 2       # update at the last point
    # compute new u2
    u2[1:n2-1] = (u2[0:n2-2] + u2[2:n2] - b[n1+1:n-1]) / 2 # update at inner points 1..n2-2
    u2[0] = (ghostLeft + u2[1] - b[n1]) / 2                # update at the first point
    diff = (diff-u1[-1]) / u1[-1]
    if count%100 == 0: print(u1[-3:], u2[:3], diff)

end = time()
print("Time in seconds:", round(end-start,3))
print("Converged after", count, "iterations", "with diff =", diff)
print("Solution:", u1[-3:], u2[:3])

print("iterations:", count)
print("final diff:", repr(float(diff)))
print("solution:", np.concatenate([u1, u2]).tolist())
