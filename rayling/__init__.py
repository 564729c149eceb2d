"""rayling: a light, fast distributed computing runtime that speaks Ray's API.

    import rayling as ray

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))

The public names are loaded on first use: processes that never touch the API (the node
daemon, the template that forks workers) start without importing it, which keeps
``init()`` fast. ``rayling.data`` needs pyarrow and is not in ``__all__``, so
``from rayling import *`` works without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ._private.version import VERSION as __version__  # noqa: F401 - the package's version

# Each public name, and the module that defines it.
_NAMES = {
    "ActorClass": "actor",
    "ActorHandle": "actor",
    "ObjectRef": "object_ref",
    "ObjectRefGenerator": "object_ref",
    "DynamicObjectRefGenerator": "object_ref",
    "get_runtime_context": "runtime_context",
    **{name: "runtime_context" for name in ("ActorID", "JobID", "NodeID", "TaskID")},
    "timeline": "util.state",
    **{name: "api" for name in (
        "available_resources", "cancel", "cluster_resources", "get", "get_actor",
        "get_dashboard_url", "get_gpu_ids", "init", "is_initialized", "kill", "method",
        "nodes", "put", "remote", "shutdown", "wait")},
}
_MODULES = {"actor", "api", "data", "exceptions", "experimental", "util"}

if TYPE_CHECKING:  # what the names are, for type checkers and editors
    from . import actor, exceptions, util
    from .actor import ActorClass, ActorHandle
    from .api import (
        available_resources,
        cancel,
        cluster_resources,
        get,
        get_actor,
        get_dashboard_url,
        get_gpu_ids,
        init,
        is_initialized,
        kill,
        method,
        nodes,
        put,
        remote,
        shutdown,
        wait,
    )
    from .object_ref import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator
    from .runtime_context import ActorID, JobID, NodeID, TaskID, get_runtime_context
    from .util.state import timeline


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    elif name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'rayling' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | _MODULES)


__all__ = [
    "ActorClass",
    "ActorHandle",
    "ActorID",
    "JobID",
    "NodeID",
    "TaskID",
    "DynamicObjectRefGenerator",
    "ObjectRef",
    "ObjectRefGenerator",
    "actor",
    "get_actor",
    "get_dashboard_url",
    "kill",
    "util",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "timeline",
    "wait",
]
