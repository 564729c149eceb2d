"""Distributed progress bars (seed 000 "Distributed progress bars").

Seed code with `import rayling as ray` and `rayling.experimental.tqdm_ray`; sleeps shrunk
(2 s -> 0.2 s, 100 x 0.1 s -> 100 x 0.005 s). In the seed the REPL keeps the tasks alive; in
a script we `ray.get` them so the bars finish before `ray.shutdown()`. The bars are drawn
on stderr.
"""

from time import sleep

import rayling as ray

ray.init(num_cpus=4, configure_logging=False)

from rayling.experimental.tqdm_ray import tqdm


@ray.remote
def busy(name):
    if "2" in name: sleep(0.2)
    for x in tqdm(range(100), desc=name):
        sleep(0.005)

ray.get([busy.remote("task 1"), busy.remote("task 2")])

# Question 11b: the same for 10 tasks using a `for` loop.
ray.get([busy.remote("task "+str(i)) for i in range(10)])
print("all bars done")

ray.shutdown()
