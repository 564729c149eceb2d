"""The test suite runs in its own namespace (conftest.py): a cluster another user of
rayling runs on this machine is invisible to the tests' ``init()``, and its shared memory
does not count as the tests' leftovers.

The other user is played by subprocesses with the machine's TMPDIR: ``rayling start
--head --block`` and a script that connects to it as a user's script would (``init()``
with no address) and holds an object in shared memory.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import psutil
import pytest

import rayling

from . import conftest
from .conftest import segments_of, wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OTHER_USER_SCRIPT = """
import json, sys
import numpy as np
import rayling

info = rayling.init()  # no address: this machine's `rayling start` cluster
ref = rayling.put(np.ones(1_000_000))  # 8 MB: in a shared-memory segment
print(json.dumps({"address": info["address"], "cpu": rayling.cluster_resources()["CPU"],
                  "nodes": [n["NodeID"] for n in rayling.nodes()]}), flush=True)
sys.stdin.read()  # hold the object until the test closes stdin
"""


def _machine_dir() -> str:
    return os.path.join(conftest.MACHINE_TMPDIR, f"rayling-{os.getuid()}")


def _machine_env(home: str) -> dict:
    """This process's environment with the machine's TMPDIR back (the variables conftest
    removed stay removed: the other user's shell has none), and a home of its own so the
    head's token file stays out of the real one."""
    env = {**os.environ, "HOME": home, "PYTHONPATH": ROOT}
    if conftest.MACHINE_ENV["TMPDIR"] is None:
        env.pop("TMPDIR", None)
    else:
        env["TMPDIR"] = conftest.MACHINE_ENV["TMPDIR"]
    return env


def _machine_cluster() -> dict | None:
    """The machine's running `rayling start` cluster, as init() without address sees it
    outside the test session."""
    try:
        with open(os.path.join(_machine_dir(), "current_cluster.json")) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if psutil.pid_exists(int(info.get("pid", 0))) else None


def _daemon_record(pid: int) -> dict | None:
    try:
        with open(os.path.join(_machine_dir(), "nodes", f"{pid}.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _end(proc: subprocess.Popen | None, sig=signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_a_cluster_another_user_runs_is_neither_joined_nor_counted(tmp_path):
    # The session's namespace: rayling's lookups follow this run's TMPDIR.
    assert conftest.run_dir and os.environ["TMPDIR"] == conftest.run_dir
    assert tempfile.gettempdir() == conftest.run_dir != conftest.MACHINE_TMPDIR
    from rayling._private import cluster_files

    assert cluster_files.machine_record_paths(cluster_files.CURRENT)[0].startswith(
        conftest.run_dir + os.sep)

    machine_dir_existed = os.path.isdir(_machine_dir())
    env = _machine_env(str(tmp_path))
    head = user = None
    other = _machine_cluster()
    try:
        if other is None:
            # No cluster on the machine yet: start one, as the other user would. (If
            # there is one, it is someone's: it plays the other cluster, and starting a
            # head over it would replace its record.)
            head = subprocess.Popen(
                [sys.executable, "-m", "rayling.scripts", "start", "--head", "--port", "0",
                 "--num-cpus", "1", "--block"],
                env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)

            def head_up():
                if head.poll() is not None:
                    raise AssertionError(f"rayling start failed: {head.communicate()}")
                found = _machine_cluster()
                ours = {c.pid for c in psutil.Process(head.pid).children()}
                return found if found and found["pid"] in ours else None

            other = wait_until(head_up, timeout=60, what="`rayling start --head` to be up")
        record = _daemon_record(int(other["pid"]))
        other_session = record["session"] if record else None

        user = subprocess.Popen([sys.executable, "-c", OTHER_USER_SCRIPT], env=env,
                                cwd=str(tmp_path), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = user.stdout.readline()
        assert line, f"the other user's script failed: {user.communicate()}"
        theirs = json.loads(line)
        # Outside the test session, init() finds the machine's cluster ...
        assert theirs["address"] in (other.get("socket"), f"tcp:{other['address']}")
        if head is not None:
            assert theirs["cpu"] == 1
            assert other_session and segments_of([other_session]), \
                "the other user's object is not in shared memory"

        # ... inside it, init() starts a fresh cluster of its own.
        ours = rayling.init(num_cpus=2)
        try:
            assert rayling.cluster_resources()["CPU"] == 2
            nodes = [n["NodeID"] for n in rayling.nodes()]
            assert len(nodes) == 1 and nodes[0] not in theirs["nodes"]
            assert ours["address"] != theirs["address"]
            assert ours["session_dir"].startswith(conftest.run_dir + os.sep)
            my_session = conftest.started_sessions[-1]
            assert my_session != other_session
            mine = rayling.put(np.ones(1_000_000))
            # The leftover check sees this cluster's segments, not the other user's.
            _procs, segments = conftest._leftovers()
            assert segments_of([my_session]) and set(segments_of([my_session])) <= set(
                segments)
            if other_session:
                assert not set(segments_of([other_session])) & set(segments)
            del mine
        finally:
            rayling.shutdown()

        # The other user is done: its script ends, then its head.
        user.stdin.close()
        assert user.wait(30) == 0, user.stderr.read()
        if head is not None:
            daemons = [c.pid for c in psutil.Process(head.pid).children(recursive=True)]
            _end(head)
            assert head.returncode == 0, head.communicate()
            wait_until(lambda: not any(psutil.pid_exists(pid) and psutil.Process(pid).status()
                                       != psutil.STATUS_ZOMBIE for pid in daemons),
                       what="the other cluster's daemon and workers to end")
            assert not segments_of([other_session])
            assert not os.path.exists(os.path.join(_machine_dir(), "nodes",
                                                   f"{other['pid']}.json"))
            assert _machine_cluster() is None
    finally:
        _end(user, signal.SIGKILL)
        _end(head)  # --block: the daemon stops and its files are removed
        if not machine_dir_existed:  # leave the machine's temp directory as it was
            for directory in (os.path.join(_machine_dir(), "nodes"), _machine_dir()):
                try:
                    os.rmdir(directory)
                except OSError:  # not there, or something else uses it by now
                    pass
