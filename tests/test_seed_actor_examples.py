"""The tutorial (seed) actor workflows in examples/, each run as a user would run it.

Every test runs one script from examples/ with ``sys.executable`` in a fresh process (with
the helpers of test_seed_examples.py: its own TMPDIR, and nothing may be left behind) and
checks the values it prints. The Poisson solvers are checked against the same iteration
computed here in serial NumPy.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from .test_seed_examples import lines_of, literal_after, run_example, value_after

pytestmark = pytest.mark.timeout(60)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX56 = re.compile(r"^[0-9a-f]{56}$")

ACTOR_EXAMPLES = {
    "actor_array_storage", "actor_linear_solve", "poisson_serial", "poisson_dual",
    "poisson_distributed", "poisson_distributed_cluster",
}


# ------------------------------------------------------------------ ArrayStorage examples

def test_actor_array_storage(tmp_path):
    out = run_example("actor_array_storage", tmp_path)
    lines = lines_of(out)
    # One actor: store an array, get it back.
    assert lines[0] == "[1 2 3 4 5]"
    # Two actors, each with its own array.
    assert lines[1] == "[None, None]"  # store_array returns nothing
    assert lines[2] == "[1. 1. 1. 1. 1.]"
    assert lines[3] == "[2. 2. 2. 2. 2.]"
    assert lines[4] == "[array([1., 1., 1., 1., 1.]), array([2., 2., 2., 2., 2.])]"
    # The class with get_actor_id() / get_node_id().
    assert lines[5] == "[None, None]"
    actor_ids = ast.literal_eval(lines[6])
    node_ids = ast.literal_eval(lines[7])
    assert len(actor_ids) == 2 and all(HEX32.match(a) for a in actor_ids), actor_ids
    assert actor_ids[0] != actor_ids[1]
    # The ids the actors report are those of the handles, in the same order.
    handles = re.findall(r"Actor\(ArrayStorage, ([0-9a-f]+)\)", value_after(out, "handles:"))
    assert handles == actor_ids
    # One node: both actors run on the driver's node.
    driver_node = value_after(out, "driver node id:")
    assert HEX56.match(driver_node), driver_node
    assert node_ids == [driver_node, driver_node]
    assert value_after(out, "arrays on the new workers:") == (
        "[array([1., 1., 1., 1., 1.]), array([2., 2., 2., 2., 2.])]")


def test_actor_linear_solve(tmp_path):
    out = run_example("actor_linear_solve", tmp_path)
    assert lines_of(out)[0].startswith("The solution is [")
    u = np.array(literal_after(out, "solution:"))
    # The seed's system, solved here.
    n = 500
    h = 1/(n+1)
    b = np.exp(-(100*(np.linspace(0, 1, n)-0.45))**2)*h*h
    a = -2.0*np.identity(n) + np.eye(n, k=1) + np.eye(n, k=-1)
    assert u.shape == (n,)
    np.testing.assert_allclose(u, np.linalg.solve(a, b), rtol=1e-10, atol=0)
    np.testing.assert_allclose(a @ u, b, rtol=0, atol=1e-9 * np.abs(b).max())


# --------------------------------------------------------------------- Poisson solvers

N, TOLERANCE = 1_000, 1e-3  # the examples' (shrunk) sizes


def poisson_reference(n: int, relative_tolerance: float, ncores: int):
    """poissonDistributed.py's iteration in serial NumPy: the same intervals, ghost values
    and update order, each actor's ``u`` a plain array. With ``ncores=2`` it is exactly
    poissonSerial.py's iteration.

    Returns (iterations, final diff, whole solution, the (u1[-3:], u2[:3], diff) printed
    every 100 iterations).
    """
    h = 1/(n-1)
    size = n//ncores
    intervals = [(i*size, (i+1)*size-1) for i in range(ncores)]
    if n > intervals[-1][1]:
        intervals[-1] = (intervals[-1][0], n-1)
    b = np.ones(n)*2*h*h
    us = [np.zeros(hi-lo+1) for lo, hi in intervals]
    bs = [b[lo:hi+1] for lo, hi in intervals]
    diff, count, progress = 999.0, 0, []
    while abs(diff) > relative_tolerance:
        count += 1
        ghost_left = [0.0] + [us[i-1][-1] for i in range(1, ncores)]
        ghost_right = [us[i+1][0] for i in range(ncores-1)] + [0.0]
        diff = ghost_left[1]
        for i, (u, bb) in enumerate(zip(us, bs, strict=True)):
            m = len(u)
            u[1:m-1] = (u[0:m-2] + u[2:m] - bb[1:m-1]) / 2
            if i > 0:
                u[0] = (ghost_left[i] + u[1] - bb[0]) / 2
            if i < ncores-1:
                u[m-1] = (u[m-2] + ghost_right[i] - bb[m-1]) / 2
        new_left = us[0][-1]
        diff = (diff-new_left) / new_left
        if count % 100 == 0:
            progress.append((us[0][-3:].copy(), us[1][:3].copy(), diff))
    return count, diff, np.concatenate(us), progress


FLOAT = r"-?\d+(?:\.\d*)?(?:e[+-]?\d+)?"


def _progress_lines(out) -> list[tuple[np.ndarray, np.ndarray, float]]:
    found = []
    for line in lines_of(out):
        m = re.fullmatch(rf"\[([^\]]*)\] \[([^\]]*)\] ({FLOAT})", line)
        if m:
            found.append((np.array([float(x) for x in m.group(1).split()]),
                          np.array([float(x) for x in m.group(2).split()]),
                          float(m.group(3))))
    return found


def check_poisson(out, ncores: int) -> None:
    """The example's output is the serial NumPy iteration's, to floating-point tolerance."""
    count, diff, solution, progress = poisson_reference(N, TOLERANCE, ncores)
    assert int(value_after(out, "iterations:")) == count
    assert float(value_after(out, "final diff:")) == pytest.approx(diff, rel=1e-9)
    assert abs(diff) <= TOLERANCE
    m = re.fullmatch(rf"(\d+) iterations with diff = ({FLOAT})",
                     value_after(out, "Converged after"))
    assert m and int(m.group(1)) == count, out.stdout
    got = np.array(literal_after(out, "solution:"))
    assert got.shape == (N,)
    np.testing.assert_allclose(got, solution, rtol=1e-12, atol=1e-18)
    # The prints every 100 iterations (numpy arrays print with 8 digits after the point).
    printed = _progress_lines(out)
    assert len(printed) == count // 100 == len(progress), out.stdout
    for (u1, u2, d), (ref_u1, ref_u2, ref_d) in zip(printed, progress, strict=True):
        np.testing.assert_allclose(u1, ref_u1, rtol=1e-8, atol=1e-8)
        np.testing.assert_allclose(u2, ref_u2, rtol=1e-8, atol=1e-8)
        assert d == pytest.approx(ref_d, rel=1e-12)
    # A partly converged solution of u'' = 2, u(0) = u(1) = 0: zero at both ends, and
    # between 0 and the discrete steady state x^2 - x.
    x = np.linspace(0, 1, N)
    assert got[0] == 0.0 and got[-1] == 0.0
    assert np.all(got[1:-1] < 0) and np.all(got >= x*x - x - 1e-15)


def test_poisson_reference_is_the_seed_serial_iteration_for_two_intervals(tmp_path):
    """poisson_serial.py (the seed's serial NumPy code, no Ray) against the reference."""
    out = run_example("poisson_serial", tmp_path)
    check_poisson(out, ncores=2)


def test_poisson_dual(tmp_path):
    out = run_example("poisson_dual", tmp_path)
    check_poisson(out, ncores=2)


def test_poisson_distributed(tmp_path):
    out = run_example("poisson_distributed", tmp_path)
    check_poisson(out, ncores=4)
    # Actors need a CPU to be placed, but hold none while they run.
    assert float(value_after(out, "CPUs available while the actors live:")) == 4.0


def test_poisson_distributed_one_cpu_per_actor(tmp_path):
    out = run_example("poisson_distributed_cluster", tmp_path)
    check_poisson(out, ncores=4)
    # Each of the 4 actors holds the CPU it asked for: 2 on each of the 2 nodes.
    assert float(value_after(out, "CPUs available while the actors live:")) == 0.0
    assert value_after(out, "nodes alive:") == "2"
    assert ast.literal_eval(value_after(out, "CPUs available per node:")) == [0.0, 0.0]


def test_four_intervals_differ_from_two():
    """The 4-interval iteration is not the 2-interval one (so the distributed examples are
    checked against their own reference): they differ at the extra interfaces."""
    _, _, two, _ = poisson_reference(N, TOLERANCE, 2)
    _, _, four, _ = poisson_reference(N, TOLERANCE, 4)
    assert np.abs(four - two).max() > 1e-3 * np.abs(two).max()


# ------------------------------------------------------------------------------ coverage

def test_every_actor_example_is_tested():
    scripts = {p.stem for p in EXAMPLES.glob("*.py")}
    assert ACTOR_EXAMPLES <= scripts
