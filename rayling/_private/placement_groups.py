"""Placement groups on the head: bundles of resources reserved together, all or nothing,
and kept until the group is removed.

A bundle's resources leave its node's free pool and become resources named for the group:
``CPU_group_<i>_<pg>`` (bundle i only) and ``CPU_group_<pg>`` (any bundle of the group),
plus ``bundle_group_<i>_<pg>`` / ``bundle_group_<pg>`` (1000 per bundle), which every
task placed in the group also asks for a sliver of, so that one asking for no CPU still
lands on the group's nodes. A task or actor scheduled in a group asks for the renamed
resources (``in_group``, client side), so the ordinary scheduler places it; the node's
total of plain resources stays the same, so ``cluster_resources()`` does not change while
``available_resources()`` shows what groups hold.

    CreatePlacementGroup ─> PENDING ─ every bundle fits (strategy) ─> CREATED: ready set
                                 ▲                                       │ a node dies
                                 └──────────── RESCHEDULING <────────────┘
    RemovePlacementGroup (or its job ends, unless detached) ─> REMOVED: reservations
    given back, its actors killed, its queued tasks failed
"""

from __future__ import annotations

from .. import exceptions as exc
from . import protocol as p, serialization
from .resources import UNIT, to_units
from .task_table import RUNNING

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
REMOVED_KEPT = 1000  # removed groups placement_group_table still shows
BUNDLE_MARKER = 1000  # units of bundle_group_* per bundle (a task in the group asks 0.001)
MARKER_REQUEST = 0.001


def group_resource(name: str, pg_hex: str, index: int = -1) -> str:
    return f"{name}_group_{pg_hex}" if index < 0 else f"{name}_group_{index}_{pg_hex}"


def in_group(request: dict[str, float], pg_hex: str, index: int) -> dict[str, float]:
    """``request`` as a task placed in group ``pg_hex`` (bundle ``index``; -1: any) asks.
    A task in a given bundle asks for the group-wide names too, so what it takes is not
    also there for a task placed in "any bundle"."""
    request = {k: v for k, v in request.items() if v}
    request["bundle"] = MARKER_REQUEST
    placed = {group_resource(k, pg_hex): v for k, v in request.items()}
    if index >= 0:
        placed.update({group_resource(k, pg_hex, index): v for k, v in request.items()})
    return placed


def group_of(resources: dict) -> str | None:
    """The group (hex id) a task or actor with these resources was placed in, if any."""
    for name in resources:
        if name.startswith("bundle_group_"):
            return name.rsplit("_", 1)[1]
    return None


class PlacementGroupRecord:
    __slots__ = ("pg_id", "hex", "name", "bundles", "strategy", "detached", "creator",
                 "job_id", "ready_id", "state", "nodes")

    def __init__(self, msg: p.CreatePlacementGroup, creator, job_id: bytes) -> None:
        self.pg_id = msg.pg_id
        self.hex = msg.pg_id.hex()
        self.name = msg.name
        self.bundles = [to_units(b) for b in msg.bundles]
        self.strategy = msg.strategy
        self.detached = msg.detached
        self.creator = creator
        self.job_id = job_id
        self.ready_id = msg.ready_id
        self.state = "PENDING"
        self.nodes: list = [None] * len(msg.bundles)  # NodeRecord holding each bundle

    def reservation(self, index: int) -> dict[str, int]:
        """The resources bundle ``index`` adds to its node, in units."""
        added: dict[str, int] = {}
        for name, units in self.bundles[index].items():
            added[group_resource(name, self.hex, index)] = units
            added[group_resource(name, self.hex)] = units
        added[group_resource("bundle", self.hex, index)] = BUNDLE_MARKER * UNIT
        added[group_resource("bundle", self.hex)] = BUNDLE_MARKER * UNIT
        return added

    def info(self) -> dict:
        return {
            "placement_group_id": self.hex, "name": self.name,
            "bundles": {i: {k: v / UNIT for k, v in b.items()}
                        for i, b in enumerate(self.bundles)},
            "bundles_to_node_id": {i: n.node_id.hex() for i, n in enumerate(self.nodes)
                                   if n is not None},
            "strategy": self.strategy, "state": self.state,
            "is_detached": self.detached, "ready_id": self.ready_id,
        }


class PlacementGroups:
    """The head's placement groups. ``host``: the controller (nodes, objects, tasks,
    actors, scheduler, object_ready)."""

    def __init__(self, host) -> None:
        self._host = host
        self.groups: dict[bytes, PlacementGroupRecord] = {}
        self.removed: dict[bytes, PlacementGroupRecord] = {}  # the last REMOVED_KEPT
        self.named: dict[str, bytes] = {}
        self.waiting: list[PlacementGroupRecord] = []  # PENDING or RESCHEDULING

    def __bool__(self) -> bool:
        return bool(self.groups)

    # -- creating -------------------------------------------------------------------------
    def create(self, conn, msg: p.CreatePlacementGroup) -> None:
        host = self._host
        table = host.objects.table
        table.expect(msg.ready_id, conn)
        table.pin(msg.ready_id)  # (any process may ask for ready() while the group lives)
        if msg.name and msg.name in self.named:
            self._set_ready(msg.ready_id, exc.RaySystemError(
                f"A placement group named {msg.name!r} already exists; remove it first, or "
                f"use get_placement_group({msg.name!r})."), conn)
            table.unpin(msg.ready_id)
            return
        record = PlacementGroupRecord(msg, conn, msg.job_id)
        self.groups[msg.pg_id] = record
        if record.name:
            self.named[record.name] = record.pg_id
        self.waiting.append(record)
        self.place_waiting()

    def place_waiting(self) -> bool:
        """Reserve every waiting group whose bundles fit now (all of a group's or none);
        True if any did."""
        placed = False
        for record in list(self.waiting):
            missing = [i for i, node in enumerate(record.nodes) if node is None]
            plan = self._plan(record, missing)
            if plan is None:
                continue
            for index, node in plan.items():
                self._reserve(record, index, node)
            self.waiting.remove(record)
            first = record.state == "PENDING"
            record.state = "CREATED"
            if first:
                self._set_ready(record.ready_id, True, record.creator)
            placed = True
        if placed:
            self._host.scheduler.nodes_changed()
        return placed

    def _plan(self, record: PlacementGroupRecord, missing: list[int]) -> dict | None:
        """Nodes for bundles ``missing`` as the strategy wants, or None if they do not all
        fit now. Plans against a copy of the free resources."""
        nodes = [n for n in self._host.nodes.all if n.alive]
        free = {n: dict(n.pool.free) for n in nodes}
        used = {n for n in record.nodes if n is not None}
        strategy = record.strategy
        order = sorted(missing, key=lambda i: -sum(record.bundles[i].values()))
        plan: dict[int, object] = {}

        def fits(node, request) -> bool:
            have = free[node]
            return all(have.get(k, 0) >= v for k, v in request.items())

        if strategy == "STRICT_PACK":
            total: dict[str, int] = {}
            for i in missing:
                for k, v in record.bundles[i].items():
                    total[k] = total.get(k, 0) + v
            candidates = list(used) if used else nodes
            node = next((n for n in candidates if n in free and fits(n, total)), None)
            return None if node is None else {i: node for i in missing}
        for i in order:
            request = record.bundles[i]
            taken = used | set(plan.values())
            if strategy in ("PACK",):
                choices = sorted(nodes, key=lambda n: n not in taken)
            elif strategy in ("SPREAD", "STRICT_SPREAD"):
                choices = sorted(nodes, key=lambda n: n in taken)
                if strategy == "STRICT_SPREAD":
                    choices = [n for n in choices if n not in taken]
            node = next((n for n in choices if fits(n, request)), None)
            if node is None:
                return None
            plan[i] = node
            for k, v in request.items():
                free[node][k] = free[node].get(k, 0) - v
        return plan

    def _reserve(self, record: PlacementGroupRecord, index: int, node) -> None:
        pool = node.pool
        for k, v in record.bundles[index].items():
            pool.free[k] = pool.free.get(k, 0) - v
        for k, v in record.reservation(index).items():
            pool.total[k] = pool.total.get(k, 0) + v
            pool.free[k] = pool.free.get(k, 0) + v
        record.nodes[index] = node

    def _unreserve(self, record: PlacementGroupRecord, index: int) -> None:
        node = record.nodes[index]
        record.nodes[index] = None
        if node is None or not node.alive:
            return
        pool = node.pool
        for k, v in record.reservation(index).items():
            left = pool.total.get(k, 0) - v
            if left > 0:
                pool.total[k] = left
                pool.free[k] = pool.free.get(k, 0) - v
            else:
                pool.total.pop(k, None)
                pool.free.pop(k, None)
        for k, v in record.bundles[index].items():
            pool.free[k] = pool.free.get(k, 0) + v

    def _set_ready(self, oid: bytes, value, creator) -> None:
        host = self._host
        if isinstance(value, BaseException):
            from .object_directory import error_data

            data = error_data(value)
        else:
            data = p.ObjectData(inline=serialization.serialize(value).pickled)
        host.object_ready(oid, host.objects.table.set_ready(oid, data), data, also=creator)

    # -- removing -------------------------------------------------------------------------
    def remove(self, pg_id: bytes, why: str = "it was removed") -> None:
        """Give the group's resources back; its actors are killed and its queued tasks
        fail (running tasks in it are cancelled)."""
        record = self.groups.pop(pg_id, None)
        if record is None:
            return
        host = self._host
        if self.named.get(record.name) == pg_id:
            del self.named[record.name]
        if record in self.waiting:
            self.waiting.remove(record)
        if record.state == "PENDING":
            self._set_ready(record.ready_id, exc.RaySystemError(
                f"Placement group {record.hex} was removed before it was created "
                f"({why})."), record.creator)
        record.state = "REMOVED"
        for index in range(len(record.bundles)):
            self._unreserve(record, index)
        self.removed[pg_id] = record  # (placement_group_table still shows it)
        if len(self.removed) > REMOVED_KEPT:
            del self.removed[next(iter(self.removed))]
        host.objects.table.unpin(record.ready_id)
        if host.actors:
            host.actors.group_removed(record.hex, why)
        for task in list(host.tasks.tasks.values()):
            if task.spec.actor_id is None and group_of(task.spec.resources) == record.hex:
                if task.state is RUNNING:
                    host.cancel(task, force=True, recursive=False)
                else:
                    host.fail_task(task, exc.TaskPlacementGroupRemoved(
                        f"Task {task.spec.name} was to run in placement group "
                        f"{record.hex}, which was removed ({why})."))
        host.scheduler.nodes_changed()
        self.place_waiting()

    def job_gone(self, job_id: bytes) -> None:
        """A job ended: its groups go with it, unless detached."""
        for record in [r for r in self.groups.values() if r.job_id == job_id
                       and not r.detached]:
            self.remove(record.pg_id, "its job ended")

    def node_lost(self, node) -> None:
        """A node died: the bundles it held are placed again (the group waits meanwhile)."""
        for record in self.groups.values():
            lost = [i for i, n in enumerate(record.nodes) if n is node]
            if lost:
                for i in lost:
                    record.nodes[i] = None
                if record.state == "CREATED":
                    record.state = "RESCHEDULING"
                    self.waiting.append(record)

    # -- answering ------------------------------------------------------------------------
    def info(self, what: p.PlacementGroupInfo) -> dict | None:
        """A live group's info (by id or name), or a removed one's (by id)."""
        if what.pg_id:
            record = self.groups.get(what.pg_id) or self.removed.get(what.pg_id)
        else:
            record = self.groups.get(self.named.get(what.name, b""))
        return record.info() if record is not None else None

    def table(self) -> list[dict]:
        return [r.info() for r in (*self.groups.values(), *self.removed.values())]
