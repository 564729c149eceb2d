"""Application metrics, as Ray's ``ray.util.metrics``: ``Counter``, ``Gauge`` and
``Histogram`` that tasks, actors and drivers record, exported by the dashboard at
``/metrics`` (Prometheus text) with the cluster's own.

Each process keeps its series here and reports those that changed to the head at most
once a second (a MetricsReport, queued like printed lines); the head sums counters and
histograms over every process that reported them (those that ended included) and keeps
each gauge's last value (see _private/user_metrics.py).

    from rayling.util.metrics import Counter
    requests = Counter("requests", description="Requests served", tag_keys=("route",))
    requests.inc(tags={"route": "/predict"})
"""

from __future__ import annotations

import re
import threading
from typing import Any

from .._private import client as client_mod, protocol as p

REPORT_INTERVAL = 1.0  # seconds between a process's reports of what changed

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_lock = threading.Lock()
_metrics: dict[str, Metric] = {}  # name -> this process's metric of that name
_changed: set[str] = set()  # names recorded since the last report
_reporter: threading.Thread | None = None


class Metric:
    """What every kind shares: a name, a description, tag keys and default tags."""

    kind = ""

    def __init__(self, name: str, description: str = "", tag_keys: tuple = ()) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"a metric name is letters, digits, '_' and ':' (not starting "
                             f"with a digit), got {name!r}")
        if isinstance(tag_keys, str) or not isinstance(tag_keys, tuple | list) or \
                not all(isinstance(k, str) and k for k in tag_keys):
            raise TypeError(f"tag_keys must be a tuple of strings, got {tag_keys!r}")
        self._name = name
        self._description = str(description or "")
        self._tag_keys = tuple(tag_keys)
        self._default_tags: dict[str, str] = {}
        self._values: dict[tuple[str, ...], list[float]] = {}
        with _lock:
            known = _metrics.get(name)
            if known is None:
                _metrics[name] = self
            elif (known.kind, known._tag_keys, getattr(known, "_boundaries", None)) != (
                    self.kind, self._tag_keys, getattr(self, "_boundaries", None)):
                raise ValueError(f"metric {name!r} already exists here as a {known.kind} "
                                 f"with tag keys {known._tag_keys}")
            else:  # (made again, say in each call of a task: one series, counted on)
                self._values = known._values

    @property
    def info(self) -> dict[str, Any]:
        return {"name": self._name, "description": self._description,
                "tag_keys": self._tag_keys, "default_tags": dict(self._default_tags)}

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        self._check_keys(default_tags, complete=False)
        self._default_tags = {k: str(v) for k, v in default_tags.items()}
        return self

    def _check_keys(self, tags: dict, complete: bool) -> None:
        if not isinstance(tags, dict):
            raise TypeError(f"tags must be a dict, got {type(tags).__name__}")
        unknown = set(tags) - set(self._tag_keys)
        if unknown:
            raise ValueError(f"metric {self._name!r} has no tag keys {sorted(unknown)} (its "
                             f"tag keys: {list(self._tag_keys)})")
        if complete and len(tags) < len(self._tag_keys):
            missing = [k for k in self._tag_keys if k not in tags]
            raise ValueError(f"metric {self._name!r} needs values for its tag keys "
                             f"{missing} (in tags= or set_default_tags)")

    def _series(self, tags: dict | None) -> tuple[str, ...]:
        merged = {**self._default_tags, **{k: str(v) for k, v in (tags or {}).items()}}
        self._check_keys(merged, complete=True)
        return tuple(merged[k] for k in self._tag_keys)

    def _record(self, tags: dict | None, update) -> None:
        key = self._series(tags)
        with _lock:
            update(self._values, key)
            _changed.add(self._name)
        _start_reporting()

    def _report(self) -> p.MetricSeries:
        return p.MetricSeries(self._name, self.kind, self._description,
                              list(self._tag_keys), list(getattr(self, "_boundaries", [])),
                              [(list(key), list(values)) for key, values in
                               self._values.items()])


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise TypeError(f"a metric value must be a number, got {value!r}")
    return float(value)


class Counter(Metric):
    """A total that only grows (``inc``)."""

    kind = "counter"

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        value = _number(value)
        if value <= 0:
            raise ValueError(f"a counter grows by a value > 0, got {value}")

        def add(values, key):
            values.setdefault(key, [0.0])[0] += value
        self._record(tags, add)


class Gauge(Metric):
    """A value that is set (``set``): the last one counts."""

    kind = "gauge"

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        value = _number(value)

        def put(values, key):
            values[key] = [value]
        self._record(tags, put)


class Histogram(Metric):
    """How observed values (``observe``) fall into buckets with upper ``boundaries``."""

    kind = "histogram"

    def __init__(self, name: str, description: str = "", boundaries: list | None = None,
                 tag_keys: tuple = ()) -> None:
        if not boundaries or not all(isinstance(b, int | float) and not isinstance(b, bool)
                                     and b > 0 for b in boundaries) or \
                list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"a histogram needs boundaries: increasing values > 0, got "
                             f"{boundaries!r}")
        self._boundaries = [float(b) for b in boundaries]
        super().__init__(name, description, tag_keys)

    @property
    def info(self) -> dict[str, Any]:
        return {**super().info, "boundaries": list(self._boundaries)}

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        value = _number(value)
        bucket = next((i for i, b in enumerate(self._boundaries) if value <= b),
                      len(self._boundaries))

        def count(values, key):
            # Per bucket (the last: above every boundary), then the sum and the count.
            series = values.setdefault(key, [0.0] * (len(self._boundaries) + 3))
            series[bucket] += 1
            series[-2] += value
            series[-1] += 1
        self._record(tags, count)


def _start_reporting() -> None:
    global _reporter
    if _reporter is None:
        with _lock:
            if _reporter is None:
                _reporter = threading.Thread(target=_report_forever, daemon=True,
                                             name="rayling-metrics")
                _reporter.start()


def _report_forever() -> None:
    import time

    while True:
        time.sleep(REPORT_INTERVAL)
        report()


def report() -> None:
    """Send the series that changed since the last report (if connected)."""
    client = client_mod.current
    if client is None or not _changed:
        return
    with _lock:
        series = [_metrics[name]._report() for name in _changed]
        _changed.clear()
    client.queue_output(p.MetricsReport(series))
