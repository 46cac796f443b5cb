"""The steady scenario (propagation latency at a rate, then the throughput ladder) and scale
(the same for 2, 4, 8 ... lanes)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lanesync.bench.cluster import Cluster
from lanesync.bench.load import ScheduledSale, seeded
from lanesync.bench.measure import Step, measure
from lanesync.bench.outcome import (
    LADDER,
    WARMUP_S,
    Context,
    Outcome,
    final_check,
    lane_names,
    report,
    step_details,
)

SCALE_LANES = (2, 4, 8, 16, 32)


async def ladder(
    ctx: Context, cluster: Cluster, names: Sequence[str], first: Step, rng: random.Random
) -> tuple[float, list[Step]]:
    """The sustained-throughput ladder: the highest store-wide rate kept up. Upwards from the
    steady step while rates are kept up; when even the steady rate is not, downwards instead
    until one is. A rate that fails is tried once more (a hiccup of a shared machine)."""
    s = ctx.settings
    steps: list[Step] = []
    if not s.ladder:
        return (first.rate if first.kept_up else 0.0), steps

    async def kept_up(rate: float) -> bool:
        for label in ("ladder", "retry"):
            step = await measure(cluster, names, rate, s.duration_s, rng, label, s.settle_s, ctx.ui)
            steps.append(step)
            report(ctx, cluster, step)
            if step.kept_up:
                return True
            if not step.converged:
                return False  # swamped: a retry would only add to the backlog
        return False

    if first.kept_up:
        best = first.rate
        for rate in (r for r in LADDER if first.rate < r <= s.max_rate):
            if not await kept_up(rate):
                break
            best = rate
        return best, steps
    for rate in sorted((r for r in LADDER if r < first.rate), reverse=True):
        if await kept_up(rate):
            return rate, steps
    return 0.0, steps


async def _steady_figures(
    ctx: Context, cluster: Cluster, names: Sequence[str], out: Outcome, suffix: str
) -> list[ScheduledSale]:
    s = ctx.settings
    rng = seeded(s.seed)
    collected: list[ScheduledSale] = []

    async def step(rate: float, duration: float, label: str) -> Step:
        result = await measure(cluster, names, rate, duration, rng, label, s.settle_s, ctx.ui)
        report(ctx, cluster, result)
        return result

    warm = await step(s.rate, WARMUP_S, "warm-up")
    first = await step(s.rate, s.duration_s, "steady")
    out.samples_ms.extend(first.samples_ms)
    at = f"at {s.rate:g}/s{suffix}"
    out.add(f"propagation p50 {at}", first.latency.p50, "ms", "lower")
    out.add(f"propagation p99 {at}", first.latency.p99, "ms", "lower")
    out.add(f"propagation max {at}", first.latency.max, "ms", "lower")
    out.add(f"HTTP ack p50 {at}", first.ack_http.p50, "ms", "lower")
    out.add(f"HTTP ack p99 {at}", first.ack_http.p99, "ms", "lower")
    out.add(f"bytes per sale per receiver {at}", first.bytes_per_sale_receiver, "B", "lower")
    out.add(f"CPU per sale {at}", first.cpu_ms_per_sale, "ms", "lower")
    best, steps = await ladder(ctx, cluster, names, first, rng)
    if s.ladder:
        out.add(f"highest rate kept up{suffix}", best, "sales/s", "higher")
    out.converged = out.converged and first.converged
    out.details.setdefault("steps", []).extend(step_details(x) for x in (warm, first, *steps))
    for x in (warm, first, *steps):
        collected.extend(x.sales_list)
    return collected


async def steady(ctx: Context, system: str, out: Outcome) -> None:
    names = lane_names(ctx.settings.lanes)
    async with Cluster(system, ctx.work, ctx.settings.faults) as cluster:
        await cluster.start(names)
        sales = await _steady_figures(ctx, cluster, names, out, "")
        await final_check(ctx, cluster, sales, out)


def scale_sizes(lanes: int) -> list[int]:
    return [n for n in SCALE_LANES if n <= lanes] or [lanes]


async def scale(ctx: Context, system: str, out: Outcome) -> None:
    for n in scale_sizes(ctx.settings.scale_lanes):
        names = lane_names(n)
        async with Cluster(system, ctx.work / f"n{n}", ctx.settings.faults) as cluster:
            await cluster.start(names)
            sales = await _steady_figures(ctx, cluster, names, out, f", {n} lanes")
            await final_check(ctx, cluster, sales, out)
