"""``lanesync``: store setup, the offline lane commands, bundles, integrity checks, the demo.

Exit codes: 0 success; 1 a lanesync error (one line on stderr, nothing changed) or ``verify``
found integrity problems; 2 a malformed command line (click's own usage errors); 74 storage
failed in ``run`` or ``cloud serve`` (a full disk, an I/O error: they stop, for a supervisor to
restart them).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lanesync import __version__
from lanesync.core import bodies
from lanesync.core.identity import Role
from lanesync.core.ids import RecordId
from lanesync.core.ids import sku as parse_sku
from lanesync.core.records import Body, Record, Sale
from lanesync.core.views import Views
from lanesync.errors import EXIT_STORAGE_FAILED, LanesyncError, StorageError, UsageError
from lanesync.shell.directories import StoreDirectory, TerminalDirectory
from lanesync.shell.runtime import DaemonClient
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .output import console, emit_json, errors, money, one_line, stock_table

P = ParamSpec("P")
R = TypeVar("R")

DIR = click.Path(path_type=Path, file_okay=False)
FILE_IN = click.Path(path_type=Path, dir_okay=False, exists=True, readable=True)
FILE_OUT = click.Path(path_type=Path, dir_okay=False, writable=True)
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
DEFAULT_VALID_DAYS = 5 * 365  # lanes are replaced every few years; renew before that


def serves_until_storage_fails(func: Callable[P, R]) -> Callable[P, R]:
    """For ``run`` and ``cloud serve``: a storage failure, which stops them, exits with
    ``EXIT_STORAGE_FAILED`` (one ``error:`` line), the status a supervisor restarts on."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except StorageError as exc:
            errors.print(f"error: {one_line(str(exc))}", soft_wrap=True)
            sys.exit(EXIT_STORAGE_FAILED)

    return wrapper


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn every lanesync error into one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LanesyncError as exc:
            errors.print(f"error: {one_line(str(exc))}", soft_wrap=True)
            sys.exit(1)
        except OSError as exc:
            name = f" {exc.filename}" if exc.filename else ""
            errors.print(f"error:{one_line(name)}: {exc.strerror or exc}", soft_wrap=True)
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


def _write_offline(terminal_dir: Path, build: Callable[[Views], Body]) -> Record:
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
    requests = [bodies.parse_line(text) for text in lines]
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        body = [{"sku": r.sku, "qty": r.qty, "unit_price": r.unit_cents} for r in requests]
        result = daemon.call("POST", "/v1/sales", {"lines": body})
    else:
        record = _write_offline(terminal_dir, partial(bodies.build_sale, requests=requests))
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
        record = _write_offline(terminal_dir, partial(bodies.build_void, sale_id=sale_id))
        result = {"record_id": str(record.id)}
    _print_record(result, as_json, f"sale {sale_id} voided by")


@cli.command(context_settings={"ignore_unknown_options": True})
@click.argument("terminal_dir", type=DIR)
@click.argument("sku")
@click.argument("qty", type=int)
@JSON_OPTION
@reports_errors
def receive(terminal_dir: Path, sku: str, qty: int, as_json: bool) -> None:
    """Record a stock receipt of QTY units."""
    body = bodies.build_receipt(sku, qty)
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
    body = bodies.build_adjustment(sku, delta, reason)
    daemon = _daemon(terminal_dir)
    if daemon is not None:
        payload = {"sku": sku, "delta": delta, "reason": reason}
        result = daemon.call("POST", "/v1/stock/adjust", payload)
    else:
        result = {"record_id": str(_write_offline(terminal_dir, lambda _: body).id)}
    _print_record(result, as_json, f"adjusted {sku} by {delta}:")


@cli.command(context_settings={"ignore_unknown_options": True})
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
            body = bodies.build_price_change(terminal.role, sku, unit_cents)
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
    console.print(
        f"{status}: {report['records']} records, digest {report['digest'][:16]}", markup=True
    )
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
@click.option("--cloud", "cloud_url", help="The store's cloud, wss://HOST:PORT (leader uses it).")
@click.option(
    "--priority",
    type=click.IntRange(-1000, 1000),
    default=0,
    show_default=True,
    help="Preference as the store's uplink (higher wins among lanes that reach the cloud).",
)
@click.option("--anti-entropy-ms", type=click.IntRange(50, 3_600_000), default=None, hidden=True)
@reports_errors
@serves_until_storage_fails
def run(
    terminal_dir: Path,
    listen: str,
    api: str,
    peers: tuple[str, ...],
    no_discovery: bool,
    interfaces: tuple[str, ...],
    cloud_url: str | None,
    priority: int,
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
        cloud=None if cloud_url is None else parse_peer_url(cloud_url),
        priority=priority,
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
                "records": terminal.replica.views.accepted_count(),
                "api": None,
                "listen": None,
                "leader": None,
                "term": None,
                "cloud": None,
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
        console.print(f"  leader {report['leader']} (term {report['term']})", markup=False)
        if report.get("cloud"):
            cloud = report["cloud"]
            console.print(
                f"  cloud {cloud['url']}: connected {cloud['connected']}, last acknowledged "
                f"{cloud['last_ack_ms']}, pending {cloud['pending_bytes']} bytes",
                markup=False,
            )
    for peer in report["peers"]:
        if peer["connected"]:
            state = f"connected, unacknowledged {peer['unacked_bytes']} bytes"
        else:
            state = f"not connected (last error: {peer.get('last_error') or 'none'})"
        console.print(f"  peer {peer['terminal_id']}: {state}")


@cli.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def peers(terminal_dir: Path, as_json: bool) -> None:
    """Show the peers the running daemon knows (--peer, mDNS, inbound) and their links."""
    daemon = _daemon(terminal_dir)
    if daemon is None:
        TerminalDirectory.open(terminal_dir)  # a wrong path is an error, not "not running"
        if as_json:
            emit_json({"running": False, "peers": []})
        else:
            console.print("not running")
        return
    rows: list[dict[str, Any]] = daemon.call("GET", "/v1/peers")["peers"]
    if as_json:
        emit_json({"running": True, "peers": rows})
        return
    if not rows:
        console.print("no peers known yet", markup=False)
        return
    console.print(_peers_table(rows, wall_clock_ms()))


def _peers_table(rows: list[dict[str, Any]], now_ms: int) -> Table:
    table = Table(title="Peers")
    for column in ("Terminal", "Found by", "Addresses", "Connected", "Last seen", "Last error"):
        table.add_column(column)
    for row in rows:
        seen = row.get("last_seen_ms")
        table.add_row(
            escape(str(row["terminal_id"] or "?")),
            escape(", ".join(row["found_by"])),
            escape("\n".join(row["addresses"]) or "-"),
            Text("yes", style="green") if row["connected"] else Text("no", style="red"),
            "-" if seen is None else f"{max(0, now_ms - int(seen)) / 1000:.1f} s ago",
            escape(str(row["last_error"] or "")),
        )
    return table


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


# -- the cloud ----------------------------------------------------------------------------------


@store.command("certify-cloud")
@click.argument("store_dir", type=DIR)
@click.argument("cloud_public_identity", type=FILE_IN)
@click.argument("cert_file", type=FILE_OUT)
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True)
@JSON_OPTION
@reports_errors
def store_certify_cloud(
    store_dir: Path, cloud_public_identity: Path, cert_file: Path, valid_days: int, as_json: bool
) -> None:
    """Let a cloud key sign catalog records for this store (and nothing else)."""
    from lanesync.cloud.directory import read_cloud_identity

    if not 1 <= valid_days <= 10 * 366:
        raise UsageError("--valid-days must be between 1 and 3660")
    store_directory = StoreDirectory.open(store_dir)
    cert = store_directory.certify_cloud(
        read_cloud_identity(cloud_public_identity), wall_clock_ms(), valid_days
    )
    cert_file.write_bytes(cert.encoded)
    if as_json:
        emit_json({"certificate": str(cert_file), "store_id": cert.store_id})
    else:
        console.print(
            f"wrote {cert_file}: the cloud may set prices for {cert.store_id}", markup=False
        )


@cli.group()
def cloud() -> None:
    """Head office's cloud service: set up, serve, query."""


def _cloud_client(cloud_dir: Path) -> DaemonClient:
    client = DaemonClient.for_directory(cloud_dir)
    if client is None:
        raise UsageError(f"`lanesync cloud serve {cloud_dir}` is not running")
    return client


@cloud.command("init")
@click.argument("cloud_dir", type=DIR)
@JSON_OPTION
@reports_errors
def cloud_init(cloud_dir: Path, as_json: bool) -> None:
    """Create the cloud's key (mode 0600) and write its public identity file."""
    from lanesync.cloud.directory import CloudDirectory

    created = CloudDirectory.init(cloud_dir)
    if as_json:
        emit_json({"public_identity": str(created.identity_file)})
    else:
        console.print(f"cloud created; public identity: {created.identity_file}", markup=False)


@cloud.command("add-store")
@click.argument("cloud_dir", type=DIR)
@click.argument("store_public_identity", type=FILE_IN)
@click.argument("cert_file", type=FILE_IN)
@JSON_OPTION
@reports_errors
def cloud_add_store(
    cloud_dir: Path, store_public_identity: Path, cert_file: Path, as_json: bool
) -> None:
    """Serve a store: learn its public identity and install its certificate for this cloud."""
    from lanesync.cloud.directory import CloudDirectory

    cert = CloudDirectory.open(cloud_dir).add_store(store_public_identity, cert_file)
    if as_json:
        emit_json({"store_id": cert.store_id})
    else:
        console.print(
            f"store {cert.store_id} added (restart `cloud serve` to serve it)", markup=False
        )


DB_OPTION = click.option(
    "--db",
    "db_url",
    envvar="LANESYNC_CLOUD_DB",
    default=None,
    help="postgresql://USER[:PASSWORD]@HOST:PORT/DB shared by every cloud process "
    "(or set LANESYNC_CLOUD_DB, which keeps a password out of the process list). "
    "Default: SQLite in CLOUD_DIR.",
)


@cloud.command("serve")
@click.argument("cloud_dir", type=DIR)
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="Uplink websocket.")
@click.option("--api", default="127.0.0.1:0", show_default=True, help="Head-office HTTP API.")
@DB_OPTION
@reports_errors
@serves_until_storage_fails
def cloud_serve(cloud_dir: Path, listen: str, api: str, db_url: str | None) -> None:
    """Serve every store added to this cloud: uplinks from leaders and the read API."""
    from lanesync.cloud.serve import CloudConfig
    from lanesync.cloud.serve import run as run_cloud
    from lanesync.shell.daemon import parse_address

    run_cloud(
        CloudConfig(
            cloud_dir, parse_address(listen, "--listen"), parse_address(api, "--api"), db_url
        )
    )


@cloud.command("migrate")
@click.argument("cloud_dir", type=DIR)
@click.option(
    "--db",
    "db_url",
    envvar="LANESYNC_CLOUD_DB",
    required=True,
    help="postgresql://USER[:PASSWORD]@HOST:PORT/DB (or set LANESYNC_CLOUD_DB).",
)
@JSON_OPTION
@reports_errors
def cloud_migrate(cloud_dir: Path, db_url: str, as_json: bool) -> None:
    """Bring a PostgreSQL database to this lanesync's schema (safe to run again, or at once)."""
    from lanesync.cloud.directory import CloudDirectory
    from lanesync.cloud.schema import LATEST, migrate_postgresql
    from lanesync.cloud.sql import connect

    CloudDirectory.open(cloud_dir)  # the database is this cloud's: refuse a stray directory
    sql = connect(db_url)
    try:
        applied = migrate_postgresql(sql)
    finally:
        sql.close()
    if as_json:
        emit_json(
            {
                "schema_version": LATEST,
                "applied": [{"version": m.version, "description": m.description} for m in applied],
            }
        )
    elif applied:
        for migration in applied:
            console.print(
                f"applied migration {migration.version}: {migration.description}", markup=False
            )
        console.print(f"database schema is at version {LATEST}", markup=False)
    else:
        console.print(f"database schema already at version {LATEST}", markup=False)


@cloud.command("stock")
@click.argument("cloud_dir", type=DIR)
@click.argument("store_id")
@JSON_OPTION
@reports_errors
def cloud_stock(cloud_dir: Path, store_id: str, as_json: bool) -> None:
    """Stock on hand of a store as the cloud holds it."""
    report = _cloud_client(cloud_dir).call("GET", f"/v1/stores/{_path_id(store_id)}/stock")
    if as_json:
        emit_json(report)
    else:
        console.print(stock_table(report["items"], title=f"Stock of {store_id} (cloud)"))


@cloud.command("sales")
@click.argument("cloud_dir", type=DIR)
@click.argument("store_id")
@click.option("--day", help="Business day YYYY-MM-DD (default: every day).")
@JSON_OPTION
@reports_errors
def cloud_sales(cloud_dir: Path, store_id: str, day: str | None, as_json: bool) -> None:
    """Sales of a store (voided sales excluded from count and total)."""
    query = "" if day is None else f"?day={_path_id(day)}"
    report = _cloud_client(cloud_dir).call("GET", f"/v1/stores/{_path_id(store_id)}/sales{query}")
    if as_json:
        emit_json(report)
    else:
        console.print(f"{report['count']} sales, total {money(report['total'])}", markup=False)


@cloud.command("set-price")
@click.argument("cloud_dir", type=DIR)
@click.argument("store_id")
@click.argument("sku")
@click.argument("unit_cents", type=int)
@JSON_OPTION
@reports_errors
def cloud_set_price(
    cloud_dir: Path, store_id: str, sku: str, unit_cents: int, as_json: bool
) -> None:
    """Set a catalog price from head office; it reaches every lane through the leader."""
    result = _cloud_client(cloud_dir).call(
        "POST", f"/v1/stores/{_path_id(store_id)}/prices", {"sku": sku, "unit_price": unit_cents}
    )
    _print_record(result, as_json, f"price of {sku} set to {money(unit_cents)} for {store_id}:")


def _path_id(text: str) -> str:
    """A value safe to put in a URL path or query (ids, days); anything else is refused."""
    if not text or not all((c.isascii() and c.isalnum()) or c in "._-" for c in text):
        raise UsageError(f"invalid value {text!r}")
    return text


from lanesync.cli import sim_cmd  # noqa: E402 - kept beside its registration

cli.add_command(sim_cmd.sim)


from lanesync.cli import bench_cmd  # noqa: E402 - bench_cmd imports from this module

cli.add_command(bench_cmd.bench)


def main() -> None:
    cli()
