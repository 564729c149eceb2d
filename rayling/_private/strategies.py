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
        return f"node:{strategy.node_id}:{'soft' if strategy.soft else 'hard'}"
    raise ValueError(
        f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
        f"NodeAffinitySchedulingStrategy, got {strategy!r}")
