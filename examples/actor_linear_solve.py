"""NumPy on an actor: a linear system solved with `np.linalg.solve()` on an actor that keeps
the matrix, the right-hand side and the solution in its state (seed 002 "Persistent storage
on Ray workers", the `localSolve`/`get_u` example).

Seed code with `import rayling as ray` (n = 500 as in the seed). Added: a labelled print of
the whole solution at full precision, for the tests, and `ray.shutdown()`.
"""

import numpy as np
import rayling as ray

ray.init(num_cpus=2, configure_logging=False)

n = 500
h = 1/(n+1)
b = np.exp(-(100*(np.linspace(0,1,n)-0.45))**2)*h*h

@ray.remote
class ArrayStorage:
    def __init__(self, n):
        self.b = None   # persistent variable
        self.u = None   # persistent variable
        flatIdentity = np.identity(n).reshape([n*n])
        a = -2.0*flatIdentity
        a[1:n*n-1] = a[1:n*n-1] + flatIdentity[:n*n-2] + flatIdentity[2:]
        self.a = a.reshape([n,n])   # persistent variable
    def store_b(self, arr):
        self.b = arr                # store an array in the actor's state
    def get_u(self):
        return self.u
    def localSolve(self):
        self.u = np.linalg.solve(self.a,self.b)

worker = ArrayStorage.remote(n)
worker.store_b.remote(b)
worker.localSolve.remote()
u = ray.get(worker.get_u.remote())
print("The solution is", u)

print("solution:", u.tolist())

ray.shutdown()
