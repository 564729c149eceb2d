"""Worker output on the driver: prefixes, folding of repeated lines, progress bars."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.timeout(60)

SCRIPT = textwrap.dedent("""
    import rayling as ray
    ray.init(num_cpus=2, log_to_driver={log_to_driver})

    @ray.remote
    def shout(i):
        print("same line from every task")
        print(f"unique line {{i}}")
        return i

    print("results", ray.get([shout.remote(i) for i in range(4)]))
    ray.shutdown()
""")


def run(log_to_driver=True, **env) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if "DEDUP" not in k}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(log_to_driver=log_to_driver)],
        capture_output=True, text=True, timeout=60, env=full_env,
    )


def test_prints_are_prefixed_and_repeats_folded():
    out = run()
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "results [0, 1, 2, 3]" in lines
    for i in range(4):
        assert any(line.startswith("(shout pid=") and line.endswith(f"unique line {i}")
                   for line in lines), lines
    same = [line for line in lines if "same line from every task" in line]
    assert len(same) == 2, same
    assert same[1].endswith("[repeated 3x across cluster]")


@pytest.mark.parametrize("var", ["RAYLING_DEDUP_LOGS", "RAY_DEDUP_LOGS"])
def test_dedup_can_be_turned_off(var):
    out = run(**{var: "0"})
    assert out.returncode == 0, out.stderr
    same = [line for line in out.stdout.splitlines() if "same line from every task" in line]
    assert len(same) == 4
    assert "repeated" not in out.stdout


def test_log_to_driver_false_silences_workers():
    out = run(log_to_driver=False)
    assert out.returncode == 0, out.stderr
    assert "results [0, 1, 2, 3]" in out.stdout
    assert "(shout pid=" not in out.stdout


def test_progress_bars_from_tasks():
    script = textwrap.dedent("""
        import rayling as ray
        from rayling.experimental.tqdm_ray import tqdm
        ray.init(num_cpus=2)

        @ray.remote
        def busy(name):
            for x in tqdm(range(50), desc=name):
                pass
            return name

        print(ray.get([busy.remote("task 1"), busy.remote("task 2")]))
        ray.shutdown()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "['task 1', 'task 2']" in out.stdout
    for name in ("task 1", "task 2"):
        assert f"{name}: 100%" in out.stderr, out.stderr
        assert "50/50" in out.stderr


ORDER_SCRIPT = textwrap.dedent("""
    import rayling as ray
    ray.init(num_cpus=2)

    @ray.remote
    def say(i):
        print(f"line {i} from the task")
        return i

    for i in range(50):
        print(f"got {ray.get(say.remote(i))}")
    ray.shutdown()
""")


def test_what_a_task_prints_shows_before_its_result_is_got():
    """The driver prints task output on a thread of its own; a get waits for the output
    that came before the result, so a script's own prints come after it, whole."""
    full_env = {**os.environ, "RAYLING_DEDUP_LOGS": "0"}
    out = subprocess.run([sys.executable, "-c", ORDER_SCRIPT], capture_output=True,
                         text=True, timeout=60, env=full_env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    for i in range(50):
        task_line = next(n for n, line in enumerate(lines)
                         if line.endswith(f"line {i} from the task"))
        assert lines[task_line + 1] == f"got {i}", lines[task_line - 1: task_line + 2]
