"""The data tasks (``_tasks``) as remote functions, made once per set of options, and the
shape of what they hand between stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import rayling

Bundle = tuple  # (block ref, BlockMetadata)

_remote: dict[tuple, Any] = {}


def remote_fn(fn: Callable, **options):
    """The remote version of data task ``fn`` with ``options`` (cached per options)."""
    key = (fn, repr(sorted(options.items())))
    remote = _remote.get(key)
    if remote is None:
        remote = _remote[key] = rayling.remote(fn).options(**options)
    return remote
