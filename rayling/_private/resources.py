"""Resource amounts and accounting (pure logic, no I/O).

Amounts are kept as integers in units of 1/10000 so that fractional requests such as
``num_cpus=0.1`` add and subtract exactly, with no float drift.
"""

from __future__ import annotations

from collections.abc import Mapping

UNIT = 10_000


def to_units(request: Mapping[str, float]) -> dict[str, int]:
    """A resource request in fixed-point units, dropping zero amounts."""
    out = {}
    for name, amount in request.items():
        if amount < 0:
            raise ValueError(f"resource {name!r} requested a negative amount ({amount})")
        units = round(amount * UNIT)
        if units:
            out[name] = units
    return out


def gpu_units(request: Mapping[str, int]) -> int:
    """The GPU units a request asks for: plain, or of a placement group's bundle."""
    units = request.get("GPU")
    if units is not None:
        return units
    if len(request) > 1:  # (a request placed in a group has its marker too)
        for name, amount in request.items():
            if name.startswith("GPU_group_"):
                return amount
    return 0


def from_units(units: Mapping[str, int]) -> dict[str, float]:
    return {name: amount / UNIT for name, amount in units.items()}


class ResourcePool:
    """What a node has in total and what is free right now."""

    def __init__(self, total: Mapping[str, float]) -> None:
        self.total = to_units(total)
        self.free = dict(self.total)

    def fits_ever(self, request: Mapping[str, int]) -> bool:
        """Could this request ever run here, with every task finished?"""
        total = self.total
        return all(total.get(k, 0) >= v for k, v in request.items())

    def missing(self, request: Mapping[str, int]) -> dict[str, float]:
        """The resources by which ``request`` exceeds the total (for error messages)."""
        return {
            k: (v - self.total.get(k, 0)) / UNIT
            for k, v in request.items()
            if self.total.get(k, 0) < v
        }

    def fits_now(self, request: Mapping[str, int]) -> bool:
        free = self.free
        for k, v in request.items():
            if free.get(k, 0) < v:
                return False
        return True

    def acquire(self, request: Mapping[str, int]) -> None:
        free = self.free
        for k, v in request.items():
            free[k] = free.get(k, 0) - v

    def release(self, request: Mapping[str, int]) -> None:
        free, total = self.free, self.total
        for k, v in request.items():
            if k in total:  # (a placement group's resources go when it is removed)
                free[k] = free.get(k, 0) + v

    def total_float(self) -> dict[str, float]:
        return from_units(self.total)

    def free_float(self) -> dict[str, float]:
        """Free amounts, never below zero (a blocked task may lend CPUs it later reclaims)."""
        return {k: max(v, 0) / UNIT for k, v in self.free.items()}


class GpuAllocator:
    """Hands out GPU indices: whole GPUs exclusively, fractions by sharing one GPU."""

    def __init__(self, count: int) -> None:
        self.capacity = [UNIT] * count  # free units per GPU index

    def allocate(self, units: int) -> list[int]:
        if units <= 0:
            return []
        if units < UNIT:
            for i, free in enumerate(self.capacity):
                if free >= units:
                    self.capacity[i] -= units
                    return [i]
            return []
        whole = -(-units // UNIT)
        ids = [i for i, free in enumerate(self.capacity) if free == UNIT][:whole]
        if len(ids) < whole:
            return []
        for i in ids:
            self.capacity[i] = 0
        return ids

    def free(self, ids: list[int], units: int) -> None:
        if not ids:
            return
        if units < UNIT:
            self.capacity[ids[0]] += units
        else:
            for i in ids:
                self.capacity[i] = UNIT
