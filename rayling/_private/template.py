"""The warm template: a process that has imported rayling's worker side (and NumPy) once
and forks a new worker whenever the daemon writes a byte on its control socket.

The workers asked for at start-up are forked as soon as the worker side is imported;
then the template imports what user code is likely to use (rayling's public API, NumPy),
so workers forked later have those loaded already.

Forking from here makes a worker start in about a millisecond, and its memory is shared
copy-on-write with the template, so an idle worker costs little more than its own stack.
The template is single-threaded, which is what makes fork safe.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import socket
import sys

# Imported once here, after the start-up workers are forked, by name: what tasks use.
PRELOAD = ("rayling.api", "numpy")


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` when our parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    parent = os.getppid()
    set_parent_death_signal()
    if os.getppid() != parent:
        os._exit(0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from . import worker  # the heavy imports every worker needs

    socket_path = os.environ["RAYLING_SOCKET"]
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel

    def fork_workers(count: int) -> None:
        for _ in range(count):
            if os.fork() == 0:
                control.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                set_parent_death_signal()
                worker.main(socket_path)
                os._exit(0)

    # Workers asked for at start-up are forked first, so the first task does not wait
    # for the preloads; later workers share their pages.
    control.setblocking(False)
    try:
        fork_workers(len(control.recv(256)))
    except BlockingIOError:
        pass
    control.setblocking(True)
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except ImportError:
            pass
    gc.freeze()
    while True:
        try:
            data = control.recv(256)
        except InterruptedError:
            continue
        if not data:
            os._exit(0)
        fork_workers(len(data))


if __name__ == "__main__":
    main()
