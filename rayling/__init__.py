"""rayling: a light, fast distributed computing runtime that speaks Ray's API.

    import rayling as ray

    @ray.remote
    def square(x):
        return x * x

    print(ray.get([square.remote(i) for i in range(4)]))
"""

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
from .object_ref import ObjectRef
from .runtime_context import get_runtime_context

__version__ = "0.1.0"


def __getattr__(name: str):
    # rayling.data imports pyarrow, so it is loaded on first use, not with rayling (and it
    # is not in __all__, so "from rayling import *" works without pyarrow).
    if name == "data":
        import importlib

        return importlib.import_module(".data", __name__)
    raise AttributeError(f"module 'rayling' has no attribute {name!r}")


__all__ = [
    "ActorClass",
    "ActorHandle",
    "ObjectRef",
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
    "wait",
]
