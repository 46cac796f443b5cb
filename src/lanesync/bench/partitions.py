"""Scenarios that cut links: the store split in two halves that heal (split-heal), and the
store cut off from the cloud for a day of sales (outage)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence

from lanesync.bench.cluster import LANESYNC, UNSIGNED, BenchError, Cluster
from lanesync.bench.load import ScheduledSale, ring, seeded
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
    Settings,
    final_check,
    lane_names,
)

SPLIT_FRACTIONS = (0.25, 0.5, 1.0)  # split sizes: these fractions of rate x duration sales
CLOUD_SYSTEMS = (LANESYNC, UNSIGNED)  # the baselines have no cloud uplink


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
