"""The studies of ``lanesync bench`` (``foundation``, ``receive-path``, ``discovery`` ...: the
scripts that were in ``benchmarks/``), each writing ``results.json`` and ``report.md`` to
``--out`` as the scenarios do. benchmarks/README.md explains every figure and holds the latest
results.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from lanesync.errors import UsageError

from .common import reports_errors
from .output import console, emit_json

DIR = click.Path(path_type=Path, file_okay=False)


def _out_options(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(
            [
                click.option(
                    "--out", type=DIR, help=f"Results directory (default bench-results/{name})."
                ),
                click.option(
                    "--json", "as_json", is_flag=True, help="Print results.json on stdout."
                ),
                click.option(
                    "--work",
                    "--workdir",
                    "work",
                    type=DIR,
                    help="Parent of the temporary directory (default $TMPDIR; deleted at the end).",
                ),
            ]
        ):
            func = option(func)
        return func

    return decorate


def _write(results: dict[str, Any], out: Path | None, name: str, as_json: bool) -> Path:
    from lanesync.bench.report import render

    target = out or Path("bench-results") / name
    target.mkdir(parents=True, exist_ok=True)
    (target / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (target / "report.md").write_text(render(results, {}))
    if as_json:
        emit_json(results)
    return target


def _batches(text: str) -> list[int]:
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise UsageError(f"--batches must be comma-separated numbers, not {text!r}") from None
    if not batches or any(b < 1 for b in batches):
        raise UsageError("every --batches size must be at least 1")
    return batches


@click.command("receive-path")
@click.option(
    "--sales", type=click.IntRange(min=1), default=3000, show_default=True, help="Sales per run."
)
@click.option(
    "--batches", default="1,10,50", show_default=True, help="Sales per frame, comma-separated."
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Runs per batch size (the minimum is the figure).",
)
@_out_options("receive-path")
@reports_errors
def receive_path(
    sales: int, batches: str, repeats: int, out: Path | None, as_json: bool, work: Path | None
) -> None:
    """CPU per received sale on one lane (decrypt, verify, merge, fold), by sales per frame."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.receive_path import run_study

    sizes = _batches(batches)
    try:
        lines, results = run_study(sales, sizes, repeats, work)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "receive-path", as_json)
    if not as_json:
        for line in lines:
            console.print(line, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


@click.command("foundation")
@click.option(
    "--sales",
    type=click.IntRange(min=100),
    default=100_000,
    show_default=True,
    help="N: sales on the filled terminal (targets for reopen and RSS are stated at 100k).",
)
@click.option(
    "--profile-reopen",
    is_flag=True,
    help="Also cProfile one lanesync reopen and print the top functions to stderr.",
)
@_out_options("foundation")
@reports_errors
def foundation(
    sales: int, profile_reopen: bool, out: Path | None, as_json: bool, work: Path | None
) -> None:
    """One terminal against raw pycrdt: write rates, ack latency, bytes, merge, reopen, RSS."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.foundation import run_study

    try:
        text, results = run_study(sales, work, profile_reopen)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "foundation", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


def _ladder(text: str | None) -> tuple[float, ...] | None:
    if not text:
        return None
    try:
        rates = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UsageError(f"--ladder must be comma-separated sales/s, not {text!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise UsageError("every --ladder rate must be above 0")
    return rates


@click.command("mesh")
@click.option("--lanes", type=click.IntRange(2, 16), help="Lanes (default 8; --quick 3).")
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=200.0,
    show_default=True,
    help="Store-wide sales/s of the latency step.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.5),
    help="Seconds of every load step (default 5; --quick 1.5).",
)
@click.option("--quick", is_flag=True, help="A smoke run, about a minute.")
@click.option(
    "--split-sales",
    type=click.IntRange(min=1),
    help="Sales during the split (default 10000; --quick 2000).",
)
@click.option("--ladder", help="Comma-separated store-wide sales/s to try.")
@click.option("--skip-baseline", is_flag=True, help="lanesync only (no ratios, no verdicts).")
@click.option(
    "--profile-rate",
    type=click.FloatRange(min=0),
    help="One more lanesync step at "
    "this rate with lane 1 under cProfile (default: the first rate not kept up, if "
    "under the 1,500/s target; 0 or --quick: never).",
)
@click.option(
    "--profile-out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Keep the cProfile data (pstats) here.",
)
@click.option(
    "--wait-idle",
    type=click.FloatRange(min=0),
    help="Wait up to this many s for a "
    "quiet machine (load average < 1.0, < 0.2 cores busy; default 600; --quick 0).",
)
@_out_options("mesh")
@reports_errors
def mesh(
    lanes: int | None,
    rate: float,
    duration: float | None,
    quick: bool,
    split_sales: int | None,
    ladder: str | None,
    skip_baseline: bool,
    profile_rate: float | None,
    profile_out: Path | None,
    wait_idle: float | None,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """Lane processes in a full mesh against pycrdt-websocket: latency, highest rate, bytes."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.deps import INSTALL_HINT, missing_bench_deps
    from lanesync.bench.studies.common import run_guarded
    from lanesync.bench.studies.mesh import run_study
    from lanesync.bench.studies.mesh_systems import LADDER, QUICK_LADDER, SPLIT_SALES, MeshOptions

    if not skip_baseline and "pycrdt-websocket" in missing_bench_deps():
        raise UsageError(f"the baseline needs pycrdt-websocket: install it with `{INSTALL_HINT}`")
    options = MeshOptions(
        lanes=lanes or (3 if quick else 8),
        rate=rate,
        duration=duration or (1.5 if quick else 5.0),
        quick=quick,
        split_sales=split_sales or (2_000 if quick else SPLIT_SALES),
        ladder=_ladder(ladder) or (QUICK_LADDER if quick else LADDER),
        skip_baseline=skip_baseline,
        profile_rate=profile_rate,
        profile_out=profile_out,
        wait_idle=(0.0 if quick else 600.0) if wait_idle is None else wait_idle,
        workdir=work,
    )
    try:
        text, results = run_guarded(lambda: run_study(options))
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "mesh", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


@click.command("cloud")
@click.option(
    "--lanes",
    type=click.IntRange(2, 64),
    default=16,
    show_default=True,
    help="Lanes that write the day (catch-up).",
)
@click.option(
    "--sales",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Sales of the day (catch-up).",
)
@click.option(
    "--kills",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="SIGKILLs of the leader (failover).",
)
@click.option("--quick", is_flag=True, help="4 lanes, 2,000 sales, 3 kills.")
@click.option(
    "--skip",
    type=click.Choice(["catch-up", "failover"]),
    multiple=True,
    help="Leave a part out (repeatable).",
)
@click.option("--logs", type=DIR, help="Keep the processes' logs here.")
@_out_options("cloud")
@reports_errors
def cloud(
    lanes: int,
    sales: int,
    kills: int,
    quick: bool,
    skip: tuple[str, ...],
    logs: Path | None,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """The cloud: catch-up after a day-long WAN outage, and leader failover times."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.cloud import CloudOptions, run_study
    from lanesync.bench.studies.common import run_guarded

    if quick:
        lanes, sales, kills = 4, 2_000, 3
    options = CloudOptions(
        lanes=lanes,
        sales=sales,
        kills=kills,
        catch_up="catch-up" not in skip,
        failover="failover" not in skip,
        workdir=work,
        logs=logs,
    )
    try:
        text, results = run_guarded(lambda: run_study(options))
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "cloud", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


def _processes(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise UsageError(
            f"--processes must be comma-separated counts like 1,2,4, not {text!r}"
        ) from None
    if any(c < 1 for c in counts):
        raise UsageError("every --processes count must be at least 1")
    return counts


@click.command("cloud-ingest")
@click.option("--stores", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--sales", type=click.IntRange(min=1), default=300, show_default=True, help="Sales per store."
)
@click.option(
    "--processes",
    default="1,2,4",
    show_default=True,
    help="PostgreSQL configurations to run (cloud processes each); empty: none.",
)
@click.option("--uploaders", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--skip-sqlite", is_flag=True, help="No SQLite-1 baseline.")
@click.option("--quick", is_flag=True, help="10 stores x 50 sales.")
@click.option("--keep", type=DIR, help="Copy the processes' logs here at the end.")
@_out_options("cloud-ingest")
@reports_errors
def cloud_ingest(
    stores: int,
    sales: int,
    processes: str,
    uploaders: int,
    skip_sqlite: bool,
    quick: bool,
    keep: Path | None,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """Many stores upload a day each to the cloud: SQLite against PostgreSQL, 1-4 processes."""
    import importlib.util

    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.common import run_guarded

    if importlib.util.find_spec("psycopg") is None:
        raise UsageError(
            "cloud-ingest needs psycopg: install it with `pip install 'lanesync[postgresql]'`"
        )
    from lanesync.bench.studies.cloud_ingest import IngestOptions, run_study

    counts = _processes(processes)
    if skip_sqlite and not counts:
        raise UsageError("nothing to run: --skip-sqlite and no --processes")
    if quick:
        stores, sales = 10, 50
    options = IngestOptions(stores, sales, counts, uploaders, not skip_sqlite, work, keep)
    try:
        text, results, exact = run_guarded(lambda: run_study(options))
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "cloud-ingest", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)
    if not exact:
        raise UsageError(
            f"a configuration's tables are not exact (details in {target}/results.json)"
        )


@click.command("cloud-chain")
@click.option(
    "--stores",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Stores registered in the cloud.",
)
@click.option(
    "--active",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Of them, stores that upload (the others are registered only).",
)
@click.option(
    "--catchup-stores",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Of the active stores, those with a big catch-up.",
)
@click.option(
    "--catchup-sales",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    help="Sales of each catch-up.",
)
@click.option(
    "--sales",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Sales a small active store holds when it connects.",
)
@click.option(
    "--processes",
    default="1,2",
    show_default=True,
    help="Configurations to run: cloud processes on one PostgreSQL each.",
)
@click.option("--uploaders", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=1.0,
    show_default=True,
    help="Seconds between two live sales of a small store.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Seconds of live sales after the catch-up (no catch-up running).",
)
@click.option("--skip-restart", is_flag=True, help="No restart of a cloud process.")
@click.option("--quick", is_flag=True, help="200 stores, 20 active, 1 x 5,000 catch-up, 5 s.")
@click.option("--keep", type=DIR, help="Copy the processes' logs here at the end.")
@_out_options("cloud-chain")
@reports_errors
def cloud_chain(
    stores: int,
    active: int,
    catchup_stores: int,
    catchup_sales: int,
    sales: int,
    processes: str,
    uploaders: int,
    interval: float,
    duration: float,
    skip_restart: bool,
    quick: bool,
    keep: Path | None,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """A chain's cloud: thousands of stores registered, hundreds uploading, big catch-ups."""
    import importlib.util

    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.common import run_guarded

    if importlib.util.find_spec("psycopg") is None:
        raise UsageError(
            "cloud-chain needs psycopg: install it with `pip install 'lanesync[postgresql]'`"
        )
    from lanesync.bench.studies.cloud_chain import QUICK, QUICK_DURATION_S, ChainOptions, run_study

    counts = _processes(processes)
    if not counts:
        raise UsageError("nothing to run: no --processes")
    if quick:
        stores, active = QUICK["stores"], QUICK["active"]
        catchup_stores, catchup_sales = QUICK["catchup_stores"], QUICK["catchup_sales"]
        duration = QUICK_DURATION_S
    if active > stores:
        raise UsageError(f"--active ({active}) cannot exceed --stores ({stores})")
    if catchup_stores > active:
        raise UsageError(f"--catchup-stores ({catchup_stores}) cannot exceed --active ({active})")
    options = ChainOptions(
        stores, active, catchup_stores, catchup_sales, sales, counts, uploaders, interval,
        duration, not skip_restart, work, keep,
    )  # fmt: skip
    try:
        text, results, exact = run_guarded(lambda: run_study(options))
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "cloud-chain", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)
    if not exact:
        raise UsageError(
            f"a configuration's tables are not exact (details in {target}/results.json)"
        )


@click.command("discovery")
@click.option(
    "--reps",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Repetitions per order (new lane sorting first, then last).",
)
@_out_options("discovery")
@reports_errors
def discovery(reps: int, out: Path | None, as_json: bool, work: Path | None) -> None:
    """Start of a lane to its first sync with a peer found by mDNS, in network namespaces
    (root only)."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.discovery import run_study

    try:
        lines, results = run_study(reps, work)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "discovery", as_json)
    if not as_json:
        for line in lines:
            console.print(line, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


def _checkpoints(text: str) -> tuple[int, ...]:
    try:
        days = tuple(int(d) for d in text.split(",") if d.strip())
    except ValueError:
        raise UsageError(f"--checkpoints must be comma-separated days, not {text!r}") from None
    if any(d < 1 for d in days):
        raise UsageError("every --checkpoints day must be at least 1")
    return days


@click.command("year")
@click.option(
    "--days", type=click.IntRange(min=1), default=3, show_default=True, help="Days simulated."
)
@click.option(
    "--sales-per-day",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="The store's sales a day (spread over the lanes).",
)
@click.option("--lanes", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option(
    "--checkpoints",
    default="1,30,60,120,240,365",
    show_default=True,
    help="Days after which the lane is measured (those after --days are left out; the last "
    "day always is one).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Fresh processes per timed figure (the median is the figure).",
)
@_out_options("year")
@reports_errors
def year(
    days: int,
    sales_per_day: int,
    lanes: int,
    checkpoints: str,
    runs: int,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """A store's year through the real storage: lane RSS, reopen, state exchange, disk per sale
    and report latency as the days add up. The defaults are a smoke run; issue #17's figures:
    --days 365 --sales-per-day 2500 --lanes 4."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.year import YearOptions, checkpoint_days, run_study

    if sales_per_day < lanes:
        raise UsageError("--sales-per-day must be at least --lanes (every lane sells every day)")
    options = YearOptions(
        days=days,
        sales_per_day=sales_per_day,
        lanes=lanes,
        checkpoints=checkpoint_days(_checkpoints(checkpoints), days),
        runs=runs,
        workdir=work,
    )
    try:
        text, results = run_study(options)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "year", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


@click.command("sealing")
@click.option("--lanes", type=click.IntRange(2, 16), default=8, show_default=True)
@click.option(
    "--sales",
    type=click.IntRange(min=2),
    default=400,
    show_default=True,
    help="Sales of the day, spread over the lanes (at least one each).",
)
@click.option(
    "--runs",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Fresh stores (the median is the figure).",
)
@click.option("--logs", type=DIR, help="Keep the processes' logs here.")
@_out_options("sealing")
@reports_errors
def sealing(
    lanes: int,
    sales: int,
    runs: int,
    logs: Path | None,
    out: Path | None,
    as_json: bool,
    work: Path | None,
) -> None:
    """Issue #17's close to sealed: lanes and a cloud on loopback close the day together; the
    time from the last close to the day sealed on every lane."""
    from lanesync.bench.cluster import BenchError
    from lanesync.bench.studies.common import run_guarded
    from lanesync.bench.studies.sealing import SealingOptions, run_study

    began = time.monotonic()
    if sales < lanes:
        raise UsageError("--sales must be at least --lanes (every lane sells)")
    options = SealingOptions(lanes=lanes, sales=sales, runs=runs, workdir=work, logs=logs)
    try:
        text, results = run_guarded(lambda: run_study(options))
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    results["wall_seconds"] = round(time.monotonic() - began, 1)  # beside estimated_seconds
    target = _write(results, out, "sealing", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


STUDIES: tuple[click.Command, ...] = (
    cloud,
    cloud_chain,
    cloud_ingest,
    discovery,
    foundation,
    mesh,
    receive_path,
    sealing,
    year,
)
