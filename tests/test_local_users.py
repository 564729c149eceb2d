"""Another local user cannot plant a cluster record: init() with no address refuses a
rayling folder or record that is not this user's or that others can write, and connects
to nothing it names. The attacker is a second local user made with useradd (root only)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from rayling._private import cluster_files

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
