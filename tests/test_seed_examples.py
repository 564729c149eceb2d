"""The tutorial (seed) task workflows in examples/, each run as a user would run it.

Every test runs one script from examples/ with ``sys.executable`` in a fresh process and
checks the values it prints. Each run gets its own TMPDIR, so the rayling processes and
files it starts can be told apart from any other cluster on the machine: after the run,
none of them may be left, nor its session directory, nor its shared-memory segments.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil
import pytest

from .conftest import segments_of

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HEX48 = re.compile(r"^[0-9a-f]{48}$")


# ------------------------------------------------------------------------------- helpers

# Runs an example with every session it starts (LocalNode.start) written to a file, so
# the leftover check looks only at its own shared memory, whatever else runs beside it.
_RECORDING_RUNNER = """
import runpy, sys
from rayling._private import node

start = node.LocalNode.__dict__["start"].__func__
record = sys.argv[1]

def recording_start(cls, *args, **kwargs):
    started = start(cls, *args, **kwargs)
    with open(record, "a") as f:
        f.write(started.session + "\\n")
    return started

node.LocalNode.start = classmethod(recording_start)
script = sys.argv[2]
sys.argv = sys.argv[2:]
runpy.run_path(script, run_name="__main__")
"""


def _processes_with_tmpdir(tmpdir: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get("TMPDIR") == tmpdir:
                found.append(proc)
        except (psutil.Error, OSError):
            pass
    return found


def run_example(name: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run examples/<name>.py; check it succeeded and left nothing behind."""
    run_dir = tmp_path / "tmp"
    run_dir.mkdir(exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if "DEDUP" not in k}
    full_env.update(TMPDIR=str(run_dir), PYTHONUNBUFFERED="1", **env)
    sessions_file = tmp_path / "sessions"
    proc = subprocess.run(
        [sys.executable, "-c", _RECORDING_RUNNER, str(sessions_file),
         str(EXAMPLES / f"{name}.py")],
        capture_output=True, text=True, timeout=50, env=full_env, cwd=tmp_path,
    )
    assert proc.returncode == 0, (
        f"{name}.py exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")

    # Nothing left behind: processes started by this run (they inherit its TMPDIR) ...
    leftovers = _processes_with_tmpdir(str(run_dir))
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    assert not alive, f"{name}.py left processes behind: " + "; ".join(
        f"{p.pid} {' '.join(p.cmdline())[:150]}" for p in alive)
    # ... its session directory ...
    sessions = [p.name for p in run_dir.iterdir() if p.name.startswith("rayling_")]
    assert not sessions, f"{name}.py left session directories behind: {sessions}"
    # ... and the shared-memory segments of the clusters it started.
    started = sessions_file.read_text().split() if sessions_file.exists() else []
    left = segments_of(started)
    assert not left, f"{name}.py left shared-memory segments behind: {left}"
    return proc


def lines_of(proc: subprocess.CompletedProcess) -> list[str]:
    return proc.stdout.splitlines()


def value_after(proc: subprocess.CompletedProcess, label: str) -> str:
    """The rest of the one stdout line that starts with ``label``."""
    found = [line[len(label):].strip() for line in lines_of(proc) if line.startswith(label)]
    assert len(found) == 1, f"expected one line starting {label!r}, got {found}\n{proc.stdout}"
    return found[0]


def literal_after(proc: subprocess.CompletedProcess, label: str):
    return ast.literal_eval(value_after(proc, label))


def slow_interval(a: int, b: int) -> float:
    """The seed's slow series over [a, b], computed here to check the examples."""
    total = 0
    for i in range(a, b + 1):
        if "9" not in str(i):
            total += 1.0 / i
    return total


def seed_intervals(n: int, ncores: int) -> list[tuple[int, int]]:
    size = n // ncores
    intervals = [(i * size + 1, (i + 1) * size) for i in range(ncores)]
    if n > intervals[-1][1]:
        intervals[-1] = (intervals[-1][0], n)
    return intervals


# ----------------------------------------------------------------------------- seed 000

def test_init_options(tmp_path):
    out = run_example("init", tmp_path, SLURM_CPUS_PER_TASK="3")
    assert value_after(out, "initialized:") == "True"
    assert float(value_after(out, "default CPUs:")) == len(os.sched_getaffinity(0))
    assert value_after(out, "after shutdown, initialized:") == "False"
    assert "ignore_reinit_error=True" in value_after(out, "second init raised RuntimeError:")
    assert value_after(out, "second init with ignore_reinit_error=True:") == "ok"
    assert float(value_after(out, "num_cpus=4 CPUs:")) == 4.0
    assert float(value_after(out, "Slurm-style CPUs:")) == 3.0
    assert value_after(out, "nodes:") == "1 alive: True"


def test_square(tmp_path):
    out = run_example("square", tmp_path)
    lines = lines_of(out)
    assert lines[0] == "<class 'rayling.object_ref.ObjectRef'>"
    assert lines[1] == "100"
    cancelled = value_after(out, "after cancel:")
    assert cancelled == "100" or cancelled.startswith("TaskCancelledError"), cancelled
    assert lines[3:] == ["[0, 1, 4, 9]"] * 3


def _almost_done_count(stdout: str) -> tuple[int, list[str]]:
    """How many "almost done" prints the driver reported: a plain line stands for one, a
    "[repeated Nx across cluster]" line for N more."""
    lines = [line for line in stdout.splitlines() if "almost done" in line]
    total = 0
    for line in lines:
        assert re.match(r"^\(nap pid=\d+\) almost done", line), line
        folded = re.search(r"\[repeated (\d+)x across cluster\]$", line)
        total += int(folded.group(1)) if folded else 1
    return total, lines


def _task_ids(out: subprocess.CompletedProcess) -> list[str]:
    ids = [line.removeprefix("task id: ") for line in lines_of(out)
           if line.startswith("task id: ")]
    assert len(ids) == 4, out.stdout
    for task_id in ids:
        assert HEX48.match(task_id), task_id
    assert len(set(ids)) == 4, ids
    return ids


def test_nap_task_ids_and_folded_prints(tmp_path):
    out = run_example("nap", tmp_path)
    _task_ids(out)
    total, lines = _almost_done_count(out.stdout)
    assert total == 4, lines
    assert any("[repeated" in line for line in lines), lines
    assert len(lines) < 4, lines


def test_nap_prints_every_line_with_dedup_off(tmp_path):
    out = run_example("nap", tmp_path, RAY_DEDUP_LOGS="0")
    _task_ids(out)
    total, lines = _almost_done_count(out.stdout)
    assert total == 4 and len(lines) == 4, lines
    assert "repeated" not in out.stdout


def test_progress_bars(tmp_path):
    out = run_example("progress_bars", tmp_path)
    assert lines_of(out)[-1] == "all bars done"
    for name in ["task 1", "task 2"] + [f"task {i}" for i in range(10)]:
        assert re.search(rf"{name}:\s+0%\|[^\r\n]*\| 0/100", out.stderr), name
        assert re.search(rf"{name}: 100%\|[^\r\n]*\| 100/100", out.stderr), name
    assert "rayling-tqdm" not in out.stdout + out.stderr  # no raw bar messages


def test_slow_series_serial_and_parallel(tmp_path):
    out = run_example("slow_series", tmp_path)
    n = 1_000_000
    expected = slow_interval(1, n)
    one_task = float(value_after(out, "one task total:"))
    assert one_task == expected
    assert float(value_after(out, "one task total again:")) == one_task
    serial = float(value_after(out, "serial total:"))
    assert serial == expected
    parallel = float(value_after(out, "parallel total:"))
    assert parallel == sum(slow_interval(a, b) for a, b in seed_intervals(n, 4))
    assert parallel == pytest.approx(serial, rel=1e-12)
    assert 11 < parallel < 22.92067661926415  # bounded by the series' limit


def test_numba_tasks_both_ways(tmp_path):
    pytest.importorskip("numba")
    out = run_example("numba_tasks", tmp_path)
    assert value_after(out, "jit on driver:") == "25"
    assert value_after(out, "jit in task:") == "25"


def test_numba_slow_series(tmp_path):
    pytest.importorskip("numba")
    out = run_example("numba_slow_series", tmp_path)
    assert float(value_after(out, "warm-up total (1..10, x4):")) == pytest.approx(
        4 * slow_interval(1, 10), rel=1e-15)
    total = float(value_after(out, "numba total:"))
    n = 1_000_000
    assert total == pytest.approx(sum(slow_interval(a, b) for a, b in seed_intervals(n, 4)),
                                  rel=1e-12)


def test_partial_results_wait_and_cancel(tmp_path):
    out = run_example("partial_results", tmp_path)
    first_line = lines_of(out)[0]
    ready_part, remaining_part = first_line.split("] [")
    ready_ids = re.findall(r"ObjectRef\(([0-9a-f]+)\)", ready_part)
    remaining_ids = re.findall(r"ObjectRef\(([0-9a-f]+)\)", remaining_part)
    assert len(ready_ids) == 1 and len(remaining_ids) == 19, first_line
    assert len(set(ready_ids + remaining_ids)) == 20
    first = literal_after(out, "first ready:")
    assert len(first) == 1 and 1 <= first[0] <= 100
    five = literal_after(out, "five ready:")
    assert len(five) == 5 and all(isinstance(v, int) and 1 <= v <= 100 for v in five)
    m = re.fullmatch(r"(\d+), cancelled: (\d+), finished before cancel: (\d+)",
                     value_after(out, "remaining:"))
    assert m, out.stdout
    remaining, cancelled, finished = map(int, m.groups())
    assert remaining == 15 and cancelled + finished == 15


def test_multiple_returns(tmp_path):
    out = run_example("multiple_returns", tmp_path)
    assert lines_of(out) == [
        "tuple: (10, 20, 30)",
        "10",
        "num_returns=3 first: 10",
        "num_returns=3 all: [10, 20, 30]",
        "generator first: 0",
        "generator all: [0, 1, 2]",
    ]


def test_linking_tasks(tmp_path):
    out = run_example("linking_tasks", tmp_path)
    assert lines_of(out) == ["via value: 2", "via ref: 2"]


# ----------------------------------------------------------------------------- seed 001

def test_object_store_shared_array(tmp_path):
    out = run_example("object_store", tmp_path)
    driver = value_after(out, "driver:")
    for i in range(4):
        assert value_after(out, f"task {i}:") == driver
    mean = float(re.search(r"mean=np\.float64\(([^)]+)\)", driver).group(1))
    std = float(re.search(r"std=np\.float64\(([^)]+)\)", driver).group(1))
    assert abs(mean) < 0.01 and abs(std - 1) < 0.01  # 1_000_000 standard normal samples


# ----------------------------------------------------------------------------- seed 003

def _floats(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"np\.float64\(([^)]+)\)", text)]


def test_estimate_pi(tmp_path):
    out = run_example("estimate_pi", tmp_path)
    trial_lines = [line for line in lines_of(out) if line.startswith("trials =")]
    assert len(trial_lines) == 3 + 3 + 8, out.stdout
    for line in trial_lines:
        m = re.search(r"pi ~ ([\d.]+), stddev = ([\d.]+)", line)
        assert m, line
        assert abs(float(m.group(1)) - math.pi) < 0.3, line
    by_n = _floats(value_after(out, "ray pi estimates by N:"))
    stddevs = _floats(value_after(out, "ray stddevs by N:"))
    by_trials = _floats(value_after(out, "ray pi estimates by trials:"))
    assert len(by_n) == 3 and len(stddevs) == 3 and len(by_trials) == 8
    assert all(abs(p - math.pi) < 0.3 for p in by_n + by_trials)
    assert all(s > 0 for s in stddevs)  # the trials in different tasks differ
    single = lines_of(out)[3]
    assert 0 <= float(single) <= 4
    three = ast.literal_eval(lines_of(out)[4])
    assert len(three) == 3 and all(0 <= p <= 4 for p in three)


def test_process_results_as_they_finish(tmp_path):
    out = run_example("process_as_finished", tmp_path)
    got = []
    for line in lines_of(out):
        m = re.fullmatch(r"(\[.*\]), elapsed time = [\d.]+ secs", line)
        assert m, line
        finished = ast.literal_eval(m.group(1))
        assert len(finished) == 1, line  # ray.wait returns one ready ref by default
        n, trial, pi = finished[0]
        assert abs(pi - math.pi) < 0.3
        got.append((n, trial))
    assert sorted(got) == sorted((n, t) for t in [2, 4, 6] for n in [10000, 100000, 100000])


# ----------------------------------------------------------------------------- seed 004

def test_remote_basics(tmp_path):
    out = run_example("remote_basics", tmp_path)
    lines = lines_of(out)
    assert lines[0] == "1"
    assert "'node_id':" in out.stdout
    assert sum(bool(re.fullmatch(r"ObjectRef\([0-9a-f]{56}\)", line)) for line in lines) == 1
    assert value_after(out, "sum of 10 remote results:") == "10"
    assert lines[-2] == "1"


def test_array_tasks(tmp_path):
    out = run_example("array_tasks", tmp_path)
    rng = np.random.default_rng(0)
    arr1 = rng.integers(0, 100, size=(10, 10))
    arr2 = rng.integers(0, 100, size=(10, 10))
    assert int(value_after(out, "Sum of arr1:")) == arr1.sum()
    assert int(value_after(out, "Sum of arr2:")) == arr2.sum()
    # The seed's add_array returns arr1 + arr1.
    assert int(value_after(out, "Sum of result:")) == 2 * arr1.sum()
    printed = out.stdout.split("Result: add arr1 + arr2:", 1)[1].split("Sum of arr1")[0]
    assert np.array_equal(np.array([int(x) for x in re.findall(r"\d+", printed)]).reshape(10, 10),
                          2 * arr1)


def test_fibonacci(tmp_path):
    out = run_example("fibonacci", tmp_path)
    ncpu = int(value_after(out, "cpu_count:"))
    assert literal_after(out, "local:") == [10000] * ncpu
    assert literal_after(out, "remote:") == [10000] * ncpu


def test_task_dependencies_and_nested_tasks(tmp_path):
    out = run_example("task_dependencies", tmp_path)
    assert literal_after(out, "x1:") == 1
    assert literal_after(out, "x2:") == [1, 2, 3]
    assert literal_after(out, "y1:") == 1
    assert literal_after(out, "y2:") == [1, 2, 3]
    assert len(re.findall(r"ObjectRef\([0-9a-f]{56}\)", value_after(out, "g:"))) == 4
    assert literal_after(out, "g values:") == [1, 1, 1, 1]
    assert literal_after(out, "h:") == [1, 1, 1, 1]


def test_tree_reduce(tmp_path):
    out = run_example("tree_reduce", tmp_path)
    lines = lines_of(out)
    assert lines[0] == "[1, 2, 3, 4, 5, 6, 7, 8]"
    # The slow approach prints the list after each step: one ref, then what is left.
    for step in range(1, 8):
        m = re.fullmatch(r"\[ObjectRef\([0-9a-f]{56}\)(.*)\]", lines[step])
        assert m, lines[step]
        assert m.group(1) == "".join(f", {v}" for v in range(step + 2, 9))
    assert value_after(out, "slow approach result:") == "36"
    assert value_after(out, "fast approach result:") == "36"


# ------------------------------------------------------------------------------ run_all

def test_run_all_runs_the_named_examples(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_all.py"), "square", "linking_tasks"],
        capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.search(r"^ok +linking_tasks\.py", proc.stdout, re.M), proc.stdout
    assert re.search(r"^ok +square\.py", proc.stdout, re.M), proc.stdout
    assert "2 passed, 0 failed, 0 skipped" in proc.stdout


def test_run_all_rejects_unknown_names():
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "run_all.py"), "no_such_example"],
        capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 2
    assert "no such example(s): no_such_example" in proc.stderr


def test_every_example_is_tested():
    tested = {
        "init", "square", "nap", "progress_bars", "slow_series", "numba_tasks",
        "numba_slow_series", "partial_results", "multiple_returns", "linking_tasks",
        "object_store", "estimate_pi", "process_as_finished", "remote_basics", "array_tasks",
        "fibonacci", "task_dependencies", "tree_reduce",
    }
    from .test_seed_actor_examples import ACTOR_EXAMPLES
    from .test_seed_data_examples import DATA_EXAMPLES

    scripts = {p.stem for p in EXAMPLES.glob("*.py")} - {"run_all"}
    assert scripts == tested | ACTOR_EXAMPLES | DATA_EXAMPLES, "an example script has no test"
