"""Head office's cloud: set up, serve, query, set prices."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lanesync.cloud.residency import DEFAULT_IDLE_S, DEFAULT_MAX_RESIDENT, MAX_IDLE_S
from lanesync.errors import UsageError
from lanesync.shell.runtime import DaemonClient

from .common import (
    DIR,
    FILE_IN,
    JSON_OPTION,
    LOG_LEVEL_OPTION,
    LOOP_OPTION,
    handed_collaborators,
    print_record,
    reports_errors,
    serves_until_storage_fails,
)
from .group import UntruncatedGroup
from .output import console, emit_json, local_time, money, stock_table
from .sync_cmd import show_integrity


@click.group(cls=UntruncatedGroup)
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
@click.option(
    "--db",
    "db_url",
    envvar="LANESYNC_CLOUD_DB",
    default=None,
    help="postgresql://USER[:PASSWORD]@HOST:PORT/DB: register the store in this database, "
    "which every `cloud serve --db` on it reads (or set LANESYNC_CLOUD_DB). "
    "Default: in CLOUD_DIR/stores.",
)
@JSON_OPTION
@reports_errors
def cloud_add_store(
    cloud_dir: Path, store_public_identity: Path, cert_file: Path, db_url: str | None, as_json: bool
) -> None:
    """Serve a store: learn its public identity and register its certificate for this cloud."""
    from lanesync.cloud.directory import CloudDirectory
    from lanesync.cloud.registry import Registration, add_store_to_database

    directory = CloudDirectory.open(cloud_dir)
    if db_url is None:
        cert = directory.add_store(store_public_identity, cert_file)
        where, serving = Registration.DIRECTORY, "a `cloud serve` on this directory"
    else:
        cert = add_store_to_database(directory, db_url, store_public_identity, cert_file)
        where, serving = Registration.DATABASE, "every `cloud serve` on the database"
    if as_json:
        emit_json({"store_id": cert.store_id, "registered_in": where.value})
    elif where is Registration.DIRECTORY:
        console.print(
            f"store {cert.store_id} added: {serving} serves it from its leader's first connection",
            markup=False,
        )
    else:
        console.print(
            f"store {cert.store_id} added to the database: {serving} serves it from its "
            "leader's first connection",
            markup=False,
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


# ``cloud stores`` and ``cloud verify`` open the replicas themselves only while no ``serve`` runs
# on CLOUD_DIR (it holds their locks, and answers from memory instead).
READ_DB_OPTION = click.option(
    "--db",
    "db_url",
    envvar="LANESYNC_CLOUD_DB",
    default=None,
    help="postgresql://USER[:PASSWORD]@HOST:PORT/DB: its registered stores count with those "
    "of CLOUD_DIR/stores, and the replicas are read from it when no `cloud serve` runs on "
    "CLOUD_DIR (or set LANESYNC_CLOUD_DB). Default: CLOUD_DIR/stores and SQLite in CLOUD_DIR.",
)


@cloud.command("serve")
@click.argument("cloud_dir", type=DIR)
@click.option("--listen", default="127.0.0.1:0", show_default=True, help="Uplink websocket.")
@click.option("--api", default="127.0.0.1:0", show_default=True, help="Head-office HTTP API.")
@DB_OPTION
@click.option(
    "--tls-cert",
    type=FILE_IN,
    help="PEM certificate chain: serve the uplink port over TLS (wss://). Needs --tls-key.",
)
@click.option("--tls-key", type=FILE_IN, help="PEM private key of --tls-cert.")
@click.option(
    "--idle-s",
    type=click.FloatRange(min=0, min_open=True, max=MAX_IDLE_S),
    default=DEFAULT_IDLE_S,
    show_default=True,
    help="Seconds a store may go with no leader connected and no head-office request before "
    "its replica is closed and dropped from memory (it is opened again when needed).",
)
@click.option(
    "--max-resident",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_RESIDENT,
    show_default=True,
    help="Most stores whose replica this process holds at once; one more evicts the least "
    "recently used idle store, and is refused while none is idle.",
)
@LOG_LEVEL_OPTION
@LOOP_OPTION
@reports_errors
@serves_until_storage_fails
def cloud_serve(
    cloud_dir: Path,
    listen: str,
    api: str,
    db_url: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    idle_s: float,
    max_resident: int,
    log_level: str,
    loop: str,
) -> None:
    """Serve the stores added to this cloud (each in memory only while used): uplinks, read API."""
    from lanesync.cloud.serve import CloudConfig, cloud_main
    from lanesync.shell.daemon import parse_address
    from lanesync.shell.eventloop import LoopChoice

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together: give both, or neither")

    cloud_main(
        CloudConfig(
            cloud_dir,
            parse_address(listen, "--listen"),
            parse_address(api, "--api"),
            db_url,
            collaborators=handed_collaborators(),
            log_level=log_level,
            tls=None if tls_cert is None or tls_key is None else (tls_cert, tls_key),
            idle_s=idle_s,
            max_resident=max_resident,
            loop=LoopChoice(loop),
        )
    )


@cloud.command("stores")
@click.argument("cloud_dir", type=DIR)
@READ_DB_OPTION
@JSON_OPTION
@reports_errors
def cloud_stores(cloud_dir: Path, db_url: str | None, as_json: bool) -> None:
    """The stores this cloud serves: time zone, certificate, records held, last upload."""
    from lanesync.cloud.directory import CloudDirectory
    from lanesync.cloud.inventory import stores_report

    directory = CloudDirectory.open(cloud_dir)
    client = DaemonClient.for_directory(cloud_dir)
    served = None
    if client is not None:
        served = {row["store_id"]: row for row in client.call("GET", "/v1/stores")["stores"]}
    report = stores_report(directory, served, db_url)
    if as_json:
        emit_json(report)
        return
    if not report["stores"]:
        console.print("this cloud serves no store yet (`lanesync cloud add-store`)", markup=False)
    for row in report["stores"]:
        console.print(_store_line(row), markup=False, soft_wrap=True)


def _store_line(row: dict[str, Any]) -> str:
    upload = row["last_upload_ms"]
    expires = local_time(row["cert_not_after_ms"])
    if row["records"] is not None:
        held = f"{row['records']} records"
    elif row.get("resident") is False:  # served, with no leader connected: not in memory
        held = "not resident in `cloud serve` (opened when its leader connects)"
    else:
        # Registered since ``serve`` last listed its registry (at most a second ago, or it was
        # given another database): it lists it again when a leader's hello names the store.
        held = "not yet listed by `cloud serve` (served from its leader's first connection)"
    where = ", registered in the database" if row["registered_in"] == "database" else ""
    return (
        f"{row['store_id']}: {held}, time zone {row['timezone']}{where}, "
        f"certificate {row['cert_fingerprint']} valid until {expires}, "
        f"last upload {'unknown' if upload is None else local_time(upload)}"
    )


@cloud.command("verify")
@click.argument("cloud_dir", type=DIR)
@click.argument("store_id")
@READ_DB_OPTION
@JSON_OPTION
@reports_errors
def cloud_verify(cloud_dir: Path, store_id: str, db_url: str | None, as_json: bool) -> None:
    """Check a store's replica as the cloud holds it; exit 1 when anything does not verify."""
    from lanesync.cloud.directory import CloudDirectory
    from lanesync.cloud.inventory import open_replica

    directory = CloudDirectory.open(cloud_dir)
    client = DaemonClient.for_directory(cloud_dir)
    if client is not None:
        report = client.call("GET", f"/v1/stores/{_path_id(store_id)}/verify")
    else:
        with open_replica(directory, _path_id(store_id), db_url) as terminal:
            report = terminal.integrity()
    show_integrity(report, as_json)


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
    print_record(result, as_json, f"price of {sku} set to {money(unit_cents)} for {store_id}:")


def _path_id(text: str) -> str:
    """A value safe to put in a URL path or query (ids, days); anything else is refused."""
    if not text or not all((c.isascii() and c.isalnum()) or c in "._-" for c in text):
        raise UsageError(f"invalid value {text!r}")
    return text
