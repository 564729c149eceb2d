"""Placement groups, as in ``ray.util.placement_group``: bundles of resources reserved
together across the cluster (all or nothing), for tasks and actors to run in
(``PlacementGroupSchedulingStrategy``). The head keeps them
(``rayling._private.placement_groups``)."""

from __future__ import annotations

import math
import os

from .. import api
from .._private import client as client_mod, ids, protocol as p, session, task_context
from .._private.object_ref import ObjectRef
from .._private.placement_groups import STRATEGIES, group_of

__all__ = ["PlacementGroup", "get_current_placement_group", "get_placement_group",
           "placement_group", "placement_group_table", "remove_placement_group"]


class PlacementGroupID:
    """A placement group's id (``hex()``, ``binary()``)."""

    __slots__ = ("_id",)

    def __init__(self, pg_id: bytes) -> None:
        self._id = pg_id

    def hex(self) -> str:
        return self._id.hex()

    def binary(self) -> bytes:
        return self._id

    def __eq__(self, other) -> bool:
        return isinstance(other, PlacementGroupID) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group: ``ready()`` (a ref that resolves once its bundles
    are reserved), ``wait(timeout_seconds)``, ``bundle_specs``, ``id``."""

    def __init__(self, pg_id: bytes, bundles: list[dict], strategy: str, name: str,
                 ready_id: bytes) -> None:
        self.id = PlacementGroupID(pg_id)
        self.bundle_specs = [dict(b) for b in bundles]
        self.strategy = strategy
        self.name = name
        self._ready_id = ready_id
        self._ready: ObjectRef | None = None

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        if self._ready is None:
            self._ready = ObjectRef(self._ready_id)
        return self._ready

    def wait(self, timeout_seconds: float = 30) -> bool:
        """Whether its bundles were reserved within ``timeout_seconds``."""
        ready, _ = api.wait([self.ready()], timeout=timeout_seconds)
        return bool(ready)

    def __reduce__(self):
        return (PlacementGroup, (self.id.binary(), self.bundle_specs, self.strategy,
                                 self.name, self._ready_id))

    def __eq__(self, other) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"PlacementGroup({self.id.hex()}, {self.strategy}, {self.bundle_specs})"


def placement_group(bundles: list[dict[str, float]], strategy: str = "PACK",
                    name: str = "", lifetime: str | None = None,
                    _max_cpu_fraction_per_node: float | None = None,
                    _soft_target_node_id: str | None = None,
                    bundle_label_selector: list | None = None) -> PlacementGroup:
    """Reserve ``bundles`` (each a dict of resources, e.g. ``{"CPU": 1}``) together:
    ``PACK`` (on as few nodes as can hold them), ``SPREAD`` (on as many), ``STRICT_PACK``
    (one node) or ``STRICT_SPREAD`` (each on its own node). The group waits until they
    fit; it ends with the job that made it unless ``lifetime="detached"``."""
    if _max_cpu_fraction_per_node is not None or _soft_target_node_id is not None or \
            bundle_label_selector:
        raise NotImplementedError(
            "placement_group(_max_cpu_fraction_per_node=, _soft_target_node_id=, "
            "bundle_label_selector=) is not supported by rayling yet; leave them out")
    _check_bundles(bundles)
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if lifetime not in (None, "detached"):
        raise ValueError(f"lifetime must be None or 'detached', got {lifetime!r}")
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__}")
    client = session.client_or_start()
    pg_id = os.urandom(18)
    job_id = task_context.current_job_id(client.job_id)
    ready_id = ids.new_put_object_id(job_id)
    group = PlacementGroup(pg_id, bundles, strategy, name, ready_id)
    group._ready = ObjectRef(ready_id, _born=True)  # (the head counts us as its holder)
    client.send_soon(p.CreatePlacementGroup(
        pg_id, [{k: float(v) for k, v in b.items()} for b in bundles], strategy, name,
        lifetime == "detached", ready_id, job_id))
    return group


def _check_bundles(bundles) -> None:
    if not isinstance(bundles, list | tuple) or not bundles:
        raise ValueError(f"bundles must be a non-empty list of resource dicts, got "
                         f"{bundles!r}")
    for bundle in bundles:
        if not isinstance(bundle, dict) or not bundle:
            raise ValueError(f"each bundle must be a non-empty dict of resources, got "
                             f"{bundle!r}")
        for key, amount in bundle.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"resource names must be non-empty strings, got {key!r}")
            if isinstance(amount, bool) or not isinstance(amount, int | float) or \
                    not math.isfinite(amount) or amount < 0:
                raise ValueError(f"bundle {bundle!r}: {key} must be a finite number >= 0")
        if not any(bundle.values()):
            raise ValueError(f"bundle {bundle!r} asks for nothing; give it a resource > 0")


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Give the group's resources back: its actors are killed and its queued tasks fail."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(f"expected a PlacementGroup, got {placement_group!r}")
    session.client_or_start().send(p.RemovePlacementGroup(placement_group.id.binary()))


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live placement group named ``placement_group_name`` (ValueError if none)."""
    info = session.client_or_start().query(p.PlacementGroupInfo(b"", placement_group_name))
    if info is None:
        raise ValueError(f"Failed to look up placement group with name "
                         f"'{placement_group_name}'. It was never created, or it was removed.")
    return _from_info(info)


def _from_info(info: dict) -> PlacementGroup:
    bundles = [info["bundles"][i] for i in sorted(info["bundles"], key=int)]
    return PlacementGroup(bytes.fromhex(info["placement_group_id"]), bundles,
                          info["strategy"], info["name"], info["ready_id"])


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict:
    """Every placement group's state by hex id, or one group's."""
    client = session.client_or_start()
    if placement_group is not None:
        info = client.query(p.PlacementGroupInfo(placement_group.id.binary()))
        return _public(info) if info is not None else {}
    return {info["placement_group_id"]: _public(info)
            for info in client.query(p.PlacementGroupTable())}


def _public(info: dict) -> dict:
    return {k: v for k, v in info.items() if k != "ready_id"}


def get_current_placement_group() -> PlacementGroup | None:
    """The placement group the running task or actor was placed in, or None."""
    if client_mod.current is None:
        return None
    call = task_context.current()
    resources = task_context.actor.resources if task_context.actor.actor_id is not None \
        else (call.resources if call is not None else {})
    pg_hex = group_of(resources)
    if pg_hex is None:
        return None
    info = client_mod.current.query(p.PlacementGroupInfo(bytes.fromhex(pg_hex)))
    return _from_info(info) if info is not None else None
