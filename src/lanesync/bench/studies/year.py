"""``lanesync bench year``: a store's year through the real storage, and what it costs the lane
that holds it (issue #17's figures; benchmarks/README.md says what every figure means).

The store (``year_build``) sells day by day on a simulated clock, each lane closing each day;
lane 1's directory holds the whole store's year. At each checkpoint day, lane 1 is closed and its
directory copied, and fresh processes (``year_phases``) reopen the copy (RSS, reopen time, the
State message of one anti-entropy round, then one sale and the RSS after it), run ``lanesync
report --day`` for the year's first day and for the newest day, and ``lanesync days`` (how many
days are open, closed, sealed). Timed figures are the median of ``runs`` fresh processes.

Nothing here knows whether days are sealed: the figures measure what the commands and the
storage do, so the same study measures sealing once it exists. The run checks its own work:
every checkpoint's lane holds every sale and day-end written, every day listed is closed or
sealed, and both reports are complete with a day's sales, or it stops with an error.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC, BenchError
from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.common import StudyRun, dir_size, progress, rss_mb
from lanesync.bench.studies.foundation_figures import calibrate, describe_load
from lanesync.bench.studies.year_build import TIMEZONE, YearStore
from lanesync.bench.studies.year_figures import (
    Scale,
    YearFigure,
    at_most,
    below,
    flat,
    render_table,
    rss_target,
)
from lanesync.bench.studies.year_phases import days, report, run_phase

NAME = "year"
DEFAULT_CHECKPOINTS = (1, 30, 60, 120, 240, 365)
# For the estimate printed up front, from the first full run on the 2-core machine (2026-12-07,
# `lanesync bench year --days 365 --sales-per-day 2500`, shared: load 6-8; 1,319 s in all):
# building took 0.8 ms per store sale (each lane stages and commits its share, lane 1 merges the
# others'); a fresh process ~1 s to start and import, plus ~12 us per record held to open the
# lane (wall time, waiting for a core included).
BUILD_S_PER_SALE = 0.8e-3
PHASE_START_S = 1.0
OPEN_S_PER_RECORD = 12e-6


@dataclass(frozen=True)
class YearOptions:
    days: int
    sales_per_day: int
    lanes: int
    checkpoints: tuple[int, ...]
    runs: int
    workdir: Path | None = None

    @property
    def scale(self) -> Scale:
        return Scale(self.days, self.sales_per_day, self.lanes)


def checkpoint_days(requested: Sequence[int], days: int) -> tuple[int, ...]:
    """The requested checkpoints within the run, and always its last day."""
    return tuple(sorted({d for d in requested if 1 <= d <= days} | {days}))


def estimate_s(options: YearOptions) -> float:
    """Rough wall time of the run, at the pace measured on the shared 2-core machine."""
    build = options.days * options.sales_per_day * BUILD_S_PER_SALE
    probes = 0.0
    for day in options.checkpoints:
        records = day * options.sales_per_day
        opens = 3 * options.runs + 1  # reopen and two reports per run, and the days list
        probes += 2 * options.runs * PHASE_START_S  # each report's start alone (--help)
        probes += opens * (PHASE_START_S + records * OPEN_S_PER_RECORD)
    return build + probes


def first_day(days: int) -> date:
    """The year ends yesterday (UTC): every day of it is in the past for the CLI's own clock,
    which ``report`` and ``days`` read (their store time is the real one)."""
    return datetime.now(UTC).date() - timedelta(days=days + 1)


@dataclass
class Checkpoint:
    day: int
    build_s: float  # building the days since the previous checkpoint
    builder_rss_mb: float
    disk_bytes: int
    database_bytes: int
    sales: int
    reopens: list[dict[str, Any]]
    reports_old: list[dict[str, Any]]
    reports_new: list[dict[str, Any]]
    listing: dict[str, Any]
    resume_s: float


def _database_bytes(lane_dir: Path) -> int:
    return sum(p.stat().st_size for p in lane_dir.glob("lanesync.db*"))


def probe(store: YearStore, options: YearOptions, scratch: Path) -> dict[str, Any]:
    """Every fresh-process measurement of lane 1 at the day just built."""
    built = store.days_built
    now = str(store.morning_after(built))
    oldest, newest = store.day(1).isoformat(), store.day(built).isoformat()
    listing = days(store.copy_measured(scratch / "probe"))
    reopens, olds, news = [], [], []
    for run in range(1, options.runs + 1):
        progress(f"day {built}: run {run}/{options.runs}: reopen, a sale, report {oldest}")
        copy = store.copy_measured(scratch / "probe")  # afresh: each run's sale stays in its copy
        reopens.append(run_phase("reopen", copy, "--now-ms", now))
        olds.append(report(copy, oldest))
        news.append(report(copy, newest))
    expected = store.expected_records()
    for opened in reopens:
        if opened["records"] != expected:
            raise BenchError(f"day {built}: lane holds {opened['records']} records, not {expected}")
    states = listing["states"]
    if states.get("closed", 0) + states.get("sealed", 0) != built:
        raise BenchError(f"day {built}: {states} after closing {built} days")
    for folded in olds + news:
        if not folded["complete"] or folded["sales"] != options.sales_per_day:
            raise BenchError(f"day {built}: incomplete report {folded}")
    return {"reopens": reopens, "old": olds, "new": news, "listing": listing}


def build_year(options: YearOptions, root: Path) -> list[Checkpoint]:
    store = YearStore.create(
        root, options.lanes, options.days, options.sales_per_day, first_day(options.days)
    )
    checkpoints: list[Checkpoint] = []
    try:
        started = time.perf_counter()
        for day in range(1, options.days + 1):
            store.build_day()
            if day % 10 == 0 and day not in options.checkpoints:
                progress(f"day {day}/{options.days}: {store.sales_written:,} sales")
            if day not in options.checkpoints:
                continue
            build_s = time.perf_counter() - started
            progress(f"day {day}/{options.days}: {store.sales_written:,} sales, measuring")
            builder_rss = rss_mb()
            store.suspend_measured()
            measured = probe(store, options, root)
            resumed = time.perf_counter()
            store.resume_measured()
            checkpoints.append(
                Checkpoint(
                    day=day,
                    build_s=build_s,
                    builder_rss_mb=builder_rss,
                    disk_bytes=dir_size(store.measured_path),
                    database_bytes=_database_bytes(store.measured_path),
                    sales=store.sales_written,
                    reopens=measured["reopens"],
                    reports_old=measured["old"],
                    reports_new=measured["new"],
                    listing=measured["listing"],
                    resume_s=time.perf_counter() - resumed,
                )
            )
            started = time.perf_counter()
    finally:
        store.close()
    return checkpoints


def median(runs: Sequence[dict[str, Any]], key: str, scale: float = 1.0) -> float:
    return float(statistics.median(run[key] for run in runs)) * scale


def first_day_sealed(point: Checkpoint) -> bool:
    """Every run's report of the year's first day said it was sealed (its ``sealed`` field)."""
    return all(report["sealed"] for report in point.reports_old)


def figures(points: Sequence[Checkpoint], scale: Scale) -> list[YearFigure]:
    def per_day(pick: Callable[[Checkpoint], float]) -> dict[int, float | None]:
        return {p.day: pick(p) for p in points}

    old_sealed = {
        p.day: median(p.reports_old, "work_s", 1e3) if first_day_sealed(p) else None for p in points
    }
    listed = [
        YearFigure(
            "rss_process_mb",
            "Lane RSS after reopening",
            "MB",
            "lower",
            per_day(lambda p: median(p.reopens, "rss_process_mb")),
            "< 120 MB, <= 1.2x day 30",
            rss_target,
            "VmRSS of a fresh process holding the reopened lane (its imports included, as a "
            "lane's RSS is seen from outside), median of the runs; then after terminal.write of "
            "one sale the next morning; then the first minus the RSS after the imports.",
        ),
        YearFigure(
            "rss_process_after_sale_mb",
            "  after reopening + a sale",
            "MB",
            "lower",
            per_day(lambda p: median(p.reopens, "rss_process_after_sale_mb")),
        ),
        YearFigure(
            "rss_mb",
            "  the lane alone (minus the imports)",
            "MB",
            "lower",
            per_day(lambda p: median(p.reopens, "rss_mb")),
        ),
        YearFigure(
            "reopen_s",
            "Reopen",
            "s",
            "lower",
            per_day(lambda p: median(p.reopens, "open_s")),
            "< 0.5 s",
            below(0.5),
            "Wall time of Terminal.open in a fresh process (median of the runs); its next "
            "row: the process's CPU time for it (on a shared machine the wall time also holds "
            "the wait for a core).",
        ),
        YearFigure(
            "reopen_cpu_s",
            "  CPU",
            "s",
            "lower",
            per_day(lambda p: median(p.reopens, "open_cpu_s")),
        ),
        YearFigure(
            "state_bytes",
            "State message of one anti-entropy round",
            "B",
            "lower",
            per_day(lambda p: median(p.reopens, "state_bytes")),
            "flat (<= 1.5x day 1)",
            flat,
            "wire.encode_message(State(replica.state_vectors(), reply=True)): what the lane "
            "sends to open a catch-up (sealing adds a fixed ~50 B of framing and MAC).",
        ),
        YearFigure(
            "state_docs",
            "  documents in it",
            "count",
            "lower",
            per_day(lambda p: median(p.reopens, "state_docs")),
        ),
        YearFigure(
            "disk_bytes_per_sale",
            "Disk per sale",
            "B",
            "lower",
            per_day(lambda p: p.disk_bytes / p.sales),
            "<= 150 B (sealed sale)",
            at_most(150),
            "Lane 1's directory (database, WAL, archives, keys) / the store's sales so far.",
        ),
        YearFigure(
            "report_old_ms",
            "report --day, the year's first day",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_old, "report_s", 1e3)),
            note="`lanesync report DIR --day D --json` in a fresh process, wall time (median of "
            "the runs); its next row: minus `lanesync report --help` timed alike (the "
            "interpreter's start and the CLI's imports, no lane opened), i.e. the command's "
            "own work; and the same difference in the two processes' CPU time.",
        ),
        YearFigure(
            "report_old_work_ms",
            "  its own work (first day)",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_old, "work_s", 1e3)),
        ),
        YearFigure(
            "report_old_work_cpu_ms",
            "  its own work, CPU (first day)",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_old, "work_cpu_s", 1e3)),
        ),
        YearFigure(
            "report_old_sealed_ms",
            "  its own work (first day, sealed)",
            "ms",
            "lower",
            old_sealed,
            "< 100 ms",
            below(100),
        ),
        YearFigure(
            "report_new_ms",
            "report --day, the newest day",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_new, "report_s", 1e3)),
        ),
        YearFigure(
            "report_new_work_ms",
            "  its own work (newest day)",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_new, "work_s", 1e3)),
        ),
        YearFigure(
            "report_new_work_cpu_ms",
            "  its own work, CPU (newest day)",
            "ms",
            "lower",
            per_day(lambda p: median(p.reports_new, "work_cpu_s", 1e3)),
        ),
        YearFigure(
            "days_closed",
            "Days closed (not sealed)",
            "count",
            "lower",
            per_day(lambda p: p.listing["states"].get("closed", 0)),
            note="From `lanesync days DIR --json`.",
        ),
        YearFigure(
            "days_sealed",
            "Days sealed",
            "count",
            "higher",
            per_day(lambda p: p.listing["states"].get("sealed", 0)),
        ),
        YearFigure(
            "close_to_sealed_s",
            "Close to sealed, 8 lanes and a cloud",
            "s",
            "lower",
            {p.day: None for p in points},
            "< 5 s",
            below(5),
            "Not measured by this study (it needs 8 lane daemons and a cloud on loopback): "
            "`lanesync bench sealing` measures it.",
        ),
    ]
    for figure in listed:
        figure.finish(scale)
    return listed


def outcomes(
    points: Sequence[Checkpoint], listed: Sequence[YearFigure], runs: int
) -> list[Outcome]:
    """One Outcome per run (the timed figures vary by run; the others are the same in each), so
    results.json holds every run's value, their median and spread, as the scenarios do."""
    timed = {
        "rss_process_mb": ("reopens", "rss_process_mb", 1.0),
        "rss_process_after_sale_mb": ("reopens", "rss_process_after_sale_mb", 1.0),
        "rss_mb": ("reopens", "rss_mb", 1.0),
        "reopen_s": ("reopens", "open_s", 1.0),
        "report_old_ms": ("reports_old", "report_s", 1e3),
        "report_new_ms": ("reports_new", "report_s", 1e3),
        "report_old_work_ms": ("reports_old", "work_s", 1e3),
        "report_new_work_ms": ("reports_new", "work_s", 1e3),
        "reopen_cpu_s": ("reopens", "open_cpu_s", 1.0),
        "report_old_work_cpu_ms": ("reports_old", "work_cpu_s", 1e3),
        "report_new_work_cpu_ms": ("reports_new", "work_cpu_s", 1e3),
    }
    results = []
    for run in range(runs):
        outcome = Outcome(NAME, LANESYNC, run)
        for figure in listed:
            for point in points:
                name = f"{figure.name.strip()}, day {point.day}"
                if figure.key in timed:
                    series, key, factor = timed[figure.key]
                    value = getattr(point, series)[run][key] * factor
                else:
                    found = figure.values.get(point.day)
                    if found is None:
                        continue
                    value = found
                outcome.add(name, value, figure.unit, figure.better)
        results.append(outcome)
    return results


def run_study(options: YearOptions) -> tuple[str, dict[str, Any]]:
    """The whole run: the text to print (header and table) and ``results.json``."""
    config = asdict(options) | {"workdir": str(options.workdir or ""), "timezone": TIMEZONE}
    record = StudyRun(NAME, config)
    estimate = estimate_s(options)
    progress(
        f"estimated time: ~{estimate / 60:.0f} min ({estimate:.0f} s at the pace of the 2-core "
        "machine shared at load 6-8)"
    )
    load_before = calibrate()
    progress(describe_load("before", load_before))
    with tempfile.TemporaryDirectory(prefix="lanesync-bench-", dir=options.workdir) as tmp:
        points = build_year(options, Path(tmp))
    load_after = calibrate()
    listed = figures(points, options.scale)
    extra = {
        "targets": [
            {k: v for k, v in asdict(f).items() if k != "judge"} | {"values": f.values}
            for f in listed
        ],
        "details": {"checkpoints": [asdict(p) for p in points], "estimate_s": estimate},
        "load_before": load_before,
        "load_after": load_after,
    }
    results = record.results(outcomes(points, listed, options.runs), (LANESYNC,), extra)
    machine, git = results["machine"], results["git"]
    lines = [
        f"lanesync year benchmark, {options.days} days x {options.sales_per_day:,} sales, "
        f"{options.lanes} lanes, {options.runs} runs, {record.started:%Y-%m-%d %H:%M} UTC "
        f"({results['seconds']:.0f} s)",
        f"command: {record.command}",
        f"machine: {machine['usable_cpus']} CPUs ({machine['cpu_model']}), Python "
        f"{machine['python']}, pycrdt {machine['versions']['pycrdt']}",
        f"git: {git['commit']}"
        + (f" + {len(git['changed'])} changed paths" if git["changed"] else "")
        + ("  WARNING: src/ changed during the run" if results["git_changed_during_run"] else ""),
        describe_load("before", load_before),
        describe_load("after ", load_after) + "\n",
        render_table(listed, [p.day for p in points]),
    ]
    return "\n".join(lines), results
