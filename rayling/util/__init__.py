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

__all__ = ["ActorPool", "as_completed", "get_node_ip_address", "inspect_serializability",
           "list_named_actors", "map_unordered"]
