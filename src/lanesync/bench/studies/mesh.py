"""``lanesync bench mesh``: convergence of lanesync's peer mesh against pycrdt-websocket, in one
run (benchmarks/README.md says what every figure means).

Every lane is its own process (``mesh_driver``) on 127.0.0.1. A lanesync lane runs the real
daemon (``lanesync run DIR --listen 127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``: durable
SQLite commit, record verification, frame encryption) and writes its sales through the daemon's
group committer; the lanes form a full mesh (each dials the lanes after it). The baseline is a
pycrdt-websocket server (a star relay, no signing, no durability) with one pycrdt ``Provider``
client process per lane writing sales of the same size into a Map.

Each process logs, on one shared clock (``time.time_ns``), when each of its sales was
acknowledged and when each sale of another lane became visible to it; the benchmark joins the
logs: propagation latency = visible on the receiving lane - acknowledged on the selling lane.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC
from lanesync.bench.outcome import Better, Outcome
from lanesync.bench.studies.common import StudyRun, progress
from lanesync.bench.studies.mesh_fleet import kill_leftovers
from lanesync.bench.studies.mesh_steps import Ladder, Step, machine_busy_s
from lanesync.bench.studies.mesh_systems import (
    SPLIT_SALES,
    TARGET_RATE,
    MeshOptions,
    SystemResult,
    run_all,
)

NAME = "mesh"
PYCRDT = "pycrdt-websocket"
IDLE_LOAD = 1.0  # 1-minute load average under which the machine counts as quiet
IDLE_POLL_S = 10.0
IDLE_BUSY_CORES = 0.2
BUSY_OTHER_CORES = 0.25  # other people's work above this during a step taints its figures

# The targets (2-core machine, 8 lanes as 8 processes, everything on).
TARGET_LATENCY_RATIO = 0.7
TARGET_RATE_RATIO = 2.0
TARGET_WIRE_BYTES = 350
TARGET_CATCH_UP_S = 3.0


@dataclass
class Figure:
    name: str
    unit: str
    lanesync: float | None
    pycrdt: float | None
    target: str = ""
    result: str = ""  # PASS / FAIL / "" (context row)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.lanesync is None or not self.pycrdt or math.isnan(self.pycrdt):
            return None
        return self.lanesync / self.pycrdt


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def figures(ls: SystemResult, py: SystemResult | None, args: MeshOptions) -> list[Figure]:
    def pick(result: SystemResult | None, get: Any) -> float | None:
        return None if result is None else get(result)

    def lat(r: SystemResult, key: str) -> float:
        return float(r.latency.latency_ms.get(key, math.nan))

    full = args.lanes == 8 and not args.quick
    rate = args.rate
    rows: list[Figure] = []
    for key in ("p50", "p99"):
        fig = Figure(
            f"Propagation {key} at {rate:.0f} sales/s",
            "ms",
            lat(ls, key),
            pick(py, lambda r, k=key: lat(r, k)),
            target=f"<= {TARGET_LATENCY_RATIO}x pycrdt-websocket",
            note="acknowledged on the selling lane -> counted in the receiving lane's views",
        )
        ratio = fig.ratio
        fig.result = verdict(None if ratio is None else ratio <= TARGET_LATENCY_RATIO)
        rows.append(fig)
    rows.append(
        Figure(
            "  same, until durable on the receiver p50 / p99",
            "ms",
            ls.latency.durable_latency_ms.get("p50"),
            None,
            note=f"p99 {ls.latency.durable_latency_ms.get('p99', math.nan):.2f} ms "
            "(pycrdt-websocket has no durability)",
        )
    )
    rows.append(
        Figure(
            "  ack latency (sale issued -> durable) p50 / p99",
            "ms",
            ls.latency.ack_ms.get("p50"),
            None,
            note=f"p99 {ls.latency.ack_ms.get('p99', math.nan):.2f} ms, group commit, fsync",
        )
    )
    kept = Figure(
        "Highest rate kept up (store-wide)",
        "sales/s",
        ls.ladder.highest_kept,
        pick(py, lambda r: r.ladder.highest_kept),
        target=f">= {TARGET_RATE} and >= {TARGET_RATE_RATIO:.0f}x pycrdt-websocket",
        note=f"first rate not kept up: lanesync {ls.ladder.first_failed}, pycrdt-websocket "
        f"{py.ladder.first_failed if py else None}",
    )
    ratio = kept.ratio
    kept.result = verdict(
        None
        if ratio is None
        else ls.ladder.highest_kept >= TARGET_RATE and ratio >= TARGET_RATE_RATIO
    )
    rows.append(kept)
    wire = Figure(
        f"Wire bytes per sale and receiving lane at {rate:.0f}/s",
        "B",
        ls.latency.wire_bytes_per_sale_receiver,
        pick(py, lambda r: r.latency.wire_bytes_per_sale_receiver),
        target=f"<= {TARGET_WIRE_BYTES} B",
        note="every byte written to the sockets (websocket frames with headers, masks, "
        "signatures, encryption, acks, pings) / (sales x receiving lanes)",
    )
    wire.result = verdict(ls.latency.wire_bytes_per_sale_receiver <= TARGET_WIRE_BYTES)
    rows.append(wire)
    rows.append(
        Figure(
            "  frame payloads only",
            "B",
            ls.latency.payload_bytes_per_sale_receiver,
            pick(py, lambda r: r.latency.payload_bytes_per_sale_receiver),
        )
    )
    top = _step_at(ls.ladder, ls.ladder.highest_kept)
    top_py = _step_at(py.ladder, py.ladder.highest_kept) if py else None
    rows.append(
        Figure(
            "  at each system's highest kept-up rate",
            "B",
            top.wire_bytes_per_sale_receiver if top else None,
            top_py.wire_bytes_per_sale_receiver if top_py else None,
        )
    )
    split_full = args.split_sales >= SPLIT_SALES
    catch = Figure(
        f"Catch-up after a split of {args.split_sales} sales",
        "s",
        ls.catch_up.seconds_from_connect,
        pick(py, lambda r: r.catch_up.seconds_from_connect),
        target=f"< {TARGET_CATCH_UP_S:.0f} s",
        note="from the reconnect to the last sale counted on the lane that was away",
    )
    catch.result = (
        verdict(ls.catch_up.seconds_from_connect < TARGET_CATCH_UP_S)
        if split_full
        else "n/a (< 10k)"
    )
    rows.append(catch)
    rows.append(
        Figure(
            "  from the heal (includes reconnect backoff)",
            "s",
            ls.catch_up.seconds_from_heal,
            None,
            note=ls.catch_up.note,
        )
    )
    rows.append(
        Figure(
            "  catch-up bytes per sale",
            "B",
            ls.catch_up.bytes_per_sale,
            pick(py, lambda r: r.catch_up.bytes_per_sale),
            note="both directions of the one link (lanesync: TCP payload through the fault "
            "proxy; pycrdt-websocket: server and the returning client)",
        )
    )
    rows.append(
        Figure(
            f"CPU per sale at {rate:.0f}/s, all processes",
            "ms",
            ls.latency.cpu_ms_per_sale,
            pick(py, lambda r: r.latency.cpu_ms_per_sale),
        )
    )
    rows.append(
        Figure(
            f"  lanesync event loops inside SQLite at {rate:.0f}/s",
            "%",
            ls.latency.storage_busy * 100,
            None,
            note=f"{ls.latency.storage_calls_per_lane_s:.0f} commits per lane and second; "
            "commit (fsync) and compaction run on the event loop",
        )
    )
    if not full:
        for row in rows:
            if row.result in ("PASS", "FAIL"):
                row.result += " (not the 8-lane target setup)"
    return rows


def _step_at(ladder: Ladder, rate: float) -> Step | None:
    kept = [s for s in ladder.steps if s.rate == rate and s.keeps_up]
    return kept[-1] if kept else None


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.0f} %"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:,.0f} {unit}"


def render(rows: Sequence[Figure]) -> str:
    header = ("Figure", "lanesync", "pycrdt-websocket", "ratio", "target", "result")
    table = [header]
    for row in rows:
        ratio = row.ratio
        table.append(
            (
                row.name,
                fmt(row.lanesync, row.unit),
                fmt(row.pycrdt, row.unit),
                "-" if ratio is None else f"{ratio:.2f}x",
                row.target,
                row.result,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in table
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ladder_table(results: Sequence[SystemResult]) -> str:
    lines = [
        "| system | step | sales/s | sales | p50 ms | p99 ms | converged +s | B/sale/recv "
        "| CPU cores | loops in SQLite | waiting for a core | other work, cores | kept up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for s in result.ladder.steps:
            sqlite = "-" if math.isnan(s.storage_busy) else f"{s.storage_busy:.0%}"
            lines.append(
                f"| {s.system} | {s.label} | {s.rate:.0f} | {s.sales} | "
                f"{s.latency_ms.get('p50', math.nan):.2f} | "
                f"{s.latency_ms.get('p99', math.nan):.2f} | "
                f"{s.converged_after_s if s.converged_after_s is not None else math.nan:.3f} | "
                f"{s.wire_bytes_per_sale_receiver:.0f} | {s.cpu_cores_busy:.2f} | {sqlite} | "
                f"{s.runqueue_wait:.0%} | {s.other_cores:.2f} | "
                f"{'yes' if s.keeps_up else 'no: ' + s.why_not} |"
            )
    return "\n".join(lines)


def load_average() -> float:
    return os.getloadavg()[0]


async def others_busy(seconds: float = 5.0) -> float:
    """Cores the machine kept busy over ``seconds`` while this process slept."""
    before = machine_busy_s()
    await asyncio.sleep(seconds)
    return (machine_busy_s() - before) / seconds


async def wait_for_quiet(limit_s: float) -> dict[str, Any]:
    """Wait until the 1-minute load average is under IDLE_LOAD and the machine is not busy
    right now either (the load average lags by a minute), at most ``limit_s``."""
    started = time.monotonic()
    first = load_average()
    busy = await others_busy(1.0)
    while time.monotonic() - started < limit_s:
        if load_average() < IDLE_LOAD and busy < IDLE_BUSY_CORES:
            break
        progress(
            f"load average {load_average():.2f}, {busy:.2f} cores busy: waiting for a quiet "
            f"machine (load < {IDLE_LOAD}, < {IDLE_BUSY_CORES} cores busy)"
        )
        busy = await others_busy(IDLE_POLL_S)
    return {
        "loadavg_1m_first_seen": first,
        "loadavg_1m_at_start": load_average(),
        "cores_busy_at_start": busy,
        "waited_s": round(time.monotonic() - started, 1),
        "quiet": load_average() < IDLE_LOAD and busy < IDLE_BUSY_CORES,
    }


def outcomes(rows: Sequence[Figure]) -> list[Outcome]:
    """lanesync's and pycrdt-websocket's value of every figure, as the scenarios report them
    (so results.json holds each ratio and ``lanesync bench compare`` reads it)."""
    mine, theirs = Outcome(NAME, LANESYNC, 0), Outcome(NAME, PYCRDT, 0)
    for row in rows:
        better: Better = "higher" if row.unit == "sales/s" else "lower"
        name = row.name.strip()
        if row.lanesync is not None and not math.isnan(row.lanesync):
            mine.add(name, row.lanesync, row.unit, better)
        if row.pycrdt is not None and not math.isnan(row.pycrdt):
            theirs.add(name, row.pycrdt, row.unit, better)
    return [mine, theirs]


async def run_study(args: MeshOptions) -> tuple[str, dict[str, Any]]:
    """The whole benchmark: the text to print (figures and ladder tables) and results.json."""
    load = await wait_for_quiet(args.wait_idle)
    config = {
        "lanes": args.lanes,
        "rate": args.rate,
        "duration_s": args.duration,
        "ladder": list(args.ladder),
        "split_sales": args.split_sales,
        "quick": args.quick,
    }
    record = StudyRun(NAME, config)
    progress(f"machine: {os.cpu_count()} CPUs; load {load}")
    root = Path(tempfile.mkdtemp(prefix="lanesync-mesh-", dir=args.workdir))
    try:
        results = await run_all(args, root)
    except BaseException:
        progress(f"failed: the lanes' logs and directories are kept in {root}")
        raise
    finally:
        kill_leftovers()
    shutil.rmtree(root, ignore_errors=True)
    ls, py = results[0], (results[1] if len(results) > 1 else None)
    rows = figures(ls, py, args)
    others = [
        s.other_cores for r in results for s in r.ladder.steps if not math.isnan(s.other_cores)
    ]
    load["max_other_cores_during_steps"] = max(others, default=math.nan)
    lines = [""]
    if others and max(others) > BUSY_OTHER_CORES:
        lines.append(
            f"WARNING: other work on this machine used up to {max(others):.2f} cores during the "
            "measured steps (see the ladder table): the figures are pessimistic."
        )
    lines += [render(rows), "", ladder_table(results)]
    load["loadavg_1m_at_end"] = load_average()
    systems = (LANESYNC,) if py is None else (LANESYNC, PYCRDT)
    extra = {
        "load": load,
        "targets": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "details": {r.system: asdict(r) for r in results},
        "table": render(rows),
        "ladder_table": ladder_table(results),
    }
    return "\n".join(lines), record.results(outcomes(rows), systems, extra)
