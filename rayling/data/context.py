"""DataContext: the settings of rayling.data for this driver, as in Ray."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataContext:
    """``DataContext.get_current()`` returns the one this process uses; change its fields
    before running a dataset."""

    enable_progress_bars: bool = True
    # Blocks made but not yet consumed stay under this fraction of the object store.
    execution_memory_fraction: float = 0.5
    # Blocks a read or from_* makes at most, when the number is not given.
    read_op_min_num_blocks: int = 200
    # A block of items or arrays is cut at about this many bytes.
    target_max_block_size: int = 128 * 1024 * 1024

    _current = None

    @classmethod
    def get_current(cls) -> DataContext:
        if cls._current is None:
            cls._current = cls()
        return cls._current
