"""The options of remote functions, actor classes and actor methods: which exist, what
values they take, and their wire form (resource requests, scheduling strategies)."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

from . import protocol as p

TASK_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "num_returns", "max_retries", "retry_exceptions",
    "name", "memory", "scheduling_strategy", "runtime_env", "max_calls", "accelerator_type",
    "label_selector", "enable_task_events", "_metadata", "placement_group",
    "placement_group_bundle_index", "placement_group_capture_child_tasks", "object_store_memory",
    "_generator_backpressure_num_objects",
}
ACTOR_OPTIONS = {
    "num_cpus", "num_gpus", "resources", "memory", "max_restarts", "max_task_retries",
    "max_concurrency", "name", "namespace", "lifetime", "get_if_exists", "runtime_env",
    "scheduling_strategy", "max_pending_calls", "accelerator_type", "label_selector",
    "concurrency_groups", "enable_task_events", "_metadata", "object_store_memory",
    "placement_group", "placement_group_bundle_index", "placement_group_capture_child_tasks",
}
METHOD_OPTIONS = {"num_returns", "name", "max_task_retries", "retry_exceptions",
                  "concurrency_group", "enable_task_events", "_metadata",
                  "_generator_backpressure_num_objects"}
DEFAULT_TASK_OPTIONS = {"num_cpus": 1, "num_gpus": 0, "num_returns": 1, "max_retries": 3}


MAX_COUNT = 2**31 - 1  # the largest retry/restart count (and concurrency) accepted


def _number(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or \
            not math.isfinite(value) or value < 0:
        raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")


def _count(low: int) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{key} must be an integer, got {type(value).__name__} "
                            f"{value!r}")
        if not low <= value <= MAX_COUNT:
            raise ValueError(f"{key} must be an integer from {low} to {MAX_COUNT}, got "
                             f"{value!r}")
    return check


def _num_returns(key: str, value: Any) -> None:
    if value in ("dynamic", "streaming"):
        return
    _count(0)(key, value)


def generator_mode(function, options: dict[str, Any]) -> str:
    """How a task of ``function`` returns: "streaming" (an ObjectRefGenerator: a generator
    function without num_returns, as in Ray, or num_returns="streaming"), "dynamic", or
    "" (num_returns values)."""
    num_returns = options.get("num_returns")
    if num_returns in ("streaming", "dynamic"):
        return num_returns
    if num_returns is None and (inspect.isgeneratorfunction(function)
                                or inspect.isasyncgenfunction(function)):
        return "streaming"
    return ""


def _resources(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"resources must be a dict, got {type(value).__name__}")
    for name, amount in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"resource names must be non-empty strings, got {name!r}")
        if name in ("CPU", "GPU"):
            raise ValueError(f"Use num_cpus/num_gpus instead of resources={{{name!r}: ...}}")
        _number(f"resource {name!r}", amount)


def _string(key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string, got {type(value).__name__}")


def _actor_name(key: str, value: Any) -> None:
    _string(key, value)
    if not value:
        raise ValueError("An actor's name cannot be an empty string (leave name out for "
                         "an anonymous actor)")


def _flag(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{key} must be True or False, got {value!r}")


def _retry_exceptions(key: str, value: Any) -> None:
    if isinstance(value, list | tuple):
        for kind in value:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise TypeError(f"retry_exceptions must be True, False or a list of "
                                f"exception types, and {kind!r} is not an exception type")
        return
    if not isinstance(value, bool):
        raise TypeError(f"retry_exceptions must be True, False or a list of exception "
                        f"types, got {value!r}")


def _runtime_env(key: str, value: Any) -> None:
    env_vars(value)


def env_vars(runtime_env: Any) -> dict[str, str]:
    """The ``env_vars`` of a ``runtime_env`` (the only part rayling builds so far: other
    parts raise NotImplementedError naming them)."""
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, dict):
        raise TypeError(f"runtime_env must be a dict, got {type(runtime_env).__name__}")
    others = sorted(k for k, v in runtime_env.items() if k != "env_vars" and v)
    if others:
        raise NotImplementedError(
            f"runtime_env {', '.join(others)} is not supported by rayling yet (only "
            f"env_vars is); leave {'them' if len(others) > 1 else 'it'} out")
    variables = runtime_env.get("env_vars") or {}
    if not isinstance(variables, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in variables.items()):
        raise TypeError(f"runtime_env env_vars must be a dict of strings to strings, got "
                        f"{variables!r}")
    return dict(variables)


def _concurrency_groups(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise TypeError(f"concurrency_groups must be a dict of group names to their "
                        f"max concurrency, got {type(value).__name__}")
    for name, limit in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"concurrency group names must be non-empty strings, got "
                            f"{name!r}")
        _count(1)(f"concurrency group {name!r}", limit)


def _lifetime(key: str, value: Any) -> None:
    if value not in ("detached", "non_detached"):
        raise ValueError(f"lifetime must be 'detached' or 'non_detached', got {value!r}")


def _strategy(key: str, value: Any) -> None:
    wire_strategy(value)  # raises for an unknown strategy


def _not_yet(*off: Any) -> Callable[[str, Any], None]:
    """An option rayling does not implement yet: only its "off" values are accepted."""
    def check(key: str, value: Any) -> None:
        if not any(value == o and type(value) is type(o) for o in off):
            raise NotImplementedError(
                f"the option {key}={value!r} is not supported by rayling yet; leave it out")
    return check


# How each option's value is checked (None is always accepted: "the default").
_CHECKS: dict[str, Callable[[str, Any], None]] = {
    "num_cpus": _number, "num_gpus": _number, "resources": _resources,
    "num_returns": _num_returns, "max_retries": _count(-1),
    "retry_exceptions": _retry_exceptions, "name": _string,
    "scheduling_strategy": _strategy, "max_restarts": _count(-1),
    "max_task_retries": _count(-1), "max_concurrency": _count(1), "namespace": _string,
    "lifetime": _lifetime, "get_if_exists": _flag, "enable_task_events": _flag,
    "_metadata": lambda key, value: None,  # (Ray's internal annotations: no effect)
    "memory": _number, "object_store_memory": _not_yet(0, 0.0),
    "runtime_env": _runtime_env, "max_calls": _count(0),
    "accelerator_type": _not_yet(), "label_selector": _not_yet({}),
    "placement_group": lambda key, value: None,  # (checked by placement() below)
    "placement_group_bundle_index": _count(-1),
    "placement_group_capture_child_tasks": _flag,
    "max_pending_calls": _count(-1), "concurrency_groups": _concurrency_groups,
    "_generator_backpressure_num_objects": _count(-1),
    "concurrency_group": _string,
}


def validate_options(options: dict[str, Any], allowed: set[str], what: str) -> dict[str, Any]:
    """Check option names and values; errors name the bad option. An option rayling
    does not implement yet raises NotImplementedError unless it is left at its default."""
    for key, value in options.items():
        if key not in allowed:
            raise ValueError(f"Invalid option {key!r} for {what}. Valid options: "
                             f"{', '.join(sorted(k for k in allowed if not k.startswith('_')))}")
        if value is None:
            continue
        check = _CHECKS[key]
        if key == "name" and allowed is ACTOR_OPTIONS:
            check = _actor_name
        elif key == "retry_exceptions" and allowed is METHOD_OPTIONS:
            check = _not_yet(False)  # (actor calls retry only when their worker dies)
        check(key, value)
    return options


def check_node_resources(num_cpus: Any, num_gpus: Any, resources: Any,
                         object_store_memory: Any) -> None:
    """Check what init() or `rayling start` gives a node; errors name the bad value."""
    for key, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        if value is not None:
            _number(key, value)
    if resources is not None:
        _resources("resources", resources)
    if object_store_memory is not None:
        _number("object_store_memory", object_store_memory)
        if object_store_memory < 1:
            raise ValueError("object_store_memory must be at least 1 byte, got "
                             f"{object_store_memory!r}")


# init() arguments rayling does not implement yet, with the values that mean "off".
_INIT_DEFAULTS: dict[str, tuple] = {
    "local_mode": (False,), "job_config": (None,), "logging_config": (None,),
    "_temp_dir": (None,),
}
# _system_config keys rayling takes, with the values that match what it does.
_SYSTEM_CONFIG: dict[str, tuple] = {
    "automatic_object_spilling_enabled": (False,),  # (rayling does not spill yet)
}


def check_init_options(options: dict[str, Any], system_config: dict | None) -> None:
    """Raise NotImplementedError for an init() argument or _system_config key that
    asks for something rayling does not do."""
    for key, value in options.items():
        if not any(value == off and type(value) is type(off)
                   for off in _INIT_DEFAULTS.get(key, ())):
            raise NotImplementedError(
                f"init({key}={value!r}) is not supported by rayling yet; leave it out")
    if system_config is None:
        return
    if not isinstance(system_config, dict):
        raise TypeError(f"_system_config must be a dict, got {type(system_config).__name__}")
    for key, value in system_config.items():
        if value not in _SYSTEM_CONFIG.get(key, ()):
            raise NotImplementedError(
                f"_system_config {{{key!r}: {value!r}}} is not supported by rayling; "
                f"leave it out")


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
    memory = options.get("memory")
    if memory:
        request["memory"] = float(memory)
    return request


def placement(options: dict[str, Any]) -> tuple[str, int, bool] | None:
    """The placement group a task or actor with these options goes in: (its hex id, the
    bundle index or -1 for any, whether its children go there too), or None."""
    strategy = options.get("scheduling_strategy")
    if type(strategy).__name__ == "PlacementGroupSchedulingStrategy":
        group = strategy.placement_group
        index = strategy.placement_group_bundle_index
        capture = bool(strategy.placement_group_capture_child_tasks)
    else:
        group = options.get("placement_group")
        if group is None or group == "default":
            if options.get("placement_group_bundle_index") not in (None, -1) or \
                    options.get("placement_group_capture_child_tasks"):
                raise ValueError("placement_group_bundle_index and "
                                 "placement_group_capture_child_tasks need placement_group=")
            return None
        index = options.get("placement_group_bundle_index", -1)
        index = -1 if index is None else index
        capture = bool(options.get("placement_group_capture_child_tasks"))
    if group is None:
        return None
    pg_id = getattr(group, "id", None)
    if pg_id is None or not hasattr(pg_id, "hex"):
        raise TypeError(f"placement_group must be a PlacementGroup (from "
                        f"placement_group(...)), got {group!r}")
    bundles = len(getattr(group, "bundle_specs", ()) or ())
    if not isinstance(index, int) or isinstance(index, bool) or not -1 <= index < max(
            bundles, 1):
        raise ValueError(f"placement_group_bundle_index must be -1 or the index of one of "
                         f"the group's {bundles} bundles, got {index!r}")
    return pg_id.hex(), index, capture


def wire_strategy(strategy) -> p.Strategy:
    """The wire form of a ``scheduling_strategy`` option (None: the default)."""
    if strategy is None or strategy == "DEFAULT":
        return None
    if strategy == "SPREAD":
        return p.SpreadStrategy()
    # rayling.util.scheduling_strategies.NodeAffinitySchedulingStrategy (or Ray's own
    # class, from a script that imports it): known by its name and fields.
    if type(strategy).__name__ == "PlacementGroupSchedulingStrategy":
        return None  # (expressed in the resources asked for: see placement())
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
        f"scheduling_strategy must be 'DEFAULT', 'SPREAD', a NodeAffinitySchedulingStrategy "
        f"or a PlacementGroupSchedulingStrategy, got {strategy!r}")
