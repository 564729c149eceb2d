"""Getting partial results from Ray tasks with `ray.wait`, then cancelling the rest (seed
000 "Getting partial results from Ray tasks").

Seed code with `import rayling as ray`; each task sleeps `duration/100` seconds instead of
`duration` seconds (duration is still a random integer from [1,100], and is returned). As in
the seed there is no `ray.init()`: the first `.remote()` starts the cluster. The last block
(what became of the cancelled tasks) is added.
"""

import random
from time import sleep

import rayling as ray


@ray.remote
def increment():
    duration = random.randint(1,100) # random integer from [1,100]
    sleep(duration/100)   # sleep for this number of hundredths of a second
    return duration

refs = [increment.remote() for x in range(1,21)]   # start 20 tasks

ready_refs, remaining_refs = ray.wait(refs, num_returns=1, timeout=None) # wait for one of them to finish
print(ready_refs, remaining_refs)   # print the IDs of the finished task, and the other 19 IDs
print("first ready:", ray.get(ready_refs))                 # get finished results

ready_refs, remaining_refs = ray.wait(refs, num_returns=5, timeout=None) # wait for 5 of them to finish
print("five ready:", ray.get(ready_refs))                 # get finished results
for i in remaining_refs:
	ray.cancel(i)   # cancel the unfinished ones

# Added: each cancelled task either was cancelled or had finished just before.
cancelled, finished = 0, 0
for i in remaining_refs:
    try:
        value = ray.get(i)
        assert 1 <= value <= 100, value
        finished += 1
    except ray.exceptions.TaskCancelledError:
        cancelled += 1
print(f"remaining: {len(remaining_refs)}, cancelled: {cancelled}, finished before cancel: {finished}")

ray.shutdown()
