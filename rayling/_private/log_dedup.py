"""Folding identical worker output lines (pure logic, no I/O).

The first time a line is seen it is printed at once. Copies of it that arrive within
``window`` seconds, from any worker, are counted instead of printed; when the window
ends, one line ``... [repeated Nx across cluster]`` reports them.
"""

from __future__ import annotations


class _Seen:
    __slots__ = ("first_seen", "repeats", "prefix")

    def __init__(self, now: float, prefix: str) -> None:
        self.first_seen = now
        self.repeats = 0
        self.prefix = prefix


class LogDeduplicator:
    def __init__(self, window: float = 5.0, enabled: bool = True) -> None:
        self.window = window
        self.enabled = enabled
        self._seen: dict[str, _Seen] = {}

    def add(self, prefix: str, text: str, now: float) -> list[str]:
        """Lines to print now for ``text`` from a worker labelled ``prefix``."""
        out = self.flush(now)
        if not self.enabled or not text.strip():
            out.append(f"{prefix} {text}")
            return out
        seen = self._seen.get(text)
        if seen is None:
            self._seen[text] = _Seen(now, prefix)
            out.append(f"{prefix} {text}")
        else:
            seen.repeats += 1
            seen.prefix = prefix
        return out

    def flush(self, now: float, everything: bool = False) -> list[str]:
        """Summaries of lines whose window has ended (all of them if ``everything``)."""
        out = []
        if not self._seen:
            return out
        due = [t for t, s in self._seen.items() if everything or now - s.first_seen >= self.window]
        for text in due:
            seen = self._seen.pop(text)
            if seen.repeats:
                out.append(f"{seen.prefix} {text} [repeated {seen.repeats}x across cluster]")
        return out

    def next_deadline(self) -> float | None:
        """When the earliest pending summary is due, or None if none is."""
        pending = [s.first_seen for s in self._seen.values() if s.repeats]
        return min(pending) + self.window if pending else None
