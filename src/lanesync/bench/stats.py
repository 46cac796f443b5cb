"""Small statistics: percentiles and the min/median/p99/max spread of a figure."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(ordered: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; ``ordered`` must be sorted."""
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100
    low = math.floor(k)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


@dataclass(frozen=True, slots=True)
class Spread:
    """A figure over repeats (or a latency over samples): min, median, p99, max, count."""

    min: float
    median: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        ordered = sorted(v for v in values if not math.isnan(v))
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan, 0)
        return cls(
            ordered[0],
            percentile(ordered, 50),
            percentile(ordered, 99),
            ordered[-1],
            len(ordered),
        )

    def as_dict(self) -> dict[str, float | int | None]:
        def clean(value: float) -> float | None:
            return None if math.isnan(value) else round(value, 6)

        return {
            "min": clean(self.min),
            "median": clean(self.median),
            "p99": clean(self.p99),
            "max": clean(self.max),
            "n": self.n,
        }


@dataclass(frozen=True, slots=True)
class Latency:
    """A latency distribution in milliseconds."""

    p50: float
    p90: float
    p99: float
    max: float
    min: float
    n: int

    @classmethod
    def of_ns(cls, samples_ns: Iterable[int]) -> Latency:
        ordered = sorted(s / 1e6 for s in samples_ns)
        if not ordered:
            return cls(math.nan, math.nan, math.nan, math.nan, math.nan, 0)
        return cls(
            percentile(ordered, 50),
            percentile(ordered, 90),
            percentile(ordered, 99),
            ordered[-1],
            ordered[0],
            len(ordered),
        )


def cdf_points(samples_ms: Sequence[float], points: int = 400) -> list[tuple[float, float]]:
    """At most ``points`` (value, fraction <= value) pairs of the empirical CDF."""
    ordered = sorted(samples_ms)
    n = len(ordered)
    if n == 0:
        return []
    step = max(1, n // points)
    out = [(ordered[i], (i + 1) / n) for i in range(0, n, step)]
    if out[-1][1] < 1.0:
        out.append((ordered[-1], 1.0))
    return out
