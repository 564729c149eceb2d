"""The wire form of the ``scheduling_strategy`` option (rayling.util.scheduling_strategies
holds the classes users pass; nodes.Placement reads this form)."""

from __future__ import annotations


def strategy_string(strategy) -> str:
    """The wire form of a ``scheduling_strategy`` option (see protocol.SubmitTask)."""
    if strategy is None or strategy == "DEFAULT":
        return ""
    if strategy == "SPREAD":
        return "SPREAD"
    if type(strategy).__name__ == "NodeAffinitySchedulingStrategy" and hasattr(strategy, "soft"):
        node_id = strategy.node_id
        if not isinstance(node_id, str) or len(node_id) % 2 or not all(
                c in "0123456789abcdefABCDEF" for c in node_id):
            raise ValueError(f"NodeAffinitySchedulingStrategy needs a hex node id (from "
                             f"get_runtime_context().get_node_id() or nodes()), got "
                             f"{node_id!r}")
        if not strategy.soft:
            kind = "hard"
        elif getattr(strategy, "_spill_on_unavailable", False):
            kind = "spill"
        else:
            kind = "soft"
        return f"node:{node_id.lower()}:{kind}"
    raise ValueError(
        f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
        f"NodeAffinitySchedulingStrategy, got {strategy!r}")
