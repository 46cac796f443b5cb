"""Scenarios where the store's members change: a new lane joins a store holding a day of sales
(join), and lanes are killed and restarted under load (churn)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from lanesync.bench.cluster import BenchError, Cluster
from lanesync.bench.load import fill, ring, seeded
from lanesync.bench.measure import (
    ACK_SETTLE_S,
    join_arrivals,
    measure,
    pending_pairs,
    wait_delivered,
)
from lanesync.bench.outcome import (
    WARMUP_S,
    Context,
    Outcome,
    final_check,
    lane_names,
)

CHURN_RESTART_EVERY_S = 2.0


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
