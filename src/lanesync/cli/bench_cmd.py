"""``lanesync bench``: benchmark scenarios on real lane processes, and ``bench compare``.

Every scenario runs real processes on 127.0.0.1 only, each link through a fault-injecting
proxy, for lanesync and (in the same run) the baselines ``--systems`` names; it runs what the
command line asks and no more, and says how long that will take before it starts; results go
to ``--out``:
``results.json``, ``report.md`` and ``plots/*.png``. docs/reference/benchmarks.md explains every
figure.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from lanesync.errors import LanesyncError, UsageError

from .group import UntruncatedGroup
from .output import console, emit_json, errors

DIR = click.Path(path_type=Path, file_okay=False)
FILE_IN = click.Path(path_type=Path, dir_okay=False, exists=True, readable=True)


def reports_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Every lanesync error: one ``error:`` line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LanesyncError as exc:
            errors.print(f"error: {exc}", markup=False, soft_wrap=True)
            sys.exit(1)
        except OSError as exc:
            name = f" {exc.filename}" if exc.filename else ""
            errors.print(f"error:{name}: {exc.strerror or exc}", markup=False, soft_wrap=True)
            sys.exit(1)

    return wrapper


SCENARIO_HELP = {
    "steady": "Propagation latency at --rate; with --ladder, the highest rate kept up too.",
    "split-heal": "Two halves sell apart, then heal: time and bytes to converge vs split size.",
    "outage": "The WAN to the cloud is down for a (scaled) day of sales: time until exact.",
    "join": "A new lane joins a store holding a full (scaled) day: time to sale-ready.",
    "churn": "Lanes crash (SIGKILL) and restart during load: lag and lost sales (must be 0).",
    "scale": "The steady figures for 2, 4, 8 ... lanes (up to --lanes).",
    "all": "Every scenario in turn, into one results.json.",
}


def _require_bench_deps() -> None:
    from lanesync.bench.deps import INSTALL_HINT, missing_bench_deps

    missing = missing_bench_deps()
    if missing:
        raise UsageError(
            f"lanesync bench needs {', '.join(missing)}: install them with `{INSTALL_HINT}`"
        )


def _systems(text: str) -> tuple[str, ...]:
    """``all``, or a comma list that names lanesync (every figure is a ratio to it)."""
    from lanesync.bench.cluster import LANESYNC, SYSTEMS

    if text.strip() == "all":
        return SYSTEMS
    chosen = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in chosen if s not in SYSTEMS]
    if unknown:
        raise UsageError(f"unknown system {unknown[0]!r}; choose from all, {', '.join(SYSTEMS)}")
    if LANESYNC not in chosen:
        raise UsageError("--systems must include lanesync (every figure is a ratio to it)")
    return tuple(s for s in SYSTEMS if s in chosen)


def _options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--lanes", type=click.IntRange(2, 64), help="Lanes (default 4; scale: 8)."),
        click.option(
            "--rate",
            type=click.FloatRange(min=1, max=100_000),
            default=200.0,
            show_default=True,
            help="Store-wide sales per second.",
        ),
        click.option(
            "--duration",
            type=click.FloatRange(min=0.5, max=3600),
            default=10.0,
            show_default=True,
            help="Seconds of load per step (and rate x duration = a scaled day).",
        ),
        click.option(
            "--latency", type=click.FloatRange(0, 10_000), default=0.0, help="One-way ms."
        ),
        click.option("--jitter", type=click.FloatRange(0, 10_000), default=0.0, help="+- ms."),
        click.option(
            "--loss",
            type=click.FloatRange(0, 100),
            default=0.0,
            help="Percent of chunks stalled for a 200 ms retransmission timeout.",
        ),
        click.option("--repeat", type=click.IntRange(1, 100), default=1, show_default=True),
        click.option("--seed", type=int, default=1, show_default=True),
        click.option("--out", type=DIR, help="Results directory (default bench-results/NAME)."),
        click.option("--json", "as_json", is_flag=True, help="Print results.json on stdout."),
        click.option(
            "--systems",
            default="lanesync",
            show_default=True,
            help="Comma-separated systems to run (lanesync always), or all: "
            "lanesync, lanesync-unsigned, pycrdt-websocket, naive-broadcast.",
        ),
        click.option(
            "--ladder/--no-ladder",
            default=False,
            show_default=True,
            help="Climb the throughput ladder in steady and scale (a step per rung above --rate).",
        ),
        click.option(
            "--dry-run",
            is_flag=True,
            help="Print the plan and its estimated wall time; run nothing.",
        ),
        click.option("--max-rate", type=float, default=None, hidden=True, help="Ladder top."),
        click.option("--work", type=DIR, hidden=True, help="Parent of the temporary store dirs."),
        click.option("--keep-work", is_flag=True, hidden=True, help="Copy logs into --out."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("bench", cls=UntruncatedGroup)
def bench() -> None:
    """Benchmark lanesync against its baselines on real processes (loopback only)."""


def _make_command(name: str) -> click.Command:
    @bench.command(name, help=SCENARIO_HELP[name])
    @_options
    @reports_errors
    def command(
        lanes: int | None,
        rate: float,
        duration: float,
        latency: float,
        jitter: float,
        loss: float,
        repeat: int,
        seed: int,
        out: Path | None,
        as_json: bool,
        systems: str,
        ladder: bool,
        dry_run: bool,
        max_rate: float | None,
        work: Path | None,
        keep_work: bool,
    ) -> None:
        began = time.monotonic()  # the command's wall time, its plots included, for results.json
        _require_bench_deps()
        from lanesync.bench.cluster import BenchError, Faults
        from lanesync.bench.estimate import estimate, human_seconds
        from lanesync.bench.runner import Plan, command_line, lanesync_failures, run_bench
        from lanesync.bench.scenarios import LADDER, SCENARIOS, Settings

        settings = Settings(
            lanes=lanes or 4,
            scale_lanes=lanes or 8,
            rate=rate,
            duration_s=duration,
            faults=Faults(latency, jitter, loss, seed),
            repeat=repeat,
            seed=seed,
            ladder=ladder,
            max_rate=LADDER[-1] if max_rate is None else max_rate,
        )
        target = out or Path("bench-results") / name
        scenarios = SCENARIOS if name == "all" else (name,)
        chosen = _systems(systems)
        guess = estimate(scenarios, chosen, settings)
        if dry_run:
            if as_json:
                emit_json(
                    {
                        "scenarios": list(scenarios),
                        "systems": list(chosen),
                        "ladder": settings.ladder,
                        "estimated_seconds": guess.seconds,
                        "store_runs": guess.stores,
                        "load_steps": guess.steps,
                    }
                )
            else:
                console.print(
                    f"{', '.join(scenarios)} for {', '.join(chosen)}: {guess.line()}",
                    markup=False,
                    soft_wrap=True,
                )
            return
        # Before anything starts, so a long run can be stopped at once; stdout stays pure JSON.
        (errors if as_json else console).print(guess.line(), markup=False, soft_wrap=True)
        plan = Plan(
            scenarios=scenarios,
            systems=chosen,
            settings=settings,
            out=target,
            command=command_line(),
            work=work,
            keep_work=keep_work,
            estimated_s=guess.seconds,
        )
        target.mkdir(parents=True, exist_ok=True)
        try:
            results = run_bench(plan, progress=not as_json or sys.stderr.isatty())
        except BenchError as exc:
            raise UsageError(f"benchmark failed: {exc}") from None
        write_results(results, target, began)
        if as_json:
            emit_json(results)
        else:
            console.print(f"wrote {target}/results.json, report.md and plots/", markup=False)
            print_summary(results)
            took, told = human_seconds(results["wall_seconds"]), human_seconds(guess.seconds)
            console.print(f"took {took} (estimated {told})", markup=False)
        problems = lanesync_failures(results)
        if problems:
            raise UsageError("; ".join(problems) + f" (details in {target}/results.json)")

    return command


for _name in SCENARIO_HELP:
    _make_command(_name)


def write_results(results: dict[str, Any], target: Path, began: float | None = None) -> None:
    """results.json, the plots and report.md; ``began`` (``time.monotonic()`` when the command
    started) adds ``wall_seconds``, the command's time up to here, to compare with the estimate."""
    from lanesync.bench.plots import make_plots
    from lanesync.bench.report import render

    plots = make_plots(results, target / "plots")
    if began is not None:
        results["wall_seconds"] = round(time.monotonic() - began, 1)
    (target / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (target / "report.md").write_text(render(results, plots))


def print_summary(results: dict[str, Any]) -> None:
    from lanesync.bench.report import cell, ratio_cell

    for scenario, data in results["scenarios"].items():
        table = Table(title=f"{scenario} (median over repeats)")
        table.add_column("figure")
        for system in data["systems"]:
            table.add_column(system, justify="right")
        for figure in data["figures"]:
            cells = [cell(figure["systems"].get(s, {}), figure["unit"]) for s in data["systems"]]
            table.add_row(f"{figure['name']} ({figure['unit']})", *cells)
        console.print(table)
        ratios = [
            f"{f['name']}: " + ", ".join(f"{b} {ratio_cell(r)}" for b, r in f["ratios"].items())
            for f in data["figures"]
            if f["ratios"]
        ]
        if ratios:
            console.print("lanesync / baseline: " + "; ".join(ratios[:4]) + " ...", markup=False)


@bench.command("compare")
@click.argument("old", type=FILE_IN)
@click.argument("new", type=FILE_IN)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@reports_errors
def compare_cmd(old: Path, new: Path, as_json: bool) -> None:
    """Ratios NEW/OLD of every figure; a change is flagged only outside the run-to-run spread."""
    from lanesync.bench.compare import CompareError, compare, load

    try:
        rows = compare(load(old), load(new))
    except CompareError as exc:
        raise UsageError(str(exc)) from None
    if as_json:
        emit_json({"changes": [_row(r) for r in rows]})
        return
    table = Table(title=f"{new} vs {old}")
    for column in ("scenario", "figure", "system", "old", "new", "new/old", "change"):
        table.add_column(column)
    for row in rows:
        style = {"better": "green", "worse": "red"}.get(row.verdict)
        table.add_row(
            row.scenario,
            row.figure,
            row.system,
            f"{row.old:.4g} {row.unit}",
            f"{row.new:.4g} {row.unit}",
            f"{row.ratio:.2f}x",
            row.verdict or "within spread",
            style=style,
        )
    console.print(table)
    flagged = sum(1 for r in rows if r.verdict)
    console.print(f"{flagged} of {len(rows)} figures changed beyond the run-to-run spread")


def _row(row: Any) -> dict[str, Any]:
    return {
        "scenario": row.scenario,
        "figure": row.figure,
        "system": row.system,
        "unit": row.unit,
        "old": row.old,
        "new": row.new,
        "ratio": row.ratio,
        "change": row.verdict or None,
    }


from lanesync.cli import bench_studies  # noqa: E402 - kept beside its registration

for _study in bench_studies.STUDIES:
    bench.add_command(_study)
