"""``lanesync``: store setup, the offline lane commands, bundles, integrity checks, the demo.

Exit codes: 0 success; 1 a lanesync error (one line on stderr, nothing changed) or ``verify``
found integrity problems; 2 a malformed command line (click's own usage errors).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from lanesync import __version__
from lanesync.core import commands
from lanesync.core.identity import Role
from lanesync.core.ids import sku as parse_sku
from lanesync.core.ledger import Ledger
from lanesync.core.records import Record, Sale
from lanesync.errors import LanesyncError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .output import console, emit_json, errors, money, stock_table

P = ParamSpec("P")
R = TypeVar("R")

DIR = click.Path(path_type=Path, file_okay=False)
FILE_IN = click.Path(path_type=Path, dir_okay=False, exists=True, readable=True)
FILE_OUT = click.Path(path_type=Path, dir_okay=False, writable=True)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
DEFAULT_VALID_DAYS = 5 * 365  # lanes are replaced every few years; renew before that


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every lanesync error into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lanesync")
def cli() -> None:
    """Keep the checkout lanes of a store in sync, with no server in the store."""


# -- store and enrolment ------------------------------------------------------------------------


@cli.group()
def store() -> None:
    """Create and manage a store authority."""


@store.command("init")
@click.argument("store_dir", type=DIR)
@click.option("--store-id", required=True, help="Store id, e.g. store-042.")
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone of business days.")
@JSON_OPTION
@reports_errors
def store_init(store_dir: Path, store_id: str, timezone: str, as_json: bool) -> None:
    """Create the store authority key (mode 0600) and the store's public identity."""
    created = StoreDirectory.init(store_dir, store_id, timezone)
    if as_json:
        emit_json(
            {"store_id": created.identity.store_id, "public_identity": str(created.identity_file)}
        )
    else:
        console.print(
            f"store {created.identity.store_id} created; public identity: {created.identity_file}"
        )


@cli.command()
@click.argument("store_dir", type=DIR)
@click.argument("terminal_dir", type=DIR)
@click.option("--terminal-id", required=True, help="Terminal id, e.g. lane1.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=Role.CASHIER.value,
    show_default=True,
)
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True)
@JSON_OPTION
@reports_errors
def enroll(
    store_dir: Path, terminal_dir: Path, terminal_id: str, role: str, valid_days: int, as_json: bool
) -> None:
    """Create a terminal key and a certificate for it signed by the store key."""
    cert = StoreDirectory.open(store_dir).enroll(
        terminal_dir, terminal_id, Role(role), wall_clock_ms(), valid_days
    )
    if as_json:
        emit_json(
            {
                "terminal_id": cert.terminal_id,
                "role": cert.role.value,
                "key_fingerprint": cert.key_fingerprint,
                "not_after_ms": cert.not_after_ms,
            }
        )
    else:
        console.print(
            f"terminal {cert.terminal_id} enrolled as {cert.role.value} "
            f"(key {cert.key_fingerprint}) in {terminal_dir}"
        )


# -- lane commands ------------------------------------------------------------------------------


def _write_one(terminal_dir: Path, build: Callable[[Ledger], Any]) -> Record:
    with Terminal.open(terminal_dir) as terminal:
        return terminal.write(build)


def _print_record(record: Record, as_json: bool, what: str) -> None:
    if as_json:
        emit_json({"record_id": str(record.id)})
    else:
        console.print(f"{what} {record.id}")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("lines", nargs=-1, required=True)
@JSON_OPTION
@reports_errors
def sell(terminal_dir: Path, lines: tuple[str, ...], as_json: bool) -> None:
    """Record a sale: LINES are SKU:QTY[:UNIT_CENTS] (no price: the catalog price)."""
    requests = [commands.parse_line(text) for text in lines]
    record = _write_one(terminal_dir, lambda ledger: commands.build_sale(ledger, requests))
    total = record.body.total_cents if isinstance(record.body, Sale) else 0
    if as_json:
        emit_json({"sale_id": str(record.id), "total": total})
    else:
        console.print(f"sale {record.id} total {money(total)}")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sale_id")
@JSON_OPTION
@reports_errors
def void(terminal_dir: Path, sale_id: str, as_json: bool) -> None:
    """Void an earlier sale (of any lane); its units go back on hand."""
    record = _write_one(terminal_dir, lambda ledger: commands.build_void(ledger, sale_id))
    _print_record(record, as_json, f"sale {sale_id} voided by")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("qty", type=int)
@JSON_OPTION
@reports_errors
def receive(terminal_dir: Path, sku: str, qty: int, as_json: bool) -> None:
    """Record a stock receipt of QTY units."""
    record = _write_one(terminal_dir, lambda _: commands.build_receipt(sku, qty))
    _print_record(record, as_json, f"received {qty} x {sku}:")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("delta", type=int)
@click.option("--reason", required=True, help="Why stock changed (count, damage, theft ...).")
@JSON_OPTION
@reports_errors
def adjust(terminal_dir: Path, sku: str, delta: int, reason: str, as_json: bool) -> None:
    """Adjust stock by DELTA units (negative to remove)."""
    record = _write_one(terminal_dir, lambda _: commands.build_adjustment(sku, delta, reason))
    _print_record(record, as_json, f"adjusted {sku} by {delta}:")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("unit_cents", type=int)
@JSON_OPTION
@reports_errors
def price(terminal_dir: Path, sku: str, unit_cents: int, as_json: bool) -> None:
    """Set the catalog price of SKU (manager terminals only)."""
    with Terminal.open(terminal_dir) as terminal:
        role = terminal.role
        record = terminal.write(lambda _: commands.build_price_change(role, sku, unit_cents))
    _print_record(record, as_json, f"price of {sku} set to {money(unit_cents)}:")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku", required=False)
@JSON_OPTION
@reports_errors
def stock(terminal_dir: Path, sku: str | None, as_json: bool) -> None:
    """Show stock on hand (of every SKU, or of one)."""
    with Terminal.open(terminal_dir) as terminal:
        report = terminal.stock(None if sku is None else parse_sku(sku))
    if as_json:
        emit_json(report)
    else:
        console.print(stock_table(report["items"]))


# -- exchanging state ---------------------------------------------------------------------------


@cli.command("export")
@click.argument("terminal_dir", type=DIR)
@click.argument("bundle", type=FILE_OUT)
@click.option("--since", type=FILE_IN, help="State file of the replica the bundle is for.")
@JSON_OPTION
@reports_errors
def export_(terminal_dir: Path, bundle: Path, since: Path | None, as_json: bool) -> None:
    """Write a signed bundle of everything held (or only what --since's replica lacks)."""
    with Terminal.open(terminal_dir) as terminal:
        data = terminal.export_bundle(None if since is None else since.read_bytes())
    tmp = bundle.with_name(bundle.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(bundle)
    if as_json:
        emit_json({"bundle": str(bundle), "bytes": len(data)})
    else:
        console.print(f"wrote {bundle} ({len(data)} bytes)")


@cli.command("import")
@click.argument("terminal_dir", type=DIR)
@click.argument("bundle", type=FILE_IN)
@JSON_OPTION
@reports_errors
def import_(terminal_dir: Path, bundle: Path, as_json: bool) -> None:
    """Merge a bundle (idempotent, any order); a bad bundle is refused whole."""
    with Terminal.open(terminal_dir) as terminal:
        result = terminal.import_bundle(bundle.read_bytes())
    if as_json:
        emit_json(
            {
                "documents": result.documents,
                "new_records": result.records_after - result.records_before,
                "digest": result.digest,
            }
        )
    else:
        console.print(
            f"imported {bundle}: {result.records_after - result.records_before} new records, "
            f"digest {result.digest[:16]}"
        )


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("state_file", type=FILE_OUT)
@reports_errors
def state(terminal_dir: Path, state_file: Path) -> None:
    """Save this replica's state vectors, for another replica's `export --since`."""
    with Terminal.open(terminal_dir) as terminal:
        data = terminal.state_file()
    state_file.write_bytes(data)
    console.print(f"wrote {state_file}")


# -- integrity ----------------------------------------------------------------------------------


@cli.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def digest(terminal_dir: Path, as_json: bool) -> None:
    """Print the canonical digest of the replica (equal digests = converged)."""
    with Terminal.open(terminal_dir) as terminal:
        value = terminal.digest()
    if as_json:
        emit_json({"digest": value})
    else:
        click.echo(value)


@cli.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def verify(terminal_dir: Path, as_json: bool) -> None:
    """Check signatures and chains; exit 1 when anything held does not verify."""
    with Terminal.open(terminal_dir) as terminal:
        report = terminal.verify()
    if as_json:
        emit_json(report)
    else:
        _print_verify(report)
    if not report["ok"]:
        sys.exit(1)


def _print_verify(report: dict[str, Any]) -> None:
    status = "[green]OK[/green]" if report["ok"] else "[red]INTEGRITY PROBLEMS[/red]"
    console.print(f"{status}: {report['records']} records, digest {report['digest'][:16]}")
    for head in report["chains"]:
        console.print(f"  chain {head['terminal']}: head seq {head['seq']} ({head['hash'][:16]})")
    for kind in ("rejected", "unverified", "unauthorized", "broken_chains", "gaps"):
        for problem in report[kind]:
            details = ", ".join(f"{k}={v}" for k, v in problem.items())
            console.print(f"  [red]{kind}[/red]: {details}", markup=True)
    for item in report["oversold"]:
        console.print(
            f"  [yellow]oversold[/yellow] {item['sku']}: on hand {item['on_hand']}, "
            f"sales {', '.join(item['sales'])}"
        )


@cli.command()
@click.option("--dir", "work_dir", type=DIR, help="Keep the demo store here (default: a temp dir).")
@reports_errors
def demo(work_dir: Path | None) -> None:
    """Run a store of lanes offline: sell apart, swap bundles, converge exactly."""
    from lanesync.cli.demo import run_demo

    run_demo(work_dir)


def main() -> None:
    cli()
