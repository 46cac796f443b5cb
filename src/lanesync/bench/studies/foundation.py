"""``lanesync bench foundation``: lanesync against raw pycrdt doing the same document writes, in
one run (benchmarks/README.md says what every figure means).

Both systems record the same workload (``workload.py``). The raw side is in
``foundation_raw.py``, lanesync's in ``foundation_lanesync.py``; reopen time and RSS are measured in
fresh subprocesses (``foundation_phases.py``). The run checks its own work: the filled terminal,
every reopened terminal and the second replica must hold exactly N accepted sales, and the raw
replica exactly N sales, or it stops with an error.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC, BenchError
from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.common import StudyRun, dir_size, nearest_rank, progress
from lanesync.bench.studies.foundation_figures import (
    Figure,
    Target,
    calibrate,
    describe_load,
    render_table,
)
from lanesync.bench.studies.foundation_lanesync import (
    BUILD_BATCH,
    CONCURRENT_TASKS,
    Store,
    build_terminal,
    concurrent_load,
    database_breakdown,
    idle_latencies_committer,
    idle_latencies_direct,
    merge_time,
    sequential_writes,
)
from lanesync.bench.studies.foundation_phases import run_phase
from lanesync.bench.studies.foundation_raw import (
    IDLE_GAP_S,
    MERGE_BATCH,
    WARMUP_SALES,
    idle_count,
    measure_raw,
    raw_durable_rate,
)
from lanesync.bench.studies.workload import make_workload, sale_builders
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal

NAME = "foundation"
RAW = "raw-pycrdt"
SEQUENTIAL_SALES = 3_000  # one writer, terminal.write: capped at N
CONCURRENT_SALES = 20_000  # 64 concurrent writers through GroupCommitter: capped at N
REOPEN_RUNS = 3  # fresh subprocesses per reopen figure (after the first open); median reported
MIN_SALES = MERGE_BATCH


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def measure(sales: int, workdir: Path, profile_reopen: bool) -> tuple[list[Figure], dict[str, Any]]:
    workload = make_workload(sales)
    sequential = min(sales, SEQUENTIAL_SALES)
    concurrent = min(sales, CONCURRENT_SALES)

    progress(f"raw pycrdt: {sales:,} sales as nested Maps")
    raw = measure_raw(workload, workdir)
    progress("raw pycrdt: RSS and reopen in fresh processes")
    raw_rss = run_phase("rss-raw", sales, workdir)
    raw_reopens = [run_phase("reopen-raw", sales, workdir) for _ in range(REOPEN_RUNS)]
    raw_apply_s = median_of(raw_reopens, "apply_s")
    raw_read_apply_s = float(statistics.median(r["read_s"] + r["apply_s"] for r in raw_reopens))

    progress(f"lanesync: filling a terminal with {sales:,} sales ({BUILD_BATCH} per commit)")
    builders = sale_builders(workload)
    store = Store(StoreDirectory.init(workdir / "store", "bench-store"))
    filled = store.enroll(workdir)
    built = build_terminal(filled, builders)
    on_disk = dir_size(filled)
    breakdown = database_breakdown(filled / "lanesync.db")

    progress("lanesync: merging every sale into a second replica")
    identity = store.directory.identity
    merge_1 = merge_time(identity, built.config_update, built.updates, batch=1)
    merge_n = merge_time(identity, built.config_update, built.updates, batch=MERGE_BATCH)
    updates_count = len(built.updates)
    built.updates.clear()
    gc.collect()

    progress("lanesync: reopen and RSS in fresh processes")
    first_open = run_phase("reopen-lanesync", sales, workdir)
    breakdown_reopened = database_breakdown(filled / "lanesync.db")
    reopens = [run_phase("reopen-lanesync", sales, workdir) for _ in range(REOPEN_RUNS)]
    if any(r["sales"] != sales for r in [first_open, *reopens]):
        raise BenchError(f"reopened terminal holds {reopens[0]['sales']} sales, not {sales}")
    if profile_reopen:
        run_phase("reopen-lanesync", sales, workdir, "--profile")

    progress(f"lanesync: {sequential:,} sequential durable writes")
    # Right before (a), so both meet the same disk and the same neighbours on this machine.
    raw_durable = raw_durable_rate(workload[:sequential], workdir / "raw-log.db")
    seq = sequential_writes(store.enroll(workdir), builders, sequential)
    seq_rate = sequential / seq.wall
    progress(f"lanesync: {concurrent:,} sales from {CONCURRENT_TASKS} concurrent writers")
    with Terminal.open(store.enroll(workdir)) as terminal:
        conc = asyncio.run(concurrent_load(terminal, builders, concurrent))
    progress(
        f"lanesync: acknowledgement latency of {idle_count(sales)} single sales on idle terminals"
    )
    direct = idle_latencies_direct(store.enroll(workdir), builders)
    with Terminal.open(store.enroll(workdir)) as terminal:
        via_committer = asyncio.run(idle_latencies_committer(terminal, builders))

    n = f"{sales // 1000}k" if sales % 1000 == 0 else f"{sales:,}"
    reverified = (
        " (own records had no verdict: all re-verified)"
        if breakdown["verified_rows"] < breakdown_reopened["verified_rows"]
        else ""
    )
    figures = [
        Figure(
            "sales_per_s_concurrent",
            f"Sales/s, {CONCURRENT_TASKS} concurrent writers, group commit, durable",
            "/s",
            conc.sales_per_s,
            raw.sales_per_s,
            "higher",
            Target(">=", 2000),
            f"{concurrent:,} sales through GroupCommitter.write from {CONCURRENT_TASKS} asyncio "
            f"tasks on a fresh terminal; {conc.commits:,} commits "
            f"({concurrent / max(conc.commits, 1):.1f} sales each). Raw: one in-memory "
            "transaction per sale, nothing durable.",
        ),
        Figure(
            "ack_p50_ms_concurrent",
            "  ack latency p50 under that load",
            "ms",
            conc.latency_p50_ms,
            None,
            "lower",
        ),
        Figure(
            "ack_p99_ms_concurrent",
            "  ack latency p99 under that load",
            "ms",
            conc.latency_p99_ms,
            None,
            "lower",
        ),
        Figure(
            "sales_per_s_sequential",
            "Sales/s, one writer, terminal.write (fsync each)",
            "/s",
            seq_rate,
            raw.sales_per_s,
            "higher",
            note=f"{sequential:,} sales, each durably committed before the next. Raw: in-memory.",
        ),
        Figure(
            "sales_per_s_sequential_vs_raw_durable",
            "  same, vs raw pycrdt + SQLite commit each",
            "/s",
            seq_rate,
            raw_durable,
            "higher",
            note="Raw pycrdt writing the same sales and committing each update to SQLite "
            "(WAL, synchronous=FULL) like lanesync: the cost of durability alone.",
        ),
        Figure(
            "sales_per_s_batch",
            f"Sales/s, write batches of {BUILD_BATCH}, durable",
            "/s",
            built.batched_per_s,
            raw.sales_per_s,
            "higher",
            note=f"Filling the {n}-sale terminal: stage {BUILD_BATCH}, one commit, compaction "
            "when due.",
        ),
        Figure(
            "sales_per_s_staged",
            "Sales/s staged in memory (signed, not durable)",
            "/s",
            built.staged_per_s,
            raw.sales_per_s,
            "higher",
            note="terminal.stage alone: build_sale, sign (Ed25519), CRDT write, fold into views.",
        ),
        Figure(
            "ack_p50_ms_idle_committer",
            "Ack latency p50, idle, GroupCommitter (daemon)",
            "ms",
            statistics.median(via_committer) * 1e3,
            raw.latency_p50_ms,
            "lower",
            note=f"{idle_count(sales)} single sales {IDLE_GAP_S * 1e3:g} ms apart after "
            f"{WARMUP_SALES} warm-up sales, on a fresh terminal; await GroupCommitter.write. "
            "Raw: one in-memory write on an idle doc.",
        ),
        Figure(
            "ack_p99_ms_idle_committer",
            "Ack latency p99, idle, GroupCommitter (daemon)",
            "ms",
            nearest_rank(via_committer, 99) * 1e3,
            raw.latency_p99_ms,
            "lower",
            Target("<=", 5),
        ),
        Figure(
            "ack_p50_ms_idle_direct",
            "Ack latency p50, idle, terminal.write (CLI)",
            "ms",
            statistics.median(direct) * 1e3,
            raw.latency_p50_ms,
            "lower",
            note="Same, calling terminal.write directly in the caller's thread.",
        ),
        Figure(
            "ack_p99_ms_idle_direct",
            "Ack latency p99, idle, terminal.write (CLI)",
            "ms",
            nearest_rank(direct, 99) * 1e3,
            raw.latency_p99_ms,
            "lower",
            Target("<=", 5),
        ),
        Figure(
            "bytes_per_sale_update",
            "Bytes per sale update",
            "B",
            built.bytes_per_sale,
            raw.bytes_per_sale,
            "lower",
            Target("<=", 1.5, on_ratio=True),
            f"Mean over {sales:,} sales of the CRDT update bytes a sale produces (lanesync: "
            f"Change.updates, {built.bytes_min}-{built.bytes_max} B, including the record key, "
            "the 64 B signature and the 32 B chain hash; raw: the doc.observe update of a "
            "nested Map).",
        ),
        Figure(
            "applied_per_s",
            "Updates applied/s on a 2nd replica, 1 per merge",
            "/s",
            updates_count / merge_1.wall,
            raw.applied_per_s,
            "higher",
            note="lanesync: Replica.merge of one sale's update at a time into a fresh replica; "
            "includes decoding and Ed25519 verification of every record and folding the views, "
            "not persistence. Raw: doc.apply_update one at a time into a fresh doc.",
        ),
        Figure(
            "applied_per_s_batched",
            f"Updates applied/s on a 2nd replica, {MERGE_BATCH} per merge",
            "/s",
            updates_count / merge_n.wall,
            raw.applied_per_s_batched,
            "higher",
            note=f"Same, {MERGE_BATCH} updates per merge call (raw: per transaction).",
        ),
        Figure(
            "reopen_s_first",
            f"Reopen a terminal holding {n} sales, first open",
            "s",
            first_open["open_s"],
            raw_apply_s,
            "lower",
            Target("<=", 2, full_scale_only=True),
            "Fresh process, wall time of Terminal.open only "
            f"(CPU {first_open['open_cpu_s']:.2f} s), the first open after the sales "
            f"were written: verdict rows before {breakdown['verified_rows']:,}, after "
            f"{breakdown_reopened['verified_rows']:,}{reverified}. Raw: apply "
            "the full state (doc.get_update()) to a fresh doc, median of "
            f"{REOPEN_RUNS} fresh processes.",
        ),
        Figure(
            "reopen_s",
            f"Reopen a terminal holding {n} sales, later opens",
            "s",
            median_of(reopens, "open_s"),
            raw_apply_s,
            "lower",
            Target("<=", 2, full_scale_only=True),
            f"Median of the {REOPEN_RUNS} opens after the first, each in a fresh process (CPU "
            f"{median_of(reopens, 'open_cpu_s'):.2f} s): read SQLite, apply snapshot + log, take "
            "the views from the stored checkpoint and fold the log rows after it (signatures "
            "trusted from the verdict cache). Raw CPU: "
            f"{median_of(raw_reopens, 'apply_cpu_s'):.2f} s.",
        ),
        Figure(
            "reopen_s_vs_raw_sqlite",
            "  same, vs raw read from SQLite + apply",
            "s",
            median_of(reopens, "open_s"),
            raw_read_apply_s,
            "lower",
            note=f"Raw full state stored in SQLite (WAL, FULL; storing it took "
            f"{raw.store_full_state_s:.3f} s), read back and applied in a fresh process.",
        ),
        Figure(
            "rss_mb",
            f"RSS for {n} sales",
            "MB",
            median_of(reopens, "rss_mb"),
            raw_rss["rss_mb"],
            "lower",
            Target("<=", 150, full_scale_only=True),
            "RSS (VmRSS) after the work minus RSS after imports, in a fresh process. lanesync: "
            f"holding the opened terminal (median of the {REOPEN_RUNS} later opens). Raw: after "
            "writing the sales as nested Maps.",
        ),
        Figure(
            "rss_mb_vs_raw_reloaded",
            "  same, vs raw reloaded from full state",
            "MB",
            median_of(reopens, "rss_mb"),
            median_of(raw_reopens, "rss_mb"),
            "lower",
            note="Raw: RSS after applying the full state to a fresh doc (the reopen above).",
        ),
        Figure(
            "disk_bytes",
            "On-disk size",
            "MB",
            on_disk / 2**20,
            raw.sqlite_file_bytes / 2**20,
            "lower",
            note="lanesync: the terminal directory after close (SQLite snapshot + log + verdicts, "
            "keys, certificate). Raw: SQLite file holding the full state.",
        ),
    ]
    for figure in figures:
        figure.finish(sales)
    details = {
        "raw": asdict(raw),
        "raw_rss_phase": raw_rss,
        "raw_reopen_runs": raw_reopens,
        "lanesync_first_open": first_open,
        "lanesync_reopen_runs": reopens,
        "lanesync_database_after_first_open": breakdown_reopened,
        "raw_durable_sales_per_s": raw_durable,
        "lanesync_database": breakdown,
        "lanesync_on_disk_bytes": on_disk,
        "lanesync_bytes_per_sale": {
            "mean": built.bytes_per_sale,
            "min": built.bytes_min,
            "max": built.bytes_max,
        },
        "merge": {"batch_1": asdict(merge_1), f"batch_{MERGE_BATCH}": asdict(merge_n)},
        "concurrent": asdict(conc) | {"sales": concurrent, "tasks": CONCURRENT_TASKS},
        "sequential": {"sales": sequential, "elapsed": asdict(seq)},
        "fill": {"stage": asdict(built.stage), "commit": asdict(built.commit)},
        "idle_sales": idle_count(sales),
    }
    return figures, details


UNITS = {"/s": "sales/s"}


def outcomes(figures: Sequence[Figure]) -> list[Outcome]:
    """lanesync's and raw pycrdt's value of every figure, as the scenarios report them (so
    results.json holds each ratio and ``lanesync bench compare`` reads it)."""
    mine, theirs = Outcome(NAME, LANESYNC, 0), Outcome(NAME, RAW, 0)
    for f in figures:
        unit = "updates/s" if f.name.startswith("Updates applied") else UNITS.get(f.unit, f.unit)
        name = f.name.strip()
        if f.lanesync is not None:
            mine.add(name, f.lanesync, unit, f.better)
        if f.raw is not None:
            theirs.add(name, f.raw, unit, f.better)
    return [mine, theirs]


def run_study(sales: int, workdir: Path | None, profile_reopen: bool) -> tuple[str, dict[str, Any]]:
    """The whole run: the text to print (header and table) and ``results.json``."""
    import tempfile

    record = StudyRun(NAME, {"sales": sales, "profile_reopen": profile_reopen})
    load_before = calibrate()
    progress(describe_load("before", load_before))
    with tempfile.TemporaryDirectory(prefix="lanesync-bench-", dir=workdir) as tmp:
        figures, details = measure(sales, Path(tmp), profile_reopen)
    load_after = calibrate()
    extra = {
        "targets": [asdict(f) for f in figures],
        "details": details,
        "load_before": load_before,
        "load_after": load_after,
    }
    results = record.results(outcomes(figures), (LANESYNC, RAW), extra)
    machine, git = results["machine"], results["git"]
    versions = machine["versions"]
    lines = [
        f"lanesync foundation benchmark, {sales:,} sales, {record.started:%Y-%m-%d %H:%M} UTC",
        f"command: {record.command}",
        f"machine: {machine['usable_cpus']} CPUs ({machine['cpu_model']}), Python "
        f"{machine['python']}, pycrdt {versions['pycrdt']}, PyNaCl {versions['PyNaCl']}, "
        f"msgpack {versions['msgpack']}",
        f"git: {git['commit']}"
        + (f" + {len(git['changed'])} changed paths" if git["changed"] else "")
        + ("  WARNING: src/ changed during the run" if results["git_changed_during_run"] else ""),
        describe_load("before", load_before),
        describe_load("after ", load_after) + "\n",
        render_table(figures),
    ]
    return "\n".join(lines), results
