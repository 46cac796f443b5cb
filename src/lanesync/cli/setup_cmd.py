"""Store setup: the store authority, enrolling terminals, revoking them, certifying a cloud."""

from __future__ import annotations

from pathlib import Path

import click

from lanesync.core.identity import Role
from lanesync.errors import UsageError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .common import (
    DEFAULT_VALID_DAYS,
    DIR,
    FILE_IN,
    FILE_OUT,
    JSON_OPTION,
    daemon_client,
    reports_errors,
)
from .output import console, emit_json


@click.group()
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


@click.command()
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


@click.command()
@click.argument("store_dir", type=DIR)
@click.argument("terminal_id")
@click.option("--via", "via", type=DIR, required=True, help="Terminal that spreads it.")
@JSON_OPTION
@reports_errors
def revoke(store_dir: Path, terminal_id: str, via: Path, as_json: bool) -> None:
    """Revoke a terminal: from now on nobody accepts its connections or new records."""
    store_directory = StoreDirectory.open(store_dir)
    revocation = store_directory.revoke(terminal_id, wall_clock_ms())
    daemon = daemon_client(via)
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
