"""Monte Carlo estimates of pi, in plain Python and as Ray tasks (seed 003 "Ray Crash
Course - Tasks").

Seed code with `import rayling as ray`; sizes shrunk (Ns up to 100_000 instead of
1_000_000, trials=8 instead of 20). Left out: the animated `make_dmaps`/`run_simulations`
demo and the Bokeh plots (helpers from files the seed does not include), and
`ray.get_dashboard_url()` (rayling has no dashboard). `str_large_n`, imported from the
seed's `pi_calc.py`, is defined here.
"""

import math, statistics, time

import numpy as np

import rayling as ray

def str_large_n(n, padding=None):
    s = f"{n:,}"
    return s.rjust(padding) if padding else s

num_workers = 8
trials = 8

ray.init(ignore_reinit_error=True)

def estimate_pi(num_samples):
    xs = np.random.uniform(low=-1.0, high=1.0, size=num_samples)   # Generate num_samples random samples for the x coordinate.
    ys = np.random.uniform(low=-1.0, high=1.0, size=num_samples)   # Generate num_samples random samples for the y coordinate.
    xys = np.stack((xs, ys), axis=-1)                              # Like Python's "zip(a,b)"; creates np.array([(x1,y1), (x2,y2), ...]).
    inside = xs*xs + ys*ys <= 1.0                                  # Creates a predicate over all the array elements.
    xys_inside = xys[inside]                                       # Selects only those "zipped" array elements inside the circle.
    in_circle = xys_inside.shape[0]                                # Return the number of elements inside the circle.
    approx_pi = 4.0*in_circle/num_samples                          # The Pi estimate.
    return approx_pi

Ns = [1000, 10000, 100000]
maxN = Ns[-1]

fmt = '{:10.5f} seconds: pi ~ {:7.6f}, stddev = {:5.4f}, error = {:5.4f}%'

def try_it(n, trials):
    print('trials = {:3d}, N = {:s}: '.format(trials, str_large_n(n, padding=12)), end='')   # str_large_n imported above.
    start = time.time()
    pis = [estimate_pi(n) for _ in range(trials)]
    approx_pi = statistics.mean(pis)
    stdev = statistics.stdev(pis)
    duration = time.time() - start
    error = (100.0*abs(approx_pi-np.pi)/np.pi)
    print(fmt.format(duration, approx_pi, stdev, error))   # str_large_n imported above.
    return trials, n, duration, approx_pi, stdev, error

data_ns = [try_it(n, trials) for n in Ns]

@ray.remote
def ray_estimate_pi(num_samples):
    return estimate_pi(num_samples)

ref = ray_estimate_pi.remote(100)
print(ray.get(ref))

refs = [ray_estimate_pi.remote(n) for n in [100, 1000, 10000]]
print(ray.get(refs))

def ray_try_it(n, trials):
    print('trials = {:3d}, N = {:s}: '.format(trials, str_large_n(n, padding=12)), end='')   # str_large_n imported above.
    start = time.time()
    refs = [ray_estimate_pi.remote(n) for _ in range(trials)]
    pis = ray.get(refs)
    approx_pi = statistics.mean(pis)
    stdev = statistics.stdev(pis)
    duration = time.time() - start
    error = (100.0*abs(approx_pi-np.pi)/np.pi)
    print(fmt.format(duration, approx_pi, stdev, error))   # str_large_n imported above.
    return trials, n, duration, approx_pi, stdev, error

ray_data_ns = [ray_try_it(n, trials) for n in Ns]

ray_data_trials = [ray_try_it(maxN, trials) for trials in range(5,20,2)]

np_data_ns         = np.array(data_ns)
np_ray_data_ns     = np.array(ray_data_ns)
np_ray_data_trials = np.array(ray_data_trials)
print("ray pi estimates by N:", list(np_ray_data_ns[:,3]))
print("ray stddevs by N:", list(np_ray_data_ns[:,4]))
print("ray pi estimates by trials:", list(np_ray_data_trials[:,3]))

ray.shutdown()  # "Undo ray.init()". Terminate all the processes started in this notebook.
