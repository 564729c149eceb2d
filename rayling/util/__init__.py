"""Utilities built on actors: ActorPool (and, in ``rayling.util.queue``, Queue)."""

from __future__ import annotations

from .actor_pool import ActorPool

__all__ = ["ActorPool"]
