"""Coding parallel I/O by hand with Ray Data (seed 000 "Coding parallel I/O by hand").

The seed's pattern, with three real files (written first into a temporary directory):
each row names a file, and `map` reads and processes it in parallel.
"""

import os
import tempfile

import numpy as np
import rayling as ray

folder = tempfile.mkdtemp()
for k in range(1, 4):
    np.save(os.path.join(folder, f"file{k}.npy"), np.arange(10 * k))

a = ray.data.from_items([
    {'file': os.path.join(folder, 'file1.npy')},
    {'file': os.path.join(folder, 'file2.npy')},
    {'file': os.path.join(folder, 'file3.npy')}
])
def readFileInParallel(row):
    data = np.load(row['file'])          # load data from file row['file']
    row['total'] = int(data.sum())       # process these data
    row['status'] = 'done'
    return row

b = a.map(readFileInParallel)
b.show()
print("totals:", [r['total'] for r in b.take()])
