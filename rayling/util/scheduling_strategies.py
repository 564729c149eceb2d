"""Scheduling strategies, as in ``ray.util.scheduling_strategies``.

``scheduling_strategy=`` takes ``"DEFAULT"`` (the least loaded node that fits, the
submitter's on a tie), ``"SPREAD"`` (the least loaded node, ties round-robin) or a
``NodeAffinitySchedulingStrategy`` (a given node; ``soft=True`` falls back to others when
it is full or gone, ``soft=False`` waits for it, and fails if it is dead), or a
``PlacementGroupSchedulingStrategy`` (resources a placement group reserved).
"""

from __future__ import annotations


class NodeAffinitySchedulingStrategy:
    def __init__(self, node_id: str, soft: bool, _spill_on_unavailable: bool = False,
                 _fail_on_unavailable: bool = False) -> None:
        if not isinstance(node_id, str) and callable(getattr(node_id, "hex", None)):
            node_id = node_id.hex()  # (a NodeID, as get_runtime_context().node_id gives)
        if not isinstance(node_id, str):
            raise TypeError(f"node_id must be a hex string (from get_node_id() or nodes()), "
                            f"got {type(node_id).__name__}")
        try:
            bytes.fromhex(node_id)
        except ValueError:
            raise ValueError(f"node_id {node_id!r} is not a hex node id") from None
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in a placement group's bundle (``placement_group_bundle_index``; -1: any of
    them); with ``placement_group_capture_child_tasks`` the tasks and actors it starts
    go in the group too, unless they say otherwise."""

    def __init__(self, placement_group, placement_group_bundle_index: int = -1,
                 placement_group_capture_child_tasks: bool | None = None) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
                f"bundle={self.placement_group_bundle_index})")


__all__ = ["NodeAffinitySchedulingStrategy", "PlacementGroupSchedulingStrategy"]
