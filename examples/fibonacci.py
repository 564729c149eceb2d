"""Fibonacci sequences, locally and as Ray tasks (seed 004 "Example 3: Generating Fibonnaci
series").

Seed code with `import rayling as ray`; sequence_size shrunk from 100_000 to 10_000 and
results printed.
"""

import os
import time

import rayling as ray

ray.init()

# Local execution
def generate_fibonacci(sequence_size):
    fibonacci = []
    for i in range(0, sequence_size):
        if i < 2:
            fibonacci.append(i)
            continue
        fibonacci.append(fibonacci[i-1]+fibonacci[i-2])
    return len(fibonacci)

# Remote Task with just a wrapper
@ray.remote
def generate_fibonacci_distributed(sequence_size):
    return generate_fibonacci(sequence_size)

# Get the number of cores
print("cpu_count:", os.cpu_count())

# Normal Python in a single process
def run_local(sequence_size):
    results = [generate_fibonacci(sequence_size) for _ in range(os.cpu_count())]
    return results

start = time.time()
print("local:", run_local(10000))
print("Wall time:", round(time.time() - start, 3))

# Distributed on a Ray cluster
def run_remote(sequence_size):
    results = ray.get([generate_fibonacci_distributed.remote(sequence_size) for _ in range(os.cpu_count())])
    return results

start = time.time()
print("remote:", run_remote(10000))
print("Wall time:", round(time.time() - start, 3))

ray.shutdown()
