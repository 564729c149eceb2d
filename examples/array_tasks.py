"""Tasks that read, add and sum NumPy arrays, chained by object refs (seed 004 "Example 2:
Adding two np arrays").

Seed code with `import rayling as ray`. The seed reads `data/file_1.txt` and
`data/file_2.txt`, which it does not include; here two 10x10 integer arrays are written to a
temporary directory (made the working directory before `ray.init()`, as the seed's notebook
directory is) first. `add_array` is kept as in the seed (it returns
`arr1 + arr1`, not `arr1 + arr2`).
"""

import os
import tempfile

import numpy as np
from numpy import loadtxt

import rayling as ray

tmp = tempfile.TemporaryDirectory()
os.chdir(tmp.name)
os.makedirs("data")
rng = np.random.default_rng(0)
np.savetxt("data/file_1.txt", rng.integers(0, 100, size=(10, 10)), fmt="%d", delimiter=",")
np.savetxt("data/file_2.txt", rng.integers(0, 100, size=(10, 10)), fmt="%d", delimiter=",")

ray.init(num_cpus=2)

@ray.remote
def read_array(fn: str) -> np.array:
    arr = loadtxt(fn, comments="#", delimiter=",", unpack=False)
    return arr.astype('int')

@ray.remote
def add_array(arr1: np.array, arr2: np.array) -> np.array:
    return np.add(arr1, arr1)

@ray.remote
def sum_array(arr1: np.array) -> int:
    return np.sum(arr1)

obj_ref_arr1 = read_array.remote("data/file_1.txt")
print(f"array 1: {obj_ref_arr1}")

obj_ref_arr2 = read_array.remote("data/file_2.txt")
print(f"array 2: {obj_ref_arr2}")

result_obj_ref = add_array.remote(obj_ref_arr1, obj_ref_arr2)
print(result_obj_ref)

result = ray.get(result_obj_ref)
print(f"Result: add arr1 + arr2: \n {result}")

sum_1 = ray.get(sum_array.remote(obj_ref_arr1))
sum_2 = ray.get(sum_array.remote(obj_ref_arr2))

print(f'Sum of arr1: {sum_1}')
print(f'Sum of arr2: {sum_2}')
print(f'Sum of result: {ray.get(sum_array.remote(result_obj_ref))}')

ray.shutdown()
os.chdir("/")
tmp.cleanup()
