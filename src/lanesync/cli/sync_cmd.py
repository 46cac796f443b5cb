"""Sync without a network and integrity: bundles, state files, digests, verify."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from lanesync.core import zreport
from lanesync.shell.terminal import Terminal

from .common import (
    DIR,
    FILE_IN,
    FILE_OUT,
    JSON_OPTION,
    daemon_client,
    reports_errors,
)
from .output import console, emit_json, revocation_lines


@click.command("export")
@click.argument("terminal_dir", type=DIR)
@click.argument("bundle", type=FILE_OUT)
@click.option("--since", type=FILE_IN, help="State file of the replica the bundle is for.")
@click.option(
    "--day", help="Only this business day's ledger, YYYY-MM-DD (a sealed day: its archive)."
)
@JSON_OPTION
@reports_errors
def export_(
    terminal_dir: Path, bundle: Path, since: Path | None, day: str | None, as_json: bool
) -> None:
    """Write a signed bundle of everything held (or only what --since's replica lacks), or of
    one day's records (--day)."""
    if day is not None:
        zreport.check_day(day)
    state_bytes = None if since is None else since.read_bytes()
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        path = "/v1/export" if day is None else f"/v1/days/{day}/export"
        data = daemon.call("POST", path, raw=state_bytes or b"")
    else:
        with Terminal.open(terminal_dir) as terminal:
            if day is None:
                data = terminal.export_bundle(state_bytes)
            else:
                data = terminal.export_day(day, state_bytes)
    tmp = bundle.with_name(bundle.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(bundle)
    if as_json:
        emit_json({"bundle": str(bundle), "bytes": len(data)})
    else:
        console.print(f"wrote {bundle} ({len(data)} bytes)", markup=False)


@click.command("import")
@click.argument("terminal_dir", type=DIR)
@click.argument("bundle", type=FILE_IN)
@JSON_OPTION
@reports_errors
def import_(terminal_dir: Path, bundle: Path, as_json: bool) -> None:
    """Merge a bundle (idempotent, any order); a bad bundle is refused whole."""
    data = bundle.read_bytes()
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/import", raw=data)
    else:
        with Terminal.open(terminal_dir) as terminal:
            imported = terminal.import_bundle(data)
        delta = imported.records_after - imported.records_before
        result = {
            "documents": imported.documents,
            "new_records": max(0, delta),
            # A bundle can reveal a fork or a revocation that withdraws counted records.
            "withdrawn_records": max(0, -delta),
            "digest": imported.digest,
        }
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"imported {bundle}: {result['new_records']} new records, "
            f"digest {str(result['digest'])[:16]}",
            markup=False,
        )


@click.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("state_file", type=FILE_OUT)
@JSON_OPTION
@reports_errors
def state(terminal_dir: Path, state_file: Path, as_json: bool) -> None:
    """Save this replica's state vectors, for another replica's `export --since`."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        data = daemon.call("GET", "/v1/state")
    else:
        with Terminal.open(terminal_dir) as terminal:
            data = terminal.state_file()
    state_file.write_bytes(data)
    if as_json:
        emit_json({"state_file": str(state_file), "bytes": len(data)})
    else:
        console.print(f"wrote {state_file}", markup=False)


@click.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def digest(terminal_dir: Path, as_json: bool) -> None:
    """Print the canonical digest of the replica (equal digests = converged)."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        value = str(daemon.call("GET", "/v1/digest")["digest"])
    else:
        with Terminal.open(terminal_dir) as terminal:
            value = terminal.digest()
    if as_json:
        emit_json({"digest": value})
    else:
        click.echo(value)


@click.command("verify")
@click.argument("terminal_dir", type=DIR)
@click.option(
    "--day",
    help="Check only this business day, YYYY-MM-DD (a sealed day: its archive, signature, "
    "records and report).",
)
@JSON_OPTION
@reports_errors
def verify_command(terminal_dir: Path, day: str | None, as_json: bool) -> None:
    """Check signatures and chains; exit 1 when anything held does not verify."""
    if day is not None:
        zreport.check_day(day)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        path = "/v1/verify" if day is None else f"/v1/days/{day}/verify"
        report = daemon.call("GET", path)
    else:
        with Terminal.open(terminal_dir) as terminal:
            report = terminal.integrity() if day is None else terminal.verify_day(day)
    if day is not None:
        show_day_check(report, as_json)
    else:
        show_integrity(report, as_json)


def show_day_check(report: dict[str, Any], as_json: bool) -> None:
    """Print a ``verify --day`` report and exit 1 when the day does not verify."""
    if as_json:
        emit_json(report)
    else:
        status = "[green]OK[/green]" if report["ok"] else "[red]INTEGRITY PROBLEMS[/red]"
        digest = report["report_hash"]
        console.print(
            f"{status}: day {report['day']} ({report['state']}), {report['records']} records, "
            f"report hash {digest[:16] if digest else '-'}",
            markup=True,
        )
        for problem in report["problems"]:
            console.print(f"  {problem}", markup=False, style="red")
        print_day_findings(report)
    if not report["ok"]:
        sys.exit(1)


def show_integrity(report: dict[str, Any], as_json: bool) -> None:
    """Print a verify report (a lane's or the cloud's replica of a store) and exit 1 when
    anything held does not verify."""
    if as_json:
        emit_json(report)
    else:
        print_integrity(report)
    if not report["ok"]:
        sys.exit(1)


def print_integrity(report: dict[str, Any]) -> None:
    status = "[green]OK[/green]" if report["ok"] else "[red]INTEGRITY PROBLEMS[/red]"
    console.print(
        f"{status}: {report['records']} records, digest {report['digest'][:16]}", markup=True
    )
    for head in report["chains"]:
        console.print(
            f"  chain {head['terminal']}: head seq {head['seq']} ({head['hash'][:16]})",
            markup=False,
        )
    for line in revocation_lines(report["revocations"]):
        console.print(f"  {line}", markup=False)
    for kind in ("rejected", "unverified", "revoked", "unauthorized", "broken_chains", "gaps"):
        for problem in report[kind]:
            details = ", ".join(f"{k}={v}" for k, v in problem.items())
            console.print(f"  {kind}: {details}", markup=False, style="red")
    print_day_findings(report)
    for damaged in report.get("sealed_reports", ()):
        console.print(
            f"  sealed_reports: {damaged['day']}: the stored Z-report is not the one sealed with "
            f"hash {damaged['report_hash'][:16]} (see `lanesync verify --day {damaged['day']}`)",
            markup=False,
            style="red",
        )
    for closed in report["closed_chains"]:
        console.print(
            f"  closed_chains: terminal={closed['terminal']}, closed_at={closed['closed_at']}, "
            f"refused={closed['refused']}",
            markup=False,
            style="red",
        )
    for fork in report["resolved_forks"]:
        branches = "; ".join(
            f"{b['first_hash'][:16]} counted to seq {b['counted_to_seq']} of {b['head_seq']}"
            for b in fork["branches"]
        )
        console.print(
            f"  resolved fork {fork['terminal']} at seq {fork['fork_seq']}, closed at seq "
            f"{fork['closed_at']}: {branches}",
            markup=False,
        )
    for item in report["successions"]:
        console.print(
            f"  {item['kind']}: {item['terminal']} continues {item['predecessor']} after seq "
            f"{item['after_seq']}",
            markup=False,
        )
    for item in report["oversold"]:
        console.print(
            f"  oversold {item['sku']}: on hand {item['on_hand']}, "
            f"sales {', '.join(item['sales'])}",
            markup=False,
            style="yellow",
        )


def print_day_findings(report: dict[str, Any]) -> None:
    """The findings of day-ends (``zreport.day_findings``) in a verify report."""
    for mismatch in report["day_end_mismatches"]:
        console.print(
            f"  day_end_mismatches: {mismatch['terminal']} {mismatch['day']} (seq "
            f"{mismatch['seq']}) signed {mismatch['signed']}, its records say "
            f"{mismatch['computed']}",
            markup=False,
            style="red",
        )
    for late in report["records_after_close"]:
        console.print(
            f"  records_after_close: {late['record']} falls in {late['day']}, closed by seq "
            f"{late['closed_by_seq']}",
            markup=False,
            style="red",
        )
