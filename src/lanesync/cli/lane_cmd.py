"""Selling and stock on one lane: sale, void, receipt, adjustment, price, stock on hand, and
the sales journal.

Each command runs through the terminal's daemon when one holds the directory (the daemon owns
the replica and its lock), and opens the directory itself otherwise. Output is identical."""

from __future__ import annotations

import contextlib
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from lanesync.core import bodies
from lanesync.core.ids import RecordId
from lanesync.core.ids import sku as parse_sku
from lanesync.core.journal import MAX_LIMIT, SalesQuery, check_limit
from lanesync.core.records import Sale
from lanesync.shell.terminal import Terminal

from .common import (
    DIR,
    JSON_OPTION,
    daemon_client,
    print_record,
    reports_errors,
    write_offline,
)
from .output import console, emit_json, money, sales_table, stock_table


@click.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("lines", nargs=-1, required=True)
@JSON_OPTION
@reports_errors
def sell(terminal_dir: Path, lines: tuple[str, ...], as_json: bool) -> None:
    """Record a sale: LINES are SKU:QTY[:UNIT_CENTS] (no price: the catalog price)."""
    requests = [bodies.parse_line(text) for text in lines]
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        body = [{"sku": r.sku, "qty": r.qty, "unit_price": r.unit_cents} for r in requests]
        result = daemon.call("POST", "/v1/sales", {"lines": body})
    else:
        record = write_offline(terminal_dir, partial(bodies.build_sale, requests=requests))
        total = record.body.total_cents if isinstance(record.body, Sale) else 0
        result = {"sale_id": str(record.id), "total": total}
    if as_json:
        emit_json(result)
    else:
        console.print(f"sale {result['sale_id']} total {money(result['total'])}")


@click.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sale_id")
@JSON_OPTION
@reports_errors
def void(terminal_dir: Path, sale_id: str, as_json: bool) -> None:
    """Void an earlier sale (of any lane); its units go back on hand."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        RecordId.parse(sale_id)  # a malformed id never reaches the URL
        result = daemon.call("POST", f"/v1/sales/{sale_id}/void")
    else:
        record = write_offline(terminal_dir, partial(bodies.build_void, sale_id=sale_id))
        result = {"record_id": str(record.id)}
    print_record(result, as_json, f"sale {sale_id} voided by")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("qty", type=int)
@JSON_OPTION
@reports_errors
def receive(terminal_dir: Path, sku: str, qty: int, as_json: bool) -> None:
    """Record a stock receipt of QTY units."""
    body = bodies.build_receipt(sku, qty)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/stock/receive", {"sku": sku, "qty": qty})
    else:
        result = {"record_id": str(write_offline(terminal_dir, lambda _: body).id)}
    print_record(result, as_json, f"received {qty} x {sku}:")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("delta", type=int)
@click.option("--reason", required=True, help="Why stock changed (count, damage, theft ...).")
@JSON_OPTION
@reports_errors
def adjust(terminal_dir: Path, sku: str, delta: int, reason: str, as_json: bool) -> None:
    """Adjust stock by DELTA units (negative to remove)."""
    body = bodies.build_adjustment(sku, delta, reason)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        payload = {"sku": sku, "delta": delta, "reason": reason}
        result = daemon.call("POST", "/v1/stock/adjust", payload)
    else:
        result = {"record_id": str(write_offline(terminal_dir, lambda _: body).id)}
    print_record(result, as_json, f"adjusted {sku} by {delta}:")


@click.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("unit_cents", type=int)
@JSON_OPTION
@reports_errors
def price(terminal_dir: Path, sku: str, unit_cents: int, as_json: bool) -> None:
    """Set the catalog price of SKU (manager terminals only)."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/prices", {"sku": sku, "unit_price": unit_cents})
    else:
        with Terminal.open(terminal_dir) as terminal:
            # Built in the write, like every other record: a revoked lane says so first.
            build = partial(bodies.build_price_change, terminal.role, sku, unit_cents)
            result = {"record_id": str(terminal.write(lambda _: build()).id)}
    print_record(result, as_json, f"price of {sku} set to {money(unit_cents)}:")


@click.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku", required=False)
@JSON_OPTION
@reports_errors
def stock(terminal_dir: Path, sku: str | None, as_json: bool) -> None:
    """Show stock on hand (of every SKU, or of one)."""
    item = None if sku is None else parse_sku(sku)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        report = daemon.call("GET", "/v1/stock" if item is None else f"/v1/stock/{item}")
    else:
        with Terminal.open(terminal_dir) as terminal:
            report = terminal.stock(item)
    if as_json:
        emit_json(report)
    else:
        console.print(stock_table(report["items"]))


@click.command()
@click.argument("terminal_dir", type=DIR)
@click.option("--day", help="Only sales of this store-local day (YYYY-MM-DD).")
@click.option("--terminal", "terminal_id", help="Only sales made by this terminal.")
@click.option(
    "--limit",
    type=int,
    help=f"Show at most N sales (1-{MAX_LIMIT}) and the cursor of the rest; default: all.",
)
@click.option("--cursor", help="Continue a listing from the cursor a --limit listing gave.")
@JSON_OPTION
@reports_errors
def sales(
    terminal_dir: Path,
    day: str | None,
    terminal_id: str | None,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """List the sales that count on this lane, oldest first: time, lines, total, voided."""
    query = SalesQuery.of(None, day, terminal_id)
    page_size = check_limit(limit) if limit is not None else MAX_LIMIT
    daemon = daemon_client(terminal_dir)
    listed: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if daemon is None:
            journal = stack.enter_context(Terminal.open(terminal_dir)).journal

            def page(after: str | None) -> dict[str, Any]:
                return journal.page(query, page_size, after)
        else:

            def page(after: str | None) -> dict[str, Any]:
                params = {"day": day, "terminal": terminal_id, "limit": page_size, "cursor": after}
                given = {k: v for k, v in params.items() if v is not None}
                return dict(daemon.call("GET", f"/v1/sales?{urlencode(given)}"))

        while True:
            answer = page(cursor)
            listed.extend(answer["sales"])
            cursor = answer["next_cursor"]
            if cursor is None or limit is not None:
                break
    if as_json:
        emit_json({"sales": listed, "next_cursor": cursor})
        return
    console.print(sales_table(listed))
    if cursor is not None:
        console.print(f"more: lanesync sales {terminal_dir} --cursor {cursor}", soft_wrap=True)
