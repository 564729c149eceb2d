"""Utilities: ActorPool (and, in ``rayling.util.queue``, Queue), results as they complete,
this node's address, the named actors, and why an object does not pickle."""

from __future__ import annotations

from .actor_pool import ActorPool
from .helpers import (
    as_completed,
    get_node_ip_address,
    inspect_serializability,
    list_named_actors,
    map_unordered,
)

# As in Ray, ``rayling.util.placement_group`` is the function (the module stays
# importable as ``rayling.util.placement_group`` through ``from ... import``).
from .placement_group import (  # noqa: E402,I001
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = ["ActorPool", "as_completed", "get_current_placement_group",
           "get_node_ip_address", "get_placement_group", "inspect_serializability",
           "list_named_actors", "map_unordered", "placement_group", "placement_group_table",
           "remove_placement_group"]
