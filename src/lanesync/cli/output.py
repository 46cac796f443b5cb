"""How commands print: JSON for programs, rich tables for people, one line for errors."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

# Markup and emoji codes are off by default: messages echo user input (paths, SKUs, lines) and
# "[red]" or ":cow:" in it must print as typed. Prints of fixed text opt in with markup=True.
console = Console(highlight=False, markup=False, emoji=False)
errors = Console(stderr=True, highlight=False, markup=False, emoji=False)


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def when(ms: int, now_ms: int) -> str:
    """A moment for people: local time (with the date unless it is today) and how long ago,
    e.g. ``12:03:44, 5 s ago``; never raw epoch milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000).astimezone()
    today = datetime.fromtimestamp(now_ms / 1000).astimezone().date()
    shown = moment.strftime("%H:%M:%S" if moment.date() == today else "%Y-%m-%d %H:%M:%S")
    return f"{shown}, {age(now_ms - ms)}"


def age(elapsed_ms: int) -> str:
    """How long ago, in the largest unit that keeps it readable: ``5 s ago``, ``3 min ago``."""
    if elapsed_ms < 0:
        return "in the future (clocks differ)"
    seconds = elapsed_ms // 1000
    for unit, size in (("day", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{seconds} s ago"


def one_line(text: str) -> str:
    """An error message as exactly one line: control characters (a newline in a path) are
    shown escaped instead of breaking the line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def stock_table(items: list[dict[str, Any]], title: str = "Stock on hand") -> Table:
    table = Table(title=title)
    table.add_column("SKU")
    table.add_column("On hand", justify="right")
    for item in items:
        on_hand = int(item["on_hand"])
        table.add_row(str(item["sku"]), Text(str(on_hand), style="red" if on_hand < 0 else ""))
    return table


def local_time(at_ms: int) -> str:
    """A timestamp (ms since the epoch) as this computer's local time, to the second."""
    moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC).astimezone()
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def sales_table(sales: list[dict[str, Any]]) -> Table:
    """Sales as ``GET /v1/sales`` gives them: id, local time, lines, total, voided mark."""
    table = Table(title="Sales")
    table.add_column("Sale")
    table.add_column("Time")
    table.add_column("Lines")
    table.add_column("Total", justify="right")
    table.add_column("Voided")
    for sale in sales:
        lines = ", ".join(
            f"{line['sku']} x{line['qty']} @ {money(int(line['unit_cents']))}"
            for line in sale["lines"]
        )
        voided = f"VOIDED by {sale['void_id']}" if sale["voided"] else ""
        table.add_row(
            str(sale["id"]),
            local_time(int(sale["at_ms"])),
            lines,
            money(int(sale["total_cents"])),
            Text(voided, style="red" if voided else ""),
        )
    return table


def revocation_lines(revocations: dict[str, dict[str, Any]]) -> list[str]:
    """One line per revocation in a ``revocations`` report (status, verify)."""

    def cut(entry: dict[str, Any]) -> str:
        pinned = f" (hash {entry['hash'][:16]})" if entry["hash"] else ""
        return f"counts up to seq {entry['after_seq']}{pinned}, nothing after"

    lines = []
    for terminal, entry in revocations.items():
        if entry["after_seq"] is not None:
            lines.append(f"revoked {terminal}: {cut(entry)}")
        for key, keyed in entry["keys"].items():
            lines.append(f"revoked {terminal} key {key}: {cut(keyed)}")
        if entry["revoked_at_ms"] is not None:
            lines.append(
                f"revoked {terminal}: by time (format 1), records stamped from "
                f"{local_time(int(entry['revoked_at_ms']))} on never count"
            )
    return lines


def print_z_report(report: dict[str, Any]) -> None:
    """A Z-report for people: one block per lane, the SKUs, the store's totals, the hash."""
    state = "complete" if report["complete"] else "INCOMPLETE"
    if report["sealed"]:
        state += ", sealed"
    if report.get("amended"):
        state += ", amended"
    console.print(f"Z-report  store {report['store_id']}  day {report['day']}  ({state})")
    if report.get("amended"):
        console.print(
            "amended: records arrived after the day was sealed; it was sealed before with "
            f"report hash {', then '.join(report['amended_from'])}"
        )
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
