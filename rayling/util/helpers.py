"""Small helpers of ``rayling.util`` as Ray 2.60 documents them: results as they complete
(``as_completed``, ``map_unordered``), this node's address, the named actors, and why an
object does not pickle (``inspect_serializability``)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

DEFAULT_CHUNK_SIZE = 10
DEFAULT_BACKPRESSURE_SIZE = 100


def as_completed(refs: Sequence, *, chunk_size: int = DEFAULT_CHUNK_SIZE,
                 yield_obj_refs: bool = False, **wait_kwargs) -> Iterator[Any]:
    """Yield the results of ``refs`` (or the refs, with ``yield_obj_refs``) as they
    complete, ``chunk_size`` at a time (the ``num_returns`` of each ``wait``)."""
    from .. import api

    _check_chunk_size(chunk_size)
    pending = list(refs)
    while pending:
        ready, pending = api.wait(pending, num_returns=min(chunk_size, len(pending)),
                                  **wait_kwargs)
        if not ready:  # (a wait timeout given in wait_kwargs ran out)
            return
        yield from ready if yield_obj_refs else api.get(ready)


def map_unordered(fn, items: Iterable[Any], *,
                  backpressure_size: int | None = DEFAULT_BACKPRESSURE_SIZE,
                  chunk_size: int = DEFAULT_CHUNK_SIZE, yield_obj_refs: bool = False,
                  **wait_kwargs) -> Iterator[Any]:
    """``fn.remote(item)`` for every item, at most ``backpressure_size`` in flight (None:
    no limit); yields the results (or refs) as they complete, in no set order."""
    from .. import api

    _check_chunk_size(chunk_size)
    if backpressure_size is not None and backpressure_size < 1:
        raise ValueError(f"backpressure_size must be >= 1 or None, got {backpressure_size!r}")
    pending: list = []
    for item in items:
        if backpressure_size is not None and len(pending) >= backpressure_size:
            ready, pending = api.wait(
                pending, num_returns=min(chunk_size, len(pending)), **wait_kwargs)
            yield from ready if yield_obj_refs else api.get(ready)
        pending.append(fn.remote(item))
    yield from as_completed(pending, chunk_size=chunk_size, yield_obj_refs=yield_obj_refs,
                            **wait_kwargs)


def _check_chunk_size(chunk_size: int) -> None:
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")


def get_node_ip_address(address: str = "8.8.8.8:53") -> str:
    """This node's IP address: the connected node's, else the one this machine reaches
    ``address`` from (no packet is sent)."""
    from .._private import client as client_mod
    from .._private.cluster_commands import _local_ip_towards

    client = client_mod.current
    if client is not None and client.node_ip:
        return client.node_ip
    try:
        return _local_ip_towards(address)
    except OSError:  # no route off this machine
        return "127.0.0.1"


def list_named_actors(all_namespaces: bool = False) -> list:
    """The names of the live named actors in this job's namespace, or, with
    ``all_namespaces``, ``{"name": ..., "namespace": ...}`` for every namespace."""
    from .._private import protocol as p, session

    actors = session.client_or_start().query(p.ActorList())
    live = [a for a in actors if a["name"] and a["state"] != "DEAD"]
    if all_namespaces:
        return [{"name": a["name"], "namespace": a["namespace"]} for a in live]
    namespace = session.current_namespace()
    return [a["name"] for a in live if a["namespace"] == namespace]


def inspect_serializability(base_obj: Any, name: str | None = None, depth: int = 3,
                            print_file=None) -> tuple[bool, set]:
    """Whether ``base_obj`` pickles (as rayling ships it), and if not, the innermost
    members that do not, found by looking through closures, globals and attributes up to
    ``depth`` levels; prints what it finds. Returns ``(ok, {(obj, name, parent)})``."""
    import inspect

    import cloudpickle

    out = print_file or sys.stdout
    failures: set = set()

    def pickles(obj: Any) -> bool:
        try:
            cloudpickle.dumps(obj)
            return True
        except Exception:  # noqa: BLE001 - any failure means "does not pickle"
            return False

    def members(obj: Any) -> list[tuple[str, Any]]:
        if inspect.isfunction(obj):
            found = dict(inspect.getclosurevars(obj).nonlocals)
            found.update(inspect.getclosurevars(obj).globals)
            return list(found.items())
        if inspect.isclass(obj):
            return [(k, v) for k, v in vars(obj).items() if not k.startswith("__")]
        if hasattr(obj, "__dict__"):
            return list(vars(obj).items())
        return []

    def look(obj: Any, obj_name: str, parent: Any, level: int) -> None:
        if pickles(obj):
            return
        print(f"{'    ' * (depth - level)}{obj_name!s} ({type(obj).__name__}) does not "
              f"pickle", file=out)
        culprits = [(n, m) for n, m in members(obj) if not pickles(m)] if level > 0 else []
        if not culprits:
            failures.add(_Failure(obj, obj_name, parent))
            return
        for member_name, member in culprits:
            look(member, member_name, obj, level - 1)

    obj_name = name or getattr(base_obj, "__name__", None) or repr(base_obj)[:40]
    look(base_obj, obj_name, None, depth)
    if not failures:
        print(f"{obj_name} is serializable.", file=out)
    return not failures, failures


class _Failure(tuple):
    """(obj, name, parent) of a member that does not pickle; hashable by identity."""

    def __new__(cls, obj: Any, name: str, parent: Any):
        return super().__new__(cls, (obj, name, parent))

    def __hash__(self) -> int:
        return hash((id(self[0]), self[1]))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, tuple) and len(other) == 3 and self[0] is other[0] \
            and self[1] == other[1]
