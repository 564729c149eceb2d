"""ray.get() vs. ray.wait(): handle results as they finish (seed 003 "ray.get() vs.
ray.wait()").

Seed code with `import rayling as ray`; the tasks sleep 0.2/0.4/0.6 s instead of 2/4/6 s
(`trial/10`) and N is at most 100_000 instead of 1_000_000.
"""

import time

import numpy as np

import rayling as ray

ray.init(ignore_reinit_error=True)

def estimate_pi(num_samples):
    xs = np.random.uniform(low=-1.0, high=1.0, size=num_samples)
    ys = np.random.uniform(low=-1.0, high=1.0, size=num_samples)
    xys = np.stack((xs, ys), axis=-1)
    inside = xs*xs + ys*ys <= 1.0
    xys_inside = xys[inside]
    in_circle = xys_inside.shape[0]
    approx_pi = 4.0*in_circle/num_samples
    return approx_pi

@ray.remote
def ray_estimate_pi2(n, trial):
    time.sleep(trial/10)
    return n, trial, estimate_pi(n)

def ray_try_it2(ns, trials):
    start = time.time()
    refs = [ray_estimate_pi2.remote(n, trial) for trial in trials for n in ns]
    still_running = list(refs)
    while len(still_running) > 0:
        finished, still_running = ray.wait(still_running)
        ns_trials_pis = ray.get(finished)   # won't block
        print(f'{ns_trials_pis}, elapsed time = {time.time() - start} secs')

ray_try_it2([10000,100000,100000], [2,4,6])

ray.shutdown()
