"""Store setup: the store authority, enrolling terminals, certifying a cloud.

What happens to a terminal once it is enrolled (revoking it, renewing its certificate,
replacing or re-keying it, repairing a fork of its chain) is ``lifecycle_cmd``; ``enroll
--replaces`` takes the replaced chain's end from there. ``main`` adds ``store renew`` and
``store resolve-fork`` to the ``store`` group defined here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from lanesync.core.identity import Role
from lanesync.core.ids import TerminalId
from lanesync.errors import UsageError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms

from .common import (
    DEFAULT_VALID_DAYS,
    DIR,
    FILE_IN,
    FILE_OUT,
    JSON_OPTION,
    reports_errors,
)
from .group import UntruncatedGroup
from .lifecycle_cmd import chain_end, nearest_chain_end, spread_and_seed
from .output import console, emit_json


@click.group(cls=UntruncatedGroup)
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


@click.command()
@click.argument("store_dir", type=DIR)
@click.argument("terminal_dir", type=DIR)
@click.option("--terminal-id", required=True, help="Terminal id, e.g. lane1.")
@click.option(
    "--role",
    type=click.Choice([r.value for r in Role]),
    default=None,
    help="[default: cashier, or the replaced terminal's role]",
)
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True)
@click.option(
    "--replaces",
    "replaces",
    help="Terminal whose chain this one continues: another id replaces it, the same id re-keys "
    "it. Its chain is closed at its last record that --via holds (without --via: the lane "
    "enrolled on this machine that holds most of it).",
)
@click.option(
    "--via",
    "via",
    type=DIR,
    help="With --replaces: the lane of the store that says where the chain ends and spreads it.",
)
@JSON_OPTION
@reports_errors
def enroll(
    store_dir: Path,
    terminal_dir: Path,
    terminal_id: str,
    role: str | None,
    valid_days: int,
    replaces: str | None,
    via: Path | None,
    as_json: bool,
) -> None:
    """Create a terminal key and a certificate for it signed by the store key."""
    store_directory = StoreDirectory.open(store_dir)
    succeeds = None
    if replaces is not None:
        predecessor = store_directory.role_of(replaces)
        role = role or predecessor.value
        rekey = replaces == terminal_id
        if via is None:
            via, succeeds = nearest_chain_end(store_directory, TerminalId(replaces), rekey=rekey)
        else:
            succeeds = chain_end(via, store_directory, TerminalId(replaces), rekey=rekey)
    elif via is not None:
        raise UsageError("--via goes with --replaces")
    cert = store_directory.enroll(
        terminal_dir,
        terminal_id,
        Role(role or Role.CASHIER.value),
        wall_clock_ms(),
        valid_days,
        succeeds,
    )
    result: dict[str, Any] = {
        "terminal_id": cert.terminal_id,
        "role": cert.role.value,
        "key_fingerprint": cert.key_fingerprint,
        "not_after_ms": cert.not_after_ms,
    }
    if succeeds is not None and via is not None:
        spread_and_seed(via, cert, terminal_dir)
        result["replaces"] = succeeds.terminal
        result["after_seq"] = succeeds.seq
        result["after_hash"] = succeeds.hash.hex()
        result["via"] = str(via)
    if as_json:
        emit_json(result)
    elif succeeds is None:
        console.print(
            f"terminal {cert.terminal_id} enrolled as {cert.role.value} "
            f"(key {cert.key_fingerprint}) in {terminal_dir}"
        )
    else:
        what = "re-keyed" if cert.is_rekey else f"enrolled to replace {succeeds.terminal}"
        console.print(
            f"terminal {cert.terminal_id} {what} as {cert.role.value} (key "
            f"{cert.key_fingerprint}) in {terminal_dir}; {succeeds.terminal}'s chain is closed "
            f"after seq {succeeds.seq}; {via} spreads it",
            markup=False,
        )
