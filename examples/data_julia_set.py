"""The Julia set with Ray Data (seed 000 "A CPU-intensive problem without reduction").

The seed leaves the parallel version as an exercise and gives its four points: cut the
image into blocks of rows, one dataset row per block (its offset and size), a function
`computeStability(row)` that adds the block's `stability` array, and the blocks merged
into one image. This is that solution, at 200x200 instead of 2000x2000; it checks the
parallel image against the seed's serial loop and prints both times.
"""

from time import time

import numpy as np
import rayling as ray

nx = ny = 200   # image size
nblocks = 8

def pixel(z):
    c = 0.355 + 0.355j
    for i in range(1, 256):
        z = z**2 + c
        if abs(z) >= 4:
            return i
    return 255

start = time()
stability = np.zeros((nx,ny), dtype=np.int32)
for i in range(nx):
    for k in range(ny):
        point = 1.2*((2*(i+0.5)/nx-1) + (2*(k+0.5)/ny-1)*1j) # rescale to -1.2:1.2 in the complex plane
        stability[i,k] = pixel(point)
print("Serial time in seconds:", round(time()-start,3))

ray.init(num_cpus=2, configure_logging=False)

def computeStability(row):
    offset, size = row['offset'], row['size']
    block = np.zeros((size, ny), dtype=np.int32)
    for i in range(size):
        for k in range(ny):
            point = 1.2*((2*(offset+i+0.5)/nx-1) + (2*(k+0.5)/ny-1)*1j)
            block[i,k] = pixel(point)
    row['stability'] = block
    return row

size = nx // nblocks
rows = ray.data.from_items([{'offset': b*size, 'size': size} for b in range(nblocks)])
start = time()
blocks = rows.map(computeStability).take_all()
image = np.vstack([b['stability'] for b in blocks])
print("Parallel time in seconds:", round(time()-start,3))
print("same image:", bool((image == stability).all()))

ray.shutdown()
