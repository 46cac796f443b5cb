"""One measured step of ``lanesync bench mesh`` (every lane sells at its share of a store-wide
rate for a while; the lanes' logs joined into latency, bytes and CPU figures) and the ladder of
rates that finds the highest one kept up.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.stats import percentile
from lanesync.bench.studies.common import progress
from lanesync.bench.studies.mesh_fleet import Fleet

KEEP_UP_S = 1.0  # the issue: converged within 1 s of the last sale, and p99 under 1 s
SETTLE_TIMEOUT_S = 30.0  # a step that has not converged by then is abandoned
ACK_SETTLE_S = 0.4  # after convergence, let the delayed acks (node.ACK_DELAY_MS) go out


@dataclass
class Step:
    system: str
    label: str
    rate: float
    lanes: int
    duration_s: float
    sales: int = 0
    failed_writes: int = 0
    generator_late_ms: float = 0.0
    pairs_expected: int = 0
    pairs_received: int = 0
    converged_after_s: float | None = None  # last arrival - scheduled last sale
    settled: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p90 p99 max
    durable_latency_ms: dict[str, float] = field(default_factory=dict)
    ack_ms: dict[str, float] = field(default_factory=dict)  # issue -> acknowledged
    end_to_end_ms: dict[str, float] = field(default_factory=dict)  # issue -> visible elsewhere
    wire_bytes_per_sale_receiver: float = math.nan
    payload_bytes_per_sale_receiver: float = math.nan
    wire_bytes_total: int = 0
    cpu_s: float = 0.0
    cpu_ms_per_sale: float = math.nan
    cpu_cores_busy: float = math.nan
    window_s: float = 0.0
    # lanesync: share of each lane's wall time its event loop spent inside SQLite commits and
    # compactions (fsync included), averaged over lanes; and commits per lane per second.
    storage_busy: float = math.nan
    storage_calls_per_lane_s: float = math.nan
    # Share of wall time the processes' event loops were runnable but waiting for a core
    # (/proc/self/schedstat), averaged over processes: the machine was oversubscribed.
    runqueue_wait: float = math.nan
    # CPU the rest of the machine used meanwhile (other people's work), in cores.
    other_cores: float = math.nan
    keeps_up: bool = False
    why_not: str = ""


def summary(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)
    ms = [s / 1e6 for s in ordered]
    return {
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": ms[-1],
        "n": len(ms),
    }


def analyse(
    step: Step,
    data: dict[str, dict[str, Any]],
    end_ns: int,
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
) -> None:
    """Join the lanes' logs into the step's figures (in place)."""
    ack: dict[str, dict[int, int]] = {}  # sender -> seq -> acknowledged (durable on lanesync)
    issue: dict[str, dict[int, int]] = {}
    acked: dict[str, dict[int, int]] = {}
    for lane, logs in data.items():
        issue[lane] = {seq: issued for seq, issued, _ in logs["sends"]}
        acked[lane] = {seq: done for seq, _, done in logs["sends"]}
        commits: dict[int, int] = {}
        for first, last, at in logs["commits"]:
            for seq in range(first, last + 1):
                commits[seq] = at
        ack[lane] = {seq: commits.get(seq, acked[lane][seq]) for seq in issue[lane]}
    receivers = len(data) - 1
    step.sales = sum(len(s) for s in issue.values())
    step.pairs_expected = step.sales * receivers

    def join(kind: str) -> tuple[list[int], list[int], int]:
        latencies: list[int] = []
        end_to_end: list[int] = []
        last = 0
        for receiver, logs in data.items():
            for sender, first, final, at in logs.get(kind) or []:
                sent = ack.get(sender)
                if sent is None or sender == receiver:
                    continue
                for seq in range(first, final + 1):
                    t = sent.get(seq)
                    if t is not None:
                        latencies.append(at - t)
                        end_to_end.append(at - issue[sender][seq])
                        last = max(last, at)
        return latencies, end_to_end, last

    latencies, end_to_end, last = join("accepted")
    step.pairs_received = len(latencies)
    step.latency_ms = summary(latencies)
    step.end_to_end_ms = summary(end_to_end)
    step.converged_after_s = (last - end_ns) / 1e9 if latencies else None
    if any("durable" in logs for logs in data.values()):
        step.durable_latency_ms = summary(join("durable")[0])
    step.ack_ms = summary([acked[s][q] - issue[s][q] for s in issue for q in issue[s]])
    wire = sum(after[p]["wire_out"] - before[p]["wire_out"] for p in after)
    payload = sum(after[p]["payload_out"] - before[p]["payload_out"] for p in after)
    step.wire_bytes_total = wire
    if step.pairs_expected:
        step.wire_bytes_per_sale_receiver = wire / step.pairs_expected
        step.payload_bytes_per_sale_receiver = payload / step.pairs_expected
    step.cpu_s = sum(after[p]["cpu_s"] - before[p]["cpu_s"] for p in after)
    if step.sales:
        step.cpu_ms_per_sale = step.cpu_s / step.sales * 1e3
    if step.window_s:
        step.cpu_cores_busy = step.cpu_s / step.window_s
        waited = sum(after[p]["runq_s"] - before[p]["runq_s"] for p in after)
        step.runqueue_wait = waited / (len(after) * step.window_s)
        lanes = [p for p in after if "storage_s" in after[p]]
        if lanes:
            spent = sum(
                after[p]["storage_s"].get(k, 0.0) - before[p]["storage_s"].get(k, 0.0)
                for p in lanes
                for k in after[p]["storage_s"]
            )
            calls = sum(
                after[p]["storage_calls"].get(k, 0) - before[p]["storage_calls"].get(k, 0)
                for p in lanes
                for k in after[p]["storage_calls"]
            )
            step.storage_busy = spent / (len(lanes) * step.window_s)
            step.storage_calls_per_lane_s = calls / (len(lanes) * step.window_s)
    reasons = []
    if step.failed_writes:
        reasons.append(f"{step.failed_writes} writes failed")
    if step.pairs_received < step.pairs_expected:
        reasons.append(f"{step.pairs_expected - step.pairs_received} deliveries missing")
    elif step.converged_after_s is not None and step.converged_after_s > KEEP_UP_S:
        reasons.append(f"converged {step.converged_after_s:.2f} s after the last sale")
    if step.latency_ms and step.latency_ms["p99"] >= KEEP_UP_S * 1e3:
        reasons.append(f"p99 {step.latency_ms['p99']:.0f} ms")
    step.keeps_up = not reasons and step.sales > 0
    step.why_not = "; ".join(reasons)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat, all cores)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


async def measure(fleet: Fleet, rate: float, duration: float, label: str, work: Path) -> Step:
    step = Step(fleet.system, label, rate, len(fleet.lanes), duration)
    before = await fleet.statuses()
    busy0, own0 = machine_busy_s(), time.process_time()
    t0 = time.monotonic()
    _, end_ns, replies = await fleet.load(rate, duration)
    step.failed_writes = sum(r["failed"] for r in replies)
    step.generator_late_ms = max(r["late_s"] for r in replies) * 1e3
    step.settled = await fleet.wait_converged(SETTLE_TIMEOUT_S)
    await asyncio.sleep(ACK_SETTLE_S)
    after = await fleet.statuses()
    step.window_s = time.monotonic() - t0
    busy, own = machine_busy_s() - busy0, time.process_time() - own0
    analyse(step, await fleet.collect(work), end_ns, before, after)
    step.other_cores = max(0.0, busy - own - step.cpu_s) / step.window_s
    if not step.settled:
        step.keeps_up = False
        step.why_not = step.why_not or "did not converge"
        progress(f"  {fleet.system}: not converged after {SETTLE_TIMEOUT_S:.0f} s; waiting more")
        if not await fleet.wait_converged(4 * SETTLE_TIMEOUT_S):
            raise BenchError(f"{fleet.system} never converged after the {rate:.0f}/s step")
        await fleet.collect(work)  # late arrivals belong to no later step
    lat = step.latency_ms
    sqlite = "" if math.isnan(step.storage_busy) else f"loops in SQLite {step.storage_busy:.0%}, "
    progress(
        f"  {fleet.system} {label} {rate:.0f}/s: {step.sales} sales, "
        f"p50 {lat.get('p50', math.nan):.2f} ms p99 {lat.get('p99', math.nan):.2f} ms, "
        f"converged +{step.converged_after_s or math.nan:.3f} s, "
        f"{step.wire_bytes_per_sale_receiver:.0f} B/sale/receiver, "
        f"CPU {step.cpu_cores_busy:.2f} cores, {sqlite}"
        f"waiting for a core {step.runqueue_wait:.0%}, other work {step.other_cores:.2f} cores -> "
        f"{'keeps up' if step.keeps_up else step.why_not}"
    )
    return step


@dataclass
class Ladder:
    steps: list[Step] = field(default_factory=list)
    highest_kept: float = 0.0
    first_failed: float | None = None


async def climb(
    fleets: dict[str, Fleet], rates: Sequence[float], duration: float, root: Path
) -> dict[str, Ladder]:
    """Every system up the same ladder of rates, their steps alternating, so both meet the same
    machine (other people's work comes and goes); a system stops at the first rate it does not
    keep up twice in a row (the retry absorbs one hiccup). The first rate is the latency step."""
    ladders = {name: Ladder() for name in fleets}
    climbing = list(fleets)
    for i, rate in enumerate(rates):
        for name in list(climbing):
            fleet, ladder = fleets[name], ladders[name]
            label = "latency" if i == 0 else "ladder"
            step = await measure(fleet, rate, duration, label, root / name)
            ladder.steps.append(step)
            if not step.keeps_up:
                step = await measure(fleet, rate, duration, f"{label}-retry", root / name)
                ladder.steps.append(step)
            if step.keeps_up:
                ladder.highest_kept = rate
            else:
                ladder.first_failed = rate
                climbing.remove(name)
        if not climbing:
            break
    return ladders
