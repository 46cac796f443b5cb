"""What every scenario shares: its settings, the ``Outcome`` it fills, and the checks and
progress lines common to all of them.

A scenario function runs one repeat for one system in a fresh store (new directories, new
processes, new proxies) and fills an ``Outcome``: named figures with their unit and which
direction is better, latency samples for the plots, and two checks every scenario makes (all
members converged; acknowledged sales lost, which must be 0 for lanesync).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lanesync.bench.cluster import Cluster, Faults
from lanesync.bench.load import ScheduledSale
from lanesync.bench.measure import Step, pending_pairs, wait_delivered
from lanesync.bench.ui import Ui

Better = Literal["lower", "higher"]

# Store-wide sales/s the throughput ladder climbs through (above --rate), until a rate is not
# kept up twice in a row (one retry absorbs a hiccup of a shared machine).
LADDER = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000)
WARMUP_S = 1.0


@dataclass(frozen=True, slots=True)
class Settings:
    lanes: int = 4
    scale_lanes: int = 8  # scale runs 2, 4, 8 ... up to this
    rate: float = 200.0
    duration_s: float = 10.0
    faults: Faults = field(default_factory=Faults)
    repeat: int = 1
    seed: int = 1
    ladder: bool = False  # the throughput ladder only when asked for (--ladder)
    max_rate: float = LADDER[-1]  # the ladder's top rung (tests keep it low)

    @property
    def settle_s(self) -> float:
        """How long after the last sale a step may take to converge before it counts as not
        converged (generous: a 2-core machine with many lanes is slow to drain a backlog)."""
        return min(120.0, max(15.0, 3 * self.duration_s))


@dataclass(frozen=True, slots=True)
class Value:
    value: float
    unit: str
    better: Better


@dataclass
class Outcome:
    scenario: str
    system: str
    repeat: int
    figures: dict[str, Value] = field(default_factory=dict)
    samples_ms: list[float] = field(default_factory=list)
    converged: bool = True
    lost_sales: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, name: str, value: float, unit: str, better: Better) -> None:
        self.figures[name] = Value(float(value), unit, better)


@dataclass
class Context:
    settings: Settings
    work: Path
    ui: Ui


def lane_names(n: int) -> list[str]:
    return [f"lane{i:02d}" for i in range(1, n + 1)]


def step_details(step: Step) -> dict[str, Any]:
    return {
        "label": step.label,
        "rate": step.rate,
        "lanes": step.lanes,
        "sales": step.sales,
        "acked": step.acked,
        "converged": step.converged,
        "converged_after_s": None if math.isnan(step.converged_after_s) else step.converged_after_s,
        "latency_ms": {k: getattr(step.latency, k) for k in ("p50", "p90", "p99", "max", "min")},
        "ack_http_ms": {k: getattr(step.ack_http, k) for k in ("p50", "p99", "max")},
        "visible_everywhere_ms": {
            k: getattr(step.visible_everywhere, k) for k in ("p50", "p99", "max")
        },
        "bytes": step.bytes,
        "bytes_per_sale_receiver": step.bytes_per_sale_receiver,
        "cpu_s": step.cpu_s,
        "kept_up": step.kept_up,
        "why_not": step.why_not,
        "errors": step.errors,
    }


async def final_check(
    ctx: Context, cluster: Cluster, sales: Sequence[ScheduledSale], out: Outcome
) -> None:
    """Wait for every acknowledged sale to be everywhere, then count, from every member's API,
    acknowledged sales some member does not hold (lost) and compare digests."""
    receivers = [m.name for m in cluster.live()]
    pending = pending_pairs(cluster, sales, receivers)
    missing: list[tuple[str, str, int]] = []
    delivered, _ = await wait_delivered(cluster, pending, ctx.settings.settle_s, None, missing)
    holdings = {m.name: await cluster.holdings(m) for m in cluster.live()}
    lost = 0
    for sale in sales:
        if not sale.acked:
            continue
        for member, held in holdings.items():
            if cluster.tracker.sender_of.get(member) == sale.sender:
                continue
            if sale.seq not in held.get(sale.sender, set()):
                lost += 1
                break
    digests = await cluster.digests()
    out.lost_sales += lost
    out.converged = out.converged and delivered and len(set(digests.values())) == 1
    out.details["final"] = {
        "acknowledged": sum(1 for s in sales if s.acked),
        "lost": lost,
        "digests_equal": len(set(digests.values())) == 1,
        "undelivered_sample": missing,
    }


def report(ctx: Context, cluster: Cluster, step: Step) -> None:
    lat = step.latency
    verdict = "kept up" if step.kept_up else f"not kept up: {step.why_not}"
    ctx.ui.log(
        f"  {cluster.system} {step.label} {step.rate:g}/s x {step.lanes} lanes: "
        f"propagation p50 {lat.p50:.1f} ms p99 {lat.p99:.1f} ms, "
        f"{step.bytes_per_sale_receiver:.0f} B/sale/receiver -> {verdict}"
    )
