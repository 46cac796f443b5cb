"""The scenarios: what each one does to a store, and which figures it reports.

Every scenario function runs one repeat for one system in a fresh store (new directories, new
processes, new proxies) and returns an ``Outcome``: named figures with their unit and which
direction is better, latency samples for the plots, and two checks every scenario makes (all
members converged; acknowledged sales lost, which must be 0 for lanesync).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lanesync.bench.cluster import LANESYNC, PYCRDT, UNSIGNED, BenchError, Cluster, Faults
from lanesync.bench.load import ScheduledSale, fill, ring, seeded
from lanesync.bench.measure import (
    ACK_SETTLE_S,
    Step,
    join_arrivals,
    measure,
    pending_pairs,
    wait_delivered,
)
from lanesync.bench.ui import Ui

Better = Literal["lower", "higher"]

# Store-wide sales/s the throughput ladder climbs through (above --rate), until a rate is not
# kept up twice in a row (one retry absorbs a hiccup of a shared machine).
LADDER = (50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 4000, 6000, 8000)
SPLIT_FRACTIONS = (0.25, 0.5, 1.0)  # split sizes: these fractions of rate x duration sales
CHURN_RESTART_EVERY_S = 2.0
SCALE_LANES = (2, 4, 8, 16, 32)
WARMUP_S = 1.0
SCENARIOS = ("steady", "split-heal", "outage", "join", "churn", "scale")
CLOUD_SYSTEMS = (LANESYNC, UNSIGNED)  # the baselines have no cloud uplink


@dataclass(frozen=True, slots=True)
class Settings:
    lanes: int = 4
    scale_lanes: int = 8  # scale runs 2, 4, 8 ... up to this
    rate: float = 200.0
    duration_s: float = 10.0
    faults: Faults = field(default_factory=Faults)
    repeat: int = 1
    seed: int = 1
    ladder: bool = True
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


def report(ctx: Context, cluster: Cluster, step: Step) -> None:
    lat = step.latency
    verdict = "kept up" if step.kept_up else f"not kept up: {step.why_not}"
    ctx.ui.log(
        f"  {cluster.system} {step.label} {step.rate:g}/s x {step.lanes} lanes: "
        f"propagation p50 {lat.p50:.1f} ms p99 {lat.p99:.1f} ms, "
        f"{step.bytes_per_sale_receiver:.0f} B/sale/receiver -> {verdict}"
    )


# -- steady and scale -----------------------------------------------------------------------------


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


# -- split and heal --------------------------------------------------------------------------------


def split_sizes(settings: Settings) -> list[int]:
    total = settings.rate * settings.duration_s
    return sorted({max(4, round(total * f)) for f in SPLIT_FRACTIONS})


def split_links(cluster: Cluster, half: set[str]) -> list[int]:
    """The links to cut so that ``half`` and the others cannot reach each other: between the
    halves in a mesh; in a star, the other half's links to the server (``half`` keeps it)."""
    if cluster.star:
        return [link.id for link in cluster.links if link.dialer not in half]
    return [
        link.id
        for link in cluster.links
        if link.target in cluster.members and (link.dialer in half) != (link.target in half)
    ]


async def split_heal(ctx: Context, system: str, out: Outcome) -> None:
    s = ctx.settings
    names = lane_names(max(2, s.lanes))
    half = set(names[: len(names) // 2])
    rng = seeded(s.seed)
    collected: list[ScheduledSale] = []
    async with Cluster(system, ctx.work, s.faults) as cluster:
        await cluster.start(names)
        warm = await measure(cluster, names, s.rate, WARMUP_S, rng, "warm-up", s.settle_s, ctx.ui)
        collected.extend(warm.sales_list)
        ids = split_links(cluster, half)
        rows = []
        for size in split_sizes(s):
            await cluster.partition(ids)
            ctx.ui.step(f"{system} split, {size} sales", size, size * (len(names) - 1))
            sales = await ring(cluster, names, s.rate, size, rng, lambda _: ctx.ui.acked())
            collected.extend(sales)
            bytes_before = await cluster.bytes_forwarded()
            healed = await cluster.heal(ids)
            pending = pending_pairs(cluster, sales, names)
            done, _ = await wait_delivered(cluster, pending, s.settle_s, ctx.ui)
            await asyncio.sleep(ACK_SETTLE_S)
            cluster.tracker.poll()
            moved = await cluster.bytes_forwarded() - bytes_before
            reconnect = await cluster.first_accept_after(healed)
            _, first = join_arrivals(sales, cluster.tracker.take_arrivals(), names, {})
            last = max((t for per in first.values() for t in per.values()), default=healed)
            acked = sum(1 for x in sales if x.acked)
            after_heal = (last - healed) / 1e9
            per_sale = moved / acked if acked else math.nan
            tag = f"{size} split sales"
            out.converged = out.converged and done
            out.add(f"converge after heal, {tag}", after_heal, "s", "lower")
            if reconnect is not None:
                after_reconnect = max(0.0, (last - reconnect) / 1e9)
                out.add(f"converge after reconnect, {tag}", after_reconnect, "s", "lower")
            out.add(f"heal bytes per split sale, {tag}", per_sale, "B", "lower")
            rows.append(
                {
                    "split_sales": size,
                    "acked": acked,
                    "converged": done,
                    "converge_after_heal_s": after_heal,
                    "reconnect_after_heal_s": None
                    if reconnect is None
                    else (reconnect - healed) / 1e9,
                    "bytes": moved,
                }
            )
            ctx.ui.log(
                f"  {system} split of {size} sales: converged {after_heal:.2f} s after the heal, "
                f"{per_sale:.0f} B per split sale"
            )
        out.details["splits"] = rows
        await final_check(ctx, cluster, collected, out)


# -- the cloud outage ------------------------------------------------------------------------------


async def outage(ctx: Context, system: str, out: Outcome) -> None:
    if system not in CLOUD_SYSTEMS:
        raise BenchError(f"{system} has no cloud uplink: the outage scenario does not apply")
    s = ctx.settings
    names = lane_names(max(2, s.lanes))
    rng = seeded(s.seed)
    async with Cluster(system, ctx.work, s.faults, cloud=True) as cluster:
        await cluster.start(names)
        warm = await measure(cluster, names, s.rate, WARMUP_S, rng, "warm-up", s.settle_s, ctx.ui)
        done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, warm.sales_list, ["cloud"]), s.settle_s
        )
        if not done:
            raise BenchError(f"{system}: the cloud never received the warm-up sales")
        cloud_links = [link.id for link in cluster.links if link.target == "cloud"]
        await cluster.partition(cloud_links)
        day = max(1, round(s.rate * s.duration_s))
        ctx.ui.step(f"{system} WAN down, a day of {day} sales", day, day * (len(names) - 1))
        sales = await ring(cluster, names, s.rate, day, rng, lambda _: ctx.ui.acked())
        lanes_done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, sales, names), s.settle_s, ctx.ui
        )
        cluster.tracker.take_arrivals()
        bytes_before = await cluster.bytes_forwarded("cloud")
        healed = await cluster.heal(cloud_links)
        ctx.ui.step(f"{system} WAN back: cloud catching up", 0, day)
        done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, sales, ["cloud"]), 4 * s.settle_s, ctx.ui
        )
        await asyncio.sleep(ACK_SETTLE_S)
        cluster.tracker.poll()
        moved = await cluster.bytes_forwarded("cloud") - bytes_before
        _, first = join_arrivals(sales, cluster.tracker.take_arrivals(), ["cloud"], {})
        times = [t for per in first.values() for t in per.values()]
        exact = await cloud_exact(cluster, [*warm.sales_list, *sales])
        acked = sum(1 for x in sales if x.acked)
        out.converged = lanes_done and done and exact
        if times:
            out.add("cloud exact after the WAN returns", (max(times) - healed) / 1e9, "s", "lower")
            out.add(
                "cloud catch-up, first to last outage sale",
                (max(times) - min(times)) / 1e9,
                "s",
                "lower",
            )
        out.add("uplink bytes per outage sale", moved / acked if acked else math.nan, "B", "lower")
        out.details["outage"] = {
            "day_sales": day,
            "acked": acked,
            "cloud_exact": exact,
            "bytes": moved,
        }
        ctx.ui.log(
            f"  {system}: cloud exact {(max(times, default=healed) - healed) / 1e9:.2f} s after "
            f"the WAN came back ({day} sales, {moved / max(acked, 1):.0f} B per sale)"
        )
        await final_check(ctx, cluster, [*warm.sales_list, *sales], out)


async def cloud_exact(cluster: Cluster, sales: Sequence[ScheduledSale]) -> bool:
    """The cloud's head-office tables count every acknowledged sale and its replica's digest
    equals the lanes'."""
    api = cluster.cloud_api
    if api is None:
        return False
    from lanesync.bench.cluster import STORE_ID

    counted = (await api.request("GET", f"/v1/stores/{STORE_ID}/sales")).body
    cloud_digest = (await api.request("GET", f"/v1/stores/{STORE_ID}/digest")).body["digest"]
    lanes = set((await cluster.digests()).values())
    return int(counted["count"]) == sum(1 for s in sales if s.acked) and lanes == {cloud_digest}


# -- a lane joins ----------------------------------------------------------------------------------


async def join(ctx: Context, system: str, out: Outcome) -> None:
    s = ctx.settings
    names = lane_names(max(2, s.lanes))
    rng = seeded(s.seed)
    day = max(1, round(s.rate * s.duration_s))
    async with Cluster(system, ctx.work, s.faults) as cluster:
        await cluster.start(names)
        ctx.ui.step(f"{system} ringing a day of {day} sales", day, day * (len(names) - 1))
        sales = await fill(cluster, names, day, rng, lambda _: ctx.ui.acked())
        done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, sales, names), 4 * s.settle_s, ctx.ui
        )
        if not done:
            raise BenchError(f"{system}: the store did not converge on its day of sales")
        cluster.tracker.take_arrivals()
        bytes_before = await cluster.bytes_forwarded()
        newcomer = lane_names(len(names) + 1)[-1]
        member = await cluster.add_member(newcomer)
        spawned = member.started_ns[-1]
        await cluster.wait_ready(member)
        api_up = time.time_ns()
        ctx.ui.step(f"{system} {newcomer} joining", 0, day)
        done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, sales, [newcomer]), 4 * s.settle_s, ctx.ui
        )
        cluster.tracker.poll()
        _, first = join_arrivals(sales, cluster.tracker.take_arrivals(), [newcomer], {})
        full = max((t for per in first.values() for t in per.values()), default=api_up)
        ready = max(full, api_up)
        first_sale = await ring(cluster, [newcomer], 1.0, 1, rng)
        await asyncio.sleep(ACK_SETTLE_S)
        moved = await cluster.bytes_forwarded() - bytes_before
        acked = sum(1 for x in sales if x.acked)
        out.converged = done and first_sale[0].acked
        out.add("join: API up after start", (api_up - spawned) / 1e9, "s", "lower")
        out.add(
            "join: sale-ready (holds the full day) after start",
            (ready - spawned) / 1e9,
            "s",
            "lower",
        )
        out.add("join: bytes per day sale", moved / acked if acked else math.nan, "B", "lower")
        out.details["join"] = {"day_sales": day, "acked": acked, "bytes": moved}
        ctx.ui.log(
            f"  {system}: {newcomer} sale-ready {(ready - spawned) / 1e9:.2f} s after start "
            f"(a day of {acked} sales, {moved / max(acked, 1):.0f} B per sale)"
        )
        await final_check(ctx, cluster, [*sales, *first_sale], out)


# -- churn -----------------------------------------------------------------------------------------


async def churn(ctx: Context, system: str, out: Outcome) -> None:
    s = ctx.settings
    names = lane_names(max(2, s.lanes))
    rng = seeded(s.seed)
    chaos = seeded(s.seed + 1)
    count = max(1, round(s.rate * s.duration_s))
    restarts: list[dict[str, Any]] = []
    async with Cluster(system, ctx.work, s.faults) as cluster:
        await cluster.start(names)
        warm = await measure(cluster, names, s.rate, WARMUP_S, rng, "warm-up", s.settle_s, ctx.ui)
        cluster.tracker.take_arrivals()
        planned = max(1, round(s.duration_s / CHURN_RESTART_EVERY_S))

        async def restarter() -> None:
            for i in range(planned):
                due = (i + chaos.uniform(0.2, 0.8)) * s.duration_s / planned
                await asyncio.sleep(max(0.0, started + due - time.monotonic()))
                victim = chaos.choice(names)
                killed = time.time_ns()
                back = await cluster.restart(victim)
                restarts.append(
                    {
                        "lane": victim,
                        "killed_ns": killed,
                        "started_ns": back,
                        "up_ns": time.time_ns(),
                    }
                )
                ctx.ui.log(f"  {system}: restarted {victim}")

        ctx.ui.step(f"{system} churn", count, count * (len(names) - 1))
        started = time.monotonic()
        chaos_task = asyncio.create_task(restarter())
        try:
            sales = await ring(cluster, names, s.rate, count, rng, lambda _: ctx.ui.acked())
            await chaos_task
        finally:
            chaos_task.cancel()
        receivers = [m.name for m in cluster.live()]
        missing: list[tuple[str, str, int]] = []
        done, _ = await wait_delivered(
            cluster, pending_pairs(cluster, sales, receivers), s.settle_s, ctx.ui, missing
        )
        out.details["undelivered_after_load"] = missing
        cluster.tracker.poll()
        arrivals = cluster.tracker.take_arrivals()
        last = max((a.at_ns for a in arrivals if a.receiver in receivers), default=0)
        end = max(x.scheduled_ns for x in sales)
        catch_up = []
        for event in restarts:
            lane, back = event["lane"], event["started_ns"]
            lacked = {
                (x.sender, x.seq)
                for x in sales
                if x.acked and x.done_ns < event["killed_ns"] and x.sender != lane
            }
            caught = event["up_ns"]
            for a in arrivals:
                if (
                    a.receiver == lane
                    and a.at_ns >= back
                    and a.at_ns > caught
                    and any((a.sender, q) in lacked for q in range(a.first, a.last + 1))
                ):
                    caught = a.at_ns
            catch_up.append(caught - back)
            event["caught_up_s"] = (caught - back) / 1e9
        out.converged = done
        out.add(
            "sales refused while a lane was down",
            sum(1 for x in sales if not x.acked),
            "count",
            "lower",
        )
        out.add("convergence lag after the last sale", max(0.0, (last - end) / 1e9), "s", "lower")
        if catch_up:
            out.add("restart to caught up, max", max(catch_up) / 1e9, "s", "lower")
        out.details["restarts"] = restarts
        ctx.ui.log(f"  {system}: {len(restarts)} restarts during {count} sales")
        await final_check(ctx, cluster, [*warm.sales_list, *sales], out)
        out.add("lost sales", out.lost_sales, "count", "lower")


RUNNERS: dict[str, Callable[[Context, str, Outcome], Awaitable[None]]] = {
    "steady": steady,
    "split-heal": split_heal,
    "outage": outage,
    "join": join,
    "churn": churn,
    "scale": scale,
}


def applies(scenario: str, system: str) -> bool:
    return scenario != "outage" or system in CLOUD_SYSTEMS


__all__ = ["PYCRDT", "RUNNERS", "SCENARIOS", "Context", "Outcome", "Settings", "applies"]
