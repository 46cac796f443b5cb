"""Turning event logs, sale results and proxy counters into the figures of one load step.

Propagation latency, per (sale, receiving member): the moment the sale was accepted by the
receiver (``R`` event: verified, chained, counted and committed there) minus the moment the
selling member acknowledged it (``A`` event: durable there, just before its HTTP 201). Both are
``time.time_ns()`` in processes on one machine. The generator's own clock gives the HTTP ack
latency (request sent -> 201 read) and "visible everywhere" (scheduled -> last receiver).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lanesync.bench.cluster import Cluster
from lanesync.bench.events import Arrival
from lanesync.bench.load import ScheduledSale, ring
from lanesync.bench.stats import Latency
from lanesync.bench.ui import Ui

KEEP_UP_S = 1.0  # a store keeps up when a sale is on every lane within 1 s of being rung
POLL_S = 0.05
ACK_SETTLE_S = 0.3  # let delayed acknowledgements go out before reading byte counters


@dataclass
class Step:
    label: str
    rate: float
    lanes: int
    sales: int = 0
    acked: int = 0
    failed: int = 0
    expected_pairs: int = 0
    delivered_pairs: int = 0
    converged: bool = False
    converged_after_s: float = math.nan  # last arrival - last scheduled sale
    latency: Latency = field(default_factory=lambda: Latency.of_ns([]))
    ack_http: Latency = field(default_factory=lambda: Latency.of_ns([]))
    visible_everywhere: Latency = field(default_factory=lambda: Latency.of_ns([]))
    bytes: int = 0
    bytes_per_sale_receiver: float = math.nan
    cpu_s: float = 0.0
    cpu_ms_per_sale: float = math.nan
    kept_up: bool = False
    why_not: str = ""
    errors: list[str] = field(default_factory=list)  # the first few distinct refusals
    samples_ms: list[float] = field(default_factory=list, repr=False)
    sales_list: list[ScheduledSale] = field(default_factory=list, repr=False)


def pending_pairs(
    cluster: Cluster, sales: Sequence[ScheduledSale], receivers: Sequence[str]
) -> list[tuple[str, str, int]]:
    tracker = cluster.tracker
    return [
        (r, s.sender, s.seq)
        for s in sales
        if s.acked
        for r in receivers
        if tracker.sender_of.get(r) != s.sender
    ]


async def wait_delivered(
    cluster: Cluster,
    pending: list[tuple[str, str, int]],
    timeout_s: float,
    ui: Ui | None = None,
    leftover: list[tuple[str, str, int]] | None = None,
) -> tuple[bool, int]:
    """Until every (receiver, sender, seq) is held, or the timeout. Returns (all, delivered);
    ``leftover`` gets (a sample of) what was still missing."""
    total = len(pending)
    deadline = time.monotonic() + timeout_s
    tracker = cluster.tracker
    while True:
        tracker.poll()
        pending = [p for p in pending if not tracker.holds(*p)]
        if ui is not None:
            ui.delivered(total - len(pending), total)
        if not pending:
            return True, total
        if time.monotonic() > deadline:
            if leftover is not None:
                leftover.extend(pending[:20])
            return False, total - len(pending)
        await asyncio.sleep(POLL_S)


def join_arrivals(
    sales: Sequence[ScheduledSale],
    arrivals: Sequence[Arrival],
    receivers: Sequence[str],
    acks: dict[str, dict[int, int]],
) -> tuple[list[int], dict[tuple[str, int], dict[str, int]]]:
    """Latencies (ns) per (sale, receiver) and, per sale, when each receiver got it."""
    wanted = {(s.sender, s.seq): s for s in sales if s.acked}
    allowed = set(receivers)
    first: dict[tuple[str, int], dict[str, int]] = {}
    for a in arrivals:
        if a.receiver not in allowed:
            continue
        for seq in range(a.first, a.last + 1):
            key = (a.sender, seq)
            if key not in wanted:
                continue
            per = first.setdefault(key, {})
            if a.receiver not in per or a.at_ns < per[a.receiver]:
                per[a.receiver] = a.at_ns
    latencies: list[int] = []
    for key, per in first.items():
        sale = wanted[key]
        acked_at = acks.get(sale.sender, {}).get(sale.seq, sale.done_ns)
        latencies.extend(at - acked_at for at in per.values())
    return latencies, first


async def measure(
    cluster: Cluster,
    names: Sequence[str],
    rate: float,
    duration_s: float,
    rng: random.Random,
    label: str,
    settle_s: float,
    ui: Ui | None = None,
) -> Step:
    """Ring ``rate`` sales/s for ``duration_s`` over ``names``; wait until every member holds
    them (or ``settle_s`` after the last sale); compute the step's figures."""
    count = max(1, round(rate * duration_s))
    receivers = [m.name for m in cluster.live()]
    step = Step(label, rate, len(receivers), sales=count)
    cluster.tracker.poll()
    cluster.tracker.take_arrivals()
    bytes_before = await cluster.bytes_forwarded()
    cpu_before = cluster.cpu()
    if ui is not None:
        ui.step(f"{cluster.system} {label} {rate:g}/s", count, count * (len(receivers) - 1))
    sales = await ring(cluster, names, rate, count, rng, (lambda _: ui.acked()) if ui else None)
    step.sales_list = sales
    pending = pending_pairs(cluster, sales, receivers)
    step.expected_pairs = len(pending)
    step.converged, step.delivered_pairs = await wait_delivered(cluster, pending, settle_s, ui)
    await asyncio.sleep(ACK_SETTLE_S)
    cluster.tracker.poll()
    cpu_after = cluster.cpu()
    step.bytes = await cluster.bytes_forwarded() - bytes_before
    step.cpu_s = sum(cpu_after[p] - cpu_before[p] for p in cpu_after if p in cpu_before)
    analyse(step, sales, cluster, receivers)
    return step


def analyse(
    step: Step, sales: Sequence[ScheduledSale], cluster: Cluster, receivers: Sequence[str]
) -> None:
    tracker = cluster.tracker
    step.acked = sum(1 for s in sales if s.acked)
    step.failed = len(sales) - step.acked
    for sale in sales:
        if sale.error is not None and sale.error not in step.errors and len(step.errors) < 5:
            step.errors.append(sale.error)
    latencies, first = join_arrivals(sales, tracker.take_arrivals(), receivers, tracker.acks)
    step.latency = Latency.of_ns(latencies)
    step.samples_ms = [x / 1e6 for x in latencies]
    step.ack_http = Latency.of_ns([s.done_ns - s.issued_ns for s in sales if s.acked])
    everywhere = []
    last_arrival = 0
    for s in sales:
        per = first.get((s.sender, s.seq))
        if not s.acked or per is None:
            continue
        want = sum(1 for r in receivers if tracker.sender_of.get(r) != s.sender)
        if len(per) >= want:
            everywhere.append(max(per.values()) - s.scheduled_ns)
            last_arrival = max(last_arrival, max(per.values()))
    step.visible_everywhere = Latency.of_ns(everywhere)
    if last_arrival and sales:
        step.converged_after_s = (last_arrival - max(s.scheduled_ns for s in sales)) / 1e9
    if step.expected_pairs:
        step.bytes_per_sale_receiver = step.bytes / step.expected_pairs
    if step.acked:
        step.cpu_ms_per_sale = step.cpu_s / step.acked * 1e3
    reasons = []
    if step.failed:
        reasons.append(f"{step.failed} sales refused")
    if not step.converged:
        reasons.append(f"{step.expected_pairs - step.delivered_pairs} deliveries missing")
    elif step.visible_everywhere.p99 > KEEP_UP_S * 1e3:
        reasons.append(f"p99 rung -> everywhere {step.visible_everywhere.p99:.0f} ms")
    step.kept_up = not reasons
    step.why_not = "; ".join(reasons)
