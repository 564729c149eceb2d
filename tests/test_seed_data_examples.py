"""The tutorial (seed) Ray Data workflows in examples/, each run as a user would run it.

Every test runs one script from examples/ in a fresh process (with the helpers of
test_seed_examples.py: its own TMPDIR, and nothing may be left behind) and checks what it
prints against values computed here.
"""

from __future__ import annotations

import ast

import pytest

from .test_seed_examples import lines_of, literal_after, run_example, slow_interval, value_after

pytestmark = pytest.mark.timeout(90)

DATA_EXAMPLES = {"data_basics", "data_slow_series", "data_large_arrays", "data_images",
                 "data_parallel_io", "data_julia_set"}


def test_data_basics(tmp_path):
    out = run_example("data_basics", tmp_path)
    lines = lines_of(out)
    assert value_after(out, "repr:") == "Dataset(num_rows=1000, schema={id: int64})"
    assert value_after(out, "count:") == "1000"
    assert literal_after(out, "take(3):") == [{"id": 0}, {"id": 1}, {"id": 2}]
    assert value_after(out, "len(take()):") == "20"
    assert int(value_after(out, "num_blocks:")) >= 1
    assert literal_after(out, "from_items:") == [{"item": 10}, {"item": 20}, {"item": 30}]
    assert "{'col1': 4, 'col2': 16}" in lines
    assert value_after(out, "csv count:") == "150"
    assert "{'sepal.length': 5.0, 'sepal.width': 3.0, 'petal.length': 1.4, " \
           "'petal.width': 0.2, 'variety': 'Setosa'}" in lines
    assert "{'key': 2}" in lines
    assert value_after(out, "a:") == "Map(<lambda>)"
    assert literal_after(out, "long:")[3] == {"long": "333"}
    assert literal_after(out, "squares:") == [{"squares": i * i} for i in range(5)]
    assert literal_after(out, "original:") == [{"id": 0}, {"id": 1}]
    assert literal_after(out, "added:") == [{"id": 0, "square": 0}, {"id": 1, "square": 1}]
    assert value_after(out, "rows taken:") == \
        "1000000 last: {'id': 999999, 'square': 999998000001}"
    n = 1_000_000
    assert int(value_after(out, "sum of squares:")) == sum(i * i for i in range(n))


def test_data_slow_series(tmp_path):
    out = run_example("data_slow_series", tmp_path)
    n = 1_000_000
    assert float(value_after(out, "one row total:")) == slow_interval(1, n)
    two = float(value_after(out, "two rows total:"))
    assert two == slow_interval(1, n // 2) + slow_interval(n // 2 + 1, n)
    assert "{'a': 1, 'b': 1000000}" in lines_of(out)


def test_data_large_arrays(tmp_path):
    out = run_example("data_large_arrays", tmp_path)
    assert lines_of(out)[:2] == ["{'item': [100, 100, 100]}"] * 2
    assert value_after(out, "type:") == "<class 'numpy.ndarray'>"
    assert value_after(out, "shape:") == "(100, 100, 100)"


def test_data_images(tmp_path):
    out = run_example("data_images", tmp_path, RAY_DEDUP_LOGS="0")
    assert value_after(out, "count:") == "100"
    assert value_after(out, "type:") == "<class 'numpy.ndarray'>"
    assert value_after(out, "shape:") == "(300, 300, 3)"
    assert value_after(out, "max:") == "255"
    # minmax printed one line per image from the workers, with their prefix
    printed = [line for line in out.stdout.splitlines() + out.stderr.splitlines()
               if line.startswith("(") and "pid=" in line and line.endswith(" 255")]
    assert len(printed) == 100
    assert value_after(out, "written:") == "100"
    assert value_after(out, "negated:") == "True"


def test_data_parallel_io(tmp_path):
    out = run_example("data_parallel_io", tmp_path)
    assert literal_after(out, "totals:") == [45, 190, 435]
    rows = [ast.literal_eval(line) for line in lines_of(out) if line.startswith("{")]
    assert [r["status"] for r in rows] == ["done"] * 3


def test_data_julia_set(tmp_path):
    out = run_example("data_julia_set", tmp_path)
    assert value_after(out, "same image:") == "True"
