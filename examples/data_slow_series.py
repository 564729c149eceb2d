"""The slow series with Ray Data, on one row and on two (seed 000 "Slow series with Ray Data",
seed 002 "Alternative parallel implementation via Ray Data").

Seed code with `import rayling as ray`; n shrunk from 100_000_000 to 1_000_000. Printed
totals are labelled.
"""

from time import time

import rayling as ray

ray.init(num_cpus=2, configure_logging=False)

intervals = ray.data.from_items([{"a": 1, "b": 1_000_000}])   # one item
intervals.show()

def slow(row):
    total = 0
    for i in range(row['a'], row['b']+1):
        if not "9" in str(i):
            total += 1.0 / i
    row['sum'] = total             # add key-value pair to the row
    return row

start = time()
partial = intervals.map(slow)      # define the calculation
total = partial.take()[0]['sum']   # request the result => start the calculation on 1 CPU core
end = time()
print("Time in seconds:", round(end-start,3))
print("one row total:", repr(total))

n = 1_000_000
ncores = 2
size = n // ncores
edges = [(i*size+1, i*size+size) for i in range(ncores)]
if edges[-1][1] < n: edges[-1] = (edges[-1][0],n)

intervals = ray.data.from_items([{'a':w[0], 'b':w[1]} for w in edges])  # define the dataset

start = time()
partial = intervals.map(slow)     # define the calculation
total = sum([p['sum'] for p in partial.take()])   # request the result => start the calculation on 2 CPU cores
end = time()
print("Time in seconds:", round(end-start,3))
print("two rows total:", repr(total))

ray.shutdown()
