"""The head's table of application metrics (rayling.util.metrics), for the dashboard's
/metrics (pure logic).

Each process reports the whole of each series that changed (MetricsReport). Counters
and histograms are totals over every process: a process that ends adds what it reported
last to the series' *retired* part, so a total never goes down; a gauge keeps the value
last reported by any process, and goes when the process that reported it last ends.
"""

from __future__ import annotations

from . import protocol as p


class UserMetrics:
    def __init__(self) -> None:
        # (name) -> (kind, description, tag keys, boundaries)
        self.kinds: dict[str, tuple[str, str, list[str], list[float]]] = {}
        self.live: dict[object, dict[tuple[str, tuple], list[float]]] = {}  # conn -> series
        self.retired: dict[tuple[str, tuple], list[float]] = {}
        self.gauges: dict[tuple[str, tuple], tuple[object, float]] = {}  # -> (conn, value)

    def report(self, conn, msg: p.MetricsReport) -> None:
        mine = self.live.setdefault(conn, {})
        for series in msg.series:
            known = self.kinds.get(series.name)
            if known is not None and (known[0], known[2], known[3]) != (
                    series.kind, series.tag_keys, series.boundaries):
                continue  # (the first process to report a name sets its kind, tag keys
                # and buckets: another process's differing metric of that name is left out)
            self.kinds[series.name] = (series.kind, series.description, series.tag_keys,
                                       series.boundaries)
            width = len(series.boundaries) + 3 if series.kind == "histogram" else 1
            for tags, values in series.points:
                if len(values) != width or len(tags) != len(series.tag_keys):
                    continue  # (malformed: never let one process break the totals)
                key = (series.name, tuple(tags))
                if series.kind == "gauge":
                    self.gauges[key] = (conn, values[0])
                else:
                    mine[key] = values

    def gone(self, conn) -> None:
        for key, values in self.live.pop(conn, {}).items():
            total = self.retired.get(key)
            self.retired[key] = values if total is None else [
                a + b for a, b in zip(total, values, strict=True)]
        for key in [k for k, (owner, _) in self.gauges.items() if owner is conn]:
            del self.gauges[key]

    def rows(self) -> list[dict]:
        """Every series: name, kind, description, tag keys, boundaries, and per tag values
        its value (a histogram: bucket counts, then sum and count)."""
        totals: dict[tuple[str, tuple], list[float]] = {
            k: list(v) for k, v in self.retired.items()}
        for series in self.live.values():
            for key, values in series.items():
                total = totals.get(key)
                totals[key] = list(values) if total is None else [
                    a + b for a, b in zip(total, values, strict=True)]
        for key, (_, value) in self.gauges.items():
            totals[key] = [value]
        out: dict[str, dict] = {}
        for (name, tags), values in totals.items():
            kind, description, tag_keys, boundaries = self.kinds[name]
            row = out.setdefault(name, {"name": name, "kind": kind,
                                        "description": description, "tag_keys": tag_keys,
                                        "boundaries": boundaries, "points": []})
            row["points"].append([list(tags), values])
        return list(out.values())
