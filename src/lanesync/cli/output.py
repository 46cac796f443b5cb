"""How commands print: JSON for programs, rich tables for people, one line for errors."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}{whole}.{frac:02d}"


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def stock_table(items: list[dict[str, Any]], title: str = "Stock on hand") -> Table:
    table = Table(title=title)
    table.add_column("SKU")
    table.add_column("On hand", justify="right")
    for item in items:
        on_hand = int(item["on_hand"])
        table.add_row(str(item["sku"]), f"[red]{on_hand}[/red]" if on_hand < 0 else str(on_hand))
    return table
