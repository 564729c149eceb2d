"""Waiting for a head that is still coming up: a node joining it, `rayling status` and
``init(address=...)`` started right after `rayling start --head` (the seeds' Slurm
recipe, without its ``sleep``) wait until something answers at the head's address and
its token is known, up to a deadline, and say once what they wait for. When nothing
ever answers, the error says so, not that a token is missing."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable

DEFAULT_WAIT = 60.0  # seconds (`--wait-for-head`, RAYLING_WAIT_FOR_HEAD)
TOKEN_GRACE = 5.0  # once the head answers, how long its token file may take to appear
POLL = 0.2


def default_wait() -> float:
    value = os.environ.get("RAYLING_WAIT_FOR_HEAD")
    try:
        return max(0.0, float(value)) if value else DEFAULT_WAIT
    except ValueError:
        return DEFAULT_WAIT


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_head(address: str, find_token: Callable[[], str | None], wait: float,
                  say: Callable[[str], None] | None = None) -> str:
    """The token of the head at ``address`` ("host:port") once it answers there, waiting
    up to ``wait`` seconds for it; ConnectionError saying what is missing if it does
    not come."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + wait
    answered_at = None
    said = False
    while True:
        now = time.monotonic()
        if answered_at is None and answers(host.strip("[]"), int(port)):
            answered_at = now
        token = find_token() if answered_at is not None else None
        if token:
            return token
        out_of_time = now >= deadline or (answered_at is not None
                                          and now - answered_at >= TOKEN_GRACE)
        if out_of_time:
            if answered_at is None:
                waited = f" (waited {wait:g} s)" if wait else ""
                raise ConnectionError(
                    f"Nothing answers at {address}{waited}: is `rayling start --head` running "
                    f"there with that port, and can this machine reach it? "
                    f"(--wait-for-head SECONDS, or RAYLING_WAIT_FOR_HEAD, waits longer)")
            raise ConnectionError(
                f"No token for the rayling cluster at {address}: every connection must prove "
                f"the cluster's token. Set RAYLING_TOKEN or pass --token-file FILE (the file "
                f"`rayling start --head` names), or share the home directory with the head, "
                f"which writes it to ~/.rayling/clusters/.")
        if not said and say is not None:
            say(f"(rayling) waiting up to {wait:g} s for the head at {address} to "
                f"{'come up' if answered_at is None else 'publish its token'}...")
            said = True
        time.sleep(POLL)


def say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
