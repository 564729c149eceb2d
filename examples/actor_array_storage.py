"""Ray actors as persistent storage: store an array on an actor and get it back, with one
actor and with two, and the actor ids and node ids they run with (seed 002 "Persistent
storage on Ray workers").

Seed code with `import rayling as ray`; expressions the seed shows as comments are printed.
The seed adds `get_actor_id()`/`get_node_id()` to the class ("...") and returns
`self.actor_id`/`self.node_id`, which its full class example (commented out in the seed) sets
in `__init__` from `ray.get_runtime_context()`; here the class is redefined with those two
lines and the two methods, and the two workers are created again from it. Added: labelled
prints of the workers' handles and of the driver's node id, for the tests, and
`ray.shutdown()`.
"""

import rayling as ray
import numpy as np

ray.init()

@ray.remote
class ArrayStorage:         # define an actor (ArrayStorage class) with a persistent array
    def __init__(self):
        self.array = None   # persistent array variable
    def store_array(self, arr):
        self.array = arr    # store an array in the actor's state
    def get_array(self):
        return self.array   # retrieve the stored array

storage_actor = ArrayStorage.remote()   # create an instance of the actor

arr = np.array([1, 2, 3, 4, 5])
ray.get(storage_actor.store_array.remote(arr))   # store an array

r = ray.get(storage_actor.get_array.remote())    # retrieve the stored array
print(r)  # Output: [1 2 3 4 5]

# To scale this to multiple workers, we can do the same with an array of workers:

workers = [ArrayStorage.remote() for i in range(2)]   # create two instances of the actor

r = [workers[i].store_array.remote(np.ones(5)*(i+1)) for i in range(2)]
print(ray.get(r))

print(ray.get(workers[0].get_array.remote()))   # [1. 1. 1. 1. 1.]
print(ray.get(workers[1].get_array.remote()))   # [2. 2. 2. 2. 2.]

r = [workers[i].get_array.remote() for i in range(2)]
print(ray.get(r))   # both arrays in one go

# Actor IDs and node IDs: the class with get_actor_id() and get_node_id() added.

@ray.remote
class ArrayStorage:         # define an actor (ArrayStorage class) with a persistent array
    def __init__(self):
        self.array = None   # persistent array variable
        self.actor_id = ray.get_runtime_context().get_actor_id()  # get actor's unique ID
        self.node_id = ray.get_runtime_context().get_node_id()    # get node ID
    def store_array(self, arr):
        self.array = arr    # store an array in the actor's state
    def get_array(self):
        return self.array   # retrieve the stored array
    def get_actor_id(self):
        return self.actor_id
    def get_node_id(self):
        return self.node_id   # the node ID where this actor is running

workers = [ArrayStorage.remote() for i in range(2)]   # create two instances of the actor

r = [workers[i].store_array.remote(np.ones(5)*(i+1)) for i in range(2)]
print(ray.get(r))

print([ray.get(workers[i].get_actor_id.remote()) for i in range(2)])   # actor IDs
print([ray.get(workers[i].get_node_id.remote()) for i in range(2)])    # node IDs

print("handles:", workers)
print("driver node id:", ray.get_runtime_context().get_node_id())
r = [workers[i].get_array.remote() for i in range(2)]
print("arrays on the new workers:", ray.get(r))

ray.shutdown()
