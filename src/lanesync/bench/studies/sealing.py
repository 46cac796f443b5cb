"""``lanesync bench sealing``: from the last lane's close to the day sealed on every lane, in a
store of ``lanes`` lane daemons and a cloud (issue #17: "close to sealed, 8 lanes and a cloud on
loopback: < 5 s after the last lane closes"; benchmarks/README.md, "Sealing").

Each run builds a fresh store (``cloud_day.make_store``) and starts the cloud (``lanesync cloud
serve``) and the lanes (``lanesync run --cloud URL --close-at off``: nothing closes on its own),
lane k dialling lanes 1..k-1 (a full mesh), lane01 first in the election. Once every lane sees
every other and a leader's uplink is up, the lanes sell ``sales`` (their API, a few at a time
each), and the run waits until every lane and the cloud hold every sale (same digest). Then
every lane is asked to close the day (``POST /v1/close``) at the same moment; the clock starts
when the last close has returned, and every lane's ``GET /v1/days`` is polled until every lane
lists the day as sealed. The cloud lists no days: it keeps every sale in its tables and seals
nothing; it takes part as the acknowledger (``core.sealdays.acknowledged``).

The run checks its own work: every lane's ``GET /v1/reports/{day}`` is sealed, complete, has the
same ``report_hash`` and counts every sale, and every lane's log has its ``days.sealed`` line.
Only loopback is used: every process binds 127.0.0.1 with port 0 and never uses mDNS; every
process is stopped (by its pid, ``tools.procs``) at the end of its run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC, BenchError
from lanesync.bench.estimate import human_seconds
from lanesync.bench.outcome import Outcome
from lanesync.bench.stats import Spread
from lanesync.bench.studies.cloud_day import STORE_ID, make_store
from lanesync.bench.studies.cloud_procs import Proc, Procs, wait
from lanesync.bench.studies.common import StudyRun, progress
from lanesync.bench.studies.foundation_figures import calibrate, describe_load
from lanesync.shell.dayclosing import SEAL_CHECK_EVERY_S

NAME = "sealing"
TARGET_S = 5.0  # issue #17: "< 5 s after the last lane closes"
SEAL_LIMIT_S = 60.0  # a run whose day is not sealed everywhere by then fails
READY_LIMIT_S = 120.0  # eight lanes starting on two busy cores take a while to mesh
POLL_EVERY_S = 0.05  # the resolution of the figures (a lane seals on a 1 s check)
SELLERS_PER_LANE = 4  # concurrent sales on each lane's API while the store sells
UNIT_CENTS = 250
# The estimate told before the run, from this study's first runs on 2026-12-07 on the shared
# 2-core machine (load 7-10): `--lanes 8 --sales 400 --runs 3` took 98 s and 146 s, `--lanes 3
# --sales 30 --runs 1` 21 s, `--lanes 2 --sales 6 --runs 1` 14-23 s. Per run: a fixed part (the
# store built, the cloud started, the close and the seal), a part per lane started (an
# interpreter importing the lane, then meshing) and per sale (sold, then held everywhere);
# the machine's load is measured twice (about 2 s each).
RUN_FIXED_S = 6.0
RUN_PER_LANE_S = 2.5
RUN_PER_SALE_S = 0.02
CALIBRATE_S = 4.0


@dataclass(frozen=True, slots=True)
class SealingOptions:
    lanes: int = 8
    sales: int = 400
    runs: int = 3
    workdir: Path | None = None
    logs: Path | None = None


@dataclass(frozen=True, slots=True)
class SealRun:
    """One fresh store's run: seconds from the last close's return to each lane sealed."""

    run: int
    day: str
    closes_spread_s: float  # the first close sent -> the last close returned
    sealed_after_s: dict[str, float]  # lane -> seconds after the last close returned
    leader: str
    report_hash: str
    records: int

    @property
    def first_s(self) -> float:
        return min(self.sealed_after_s.values())

    @property
    def last_s(self) -> float:
        return max(self.sealed_after_s.values())


def estimate_s(options: SealingOptions) -> float:
    """Rough wall time of the run, at the pace of the shared 2-core machine."""
    per_run = RUN_FIXED_S + options.lanes * RUN_PER_LANE_S + options.sales * RUN_PER_SALE_S
    return CALIBRATE_S + options.runs * per_run


async def start_store(procs: Procs, cloud_dir: Path, lanes: Sequence[Path]) -> list[Proc]:
    """The cloud, then the lanes (each dials every earlier one); returns the lanes."""
    cloud = await procs.cloud(cloud_dir)
    url = str(cloud.runtime["listen"])
    started: list[Proc] = []
    for k, path in enumerate(lanes):
        peers = [str(p.runtime["listen"]) for p in started]
        priority = 1 if k == 0 else 0  # lane01 leads (the election's tie-breaks aside)
        extra = ("--close-at", "off")
        started.append(
            await procs.lane(path, peers=peers, cloud=url, priority=priority, extra=extra)
        )
    return started


async def meshed(lanes: Sequence[Proc]) -> str | None:
    """The leader's name once every lane sees every other and the leader's uplink is up."""
    statuses = [await lane.get("/v1/status") for lane in lanes]
    for status in statuses:
        links = [c for c in status["connections"] if c.get("role") != "cloud"]
        if len(links) < len(lanes) - 1:
            return None
    leaders = {s["leader"] for s in statuses}
    if len(leaders) != 1:
        return None
    (leader,) = leaders
    uplinked = any(
        s["terminal_id"] == leader and (s["cloud"] or {}).get("connected") for s in statuses
    )
    return str(leader) if uplinked else None


async def sell(lane: Proc, count: int, first: int) -> None:
    """``count`` sales on ``lane``, ``SELLERS_PER_LANE`` at a time (explicit unit prices: no
    catalog is needed; stock may go negative, as an oversold item does)."""
    if lane.client is None:
        raise BenchError(f"{lane.name} is not running")
    client = lane.client
    numbers = iter(range(first, first + count))

    async def seller() -> None:
        for i in numbers:
            line = {"sku": f"sku{i % 200:03d}", "qty": 1 + i % 3, "unit_price": UNIT_CENTS}
            reply = await client.request("POST", "/v1/sales", {"lines": [line]}, timeout_s=60)
            if reply.status != 201:
                raise BenchError(f"{lane.name}: POST /v1/sales answered {reply.status}")

    await asyncio.gather(*(seller() for _ in range(SELLERS_PER_LANE)))


def shares(total: int, lanes: int) -> list[int]:
    return [total // lanes + (1 if k < total % lanes else 0) for k in range(lanes)]


async def all_hold(lanes: Sequence[Proc], cloud: Proc, records: int) -> bool:
    """Every lane holds ``records`` records and the cloud's digest is every lane's."""
    statuses = [await lane.get("/v1/status") for lane in lanes]
    if any(s["records"] != records for s in statuses):
        return False
    digests = {s["digest"] for s in statuses}
    theirs = (await cloud.get(f"/v1/stores/{STORE_ID}/digest"))["digest"]
    return digests == {theirs}


async def close_all(lanes: Sequence[Proc]) -> tuple[str, float, float]:
    """Every lane's ``POST /v1/close`` at once: the day closed, when the first was sent and
    when the last returned (``time.monotonic``)."""

    async def close(lane: Proc) -> list[str]:
        assert lane.client is not None
        reply = await lane.client.request("POST", "/v1/close", timeout_s=60)
        if reply.status != 201:
            raise BenchError(f"{lane.name}: POST /v1/close answered {reply.status}")
        return [str(d) for d in reply.body["closed"]]

    sent = time.monotonic()
    closed = await asyncio.gather(*(close(lane) for lane in lanes))
    returned = time.monotonic()
    days = {tuple(c) for c in closed}
    if len(days) != 1 or len(next(iter(days))) != 1:
        raise BenchError(f"the lanes closed different days, or not one each: {closed}")
    return next(iter(days))[0], sent, returned


async def day_state(lane: Proc, day: str) -> str:
    listed = (await lane.get("/v1/days"))["days"]
    return next((str(d["state"]) for d in listed if d["day"] == day), "absent")


async def wait_sealed(lanes: Sequence[Proc], day: str, since: float) -> dict[str, float]:
    """Poll every lane's day list until every one lists ``day`` sealed: seconds after
    ``since`` at which each was first seen sealed."""
    sealed: dict[str, float] = {}
    states: dict[str, str] = {}
    while time.monotonic() - since < SEAL_LIMIT_S:
        pending = [lane for lane in lanes if lane.name not in sealed]
        found = await asyncio.gather(*(day_state(lane, day) for lane in pending))
        now = time.monotonic() - since
        for lane, state in zip(pending, found, strict=True):
            states[lane.name] = state
            if state == "sealed":
                sealed[lane.name] = now
        if len(sealed) == len(lanes):
            return sealed
        await asyncio.sleep(POLL_EVERY_S)
    raise BenchError(
        f"{day} not sealed on every lane {SEAL_LIMIT_S:.0f} s after the last close: {states}"
    )


async def check_reports(lanes: Sequence[Proc], day: str, sales: int) -> str:
    """Every lane's report of ``day``: sealed, complete, the same hash, every sale counted."""
    reports = [await lane.get(f"/v1/reports/{day}") for lane in lanes]
    hashes = {r["report_hash"] for r in reports}
    for lane, report in zip(lanes, reports, strict=True):
        if not (report["sealed"] and report["complete"]):
            raise BenchError(f"{lane.name}: report of {day} not sealed and complete: {report}")
        if report["totals"]["sales"] != sales:
            raise BenchError(f"{lane.name}: {report['totals']['sales']} sales, not {sales}")
    if len(hashes) != 1:
        raise BenchError(f"the lanes' reports of {day} differ: {sorted(hashes)}")
    return str(hashes.pop())


def check_logs(lanes: Sequence[Proc], day: str) -> None:
    for lane in lanes:
        messages = [json.loads(line)["msg"] for line in lane.log.read_text().splitlines()]
        if not any(m.startswith("days.sealed ") and day in m for m in messages):
            raise BenchError(f"{lane.name}: no days.sealed line for {day} in {lane.log}")


async def one_run(options: SealingOptions, run: int, root: Path) -> SealRun:
    _, cloud_dir, paths = make_store(root, options.lanes)
    procs = Procs(options.logs / f"run{run}" if options.logs else root / "logs")
    try:
        lanes = await start_store(procs, cloud_dir.path, paths)
        cloud = procs.all[0]
        leader = await wait(lambda: meshed(lanes), READY_LIMIT_S, "a full mesh and an uplink")
        progress(f"run {run}: {len(lanes)} lanes meshed, {leader} leads; selling")
        counts = shares(options.sales, len(lanes))
        firsts = [sum(counts[:k]) for k in range(len(lanes))]
        await asyncio.gather(
            *(sell(lane, n, f) for lane, n, f in zip(lanes, counts, firsts, strict=True))
        )
        # accepted_count: the sales (nothing else writes a record in this store)
        await wait(
            lambda: all_hold(lanes, cloud, options.sales),
            READY_LIMIT_S,
            "every lane and the cloud hold every sale",
            interval=0.2,
        )
        day, sent, returned = await close_all(lanes)
        sealed = await wait_sealed(lanes, day, returned)
        report_hash = await check_reports(lanes, day, options.sales)
        records = int((await lanes[0].get("/v1/status"))["records"])
    finally:
        await procs.close()
    check_logs(lanes, day)
    result = SealRun(
        run=run,
        day=day,
        closes_spread_s=round(returned - sent, 3),
        sealed_after_s={name: round(s, 3) for name, s in sorted(sealed.items())},
        leader=leader,
        report_hash=report_hash,
        records=records,
    )
    progress(
        f"run {run}: closes took {result.closes_spread_s:.2f} s; sealed {result.first_s:.2f} s "
        f"(first lane) .. {result.last_s:.2f} s (last lane) after the last close"
    )
    return result


FIGURES = (  # (name, SealRun attribute); every one: seconds, lower is better, target < 5 s
    ("last close -> every lane sealed", "last_s"),
    ("last close -> first lane sealed", "first_s"),
)


def outcomes(runs: Sequence[SealRun]) -> list[Outcome]:
    results = []
    for sealed in runs:
        out = Outcome(NAME, LANESYNC, sealed.run)
        for name, attribute in FIGURES:
            out.add(name, getattr(sealed, attribute), "s", "lower")
        out.add("closes: first sent -> last returned", sealed.closes_spread_s, "s", "lower")
        results.append(out)
    return results


def targets(runs: Sequence[SealRun]) -> list[dict[str, Any]]:
    """Each timed figure's median, min and max over the runs, the issue's target and the
    verdict on the median."""
    rows = []
    for name, attribute in FIGURES:
        spread = Spread.of([getattr(r, attribute) for r in runs])
        rows.append(
            {
                "name": name,
                "median_s": round(spread.median, 3),
                "min_s": round(spread.min, 3),
                "max_s": round(spread.max, 3),
                "target": f"< {TARGET_S:g} s",
                "result": "PASS" if spread.median < TARGET_S else "FAIL",
            }
        )
    return rows


def render(rows: Sequence[dict[str, Any]], runs: int) -> str:
    header = f"| Figure ({runs} runs) | median | min | max | target | result |"
    lines = [header, "|---|---:|---:|---:|---|---|"]
    for row in rows:
        cells = [f"{row[k]:.2f} s" for k in ("median_s", "min_s", "max_s")]
        lines.append(f"| {row['name']} | {' | '.join(cells)} | {row['target']} | {row['result']} |")
    return "\n".join(lines)


async def run_study(options: SealingOptions) -> tuple[str, dict[str, Any]]:
    """``runs`` fresh stores: the text to print and ``results.json``."""
    if options.sales < options.lanes:
        raise BenchError("every lane sells: --sales must be at least --lanes")
    config = {"lanes": options.lanes, "sales": options.sales, "runs": options.runs}
    record = StudyRun(NAME, config)
    estimate = estimate_s(options)
    runs_named = f"{options.runs} store run{'s' if options.runs != 1 else ''}"
    print(  # the line every lanesync bench command tells before it starts
        f"estimated wall time: about {human_seconds(estimate)} ({runs_named} of "
        f"{options.lanes} lanes and a cloud, {options.sales:,} sales each)",
        file=sys.stderr,
        flush=True,
    )
    load_before = await asyncio.to_thread(calibrate)
    progress(describe_load("before", load_before))
    with tempfile.TemporaryDirectory(prefix="lanesync-seal-bench-", dir=options.workdir) as tmp:
        # one after the other: never two stores at once
        runs = [
            await one_run(options, r, Path(tmp) / f"run{r}") for r in range(1, options.runs + 1)
        ]
    load_after = await asyncio.to_thread(calibrate)
    rows = targets(runs)
    extra = {
        "targets": rows,
        "details": {
            "runs": [asdict(r) for r in runs],
            "SEAL_CHECK_EVERY_S": SEAL_CHECK_EVERY_S,
            "poll_every_s": POLL_EVERY_S,
        },
        "load_before": load_before,
        "load_after": load_after,
    }
    results = record.results(outcomes(runs), (LANESYNC,), extra)
    results["estimated_seconds"] = round(estimate, 1)
    git = results["git"]
    lines = [
        f"lanesync sealing benchmark: {options.lanes} lanes and a cloud on loopback, "
        f"{options.sales:,} sales, {options.runs} runs ({results['seconds']:.0f} s)",
        f"command: {record.command}",
        f"git: {git['commit']}"
        + (f" + {len(git['changed'])} changed paths" if git["changed"] else ""),
        describe_load("before", load_before),
        describe_load("after ", load_after) + "\n",
        render(rows, options.runs),
    ]
    return "\n".join(lines), results
