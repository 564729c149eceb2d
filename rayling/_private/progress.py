"""Drawing progress bars on the driver's terminal: one real tqdm bar per bar a task
reports (ProgressBar messages, from rayling.experimental.tqdm_ray), stacked one per line."""

from __future__ import annotations

import sys
from typing import Any

from . import protocol as p


class BarManager:
    def __init__(self) -> None:
        from tqdm import tqdm as real_tqdm

        self._tqdm = real_tqdm
        self._bars: dict[tuple[int, str], Any] = {}
        self._positions: dict[tuple[int, str], int] = {}

    def active(self) -> bool:
        return bool(self._bars)

    def update(self, state: p.ProgressBar) -> None:
        key = (state.pid, state.bar_id)
        bar = self._bars.get(key)
        if bar is None:
            used = set(self._positions.values())
            position = next(i for i in range(len(used) + 1) if i not in used)
            self._positions[key] = position
            bar = self._tqdm(
                total=_whole(state.total), desc=state.desc, unit=state.unit,
                position=position, leave=True, file=sys.stderr, dynamic_ncols=True,
            )
            self._bars[key] = bar
        if bar.desc != state.desc:
            bar.set_description(state.desc, refresh=False)
        bar.total = _whole(state.total)
        bar.n = _whole(state.n)
        bar.refresh()
        if state.closed:
            bar.close()
            del self._bars[key]
            del self._positions[key]

    def write(self, text: str, stream) -> None:
        self._tqdm.write(text, file=stream)

    def close_all(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        self._positions.clear()


def _whole(count: float | None) -> float | int | None:
    """Counts travel as floats; whole ones are shown as ints (10, not 10.0)."""
    return int(count) if count is not None and count.is_integer() else count
