"""poissonDistributed.py as the seed runs it on a cluster: each actor asks for one CPU,
`@ray.remote(num_cpus=1)`, so that the 4 actors spread over the 4 CPUs of 2 nodes (seed
002 "Running on multiple cluster nodes").

Seed code with `import rayling as ray`; sizes shrunk as in poisson_serial.py (n = 1_000
instead of 20_000_000, relativeTolerance = 1e-3 instead of 1e-4). The seed's cluster is
two Slurm nodes of 2 CPUs started with `ray start --head ...` and `ray start --address
...`; here `rayling.cluster_utils.Cluster` starts the same two nodes on this machine (the
same daemons `rayling start` runs), and the script connects as the seed does, with
`ray.init(address=f"{HEAD_NODE}:{RAY_PORT}", _node_ip_address=HEAD_NODE)`. Added at the
end: labelled prints of the iteration count, the final diff, the whole solution (all
four intervals) at full precision, the nodes, and the CPUs left free on each node while
the actors live (none: each holds one), then `ray.shutdown()` and the cluster's.

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

# In the seed: `ray start --head --node-ip-address=$HEAD_NODE --port=$RAY_PORT
# --num-cpus=2 --block &` and, on the second node, `ray start --address ... --num-cpus=2`.
from rayling.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
cluster.add_node(num_cpus=2)
HEAD_NODE, RAY_PORT = cluster.address.split(":")

ray.init(address=f"{HEAD_NODE}:{RAY_PORT}",_node_ip_address=HEAD_NODE)

@ray.remote(num_cpus=1)
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
print("nodes alive:", sum(node["Alive"] for node in ray.nodes()))
print("CPUs available per node:",
      [node["AvailableResources"].get("CPU", 0) for node in ray.nodes()])

ray.shutdown()
cluster.shutdown()
