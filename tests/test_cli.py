"""The `rayling` command: start a head, join a node, status, scripts connecting with
address="auto", stop; --block; and Slurm's one-command cluster (`rayling start --slurm`)
run as several processes with simulated Slurm variables.

Each test gives its commands their own TMPDIR and HOME, so the files `rayling start`
writes (current cluster, tokens, daemon records) are the test's alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from .conftest import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def env(tmp_path):
    env = dict(os.environ)
    for key in ("RAYLING_ADDRESS", "RAY_ADDRESS", "RAYLING_TOKEN") + tuple(
            k for k in os.environ if k.startswith("SLURM_")):
        env.pop(key, None)
    (tmp_path / "t").mkdir()
    (tmp_path / "home").mkdir()
    env["TMPDIR"] = str(tmp_path / "t")
    env["HOME"] = str(tmp_path / "home")
    yield env
    # Whatever a test left running, stop it (and fail if stop leaves anything).
    subprocess.run([sys.executable, "-m", "rayling.scripts", "stop"], env=env,
                   capture_output=True, timeout=60)


def rayling_cmd(env, *args, check=True, timeout=60) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "rayling.scripts", *args], env=env,
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"rayling {' '.join(args)} failed:\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


def machine_dir(env) -> str:
    return os.path.join(env["TMPDIR"], f"rayling-{os.getuid()}")


def daemon_records(env) -> list[dict]:
    directory = os.path.join(machine_dir(env), "nodes")
    if not os.path.isdir(directory):
        return []
    # Records are written to a ".tmp" file first, then renamed into place.
    return [json.load(open(os.path.join(directory, f))) for f in os.listdir(directory)
            if not f.startswith(".")]


def run_script(env, code: str, extra_env=None) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)],
                            env={**env, **(extra_env or {})}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# Tasks that hold their CPU until all of them run at once (a file-system barrier), so
# they must be spread over the nodes, however slowly they start.
SCRIPT = """
    import os, tempfile, time
    import rayling

    rayling.init(address="auto")

    @rayling.remote(num_cpus=1)
    def where(directory, parties):
        open(os.path.join(directory, str(os.getpid())), "w").close()
        deadline = time.monotonic() + 30
        while len(os.listdir(directory)) < parties and time.monotonic() < deadline:
            time.sleep(0.01)
        return rayling.get_runtime_context().get_node_id(), len(os.listdir(directory))

    print(len([n for n in rayling.nodes() if n["Alive"]]), rayling.cluster_resources()["CPU"])
    directory = tempfile.mkdtemp()
    placed = rayling.get([where.remote(directory, 4) for _ in range(4)])
    print(len({node for node, _ in placed}), min(arrived for _, arrived in placed))
"""


def _no_processes(pids) -> bool:
    return not [pid for pid in pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def _shm_of(records) -> list[str]:
    sessions = tuple(f"rl{r['session']}_" for r in records)
    return [f for f in os.listdir("/dev/shm") if f.startswith(sessions)]


def test_start_join_status_connect_stop(env):
    out = rayling_cmd(env, "start", "--head", "--port", "0", "--num-cpus", "2").stdout
    assert "rayling start --address=" in out and "rayling.init(address=" in out
    info = json.load(open(os.path.join(machine_dir(env), "current_cluster.json")))
    address = info["address"]
    # The token comes from the head's file in the (shared) home directory.
    out = rayling_cmd(env, "start", "--address", address, "--num-cpus", "2",
                      "--resources", '{"disk": 2}').stdout
    assert "joined the cluster" in out
    status = rayling_cmd(env, "status").stdout
    assert status.count(" node_") >= 2 and "0/4 CPU" in status and "0/2 disk" in status
    assert "object_store_memory" in status and "(no dead nodes)" in status
    assert run_script(env, SCRIPT).split() == ["2", "4.0", "2", "4"]
    # RAYLING_ADDRESS works too, with the token from the home directory.
    out = run_script(env, "import rayling; rayling.init(); print(len(rayling.nodes()))",
                     {"RAYLING_ADDRESS": address})
    assert out.strip() == "2"
    # The seeds' form: an explicit address and _node_ip_address, the token from the env.
    host, port = address.split(":")
    out = run_script(env, f"""
        import rayling
        rayling.init(address="{host}:{port}", _node_ip_address="{host}")
        print(sum(n["Alive"] for n in rayling.nodes()), rayling.available_resources()["CPU"])
    """, {"RAYLING_TOKEN": info["token"]})
    assert out.split() == ["2", "4.0"]

    records = daemon_records(env)
    assert len(records) == 2
    daemons = [r["pid"] for r in records]
    children = [c.pid for pid in daemons for c in psutil.Process(pid).children(recursive=True)]
    assert "Stopped 2" in rayling_cmd(env, "stop").stdout
    wait_until(lambda: _no_processes(daemons + children), what="every daemon and worker to end")
    assert not _shm_of(records)
    assert not daemon_records(env)
    assert not os.listdir(os.path.join(env["HOME"], ".rayling", "clusters"))
    assert "No rayling daemons" in rayling_cmd(env, "stop").stdout


def test_joining_with_the_token_from_a_file_or_the_environment(env, tmp_path):
    started = rayling_cmd(env, "start", "--head", "--port", "0", "--num-cpus", "1").stdout
    info = json.load(open(os.path.join(machine_dir(env), "current_cluster.json")))
    # The head never shows the token, and says that on loopback only this machine joins.
    assert info["token"] not in started and "listens on this machine only" in started
    assert "--node-ip-address" in started
    # Another machine: its own temp directory, and a home directory not shared.
    (tmp_path / "other-home").mkdir()
    (tmp_path / "other-tmp").mkdir()
    other = {**env, "HOME": str(tmp_path / "other-home"), "TMPDIR": str(tmp_path / "other-tmp")}
    try:
        refused = rayling_cmd(other, "start", "--address", info["address"], check=False)
        assert refused.returncode != 0 and "No token" in refused.stderr
        token_file = tmp_path / "other-home" / "token"
        token_file.write_text(info["token"])
        token_file.chmod(0o644)
        loose = rayling_cmd(other, "start", "--address", info["address"], "--token-file",
                            str(token_file), check=False)
        assert loose.returncode != 0 and "chmod 600" in loose.stderr
        token_file.chmod(0o600)
        rayling_cmd(other, "start", "--address", info["address"], "--num-cpus", "1",
                    "--token-file", str(token_file))
        rayling_cmd({**other, "RAYLING_TOKEN": info["token"]}, "start", "--address",
                    info["address"], "--num-cpus", "1", "--num-gpus", "1")
        status = rayling_cmd(env, "status").stdout
        assert "0/3 CPU" in status and "0/1 GPU" in status
        # No process shows the token in its command line (/proc/<pid>/cmdline).
        for proc in psutil.process_iter(["cmdline"]):
            assert info["token"] not in " ".join(proc.info["cmdline"] or [])
    finally:
        rayling_cmd(other, "stop")


def test_start_errors_say_what_to_do(env):
    bad = rayling_cmd(env, "start", "--head", "--resources", "{nope", check=False)
    assert bad.returncode != 0 and "--resources must be a JSON object" in bad.stderr
    for bad_args in (["--num-cpus", "nan"], ["--num-gpus", "inf"],
                     ["--resources", '{"disk": -1}']):
        bad = rayling_cmd(env, "start", "--head", *bad_args, check=False)
        assert bad.returncode != 0 and "bad resources" in bad.stderr, bad.stderr
    for bad_args in (["--port", "-1"], ["--port", "70000"],
                     ["--object-store-memory", "-5"], ["--dashboard-port", "99999"]):
        bad = rayling_cmd(env, "start", "--head", *bad_args, check=False)
        assert bad.returncode != 0 and "Invalid value for" in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr
    both = rayling_cmd(env, "start", check=False)
    assert both.returncode != 0 and "--head or --address" in both.stderr
    nothing = rayling_cmd(env, "start", "--address", "127.0.0.1:1", "--wait-for-head", "0",
                          check=False)
    assert nothing.returncode != 0 and "Nothing answers at 127.0.0.1:1" in nothing.stderr
    in_argv = rayling_cmd(env, "start", "--address", "127.0.0.1:1", "--token", "x",
                          check=False)
    assert in_argv.returncode != 0 and "--token-file" in in_argv.stderr
    status = rayling_cmd(env, "status", "--address", "127.0.0.1:1", "--wait-for-head", "0",
                         check=False)
    assert status.returncode != 0 and "Nothing answers at 127.0.0.1:1" in status.stderr
    script = run_script_failing({**env, "RAYLING_WAIT_FOR_HEAD": "0.5"},
                                'import rayling; rayling.init(address="127.0.0.1:1")')
    assert "Nothing answers at 127.0.0.1:1" in script and "waiting up to 0.5 s" in script
    no_cluster = run_script_failing(env, 'import rayling; rayling.init(address="auto")')
    assert "Could not find a running rayling cluster" in no_cluster
    slurm = rayling_cmd(env, "start", "--slurm", check=False)
    assert slurm.returncode != 0 and "SLURM_JOB_ID" in slurm.stderr
    rayling_cmd(env, "start", "--head", "--port", "0", "--num-cpus", "1")
    taken = json.load(open(os.path.join(machine_dir(env), "current_cluster.json")))["address"]
    busy = rayling_cmd(env, "start", "--head", "--port", taken.split(":")[1], check=False)
    assert busy.returncode != 0 and "cannot listen on" in busy.stderr
    assert "Traceback" not in busy.stderr


def run_script_failing(env, code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode != 0
    return result.stderr


def test_block_stays_in_the_foreground_until_terminated(env):
    proc = subprocess.Popen([sys.executable, "-m", "rayling.scripts", "start", "--head",
                             "--port", "0", "--num-cpus", "1", "--block"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        records = wait_until(lambda: daemon_records(env), timeout=30,
                             what="the head to record itself")
        assert proc.poll() is None
        assert run_script(env, "import rayling; rayling.init(address='auto'); "
                               "print(rayling.cluster_resources()['CPU'])").strip() == "1.0"
        daemon = records[0]["pid"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        wait_until(lambda: _no_processes([daemon]), what="the daemon to end with --block")
        assert not daemon_records(env) and not _shm_of(records)
        assert not os.path.exists(os.path.join(machine_dir(env), "current_cluster.json"))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_slurm_one_command_forms_the_cluster(env, tmp_path):
    """What `srun rayling start --slurm --block &` does in an sbatch script, with three
    tasks simulated as three processes (each with its own TMPDIR, like its own machine)."""
    submit = tmp_path / "submit"
    submit.mkdir()
    job = {"SLURM_JOB_ID": "4242", "SLURM_SUBMIT_DIR": str(submit),
           "SLURM_CPUS_PER_TASK": "1", "SLURM_NTASKS": "3"}
    tasks = []
    try:
        for rank in (2, 1, 0):  # the head starts last: the others wait for it
            task_tmp = tmp_path / f"task{rank}"
            task_tmp.mkdir()
            task_env = {**env, **job, "SLURM_PROCID": str(rank), "TMPDIR": str(task_tmp)}
            if rank == 1:
                task_env["SLURM_GPUS_ON_NODE"] = "1"  # this task's machine has a GPU
            tasks.append(subprocess.Popen(
                [sys.executable, "-m", "rayling.scripts", "start", "--slurm", "--block"],
                env=task_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        cluster_file = submit / ".rayling" / "slurm-4242.json"
        driver_env = {**env, **job, "SLURM_PROCID": "0"}
        # Started right away, as the line after `srun ... &` in an sbatch script: it waits
        # for task 0 to publish the head instead of failing.
        early = run_script(driver_env, "import rayling; rayling.init(address='auto'); "
                                       "print(len(rayling.nodes()) >= 1)")
        assert early.strip() == "True" and cluster_file.exists()
        token = json.loads(cluster_file.read_text())["token"]

        def three_nodes():
            out = run_script(driver_env, "import rayling; rayling.init(address='auto'); "
                                         "print(len(rayling.nodes()))")
            return out.strip() == "3"

        wait_until(three_nodes, timeout=60, what="all three Slurm tasks to join")
        barrier_dir = tmp_path / "barrier"
        barrier_dir.mkdir()
        # Each task holds its CPU until all three run at once: one per node.
        out = run_script(driver_env, f"""
            import os, time
            import rayling
            rayling.init(address="auto")
            @rayling.remote(num_cpus=1)
            def node(directory, parties):
                open(os.path.join(directory, str(os.getpid())), "w").close()
                deadline = time.monotonic() + 30
                while len(os.listdir(directory)) < parties and time.monotonic() < deadline:
                    time.sleep(0.01)
                return rayling.get_runtime_context().get_node_id(), len(os.listdir(directory))
            placed = rayling.get([node.remote({str(barrier_dir)!r}, 3) for _ in range(3)])
            print(rayling.cluster_resources()["CPU"], rayling.cluster_resources()["GPU"],
                  len({{n for n, _ in placed}}), min(arrived for _, arrived in placed))
        """)
        assert out.split() == ["3.0", "1.0", "3", "3"]
        daemons = [c.pid for t in tasks for c in psutil.Process(t.pid).children()]
        # The job ends: Slurm sends SIGTERM to every task.
        for task in tasks:
            task.send_signal(signal.SIGTERM)
        for task in tasks:
            assert task.wait(30) == 0, task.communicate()
        head_output = tasks[-1].communicate()[0]
        assert "rayling head started" in head_output and token not in head_output
        wait_until(lambda: _no_processes(daemons), what="every daemon to end with the job")
        assert not cluster_file.exists()
    finally:
        for task in tasks:
            if task.poll() is None:
                task.kill()
            task.communicate()


def test_ray_start_flags_and_stop_force(env, tmp_path):
    sessions = tmp_path / "sessions"
    started = rayling_cmd(env, "start", "--head", "--port", "0", "--num-cpus", "1",
                          "--temp-dir", str(sessions), "--disable-usage-stats",
                          "--include-dashboard", "false", "--dashboard-host", "0.0.0.0",
                          "--dashboard-port", "8265")
    assert started.stderr.count("--disable-usage-stats changes nothing") == 1, started.stderr
    assert "Dashboard" not in started.stdout
    records = daemon_records(env)
    assert len(records) == 1 and records[0]["session_dir"].startswith(str(sessions) + "/")
    pid = records[0]["pid"]
    assert "Stopped 1" in rayling_cmd(env, "stop", "--force").stdout
    wait_until(lambda: _no_processes([pid]), what="the killed daemon to be gone")
    assert not os.path.exists(records[0]["session_dir"]) and not daemon_records(env)
    too_long = rayling_cmd(env, "start", "--head", "--temp-dir", "/tmp/" + "x" * 80,
                           check=False)
    assert too_long.returncode != 0 and "too long" in too_long.stderr
    # A folder others can write (not sticky, as /tmp is) could have its entries swapped.
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    refused = rayling_cmd(env, "start", "--head", "--temp-dir", str(loose), check=False)
    assert refused.returncode != 0 and "only you can write" in refused.stderr
    loose.chmod(0o1777)  # sticky: fine
    rayling_cmd(env, "start", "--head", "--port", "0", "--temp-dir", str(loose))
    assert "Stopped 1" in rayling_cmd(env, "stop").stdout


def test_the_seeds_recipe_needs_no_sleep(env):
    """`rayling start --head --block &`, then at once a node, a status and a script: they
    wait for the head instead of failing while it comes up."""
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    head = subprocess.Popen([sys.executable, "-m", "rayling.scripts", "start", "--head",
                             "--port", str(port), "--num-cpus", "1", "--block"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        joined = subprocess.run(
            [sys.executable, "-m", "rayling.scripts", "start", "--address",
             f"127.0.0.1:{port}", "--num-cpus", "1"], env=env, capture_output=True,
            text=True, timeout=90)
        assert joined.returncode == 0, joined.stderr
        assert "joined the cluster" in joined.stdout
        status = rayling_cmd(env, "status", "--address", f"127.0.0.1:{port}")
        assert "0/2 CPU" in status.stdout
        code = (f"import rayling; rayling.init(address='127.0.0.1:{port}'); "
                "print(rayling.cluster_resources()['CPU'])")
        script = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=90)
        assert script.returncode == 0 and "2.0" in script.stdout, script.stderr
    finally:
        rayling_cmd(env, "stop")
        head.wait(30)


def test_stop_sees_a_head_that_is_still_starting(env):
    for _ in range(3):  # (the start-up is short: a few rounds try the window more than once)
        head = subprocess.Popen([sys.executable, "-m", "rayling.scripts", "start", "--head",
                                 "--port", "0", "--num-cpus", "1", "--block"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # The record is written as soon as the daemon's process exists, before it serves.
        [record] = wait_until(lambda: daemon_records(env), timeout=30,
                              what="the starting head's record")
        stopped = rayling_cmd(env, "stop")
        assert "Stopped 1" in stopped.stdout, stopped.stdout + stopped.stderr
        head.communicate(timeout=60)
        pid = record["pid"]
        wait_until(lambda pid=pid: _no_processes([pid]), what="the head to be gone")
        assert not daemon_records(env)
