"""The 1D Poisson solver split over any number of Ray actors, here 4 (seed 002 "Scalable
version", `poissonDistributed.py`).

Seed code with `import rayling as ray`; sizes shrunk as in poisson_serial.py (n = 1_000
instead of 20_000_000, relativeTolerance = 1e-3 instead of 1e-4). rayling has no object
spilling, so `_system_config={'automatic_object_spilling_enabled': False}` changes nothing.
Added at the end: labelled prints of the iteration count, the final diff, the whole solution
(all four intervals) at full precision and the CPUs left free while the actors live (all 4:
an actor needs a CPU to be placed but holds none while it runs, as in Ray), and
`ray.shutdown()`.

With 4 intervals the iteration is not poisson_serial.py's 2-interval one (the two
extra interfaces are updated from ghost values too), so its solution differs from
poisson_serial.py's near those interfaces; the tests compare it with the same
4-interval iteration done in serial NumPy.
"""

##### this is poissonDistributed.py #####
from time import time
import numpy as np
import rayling as ray

n, relativeTolerance = 1_000, 1e-3
h = 1/(n-1)

ncores = 4
size = n//ncores
intervals = [(i*size,(i+1)*size-1) for i in range(ncores)]
if n > intervals[-1][1]:
    intervals[-1] = (intervals[-1][0], n-1)

b = np.ones(n)*2*h*h

ray.init(num_cpus=ncores, configure_logging=False, _system_config={ 'automatic_object_spilling_enabled':False })

@ray.remote
class ArrayStorage:
    def __init__(self, n):
        self.b = None         # persistent variable
        self.u = np.zeros(n)  # persistent variable
        self.n = n            # persistent variable
    def store_b(self, arr):   # store an array in the actor's state
        self.b = arr
    def get_u(self):
        return self.u
    def localSolve(self, ghostLeft, ghostRight, side):
        n = self.n
        self.u[1:n-1] = (self.u[0:n-2] + self.u[2:n] - self.b[1:n-1]) / 2
        if side[0]: self.u[0] = (ghostLeft + self.u[1] - self.b[0]) / 2
        if side[1]: self.u[n-1] = (self.u[n-2] + ghostRight - self.b[n-1]) / 2
    def getLastValue(self):
        return self.u[-1]
    def getFirstValue(self):
        return self.u[0]

workers = [ArrayStorage.remote(intervals[i][1]-intervals[i][0]+1) for i in range(ncores)]
[workers[i].store_b.remote(b[intervals[i][0]:intervals[i][1]+1]) for i in range(ncores)]

diff = 999.0   # difference between two successive values of u1[-1]
count = 0
ghostRight = np.zeros(ncores)
ghostLeft = np.zeros(ncores)
start = time()
while abs(diff) > relativeTolerance:
    count += 1
    ghostLeft[1:ncores] = ray.get([workers[i-1].getLastValue.remote() for i in range(1, ncores)])
    ghostRight[0:ncores-1] = ray.get([workers[i+1].getFirstValue.remote() for i in range(ncores-1)])
    diff = ghostLeft[1]
    workers[0].localSolve.remote(ghostLeft[0], ghostRight[0], (False,True))
    [workers[i].localSolve.remote(ghostLeft[i], ghostRight[i],
                                  (True,True)) for i in range(1,ncores-1)]
    workers[ncores-1].localSolve.remote(ghostLeft[ncores-1], ghostRight[ncores-1], (True,False))
    newLeft = ray.get(workers[0].getLastValue.remote())
    diff = (diff-newLeft) / newLeft
    if count%100 == 0:
        u1 = ray.get(workers[0].get_u.remote())
        u2 = ray.get(workers[1].get_u.remote())
        print(u1[-3:], u2[:3], diff)

end = time()
print("Time in seconds:", round(end-start,3))
print("Converged after", count, "iterations", "with diff =", diff)
u1 = ray.get(workers[0].get_u.remote())
u2 = ray.get(workers[1].get_u.remote())
print("Solution:", u1[-3:], u2[:3])

print("iterations:", count)
print("final diff:", repr(float(diff)))
print("solution:", np.concatenate(ray.get([w.get_u.remote() for w in workers])).tolist())
print("CPUs available while the actors live:", ray.available_resources().get("CPU", 0))

ray.shutdown()
