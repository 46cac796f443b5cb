"""``lanesync bench foundation`` and ``lanesync bench receive-path``: the studies (the scripts
that were in ``benchmarks/``), each writing ``results.json`` and ``report.md`` to ``--out`` as the
scenarios do. benchmarks/README.md explains every figure and holds the latest results.
"""

from __future__ import annotations

import json
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
    from lanesync.bench.studies.receive_path import run

    sizes = _batches(batches)
    try:
        lines, results = run(sales, sizes, repeats, work)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "receive-path", as_json)
    if not as_json:
        for line in lines:
            console.print(line, markup=False)
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
    from lanesync.bench.studies.foundation import study

    try:
        text, results = study(sales, work, profile_reopen)
    except BenchError as exc:
        raise UsageError(f"benchmark failed: {exc}") from None
    target = _write(results, out, "foundation", as_json)
    if not as_json:
        console.print(text, markup=False, soft_wrap=True)
        console.print(f"wrote {target}/results.json and report.md", markup=False)


STUDIES: tuple[click.Command, ...] = (foundation, receive_path)
