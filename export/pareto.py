"""The models no other model beats on both accuracy (higher is better) and latency (lower is better)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def _usable(p: Sequence | None) -> bool:
    return (p is not None and len(p) == 2 and all(v is not None for v in p)
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in p))


def pareto_front(points: Iterable[Sequence[float] | None]) -> list[bool]:
    """``[(accuracy, latency), ...]`` -> one flag per point: True where no other point has accuracy
    >= and latency <= with at least one strictly better. Missing points (None, NaN) are never on
    the front and never dominate; equal points are all kept."""
    pts = list(points)
    ok = [_usable(p) for p in pts]
    flags = []
    for i, p in enumerate(pts):
        if not ok[i]:
            flags.append(False)
            continue
        acc, lat = float(p[0]), float(p[1])
        dominated = any(
            ok[j] and q[0] >= acc and q[1] <= lat and (q[0] > acc or q[1] < lat)
            for j, q in enumerate(pts) if j != i
        )
        flags.append(not dominated)
    return flags
