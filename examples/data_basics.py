"""Ray Data basics (seed 000 "Ray Data": creating and transforming datasets).

Seed code with `import rayling as ray`. Two changes: the seed reads iris.csv from S3, which
this example writes locally first; and the 10,000,000-row dataset is 1,000,000 rows.
Printed values are labelled.
"""

import csv
import os
import tempfile

import rayling as ray

ray.init(num_cpus=4, configure_logging=False)

# -- creating datasets
ds = ray.data.range(1000)   # create a dataset from a range
print("repr:", repr(ds))    # Dataset(num_rows=1000, schema={id: int64})
print("count:", ds.count())
print("take(3):", ds.take(3))
print("len(take()):", len(ds.take()))
ds.show(3)
print("num_blocks:", ds.materialize().num_blocks())

print("from_items:", ray.data.from_items([10,20,30]).take())

listOfDict = [{"col1": i, "col2": i ** 2} for i in range(1000)] # each dict contains 2 pairs
ds = ray.data.from_items(listOfDict)
ds.show(5)

folder = tempfile.mkdtemp()
path = os.path.join(folder, "iris.csv")
with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["sepal.length", "sepal.width", "petal.length", "petal.width", "variety"])
    for i in range(150):
        writer.writerow([5.0 + i % 10 / 10, 3.0, 1.4 + i % 5 / 10, 0.2, ["Setosa", "Versicolor", "Virginica"][i // 50]])
dd = ray.data.read_csv(path)   # load a dataset from a file
print("csv count:", dd.count())
dd.show(3)

# -- transforming datasets
ds = ray.data.range(1000)   # create a dataset
ds.map(lambda row: row).show(3)                  # takes a row, returns the same row
ds.map(lambda row: {"key": row["id"]}).show(3)   # takes a row, returns a similar row
a = ds.map(lambda row: {"long": str(row["id"])*3})  # takes a row, returns a dict with 'id' values
print("a:", repr(a).splitlines()[0])
print("long:", a.take(5))

def squares(row):
    return {'squares': row['id']**2}

print("squares:", ds.map(squares).take(5))

def addSquares(row):
    row['square'] = row['id']**2   # add a new entry to each row
    return row

b = ds.map(addSquares)
print("original:", ds.take(2))
print("added:", b.take(2))

ds = ray.data.range(1_000_000)   # define a bigger dataset
ds.map(addSquares)   # no visible calculation, just a request, not consuming results
ds.map(addSquares).show()   # print results => start calculation
c = ds.map(addSquares).take(1_000_000)
print("rows taken:", len(c), "last:", c[-1])

# -- NumPy arrays in rows
n = 1_000_000
n1 = n // 2
n2 = n - n1

from time import time
import numpy as np
ds = ray.data.from_items([np.arange(n1), n1 + np.arange(n2)])
ds.show()   # 2 rows

def squares(row):
    return {'squares': row['item']**2}   # compute element-wise square of an array

start = time()
b = ds.map(squares).take()
end = time()
print("Time in seconds:", round(end-start,3))
print("sum of squares:", int(sum(int(r['squares'].sum()) for r in b)))

ray.shutdown()
