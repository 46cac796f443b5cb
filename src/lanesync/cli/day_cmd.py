"""Business days on one lane: ``close`` them, print the store's Z-report, list the days.

Like the selling commands, each runs through the terminal's daemon when one holds the directory
and opens the directory itself otherwise; the output is identical. ``report --day`` of a sealed
day reads the report stored with the seal and opens nothing else."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from lanesync.core import zreport
from lanesync.core.records import DayEnd
from lanesync.shell.terminal import Terminal, stored_sealed_report

from .common import DIR, JSON_OPTION, daemon_client, reports_errors
from .output import console, emit_json, print_z_report

DAY_OPTION = click.option("--day", help="A business day, YYYY-MM-DD (store time).")


@click.command()
@click.argument("terminal_dir", type=DIR)
@DAY_OPTION
@JSON_OPTION
@reports_errors
def close(terminal_dir: Path, day: str | None, as_json: bool) -> None:
    """Close this lane's open business days up to --day (default: today, store time): one
    signed day-end record each, empty days included. Closing again changes nothing."""
    if day is not None:
        zreport.check_day(day)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/close", {} if day is None else {"day": day})
    else:
        with Terminal.open(terminal_dir) as terminal:
            records = terminal.close_days(day)
        result = {"closed": [r.body.day for r in records if isinstance(r.body, DayEnd)]}
    if as_json:
        emit_json(result)
    elif result["closed"]:
        console.print(f"closed {', '.join(result['closed'])}")
    else:
        # Closed already, or before this lane's first record (a spare never started has none).
        console.print(f"nothing to close: this lane has no open day up to {day or 'today'}")


@click.command()
@click.argument("terminal_dir", type=DIR)
@DAY_OPTION
@JSON_OPTION
@reports_errors
def report(terminal_dir: Path, day: str | None, as_json: bool) -> None:
    """Print the store's Z-report of --day (default: the last day this lane closed), folded
    from the records this lane holds; of a sealed day, the report stored when it was sealed."""
    if day is not None:
        zreport.check_day(day)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("GET", "/v1/reports" if day is None else f"/v1/reports/{day}")
    else:
        # A sealed day's report is read as it was stored, without opening the replica.
        stored = None if day is None else stored_sealed_report(terminal_dir, day)
        if stored is not None:
            result = stored
        else:
            with Terminal.open(terminal_dir) as terminal:
                if day is None:
                    day = zreport.default_day(terminal.replica)
                else:
                    zreport.check_begun(terminal.replica, day, terminal.now_ms())
                result = terminal.z_report(day)
    if as_json:
        emit_json(result)
    else:
        print_z_report(result)


@click.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def days(terminal_dir: Path, as_json: bool) -> None:
    """List the business days this lane holds: open, closed (every lane closed it) or sealed
    (kept as a signed archive)."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("GET", "/v1/days")
    else:
        with Terminal.open(terminal_dir) as terminal:
            result = zreport.days(terminal.replica)
    if as_json:
        emit_json(result)
        return
    table = Table(title="Business days")
    for column in ("Day", "State", "Records", "Report hash"):
        table.add_column(column, justify="right" if column == "Records" else "left")
    for entry in result["days"]:
        digest = entry["report_hash"]
        table.add_row(
            entry["day"], entry["state"], str(entry["records"]), digest[:16] if digest else "-"
        )
    console.print(table)
