"""Remote functions on a real local cluster: submit, get, wait, errors, options."""

from __future__ import annotations

import threading

import pytest

import rayling as ray
from rayling import exceptions as exc

pytestmark = pytest.mark.timeout(60)


@ray.remote
def square(x):
    return x * x


@ray.remote
def add(a, b):
    return a + b


def test_remote_call_and_get(shared_cluster):
    ref = square.remote(10)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 100
    assert ray.get([square.remote(i) for i in range(4)]) == [0, 1, 4, 9]
    assert ray.get(ref) == 100  # a second get reads the stored value


def test_calling_remote_function_directly_is_an_error(shared_cluster):
    with pytest.raises(TypeError, match=r"square\.remote"):
        square(3)


def test_object_ref_behaviour(shared_cluster):
    ref = square.remote(2)
    assert len(ref.hex()) == 56
    assert repr(ref) == f"ObjectRef({ref.hex()})"
    same = ray.ObjectRef(ref.binary())
    assert same == ref and hash(same) == hash(ref)
    assert {ref: 1}[same] == 1


def test_get_rejects_non_refs(shared_cluster):
    with pytest.raises(TypeError, match="ObjectRef"):
        ray.get(42)
    with pytest.raises(TypeError, match="int"):
        ray.get([square.remote(1), 3])


@ray.remote
def after(gate: str, value=None):
    """``value`` once the file ``gate`` exists (the test decides when the task ends)."""
    import os
    import time

    deadline = time.monotonic() + 60
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def test_get_timeout(shared_cluster, tmp_path):
    gate = tmp_path / "gate"
    ref = after.remote(str(gate), "done")
    with pytest.raises(exc.GetTimeoutError):
        ray.get(ref, timeout=0.1)
    with pytest.raises(TimeoutError):
        ray.get([ref], timeout=0.05)
    gate.touch()
    assert ray.get(ref, timeout=30) == "done"


def test_put_get_roundtrip(shared_cluster):
    value = {"a": [1, 2, 3], "b": "text", "c": None}
    assert ray.get(ray.put(value)) == value
    with pytest.raises(TypeError, match="put"):
        ray.put(ray.put(1))


def test_refs_as_arguments_are_resolved(shared_cluster):
    r1 = square.remote(3)
    r2 = add.remote(r1, 1)
    assert ray.get(r2) == 10
    assert ray.get(add.remote(a=ray.put(1), b=r1)) == 10


def test_nested_refs_stay_refs(shared_cluster):
    @ray.remote
    def describe(items):
        return [type(x).__name__ for x in items], ray.get(items)

    refs = [ray.put(i) for i in range(3)]
    kinds, values = ray.get(describe.remote(refs))
    assert kinds == ["ObjectRef"] * 3
    assert values == [0, 1, 2]


def test_tasks_return_refs(shared_cluster):
    @ray.remote
    def make():
        return square.remote(7)

    inner = ray.get(make.remote())
    assert isinstance(inner, ray.ObjectRef)
    assert ray.get(inner) == 49


def test_tree_aggregation(shared_cluster):
    values = [ray.put(i) for i in range(16)]
    while len(values) > 1:
        values = values[2:] + [add.remote(values[0], values[1])]
    assert ray.get(values[0]) == sum(range(16))


def test_nested_tasks_do_not_deadlock_on_two_cpus(shared_cluster):
    @ray.remote
    def fib(n):
        if n < 2:
            return n
        return sum(ray.get([fib.remote(n - 1), fib.remote(n - 2)]))

    assert ray.get(fib.remote(7)) == 13


def test_wait_returns_in_input_order(shared_cluster, tmp_path):
    gate = tmp_path / "gate"
    refs = [after.remote(str(gate), 5), square.remote(1), square.remote(2)]
    ready, not_ready = ray.wait(refs, num_returns=2, timeout=30)
    assert ready == [refs[1], refs[2]]
    assert not_ready == [refs[0]]
    ready, not_ready = ray.wait(refs, num_returns=3, timeout=0)
    assert refs[0] in not_ready
    gate.touch()
    ready, not_ready = ray.wait(refs, num_returns=3, timeout=30)
    assert ready == refs and not_ready == []
    with pytest.raises(ValueError, match="num_returns"):
        ray.wait(refs, num_returns=4)
    with pytest.raises(TypeError):
        ray.wait(refs[0])


def test_num_returns(shared_cluster):
    @ray.remote(num_returns=3)
    def three():
        return 10, 20, 30

    r1, r2, r3 = three.remote()
    assert ray.get([r1, r2, r3]) == [10, 20, 30]

    @ray.remote(num_returns=3)
    def gen():
        for i in range(3):  # noqa: UP028 - written as in the seed tutorial
            yield i

    assert ray.get(list(gen.remote())) == [0, 1, 2]

    @ray.remote
    def pair():
        return "a", "b"

    assert ray.get(pair.remote()) == ("a", "b")
    first, second = pair.options(num_returns=2).remote()
    assert ray.get(second) == "b"


def test_wrong_return_count_is_a_clear_error(shared_cluster):
    @ray.remote(num_returns=2)
    def one():
        return 1, 2, 3

    refs = one.remote()
    with pytest.raises(ValueError, match="num_returns=2 but returned 3"):
        ray.get(refs[0])


def test_task_exception_keeps_user_type_and_traceback(shared_cluster):
    class MyError(Exception):
        pass

    @ray.remote
    def fail():
        raise MyError("broken on purpose")

    with pytest.raises(MyError) as info:
        ray.get(fail.remote())
    err = info.value
    assert isinstance(err, exc.RayTaskError)
    assert "broken on purpose" in str(err)
    assert "Traceback" in str(err) and "fail" in str(err)


def test_failed_dependency_propagates(shared_cluster):
    @ray.remote
    def fail():
        raise KeyError("dep")

    with pytest.raises(KeyError):
        ray.get(add.remote(fail.remote(), 1))


def test_unpicklable_argument_names_it(shared_cluster):
    @ray.remote
    def use(lock):
        return 1

    with pytest.raises(TypeError, match=r"argument 'lock' of type lock"):
        use.remote(threading.Lock())


def test_options_validation(shared_cluster):
    with pytest.raises(ValueError, match="Invalid option 'num_cpu'"):
        square.options(num_cpu=1)
    with pytest.raises(ValueError, match="num_returns"):
        ray.remote(num_returns=-1)(lambda: 1)


def test_runtime_context_ids(shared_cluster):
    @ray.remote
    def ids():
        ctx = ray.get_runtime_context()
        return (ctx.get_task_id(), ctx.get_job_id(), ctx.get_node_id(), ctx.get_worker_id(),
                ctx.get_actor_id())

    task_id, job_id, node_id, worker_id, actor_id = ray.get(ids.remote())
    assert len(task_id) == 48 and len(job_id) == 8
    assert len(node_id) == 56 and len(worker_id) == 56
    assert actor_id is None
    assert node_id == ray.get_runtime_context().get_node_id()
    assert job_id == ray.get_runtime_context().get_job_id()


def test_nodes_and_resources(shared_cluster):
    nodes = ray.nodes()
    assert len(nodes) == 1
    node = nodes[0]
    assert node["Alive"] is True
    assert len(node["NodeID"]) == 56
    assert node["NodeManagerAddress"] == "127.0.0.1"
    assert node["Resources"]["CPU"] == 2
    assert ray.cluster_resources()["CPU"] == 2
    assert ray.available_resources()["CPU"] <= 2


def test_task_defined_in_main_of_a_script(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(
        "import rayling as ray\n"
        "class Point:\n"
        "    def __init__(self, x): self.x = x\n"
        "@ray.remote\n"
        "def move(p): return Point(p.x + 1)\n"
        "print('result', ray.get(move.remote(Point(1))).x)\n"
        "ray.shutdown()\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "result 2" in out.stdout
