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
                f"{entry['revoked_at_ms']} ms on never count"
            )
    return lines
