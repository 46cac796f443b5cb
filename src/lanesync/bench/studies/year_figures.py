"""The figures of ``lanesync bench year``: one value per checkpoint day (the median of the runs
where a figure is timed), the issue's target for the year's last day and its verdict, and the
table benchmarks/README.md shows.

A figure whose subject does not exist yet (``close to sealed`` before sealing; ``report`` on a
sealed day while no day is sealed) is reported as ``n/a``, never as a number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from lanesync.bench.outcome import Better

# Issue #17's figures are stated for a year of a 4-lane store selling 2,500 sales a day.
FULL_DAYS = 365
FULL_SALES_PER_DAY = 2_500
FULL_LANES = 4
RSS_REFERENCE_DAY = 30  # "day 365 <= 1.2x day 30"
NOT_APPLICABLE = "n/a"


@dataclass(frozen=True)
class Scale:
    days: int
    sales_per_day: int
    lanes: int

    @property
    def full(self) -> bool:
        return (self.days, self.sales_per_day, self.lanes) >= (
            FULL_DAYS,
            FULL_SALES_PER_DAY,
            FULL_LANES,
        )


Judge = Callable[[Mapping[int, float]], bool]  # values by checkpoint day -> target met


@dataclass
class YearFigure:
    key: str
    name: str
    unit: str
    better: Better
    values: dict[int, float | None] = field(default_factory=dict)  # checkpoint day -> value
    target: str = ""
    judge: Judge | None = None
    note: str = ""
    result: str = ""

    def finish(self, scale: Scale) -> None:
        """Judge the target on the last checkpoint (only for a run of the issue's size)."""
        if self.judge is None:
            return
        measured = {day: v for day, v in self.values.items() if v is not None}
        if not measured:
            self.result = NOT_APPLICABLE
        elif not scale.full:
            self.result = "n/a (smaller run)"
        else:
            self.result = "PASS" if self.judge(measured) else "FAIL"


def last(values: Mapping[int, float]) -> float:
    return values[max(values)]


def below(limit: float) -> Judge:
    return lambda values: last(values) < limit


def at_most(limit: float) -> Judge:
    return lambda values: last(values) <= limit


def rss_target(values: Mapping[int, float]) -> bool:
    """< 120 MB on the last day, and no more than 1.2x day 30 (when day 30 was measured)."""
    reference = values.get(RSS_REFERENCE_DAY)
    grown = reference is not None and last(values) > 1.2 * reference
    return last(values) < 120 and not grown


def flat(values: Mapping[int, float]) -> bool:
    """ "Independent of sealed days": the last day's value no more than 1.5x the first day's
    (the day's own documents and the store's vary a little; a vector per day does not)."""
    return last(values) <= 1.5 * values[min(values)]


def fmt(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return NOT_APPLICABLE
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "ms":
        return f"{value:,.0f} ms" if value >= 10 else f"{value:.1f} ms"
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:,.0f} {unit}"


def render_table(figures: Sequence[YearFigure], days: Sequence[int]) -> str:
    header = ["Figure", *(f"day {d}" for d in days), "target (day 365)", "result"]
    rows = [
        [f.name, *(fmt(f.values.get(d), f.unit) for d in days), f.target, f.result] for f in figures
    ]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    notes = [f"  {i}. {f.note}" for i, f in enumerate(figures, 1) if f.note]
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", "Notes:", *notes])
