"""The figures of ``lanesync bench foundation``: each with its lanesync and raw pycrdt value,
the ratio, the issue's target and PASS / FAIL, rendered as the table benchmarks/README.md shows;
and how busy the machine was before and after the run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from nacl.signing import SigningKey

from lanesync.bench.outcome import Better
from lanesync.bench.studies.common import machine_busy_pct, stopwatch

FULL_SCALE = 100_000  # the targets for reopen and RSS are stated for this many sales
# Measured on a quiet 2-core machine (2026-11-26): Ed25519 verify of 200 B takes ~50 us. Much
# slower means the CPU is shared with other work and every figure below is pessimistic.
QUIET_VERIFY_US = 50.0
BUSY_VERIFY_US = 1.5 * QUIET_VERIFY_US
BUSY_CPU_PCT = 25.0


@dataclass(frozen=True)
class Target:
    op: Literal[">=", "<="]
    value: float
    on_ratio: bool = False  # compare lanesync/raw rather than the lanesync figure
    full_scale_only: bool = False  # stated for FULL_SCALE sales; not judged on smaller runs

    def describe(self) -> str:
        text = f"{self.op} {self.value:g}{'x raw' if self.on_ratio else ''}"
        return text + (f" @{FULL_SCALE // 1000}k" if self.full_scale_only else "")

    def judge(self, value: float | None, ratio: float | None, sales: int) -> str:
        subject = ratio if self.on_ratio else value
        if subject is None:
            return "n/a"
        if self.full_scale_only and sales < FULL_SCALE:
            return "n/a (small N)"
        ok = subject >= self.value if self.op == ">=" else subject <= self.value
        return "PASS" if ok else "FAIL"


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    lanesync: float | None
    raw: float | None
    better: Better
    target: Target | None = None
    note: str = ""
    ratio: float | None = field(init=False, default=None)
    result: str = field(init=False, default="")

    def finish(self, sales: int) -> None:
        if self.lanesync is not None and self.raw:
            self.ratio = self.lanesync / self.raw
        self.result = self.target.judge(self.lanesync, self.ratio, sales) if self.target else ""


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "s"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f} {unit}"


def render_table(figures: Sequence[Figure]) -> str:
    header = ("#", "Figure", "lanesync", "raw pycrdt", "ratio l/r", "better", "target", "result")
    rows = [
        (
            str(i),
            f.name,
            fmt(f.lanesync, f.unit),
            fmt(f.raw, f.unit),
            "-" if f.ratio is None else f"{f.ratio:.2f}x",
            f.better,
            f.target.describe() if f.target else "",
            f.result,
        )
        for i, f in enumerate(figures, 1)
    ]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    right = {0, 2, 3, 4}

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    notes = [f"  {i}. {f.note}" for i, f in enumerate(figures, 1) if f.note]
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", "Notes:", *notes])


def calibrate() -> dict[str, float]:
    """How busy the machine is: whole-machine CPU use over one second (while this process
    sleeps), the 1-minute load average and the time of one Ed25519 verify."""
    busy = machine_busy_pct(1.0)
    key = SigningKey.generate()
    signed = key.sign(bytes(200))
    verify_key = key.verify_key
    rounds = 2_000
    with stopwatch() as t:
        for _ in range(rounds):
            verify_key.verify(signed)
    return {
        "cpu_busy_pct": busy,
        "loadavg_1m": os.getloadavg()[0],
        "ed25519_verify_us": t.wall / rounds * 1e6,
    }


def describe_load(when: str, load: dict[str, float]) -> str:
    text = (
        f"{when}: machine CPU {load['cpu_busy_pct']:.0f}% busy, load {load['loadavg_1m']:.2f}, "
        f"Ed25519 verify {load['ed25519_verify_us']:.0f} us (quiet: ~{QUIET_VERIFY_US:.0f} us)"
    )
    if load["cpu_busy_pct"] > BUSY_CPU_PCT or load["ed25519_verify_us"] > BUSY_VERIFY_US:
        text += "  WARNING: shared with other work, figures are pessimistic"
    return text
