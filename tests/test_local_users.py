"""What another local user could do to this user's rayling, tried: plant a cluster record
(init() refuses a folder or record that is not this user's or that others can write, and
connects to nothing it names), make ``rayling stop`` kill or delete what it did not start,
pre-create or plant shared-memory segments, or read the session id or token from a
command line. The attacker is a second local user made with useradd (root only)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import psutil
import pytest

import rayling
from rayling._private import cluster_files, shm

from . import conftest

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKER = "rlattacker"


@pytest.fixture
def attacker():
    """A second local user, made with useradd for the test (and removed after it)."""
    if os.getuid() != 0:
        pytest.skip("playing another local user needs root (to create one with useradd)")
    try:
        existing = pwd.getpwnam(ATTACKER)
    except KeyError:
        existing = None
    if existing is not None:
        yield existing
        return
    made = subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin",
                           ATTACKER], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot create a second local user: {made.stderr.strip()}")
    try:
        yield pwd.getpwnam(ATTACKER)
    finally:
        subprocess.run(["userdel", ATTACKER], capture_output=True)


@pytest.fixture
def shared_tmp():
    """A folder like /tmp: every user may create things in it (mode 1777)."""
    path = tempfile.mkdtemp(prefix="rl-shared-", dir=conftest.MACHINE_TMPDIR)
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _victim_init(tmp: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": tmp, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-c", "import rayling; rayling.init()"],
                          env=env, capture_output=True, text=True, timeout=30)


def test_a_cluster_record_planted_by_another_user_is_refused(shared_tmp, attacker):
    user = attacker
    fake = os.path.join(shared_tmp, "fake-daemon.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(fake)
    os.chmod(fake, 0o777)
    listener.listen(8)
    listener.setblocking(False)
    record = {"address": "127.0.0.1:1", "socket": fake, "token": "t", "pid": os.getpid()}
    # The attacker, first on the machine, makes the victim's (uid 0) rayling folder.
    plant = ("import json, os, sys; d = os.path.join(sys.argv[1], 'rayling-0'); "
             "os.mkdir(d, 0o755); "
             "json.dump(json.loads(sys.argv[2]), open(os.path.join(d, "
             "'current_cluster.json'), 'w'))")
    # (A Python the attacker may run: this one may live in root's home.)
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the second user to run")
    subprocess.run([python, "-c", plant, shared_tmp, json.dumps(record)],
                   check=True, timeout=30, user=user.pw_uid, group=user.pw_gid, cwd="/")
    try:
        done = _victim_init(shared_tmp)
        assert done.returncode != 0
        assert "refuses the folder" in done.stderr and "belongs to uid" in done.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()  # the victim never connected to the attacker's daemon
    finally:
        listener.close()


def test_a_record_others_can_write_is_refused_and_folders_are_private(shared_tmp):
    own = os.path.join(shared_tmp, f"rayling-{os.getuid()}")
    cluster_files.write(os.path.join(own, "nodes", "1.json"), {"pid": 1})
    for folder in (own, os.path.join(own, "nodes")):
        assert os.stat(folder).st_mode & 0o777 == 0o700
    os.chmod(own, 0o777)  # as if another user could replace what is in it
    with pytest.raises(cluster_files.UnsafeFileError, match="can be written by other users"):
        cluster_files.read(os.path.join(own, "nodes", "1.json"))
    os.chmod(own, 0o700)
    path = os.path.join(own, "nodes", "1.json")
    os.chmod(path, 0o666)
    with pytest.raises(cluster_files.UnsafeFileError, match="file"):
        cluster_files.read(path)
    os.chmod(path, 0o600)
    assert cluster_files.read(path) == {"pid": 1}
    os.unlink(path)
    os.symlink("/etc/hostname", path)
    with pytest.raises(cluster_files.UnsafeFileError, match="symbolic link"):
        cluster_files.read(path)


def _python_for(user) -> str:
    """A Python the second user may run (this one may live in root's home)."""
    python = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if python is None:
        pytest.skip("no system python3 for the second user to run")
    return python


def _as(user, *args, **kwargs):
    return subprocess.run(list(args), check=True, timeout=30, user=user.pw_uid,
                          group=user.pw_gid, cwd="/", capture_output=True, text=True,
                          **kwargs)


def _stop(tmp: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TMPDIR": tmp, "PYTHONPATH": ROOT}
    return subprocess.run([sys.executable, "-m", "rayling.scripts", "stop"], env=env,
                          capture_output=True, text=True, timeout=60)


def _record(tmp: str, pid: int, **fields) -> str:
    path = os.path.join(tmp, f"rayling-{os.getuid()}", "nodes", f"{pid}.json")
    cluster_files.write(path, {"pid": pid, "role": "node", "address": "127.0.0.1:1",
                               "started": psutil.Process(pid).create_time(), **fields})
    return path


def test_rayling_stop_does_only_what_a_record_proves(tmp_path):
    """Records that lie (a stale one whose pid now runs something else, or one edited by
    hand or by a bug) make rayling stop kill, delete and unlink nothing it did not start."""
    tmp = str(tmp_path)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data").write_text("keep me")
    session = os.urandom(4).hex()  # another session of this user, still in use
    segment = f"/rl{session}_1"
    shm.create(segment, 100).close()
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        # A process of this user that is not a rayling daemon, a folder that is not a
        # session folder, and an empty session (which would match every rl* segment).
        _record(tmp, bystander.pid, session="", session_dir=str(precious))
        # A well-formed session whose folder is not a rayling one of its own.
        _record(tmp, os.getpid(), session=session, session_dir=str(precious))
        done = _stop(tmp)
        assert done.returncode == 0, done.stderr
        assert f"Not stopping pid {bystander.pid}" in done.stdout
        assert "not a rayling daemon" in done.stdout
        assert bystander.poll() is None, "rayling stop killed a process it did not start"
        assert (precious / "data").read_text() == "keep me"
        assert os.path.exists(f"/dev/shm{segment}"), "rayling stop unlinked a live segment"
        assert not os.listdir(os.path.join(tmp, f"rayling-{os.getuid()}", "nodes"))
        # A record of a daemon that is gone, naming the session of one that runs: the
        # running one's folder and segments stay.
        rayling.init(num_cpus=1)
        from rayling._private import client as client_mod

        live_dir = client_mod.current.session_dir
        live = os.path.basename(live_dir).split("_")[1]
        ref = rayling.put(np.ones(1_000_000))
        gone = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                stdin=subprocess.PIPE)
        path = _record(tmp, gone.pid, session=live, session_dir=live_dir)
        gone.stdin.close()
        gone.wait()
        assert _stop(tmp).returncode == 0 and not os.path.exists(path)
        assert os.path.isdir(live_dir) and rayling.get(ref).sum() == 1_000_000
        rayling.shutdown()
    finally:
        bystander.kill()
        bystander.wait()
        shm.unlink(segment)


def test_rayling_stop_leaves_another_users_process_and_files_alone(tmp_path, attacker):
    """Run by root, rayling stop could kill any process and delete any folder: a record
    naming another user's process or folder (pid and start time right) is refused."""
    tmp = str(tmp_path)
    python = _python_for(attacker)
    theirs = subprocess.Popen([python, "-c", "import time; time.sleep(120)"],
                              user=attacker.pw_uid, group=attacker.pw_gid, cwd="/")
    session = os.urandom(4).hex()
    their_dir = tmp_path / f"rayling_{session}_theirs"
    their_dir.mkdir()
    os.chown(their_dir, attacker.pw_uid, attacker.pw_gid)
    (their_dir / "data").write_text("theirs")
    segment = f"/rl{session}_1"
    _as(attacker, python, "-c", _PLANT_SEGMENT, segment)
    try:
        _record(tmp, theirs.pid, session=session, session_dir=str(their_dir))
        done = _stop(tmp)
        assert done.returncode == 0, done.stderr
        assert "another user's" in done.stdout
        assert theirs.poll() is None, "rayling stop killed another user's process"
        assert (their_dir / "data").read_text() == "theirs"
        assert os.path.exists(f"/dev/shm{segment}"), "rayling stop unlinked their segment"
    finally:
        theirs.kill()
        theirs.wait()
        _remove_planted(segment)


def _remove_planted(name: str) -> None:
    """(rayling never removes another user's segment; the test, as root, does.)"""
    try:
        os.unlink(f"/dev/shm{name}")
    except FileNotFoundError:
        pass


_PLANT_SEGMENT = ("import _posixshmem, os, sys; fd = _posixshmem.shm_open(sys.argv[1], "
                  "os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o666); os.ftruncate(fd, 4096)")


def test_a_segment_name_another_user_took_is_given_back_and_another_used(attacker,
                                                                        monkeypatch):
    """Names are random (nobody can pre-create the next one), but if one is taken anyway
    the put asks for another instead of failing, and never opens the planted one."""
    python = _python_for(attacker)
    real_create = shm.create
    planted: list[str] = []

    def create_after_the_attacker(name: str, size: int):
        if not planted:  # the attacker wins the race for the first name
            _as(attacker, python, "-c", _PLANT_SEGMENT, name)
            planted.append(name)
        return real_create(name, size)

    rayling.init(num_cpus=1)
    try:
        monkeypatch.setattr(shm, "create", create_after_the_attacker)
        array = np.arange(1_000_000, dtype=np.int64)
        ref = rayling.put(array)
        assert planted, "the put never created a segment"
        assert np.array_equal(rayling.get(ref), array)
        assert os.stat(f"/dev/shm{planted[0]}").st_uid == attacker.pw_uid
        with pytest.raises(shm.ForeignSegmentError):
            shm.open_readonly(planted[0], 4096)
    finally:
        rayling.shutdown()
        for name in planted:
            _remove_planted(name)


def test_segment_names_are_unguessable_and_no_command_line_shows_session_or_token():
    rayling.init(num_cpus=1)
    try:
        from rayling._private import client as client_mod

        client = client_mod.current

        @rayling.remote
        def big():
            return np.ones(500_000)

        refs = [rayling.put(np.ones(500_000)) for _ in range(3)] + [big.remote()]
        rayling.get(refs)
        session = os.path.basename(client.session_dir).split("_")[1]
        names = [e for e in os.listdir("/dev/shm") if e.startswith(f"rl{session}_")]
        assert len(names) >= 4
        suffixes = [name.split("_", 1)[1] for name in names]
        assert all(len(s) == 16 for s in suffixes) and len(set(suffixes)) == len(suffixes)
        procs = psutil.Process(os.getpid()).children(recursive=True)
        assert len(procs) >= 3  # the daemon, its template, a worker
        for proc in procs:
            line = " ".join(proc.cmdline())
            assert session not in line and client._token not in line, line
    finally:
        rayling.shutdown()


def test_records_go_to_a_private_xdg_runtime_dir_and_the_temp_folder(tmp_path, monkeypatch):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    uid_dir = os.path.join(str(runtime), f"rayling-{os.getuid()}")
    tmp_dir = os.path.join(tempfile.gettempdir(), f"rayling-{os.getuid()}")
    assert cluster_files.machine_record_paths("x") == [os.path.join(uid_dir, "x"),
                                                       os.path.join(tmp_dir, "x")]
    os.chmod(runtime, 0o755)  # a runtime folder others can look into is not used
    assert cluster_files.machine_record_paths("x") == [os.path.join(tmp_dir, "x")]
    os.chmod(runtime, 0o700)
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
    no_xdg = {k: v for k, v in env.items() if k != "XDG_RUNTIME_DIR"}
    script = ("import rayling; rayling.init(); "
              "print(rayling.get(rayling.remote(lambda: 41 + 1).remote()))")

    def run(*args, environ=env):
        return subprocess.run([sys.executable, *args], env=environ, capture_output=True,
                              text=True, timeout=60)

    started = run("-m", "rayling.scripts", "start", "--head", "--port", "0", "--num-cpus", "1")
    try:
        assert started.returncode == 0, started.stderr
        for folder in (uid_dir, tmp_dir):
            assert os.path.exists(os.path.join(folder, "current_cluster.json"))
            assert len(os.listdir(os.path.join(folder, "nodes"))) == 1
        for environ in (env, no_xdg):  # found with XDG_RUNTIME_DIR and without it
            done = run("-c", script, environ=environ)
            assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr
        # Logging out removes the runtime folder; the daemon runs on, and is still found.
        shutil.rmtree(uid_dir)
        done = run("-c", script)
        assert done.returncode == 0 and done.stdout.strip().endswith("42"), done.stderr
        # A temp folder others can write (as if planted) is skipped with a warning while
        # the runtime folder serves.
        os.chmod(tmp_dir, 0o777)
        warned = run("-c", "from rayling._private import cluster_files as c; "
                           "print(c.write_machine_record('probe.json', {}))")
        assert warned.returncode == 0 and "Warning" in warned.stderr, warned.stderr
        os.chmod(tmp_dir, 0o700)
    finally:
        stopped = run("-m", "rayling.scripts", "stop")
    assert "Stopped 1 rayling daemon(s)." in stopped.stdout, stopped.stdout + stopped.stderr
    assert not os.listdir(os.path.join(tmp_dir, "nodes"))


def test_a_fifo_planted_under_a_segments_name_is_refused_at_once():
    """Opening a FIFO blocks until someone writes to it: a name another user replaced
    with one must fail at once, not hang a reader."""
    name = f"/rl{os.urandom(4).hex()}_{os.urandom(8).hex()}"
    os.mkfifo(f"/dev/shm{name}", 0o666)
    try:
        for open_it in (shm.open_readonly, shm.open_for_write):
            with pytest.raises(shm.ForeignSegmentError):
                open_it(name, 4096)
    finally:
        os.unlink(f"/dev/shm{name}")
