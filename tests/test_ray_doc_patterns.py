"""What Ray's own documentation examples (``doc/source/ray-core/doc_code/`` in the Ray
repository) do, written here in our words: the flows users copy from Ray's docs must work
unchanged on rayling. Each test names the example it follows; CI has no internet, so the
examples are not fetched."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import rayling as ray
from rayling.util.scheduling_strategies import NodeAffinitySchedulingStrategy

pytestmark = pytest.mark.timeout(60)


# -- generator.py ---------------------------------------------------------------------
@ray.remote(num_returns="dynamic")
def chunks(array, size):
    while len(array):
        yield array[:size]
        array = array[size:]


@ray.remote
def total_length(generator) -> int:
    return sum(len(ray.get(ref)) for ref in generator)


@ray.remote
def two_then_error():
    yield "a"
    yield "b"
    raise RuntimeError("third value fails")


def test_generator_doc(shared_cluster):
    array = ray.put(np.arange(12_345))
    dynamic = chunks.remote(array, 1000)
    generator = ray.get(dynamic)
    assert isinstance(generator, ray.DynamicObjectRefGenerator)
    sizes = [len(ray.get(ref)) for ref in generator]
    assert sizes == [1000] * 12 + [345]
    # The dynamic ref, or the generator it resolves to, can be passed to another task.
    assert ray.get(total_length.remote(chunks.remote(array, 1000))) == 12_345
    assert ray.get(total_length.remote(generator)) == 12_345
    del dynamic
    # num_returns=4: the values before the error stand, the rest hold the error.
    first, second, third, fourth = two_then_error.options(num_returns=4).remote()
    assert ray.get([first, second]) == ["a", "b"]
    for ref in (third, fourth):
        with pytest.raises(RuntimeError, match="third value fails"):
            ray.get(ref)
    # num_returns="dynamic": the last ref holds the error.
    first, second, third = ray.get(two_then_error.options(num_returns="dynamic").remote())
    assert ray.get([first, second]) == ["a", "b"]
    with pytest.raises(RuntimeError, match="third value fails"):
        ray.get(third)
    # num_returns=2 and an error after both values: the values stand.
    assert ray.get(list(two_then_error.options(num_returns=2).remote())) == ["a", "b"]


# -- scheduling.py --------------------------------------------------------------------
@ray.remote
def where() -> object:
    return ray.get_runtime_context().node_id


def test_scheduling_doc(shared_cluster):
    assert ray.get(where.options(scheduling_strategy="DEFAULT").remote())
    spread = ray.get([where.options(scheduling_strategy="SPREAD").remote()
                      for _ in range(20)])
    here = ray.get_runtime_context().node_id
    assert set(spread) == {here}
    # The deprecated node_id property (a NodeID) goes straight into the strategy, from
    # the driver and from a task's result.
    strict = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
    assert ray.get(where.options(scheduling_strategy=strict).remote()) == here
    soft = NodeAffinitySchedulingStrategy(node_id=ray.get(where.remote()), soft=True)
    assert ray.get(where.options(scheduling_strategy=soft).remote()) == here


# -- anti_pattern_return_ray_put.py ---------------------------------------------------
@ray.remote
def put_and_return(size: int):
    return ray.put(np.ones(size))


@ray.remote(num_returns=2)
def two_put_refs():
    return ray.put(1), ray.put(2)


@ray.remote
def tuple_of_put_refs():
    return ray.put(1), ray.put(2)


@ray.remote
class Returner:
    def put_and_return(self, size: int):
        return ray.put(np.ones(size))

    @ray.method(num_returns=2)
    def two_put_refs(self):
        return ray.put(1), ray.put(2)


def test_returning_put_refs_doc(shared_cluster):
    for size in (1, 10 * 1024 * 1024 // 8):  # inline and in shared memory
        assert np.array_equal(ray.get(ray.get(put_and_return.remote(size))), np.ones(size))
    first, second = two_put_refs.remote()
    assert ray.get([ray.get(first), ray.get(second)]) == [1, 2]
    assert ray.get(list(ray.get(tuple_of_put_refs.remote()))) == [1, 2]
    actor = Returner.remote()
    big = 9 * 1024 * 1024 // 8
    assert np.array_equal(ray.get(ray.get(actor.put_and_return.remote(big))), np.ones(big))
    first, second = actor.two_put_refs.remote()
    assert ray.get(ray.get(first)) == 1 and ray.get(ray.get(second)) == 2


# -- actor_checkpointing.py -----------------------------------------------------------
@ray.remote(max_restarts=-1, max_task_retries=-1)
class Immortal:
    def __init__(self, marker: str):
        self.marker = marker
        self.restored = os.path.exists(marker)

    def work(self, crash: bool):
        if crash and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            sys.exit(1)  # (the process ends: the actor restarts, the call is retried)
        return self.restored


@ray.remote(max_restarts=1)
class Mortal:
    def exit(self, code):
        sys.exit(code)

    def pid(self):
        return os.getpid()


def test_sys_exit_in_an_actor_ends_its_process(shared_cluster, tmp_path):
    immortal = Immortal.remote(str(tmp_path / "crashed"))
    assert ray.get(immortal.work.remote(crash=True), timeout=30) is True
    mortal = Mortal.remote()
    first = ray.get(mortal.pid.remote())
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(mortal.exit.remote(1), timeout=30)
    assert ray.get(mortal.pid.remote(), timeout=30) != first  # restarted
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(mortal.exit.remote(None), timeout=30)
    with pytest.raises(ray.exceptions.RayActorError):  # (out of restarts)
        ray.get(mortal.pid.remote(), timeout=30)


# -- streaming_generator.py -----------------------------------------------------------
def test_raylet_names(shared_cluster):
    from rayling._raylet import ObjectRef, ObjectRefGenerator

    @ray.remote
    def count(n):
        yield from range(n)

    stream = count.remote(3)
    assert isinstance(stream, ObjectRefGenerator)
    refs = list(stream)
    assert all(isinstance(r, ObjectRef) for r in refs) and ray.get(refs) == [0, 1, 2]
