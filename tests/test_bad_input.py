"""No input ends a session: bad options raise at the decorator or .options() naming the
option, options rayling does not implement raise NotImplementedError, the daemon fails
one bad message alone, and a task's error reaches the caller with its message, file and
source line even when the exception cannot be rebuilt."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import rayling as ray
from rayling.exceptions import RaySystemError, RayTaskError

pytestmark = pytest.mark.timeout(120)

NAN, INF = float("nan"), float("inf")


def plain():
    return 1


class Plain:
    def ping(self):
        return 1


BAD_TASK_OPTIONS = [
    ("num_cpus", NAN), ("num_cpus", INF), ("num_cpus", -1), ("num_cpus", "2"),
    ("num_cpus", True), ("num_gpus", NAN), ("resources", {"x": NAN}),
    ("resources", {"x": INF}), ("resources", {"x": -1}), ("resources", {1: 1}),
    ("resources", ["x"]), ("max_retries", "x"), ("max_retries", 2**70),
    ("max_retries", -2), ("max_retries", 1.5), ("num_returns", -1), ("num_returns", 1.5),
    ("retry_exceptions", "yes"), ("retry_exceptions", [ValueError, 1]), ("name", 5),
    ("scheduling_strategy", "FASTEST"), ("max_calls", -1), ("max_calls", 1.5),
    ("placement_group", object()), ("placement_group_bundle_index", "0"),
    ("memory", -1), ("memory", NAN),
]
BAD_ACTOR_OPTIONS = [
    ("num_cpus", NAN), ("resources", {"x": NAN}), ("max_restarts", -5),
    ("max_restarts", "x"), ("max_task_retries", "x"), ("max_task_retries", 2**70),
    ("max_concurrency", 0), ("max_concurrency", -1), ("name", ""), ("name", 5),
    ("namespace", 5), ("lifetime", "forever"), ("get_if_exists", "yes"),
]
NOT_IMPLEMENTED = [
    ("runtime_env", {"pip": ["requests"]}),
    ("accelerator_type", "A100"),
]


def _names_option(error: BaseException, key: str) -> bool:
    return key.rstrip("s") in str(error) or key in str(error)


@pytest.mark.parametrize("key,value", BAD_TASK_OPTIONS)
def test_bad_task_options_raise_where_they_are_given(key, value):
    with pytest.raises((ValueError, TypeError)) as info:
        ray.remote(**{key: value})(plain)
    assert _names_option(info.value, key)
    with pytest.raises((ValueError, TypeError)):
        ray.remote(plain).options(**{key: value})


@pytest.mark.parametrize("key,value", BAD_ACTOR_OPTIONS)
def test_bad_actor_options_raise_where_they_are_given(key, value):
    with pytest.raises((ValueError, TypeError)) as info:
        ray.remote(**{key: value})(Plain)
    assert _names_option(info.value, key) or "name" in str(info.value)
    with pytest.raises((ValueError, TypeError)):
        ray.remote(Plain).options(**{key: value})


@pytest.mark.parametrize("key,value", NOT_IMPLEMENTED)
def test_options_not_implemented_say_so(key, value):
    with pytest.raises(NotImplementedError, match=key):
        ray.remote(plain).options(**{key: value})


def test_options_left_at_their_defaults_are_accepted():
    ray.remote(runtime_env=None, max_calls=0, placement_group="default",
               enable_task_events=False, _metadata={}, memory=0)(plain)
    ray.remote(plain).options(runtime_env={}, num_returns=1, max_retries=-1)
    ray.remote(max_concurrency=1, max_restarts=-1, max_task_retries=-1,
               lifetime="detached", concurrency_groups=None)(Plain)


def test_bad_init_arguments_raise_before_anything_starts():
    assert not ray.is_initialized()
    for kwargs in ({"num_cpus": NAN}, {"num_gpus": INF}, {"resources": {"x": NAN}},
                   {"object_store_memory": -1}):
        with pytest.raises((ValueError, TypeError)):
            ray.init(**kwargs)
        assert not ray.is_initialized()


@ray.remote
def one():
    return 1


def test_a_message_the_daemon_cannot_carry_out_fails_alone(shared_cluster):
    """Plays a client that skips validation: a task asking for NaN CPUs fails, and the
    session goes on."""
    from rayling._private import client as client_mod
    from rayling.remote_function import submit_task

    fid, blob = one._prepare()
    for bad in ({"CPU": NAN}, {"CPU": INF}, {"x": NAN}):
        ref = submit_task(client_mod.current, one._function, "one", (), {}, 1, fid=fid,
                          request=bad, register=(fid, blob, "one"))
        with pytest.raises(RaySystemError, match="could not accept task"):
            ray.get(ref, timeout=30)
    assert ray.get(one.remote(), timeout=30) == 1


@ray.remote
def two(a, b=2):
    return a + b


@ray.remote
class Adder:
    def __init__(self, start):
        self.start = start

    def add(self, x, *, times=1):
        return self.start + x * times

    @staticmethod
    def constant():
        return 7


def test_arguments_are_checked_at_remote(shared_cluster):
    with pytest.raises(TypeError, match="two"):
        two.remote()
    with pytest.raises(TypeError):
        two.remote(1, 2, 3)
    with pytest.raises(TypeError):
        two.remote(1, c=3)
    assert ray.get(two.remote(1, b=3), timeout=30) == 4
    with pytest.raises(TypeError, match="Adder.__init__"):
        Adder.remote()
    adder = Adder.remote(10)
    with pytest.raises(TypeError, match="Adder.add"):
        adder.add.remote()
    with pytest.raises(TypeError):
        adder.add.remote(1, 2)
    assert ray.get(adder.add.remote(1, times=3), timeout=30) == 13
    assert ray.get(adder.constant.remote(), timeout=30) == 7


class TwoArguments(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a} and {b}")


@ray.remote
def raises_two_arguments():
    raise TwoArguments("left", "right")


def test_an_exception_that_cannot_be_rebuilt_keeps_its_message(shared_cluster):
    with pytest.raises(RayTaskError) as info:
        ray.get(raises_two_arguments.remote(), timeout=30)
    text = str(info.value)
    assert "left and right" in text and "raises_two_arguments" in text


@ray.remote(num_returns=3)
def yields_two_then_raises():
    yield 1
    yield 2
    raise ValueError("no third")


def test_a_generator_that_raises_keeps_what_it_yielded(shared_cluster):
    first, second, third = yields_two_then_raises.remote()
    assert ray.get([first, second], timeout=30) == [1, 2]
    with pytest.raises(ValueError, match="no third"):
        ray.get(third, timeout=30)


def _run_script(tmp_path, name: str, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / name
    script.write_text(textwrap.dedent(body))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root, "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=90)


def test_errors_show_the_file_and_line_of_the_driver_script(tmp_path):
    done = _run_script(tmp_path, "my_script.py", """
        import rayling as ray
        ray.init(num_cpus=1)

        @ray.remote
        def fails(x):
            raise ValueError(f"bad value {x}")

        try:
            ray.get(fails.remote(3))
        except ValueError as e:
            print(e)
        ray.shutdown()
    """)
    assert done.returncode == 0, done.stderr
    assert "my_script.py" in done.stdout and "<dynamic-code>" not in done.stdout
    assert 'raise ValueError(f"bad value {x}")' in done.stdout


def test_a_script_named_like_a_module_rayling_imports_does_not_hang(tmp_path):
    """The client's reader thread imports nothing: a script named tqdm.py whose tasks
    draw progress bars finishes (the bars cannot be drawn, and it says so)."""
    done = _run_script(tmp_path, "tqdm.py", """
        import rayling as ray
        from rayling.experimental.tqdm_ray import tqdm

        ray.init(num_cpus=1, ignore_reinit_error=True)

        @ray.remote
        def work():
            bar = tqdm(total=3)
            for _ in range(3):
                bar.update(1)
            bar.close()
            return 1

        if __name__ == "__main__":
            print("result", ray.get(work.remote(), timeout=30))
            ray.shutdown()
    """)
    assert done.returncode == 0, done.stderr
    assert "result 1" in done.stdout


@pytest.mark.parametrize("kwargs", [
    {"local_mode": True},
    {"runtime_env": {"pip": ["requests"]}}, {"_system_config": {"max_io_workers": 4}},
    {"_system_config": {"automatic_object_spilling_enabled": True}},
])
def test_init_arguments_not_implemented_say_so(kwargs):
    with pytest.raises(NotImplementedError, match=next(iter(kwargs)).lstrip("_")):
        ray.init(num_cpus=1, **kwargs)
