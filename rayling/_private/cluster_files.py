"""Where a running cluster's address and token are written, and how scripts find them.

* ``<machine folder>/current_cluster.json``: the cluster this machine's ``rayling
  start`` last started or joined (what ``init()`` and ``init(address="auto")`` use). The
  machine folders are ``$XDG_RUNTIME_DIR/rayling-<uid>`` when the login session has a
  private runtime folder (this user's, mode 0700, made by the system: nobody else can
  create anything in it), and ``$TMPDIR/rayling-<uid>``. Records are written in both and
  read from the first that has them: the runtime folder is preferred, and the temp one
  still serves a process without XDG_RUNTIME_DIR (cron, a batch job) and outlives the
  login session (logind removes the runtime folder at logout; daemons keep running). With
  a runtime folder, a temp folder another user planted is skipped with a warning.
* ``~/.rayling/clusters/<host>_<port>.json``: the token of each head, so a node or
  script on another machine sharing the home directory can join with just the address.
* ``$SLURM_SUBMIT_DIR/.rayling/slurm-<job id>.json``: the head of a Slurm job's cluster.
* ``<machine folder>/nodes/<pid>.json``: each daemon ``rayling start`` left running on
  this machine, for ``rayling stop``.

Every file is mode 0600 in a 0700 directory (they hold the cluster token), written
atomically so a reader never sees half of one. Another local user could create these
folders first (in a shared /tmp) and plant a record that sends this user's scripts to a
daemon of theirs; so every folder rayling makes is made 0700, and a folder or file that
is not this user's, that others can write, or that is a symbolic link is refused with
UnsafeFileError, never read.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time


class UnsafeFileError(PermissionError):
    """A cluster folder or file another local user could have written: refused."""


def _runtime_dir() -> str | None:
    """$XDG_RUNTIME_DIR if it is a folder only this user can use, else None."""
    path = os.environ.get("XDG_RUNTIME_DIR")
    if not path or not os.path.isabs(path):
        return None
    try:
        st = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        return None
    return path


def _machine_dirs() -> list[str]:
    """This user's machine folders: the private runtime one first, if there is one."""
    name = f"rayling-{os.getuid()}"
    dirs = [os.path.join(tempfile.gettempdir(), name)]
    runtime = _runtime_dir()
    if runtime:
        first = os.path.join(runtime, name)
        if os.path.realpath(first) != os.path.realpath(dirs[0]):
            dirs.insert(0, first)
        else:
            dirs = [first]
    return dirs


def _usable(directory: str, dirs: list[str], error: UnsafeFileError) -> None:
    """Raise ``error`` about ``directory`` unless it is the temp fallback and a private
    runtime folder serves instead (then warn: another user planted it)."""
    if len(dirs) < 2 or directory == dirs[0]:
        raise error
    print(f"(rayling) Warning: {error} Using {dirs[0]} only.", file=sys.stderr)


def write_machine_record(name: str, info: dict) -> list[str]:
    """Write ``name`` (``current_cluster.json``, ``nodes/<pid>.json``) in every machine
    folder; returns the paths written."""
    dirs = _machine_dirs()
    written = []
    for directory in dirs:
        path = os.path.join(directory, name)
        try:
            write(path, info)
        except UnsafeFileError as e:
            _usable(directory, dirs, e)
            continue
        written.append(path)
    return written


def read_machine_record(name: str) -> tuple[str, dict] | None:
    """The first machine folder's record ``name`` that exists: (path, record)."""
    dirs = _machine_dirs()
    for directory in dirs:
        path = os.path.join(directory, name)
        try:
            info = read(path)
        except UnsafeFileError as e:
            _usable(directory, dirs, e)
            continue
        if isinstance(info, dict):
            return path, info
    return None


def machine_records(folder: str) -> list[tuple[str, dict]]:
    """Every record in ``folder`` (``nodes``) of every machine folder: (path, record)."""
    dirs = _machine_dirs()
    found = []
    for directory in dirs:
        sub = os.path.join(directory, folder)
        try:
            names = sorted(os.listdir(sub)) if os.path.isdir(sub) else []
            for entry in names:
                info = read(os.path.join(sub, entry))
                if isinstance(info, dict):
                    found.append((os.path.join(sub, entry), info))
        except UnsafeFileError as e:
            _usable(directory, dirs, e)
    return found


def machine_record_paths(name: str) -> list[str]:
    """Where record ``name`` would be, in every machine folder."""
    return [os.path.join(d, name) for d in _machine_dirs()]


CURRENT = "current_cluster.json"


def home_cluster_path(address: str) -> str:
    safe = address.replace(":", "_").replace("/", "_")
    return os.path.join(os.path.expanduser("~"), ".rayling", "clusters", f"{safe}.json")


def slurm_cluster_path(env=os.environ) -> str | None:
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    base = env.get("SLURM_SUBMIT_DIR") or os.getcwd()
    return os.path.join(base, ".rayling", f"slurm-{job}.json")


def _own_dirs(path: str) -> list[str]:
    """The folders of ``path`` that rayling makes, top first: from its ``rayling-<uid>``
    or ``.rayling`` folder down to the file's own (just the file's own if neither)."""
    dirs = []
    directory = os.path.dirname(os.path.abspath(path))
    while True:
        dirs.append(directory)
        name = os.path.basename(directory)
        if name.startswith("rayling-") or name == ".rayling":
            return dirs[::-1]
        parent = os.path.dirname(directory)
        if parent == directory:
            return dirs[:1]
        directory = parent


def _check_private(path: str, st: os.stat_result, kind: str) -> None:
    problem = None
    if stat.S_ISLNK(st.st_mode):
        problem = "is a symbolic link"
    elif st.st_uid != os.geteuid():
        problem = f"belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})"
    elif st.st_mode & 0o022:
        problem = f"can be written by other users (mode {st.st_mode & 0o777:o})"
    if problem:
        raise UnsafeFileError(
            f"rayling refuses the {kind} {path}: it {problem}, so another local user could "
            f"have planted what it says. If you do not know why it is there, remove it "
            f"({'rm -r' if kind == 'folder' else 'rm'} {path}) and try again.")


def write(path: str, info: dict) -> None:
    for directory in _own_dirs(path):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            _check_private(directory, os.lstat(directory), "folder")
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp")
    with os.fdopen(fd, "w") as f:  # mkstemp files are 0600
        json.dump(info, f)
    os.replace(tmp, path)


def read(path: str | None) -> dict | None:
    """The record at ``path`` (None if there is none or it is not a record); raises
    UnsafeFileError for one another user could have written."""
    if not path:
        return None
    try:
        for directory in _own_dirs(path):
            _check_private(directory, os.lstat(directory), "folder")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except UnsafeFileError:
        raise
    except OSError as e:
        if os.path.islink(path):
            raise UnsafeFileError(f"rayling refuses the file {path}: it is a symbolic "
                                  f"link. Remove it (rm {path}) and try again.") from e
        return None
    with os.fdopen(fd) as f:
        _check_private(path, os.fstat(f.fileno()), "file")
        try:
            return json.load(f)
        except ValueError:
            return None


def remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def resolve(host: str) -> str | None:
    """``host``'s IPv4 address, or None if it has none."""
    import socket

    try:
        return socket.gethostbyname(host)
    except OSError:
        return None


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # (kill(0) and kill(-1) would answer for whole process groups)
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def current_cluster() -> dict | None:
    """This machine's running cluster (its head or a node that joined one), if any."""
    found = read_machine_record(CURRENT)
    if found and pid_alive(record_pid(found[1])):
        return found[1]
    return None


def record_pid(info: dict) -> int:
    """The pid a record names (0 if it names none, or not as a positive integer)."""
    pid = info.get("pid")
    return pid if type(pid) is int and pid > 0 else 0


_known: dict[str, dict] = {}  # heads this process started (cluster_utils)


def remember_head(address: str, token: str, socket_path: str) -> None:
    _known[address] = {"address": address, "token": token, "socket": socket_path}


def forget_head(address: str) -> None:
    _known.pop(address, None)


def local_socket(address: str) -> str | None:
    """The unix socket of the head at ``address`` if it runs on this machine: a script
    there talks to it over that instead of TCP (cheaper per message)."""
    for info in (_known.get(address), current_cluster()):
        if info and info.get("address") == address and info.get("socket") and \
                os.path.exists(info["socket"]):
            return info["socket"]
    return None


def find_token(address: str, token: str | None = None) -> str | None:
    """The token for the head at ``address``: given, one this process started, from
    RAYLING_TOKEN, or from a file."""
    if token:
        return token
    if address in _known:
        return _known[address]["token"]
    if os.environ.get("RAYLING_TOKEN"):
        return os.environ["RAYLING_TOKEN"]
    for info in (read(home_cluster_path(address)), current_cluster(),
                 read(slurm_cluster_path())):
        if info and info.get("address") == address and info.get("token"):
            return info["token"]
    return None


def write_local_cluster(pid: int, socket_path: str, token: str, session_dir: str
                        ) -> list[str]:
    """Note a cluster that ``init()`` started in this process (its daemon's ``pid``), so
    that commands like `rayling list` find it while the script runs. Only commands read
    these (``local_clusters``): ``init()`` never joins another script's cluster."""
    return write_machine_record(f"local/{pid}.json", {
        "pid": pid, "socket": socket_path, "token": token, "session_dir": session_dir,
        "started": time.time(), "driver_pid": os.getpid()})


def local_clusters() -> list[dict]:
    """The clusters ``init()`` started on this machine that still run, newest first (the
    records of those that ended are removed)."""
    found: dict[int, dict] = {}
    for path, info in machine_records("local"):
        pid = record_pid(info)
        well_formed = all(isinstance(info.get(key), str) for key in
                          ("socket", "token", "session_dir")) and \
            isinstance(info.get("started"), float) and type(info.get("driver_pid")) is int
        if pid and well_formed and pid_alive(pid) and os.path.exists(info["socket"]):
            found.setdefault(pid, info)
        else:
            remove(path)
    return sorted(found.values(), key=lambda i: -i["started"])


SLURM_WAIT = 30.0  # seconds init(address="auto") waits for its job's head to come up


def resolve_auto(wait: bool = False) -> dict | None:
    """The cluster ``init(address="auto")`` means: a Slurm job's, else this machine's.

    With ``wait``, inside a Slurm job with no cluster yet, wait up to SLURM_WAIT for task
    0 of ``srun rayling start --slurm`` to publish its head (a script started right after
    it in the sbatch script does not have to sleep). The file comes through a shared file
    system, which offers no event to wait on, so this looks every 0.1 s.
    """
    path = slurm_cluster_path()
    deadline = time.monotonic() + (SLURM_WAIT if wait and path else 0)
    while True:
        info = read(path) or current_cluster()
        if info or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if info is None and wait:
        info = _wait_for_starting_head()
    return info


def _wait_for_starting_head() -> dict | None:
    """This machine's cluster once a head that `rayling start` is starting here serves
    (its record exists before it does), up to RAYLING_WAIT_FOR_HEAD (60 s); None if no
    head is starting."""
    from .head_wait import default_wait, say_on_stderr

    def starting() -> bool:
        return any(info.get("role") == "head" and pid_alive(record_pid(info))
                   for _, info in machine_records("nodes"))
    if not starting():
        return None
    wait = default_wait()
    say_on_stderr(f"(rayling) waiting up to {wait:g} s for the head starting on this "
                  f"machine...")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        info = current_cluster()
        if info is not None or not starting():
            return info
        time.sleep(0.1)
    return None
