"""``lanesync``: store setup, the offline lane commands, bundles, integrity checks, the demo.

Exit codes: 0 success; 1 a lanesync error (one line on stderr, nothing changed) or ``verify``
found integrity problems; 2 a malformed command line (click's own usage errors).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from lanesync import __version__
from lanesync.core import commands
from lanesync.core.identity import Role
from lanesync.core.ids import RecordId
from lanesync.core.ids import sku as parse_sku
from lanesync.core.ledger import Ledger
from lanesync.core.records import Body, Record, Sale
from lanesync.errors import LanesyncError, UsageError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.runtime import DaemonClient
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
# Each command runs through the terminal's daemon when one holds the directory (the daemon owns
# the replica and its lock), and opens the directory itself otherwise. Output is identical.


def _daemon(terminal_dir: Path) -> DaemonClient | None:
    return DaemonClient.for_directory(terminal_dir)


def _write_offline(terminal_dir: Path, build: Callable[[Ledger], Body]) -> Record:
    with Terminal.open(terminal_dir) as terminal:
        return terminal.write(build)


def _print_record(result: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        emit_json(result)
    else:
        console.print(f"{what} {result['record_id']}", markup=False)


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("lines", nargs=-1, required=True)
@JSON_OPTION
@reports_errors
def sell(terminal_dir: Path, lines: tuple[str, ...], as_json: bool) -> None:
    """Record a sale: LINES are SKU:QTY[:UNIT_CENTS] (no price: the catalog price)."""
    requests = [commands.parse_line(text) for text in lines]
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        body = [{"sku": r.sku, "qty": r.qty, "unit_price": r.unit_cents} for r in requests]
        result = daemon.call("POST", "/v1/sales", {"lines": body})
    else:
        record = _write_offline(terminal_dir, partial(commands.build_sale, requests=requests))
        total = record.body.total_cents if isinstance(record.body, Sale) else 0
        result = {"sale_id": str(record.id), "total": total}
    if as_json:
        emit_json(result)
    else:
        console.print(f"sale {result['sale_id']} total {money(result['total'])}")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sale_id")
@JSON_OPTION
@reports_errors
def void(terminal_dir: Path, sale_id: str, as_json: bool) -> None:
    """Void an earlier sale (of any lane); its units go back on hand."""
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        RecordId.parse(sale_id)  # a malformed id never reaches the URL
        result = daemon.call("POST", f"/v1/sales/{sale_id}/void")
    else:
        record = _write_offline(terminal_dir, partial(commands.build_void, sale_id=sale_id))
        result = {"record_id": str(record.id)}
    _print_record(result, as_json, f"sale {sale_id} voided by")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("qty", type=int)
@JSON_OPTION
@reports_errors
def receive(terminal_dir: Path, sku: str, qty: int, as_json: bool) -> None:
    """Record a stock receipt of QTY units."""
    body = commands.build_receipt(sku, qty)
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/stock/receive", {"sku": sku, "qty": qty})
    else:
        result = {"record_id": str(_write_offline(terminal_dir, lambda _: body).id)}
    _print_record(result, as_json, f"received {qty} x {sku}:")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("delta", type=int)
@click.option("--reason", required=True, help="Why stock changed (count, damage, theft ...).")
@JSON_OPTION
@reports_errors
def adjust(terminal_dir: Path, sku: str, delta: int, reason: str, as_json: bool) -> None:
    """Adjust stock by DELTA units (negative to remove)."""
    body = commands.build_adjustment(sku, delta, reason)
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        payload = {"sku": sku, "delta": delta, "reason": reason}
        result = daemon.call("POST", "/v1/stock/adjust", payload)
    else:
        result = {"record_id": str(_write_offline(terminal_dir, lambda _: body).id)}
    _print_record(result, as_json, f"adjusted {sku} by {delta}:")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("unit_cents", type=int)
@JSON_OPTION
@reports_errors
def price(terminal_dir: Path, sku: str, unit_cents: int, as_json: bool) -> None:
    """Set the catalog price of SKU (manager terminals only)."""
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/prices", {"sku": sku, "unit_price": unit_cents})
    else:
        with Terminal.open(terminal_dir) as terminal:
            body = commands.build_price_change(terminal.role, sku, unit_cents)
            result = {"record_id": str(terminal.write(lambda _: body).id)}
    _print_record(result, as_json, f"price of {sku} set to {money(unit_cents)}:")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("sku", required=False)
@JSON_OPTION
@reports_errors
def stock(terminal_dir: Path, sku: str | None, as_json: bool) -> None:
    """Show stock on hand (of every SKU, or of one)."""
    item = None if sku is None else parse_sku(sku)
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        report = daemon.call("GET", "/v1/stock" if item is None else f"/v1/stock/{item}")
    else:
        with Terminal.open(terminal_dir) as terminal:
            report = terminal.stock(item)
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
    state_bytes = None if since is None else since.read_bytes()
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        data = daemon.call("POST", "/v1/export", raw=state_bytes or b"")
    else:
        with Terminal.open(terminal_dir) as terminal:
            data = terminal.export_bundle(state_bytes)
    tmp = bundle.with_name(bundle.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(bundle)
    if as_json:
        emit_json({"bundle": str(bundle), "bytes": len(data)})
    else:
        console.print(f"wrote {bundle} ({len(data)} bytes)", markup=False)


@cli.command("import")
@click.argument("terminal_dir", type=DIR)
@click.argument("bundle", type=FILE_IN)
@JSON_OPTION
@reports_errors
def import_(terminal_dir: Path, bundle: Path, as_json: bool) -> None:
    """Merge a bundle (idempotent, any order); a bad bundle is refused whole."""
    data = bundle.read_bytes()
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        result = daemon.call("POST", "/v1/import", raw=data)
    else:
        with Terminal.open(terminal_dir) as terminal:
            imported = terminal.import_bundle(data)
        result = {
            "documents": imported.documents,
            "new_records": imported.records_after - imported.records_before,
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


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.argument("state_file", type=FILE_OUT)
@reports_errors
def state(terminal_dir: Path, state_file: Path) -> None:
    """Save this replica's state vectors, for another replica's `export --since`."""
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        data = daemon.call("GET", "/v1/state")
    else:
        with Terminal.open(terminal_dir) as terminal:
            data = terminal.state_file()
    state_file.write_bytes(data)
    console.print(f"wrote {state_file}", markup=False)


# -- integrity ----------------------------------------------------------------------------------


@cli.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def digest(terminal_dir: Path, as_json: bool) -> None:
    """Print the canonical digest of the replica (equal digests = converged)."""
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        value = str(daemon.call("GET", "/v1/digest")["digest"])
    else:
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
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        report = daemon.call("GET", "/v1/verify")
    else:
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
        console.print(
            f"  chain {head['terminal']}: head seq {head['seq']} ({head['hash'][:16]})",
            markup=False,
        )
    for kind in ("rejected", "unverified", "unauthorized", "broken_chains", "gaps"):
        for problem in report[kind]:
            details = ", ".join(f"{k}={v}" for k, v in problem.items())
            console.print(f"  {kind}: {details}", markup=False, style="red")
    for item in report["oversold"]:
        console.print(
            f"  oversold {item['sku']}: on hand {item['on_hand']}, "
            f"sales {', '.join(item['sales'])}",
            markup=False,
            style="yellow",
        )


# -- the daemon ---------------------------------------------------------------------------------


@cli.command()
@click.argument("terminal_dir", type=DIR)
@click.option(
    "--listen", default="127.0.0.1:0", show_default=True, help="Peer websocket HOST:PORT."
)
@click.option("--api", default="127.0.0.1:0", show_default=True, help="Local HTTP API HOST:PORT.")
@click.option("--peer", "peers", multiple=True, help="A peer to dial, ws://HOST:PORT (repeat).")
@click.option("--no-discovery", is_flag=True, help="Do not use mDNS (only --peer addresses).")
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    help="Use mDNS only on this network interface (repeat). Default: all, or loopback only "
    "when --listen is a loopback address.",
)
@click.option("--anti-entropy-ms", type=click.IntRange(50, 3_600_000), default=None, hidden=True)
@reports_errors
def run(
    terminal_dir: Path,
    listen: str,
    api: str,
    peers: tuple[str, ...],
    no_discovery: bool,
    interfaces: tuple[str, ...],
    anti_entropy_ms: int | None,
) -> None:
    """Run the terminal: serve peers, dial --peer addresses, serve the local API."""
    from lanesync.shell.daemon import DaemonConfig, parse_address, parse_peer_url
    from lanesync.shell.daemon import run as run_daemon
    from lanesync.shell.discovery import interface_addresses

    config = DaemonConfig(
        terminal_dir,
        listen=parse_address(listen, "--listen"),
        api=parse_address(api, "--api"),
        peers=tuple(parse_peer_url(p) for p in peers),
        discovery=not no_discovery,
        interfaces=interfaces,
        anti_entropy_ms=anti_entropy_ms,
    )
    if interfaces and no_discovery:
        raise UsageError("--interface only applies to mDNS discovery; drop --no-discovery")
    if interfaces:
        interface_addresses(interfaces)  # an unknown interface is a clear error before start
    run_daemon(config)


@cli.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def status(terminal_dir: Path, as_json: bool) -> None:
    """Show the terminal: identity, digest, addresses and peers (live when the daemon runs)."""
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        report = daemon.call("GET", "/v1/status")
        report["running"] = True
    else:
        with Terminal.open(terminal_dir) as terminal:
            report = {
                "terminal_id": terminal.terminal_id,
                "store_id": terminal.store_id,
                "role": terminal.role.value,
                "digest": terminal.digest(),
                "records": terminal.replica.ledger.accepted_count(),
                "api": None,
                "listen": None,
                "peers": [],
                "running": False,
            }
    if as_json:
        emit_json(report)
        return
    state_text = "running" if report["running"] else "not running"
    console.print(
        f"terminal {report['terminal_id']} of store {report['store_id']} ({report['role']}), "
        f"{state_text}; {report['records']} records, digest {report['digest'][:16]}",
        markup=False,
    )
    if report["running"]:
        console.print(f"  api {report['api']}  peers {report['listen']}", markup=False)
    for peer in report["peers"]:
        console.print(
            f"  peer {peer['terminal_id']}: connected, unacknowledged "
            f"{peer['unacked_bytes']} bytes",
            markup=False,
        )


@cli.command()
@click.argument("store_dir", type=DIR)
@click.argument("terminal_id")
@click.option("--via", "via", type=DIR, required=True, help="Terminal that spreads it.")
@JSON_OPTION
@reports_errors
def revoke(store_dir: Path, terminal_id: str, via: Path, as_json: bool) -> None:
    """Revoke a terminal: from now on nobody accepts its connections or new records."""
    store_directory = StoreDirectory.open(store_dir)
    revocation = store_directory.revoke(terminal_id, wall_clock_ms())
    daemon = _daemon(via)
    if daemon is not None:
        daemon.call("POST", "/v1/revocations", raw=revocation.encoded)
    else:
        with Terminal.open(via) as terminal:
            if terminal.store_id != store_directory.identity.store_id:
                raise UsageError(f"{via} belongs to another store")
            terminal.publish_revocation(revocation)
    result = {"revoked": revocation.terminal_id, "revoked_at_ms": revocation.revoked_at_ms}
    if as_json:
        emit_json(result)
    else:
        console.print(
            f"terminal {revocation.terminal_id} revoked; {via} spreads the revocation",
            markup=False,
        )


@cli.command()
@click.option("--dir", "work_dir", type=DIR, help="Keep the demo store here (default: a temp dir).")
@click.option("--offline", is_flag=True, help="Exchange bundle files instead of running lanes.")
@reports_errors
def demo(work_dir: Path | None, offline: bool) -> None:
    """Run a store of four lanes live: sell, split, sell apart, heal, converge exactly."""
    if offline:
        from lanesync.cli.demo import run_demo

        run_demo(work_dir)
    else:
        from lanesync.cli.live_demo import run_live_demo

        run_live_demo(work_dir)


def main() -> None:
    cli()
