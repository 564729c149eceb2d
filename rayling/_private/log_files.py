"""A node's log files (``<session>/logs``): listing them and reading a piece of one, for
``list_logs``/``get_log`` and `rayling logs`. A daemon answers these for its own node (the
head for a joined node, through that node's connection). Names are plain file names in
that folder; nothing else is read.

Worker files hold what the worker's tasks printed: a line ``:task_id:<hex>:<name>`` marks
where the output of another task begins (TASK_MARKER), so a task's own lines can be cut
out of its worker's file, and ``:actor_id:<hex>`` where the worker became an actor's
(ACTOR_MARKER): an actor's log is what follows. A printed line that begins with ":" or
"\\" is written with a "\\" before it (``escape``), so no task can forge a marker.
"""

from __future__ import annotations

import os
import stat

TASK_MARKER = ":task_id:"
ACTOR_MARKER = ":actor_id:"
MAX_READ = 1 << 20  # the most one read returns (a longer log is read piece by piece)


def list_logs(folder: str) -> list[dict]:
    """Every log file in ``folder``: name and size, by name."""
    found = []
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return []
    for name in names:
        try:
            st = os.stat(os.path.join(folder, name), follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append({"name": name, "size": st.st_size})
    return found


def read_log(folder: str, name: str, offset: int, tail: int) -> dict:
    """Up to MAX_READ bytes of log ``name``: from byte ``offset``, or, with ``offset`` < 0,
    its last ``tail`` lines (all of it with ``tail`` < 0, as far as MAX_READ goes).
    Returns the bytes, where they start and end, and the file's size."""
    if not name or name != os.path.basename(name) or name.startswith("."):
        raise ValueError(f"{name!r} is not the name of a log file")
    path = os.path.join(folder, name)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{name!r} is not a log file")
        size = st.st_size
        if offset < 0:
            start = max(0, size - MAX_READ)
            data = os.pread(fd, size - start, start)
            if start > 0:  # (from the first whole line: no half line, no half character)
                cut = data.find(b"\n") + 1
                data, start = data[cut:], start + cut
            if tail >= 0:
                lines = data.splitlines(keepends=True)
                kept = lines[-tail:] if tail else []
                data = b"".join(kept)
                start = size - len(data)
            return {"data": data, "start": start, "end": size, "size": size}
        start = min(offset, size)
        data = os.pread(fd, min(MAX_READ, size - start), start)
        return {"data": data, "start": start, "end": start + len(data), "size": size}
    finally:
        os.close(fd)


class LogView:
    """Which lines of a worker's log to show: one task's (``task_id``), one actor's
    (``actor_id``: what follows its marker), or all; never the markers. Fed the lines in
    order, it keeps track of whose output the file holds."""

    def __init__(self, task_id: str | None = None, actor_id: str | None = None) -> None:
        self.task_id = task_id
        self.actor_id = actor_id
        self.writing_task: str | None = None  # the task whose lines come now
        self.in_actor = actor_id is None  # the lines come from the actor's time

    def show(self, line: str) -> str | None:
        """The line as printed, if this view shows it (else None)."""
        if line.startswith(TASK_MARKER):
            self.writing_task = line[len(TASK_MARKER):].split(":", 1)[0]
            return None
        if line.startswith(ACTOR_MARKER):
            self.in_actor = self.actor_id is None or line[len(ACTOR_MARKER):] == self.actor_id
            return None
        if self.task_id is not None and self.writing_task != self.task_id:
            return None
        if not self.in_actor:
            return None
        return line[1:] if line.startswith("\\") else line

    def lines(self, text: str) -> list[str]:
        return [shown for shown in map(self.show, text.splitlines()) if shown is not None]


def escape(line: str) -> str:
    """A printed line as the log file holds it (see the module's docstring)."""
    return "\\" + line if line.startswith((":", "\\")) else line
