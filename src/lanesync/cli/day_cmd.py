"""Business days on one lane: ``close`` them, print the store's Z-report, list the days.

Like the selling commands, each runs through the terminal's daemon when one holds the directory
and opens the directory itself otherwise; the output is identical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.table import Table

from lanesync.core import zreport
from lanesync.core.records import DayEnd
from lanesync.shell.terminal import Terminal

from .common import DIR, JSON_OPTION, daemon_client, reports_errors
from .output import console, emit_json, money

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
        console.print("nothing to close: every day up to it is closed already")


@click.command()
@click.argument("terminal_dir", type=DIR)
@DAY_OPTION
@JSON_OPTION
@reports_errors
def report(terminal_dir: Path, day: str | None, as_json: bool) -> None:
    """Print the store's Z-report of --day (default: the last day this lane closed), folded
    from the records this lane holds."""
    if day is not None:
        zreport.check_day(day)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("GET", "/v1/reports" if day is None else f"/v1/reports/{day}")
    else:
        with Terminal.open(terminal_dir) as terminal:
            day = day or zreport.default_day(terminal.replica)
            result = zreport.z_report(terminal.replica, day)
    if as_json:
        emit_json(result)
    else:
        print_report(result)


@click.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def days(terminal_dir: Path, as_json: bool) -> None:
    """List the business days this lane holds: open or closed (every lane closed it)."""
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


def print_report(report: dict[str, Any]) -> None:
    """A Z-report for people: one block per lane, the SKUs, the store's totals, the hash."""
    state = "complete" if report["complete"] else "INCOMPLETE"
    console.print(f"Z-report  store {report['store_id']}  day {report['day']}  ({state})")
    if report["missing_terminals"]:
        console.print(f"not closed yet by: {', '.join(report['missing_terminals'])}")
    lanes = Table(title="Lanes")
    for column in ("Lane", "Seqs", "Sales", "Voids", "Gross", "Voided", "Net"):
        lanes.add_column(column, justify="left" if column in ("Lane", "Seqs") else "right")
    for line in report["terminals"]:
        seqs = f"{line['first_seq']}-{line['last_seq']}" if line["first_seq"] else "-"
        lanes.add_row(
            line["terminal_id"],
            seqs,
            str(line["sales"]),
            str(line["voids"]),
            money(line["gross_cents"]),
            money(line["voided_cents"]),
            money(line["net_cents"]),
        )
    console.print(lanes)
    skus = Table(title="SKUs")
    skus.add_column("SKU")
    skus.add_column("Units", justify="right")
    skus.add_column("Net", justify="right")
    for line in report["skus"]:
        skus.add_row(line["sku"], str(line["units"]), money(line["net_cents"]))
    console.print(skus)
    totals = report["totals"]
    console.print(
        f"sales {totals['sales']}  voids {totals['voids']}  gross {money(totals['gross_cents'])}  "
        f"voided {money(totals['voided_cents'])}  net {money(totals['net_cents'])}"
    )
    console.print(f"report hash {report['report_hash']}")
