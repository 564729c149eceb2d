"""The options of remote functions, actor classes and actor methods: which exist, what
values they take, and their wire form (resource requests, scheduling strategies)."""

from __future__ import annotations

from typing import Any

from . import protocol as p

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "memory", "scheduling_strategy", "runtime_env", "max_calls", "accelerator_type",
    "label_selector", "enable_task_events", "_metadata", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "object_store_memory",
}
ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries",
    "max_concurrency", "name", "namespace", "lifetime", "get_if_exists", "runtime_env",
    "scheduling_strategy", "max_pending_calls", "accelerator_type", "label_selector",
    "concurrency_groups", "enable_task_events", "_metadata", "object_store_memory",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
}
METHOD_OPTIONS = {"num_returns", "name", "max_task_retries", "retry_exceptions",
                  "concurrency_group", "enable_task_events", "_metadata"}
DEFAULT_TASK_OPTIONS = {"num_cpus": 1, "num_gpus": 0, "num_returns": 1, "max_retries": 3}


def validate_options(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    """Check option names and values; errors name the bad option."""
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"Invalid option {key!r} for {what}. Valid options: "
                             f"{', '.join(sorted(k for k in allowed if not k.startswith('_')))}")
        if key in ("num_cpus", "num_gpus", "memory") and value is not None:
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"{key} must be a non-negative number, got {value!r}")
        if key == "num_returns" and (not isinstance(value, int) or value < 0):
            raise ValueError(f"num_returns must be a non-negative integer, got {value!r}")
        if key == "max_retries" and (not isinstance(value, int) or value < -1):
            raise ValueError(f"max_retries must be an integer >= -1, got {value!r}")
        if key == "resources" and value is not None:
            if not isinstance(value, dict):
                raise TypeError(f"resources must be a dict, got {type(value).__name__}")
            for name, amount in value.items():
                if name in ("CPU", "GPU"):
                    raise ValueError(
                        f"Use num_cpus/num_gpus instead of resources={{{name!r}: ...}}")
                if not isinstance(amount, int | float) or amount < 0:
                    raise ValueError(f"resource {name!r} must be a non-negative number")
        if key == "scheduling_strategy":
            wire_strategy(value)  # raises for an unknown strategy
    return options


def resource_request(options: dict[str, Any]) -> dict[str, float]:
    """The resources a task or actor with these options asks for."""
    request = {}
    cpus = options.get("num_cpus")
    if cpus:
        request["CPU"] = float(cpus)
    gpus = options.get("num_gpus")
    if gpus:
        request["GPU"] = float(gpus)
    for name, amount in (options.get("resources") or {}).items():
        if amount:
            request[name] = float(amount)
    return request


def wire_strategy(strategy) -> p.Strategy:
    """The wire form of a ``scheduling_strategy`` option (None: the default)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return p.SpreadStrategy()
    # rayling.util.scheduling_strategies.NodeAffinitySchedulingStrategy (or Ray's own
    # class, from a script that imports it): known by its name and fields.
    if type(strategy).__name__ == "NodeAffinitySchedulingStrategy" and hasattr(strategy, "soft"):
        node_id = strategy.node_id
        if not isinstance(node_id, str) or len(node_id) % 2 or not all(
                c in "0123456789abcdefABCDEF" for c in node_id):
            raise ValueError(f"NodeAffinitySchedulingStrategy needs a hex node id (from "
                             f"get_runtime_context().get_node_id() or nodes()), got "
                             f"{node_id!r}")
        return p.NodeAffinity(bytes.fromhex(node_id), bool(strategy.soft),
                              bool(strategy.soft and getattr(strategy, "_spill_on_unavailable",
                                                             False)))
    raise ValueError(
        f"scheduling_strategy must be 'DEFAULT', 'SPREAD' or a "
        f"NodeAffinitySchedulingStrategy, got {strategy!r}")
