"""Store setup: the store authority, enrolling terminals, revoking them, certifying a cloud."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lanesync.core import reports
from lanesync.core.identity import Revocation, Role, key_fingerprint
from lanesync.core.ids import CLOUD_TERMINAL_ID, TerminalId
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
@click.option(
    "--after",
    "after_seq",
    type=click.IntRange(min=0),
    default=None,
    help="Last seq of the terminal the store accepts. Default: the last one --via holds.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Revoke even the last unrevoked manager, or the --via terminal itself.",
)
@JSON_OPTION
@reports_errors
def revoke(
    store_dir: Path,
    terminal_id: str,
    via: Path,
    after_seq: int | None,
    force: bool,
    as_json: bool,
) -> None:
    """Revoke a terminal (or the cloud): no connections, no records past a cut.

    Its records up to the cut (the last one --via holds, or --after SEQ) count whenever they
    arrive; later ones never, whatever their timestamps."""
    store_directory = StoreDirectory.open(store_dir)
    tid = store_directory.revocable(terminal_id)  # before asking --via anything
    roles = store_directory.enrolled_roles()
    daemon = daemon_client(via)
    if daemon is not None:
        status = daemon.call("GET", "/v1/status")
        query = "" if after_seq is None else f"?seq={after_seq}"
        chain = daemon.call("GET", f"/v1/chains/{tid}{query}")
        plan = _plan_revocation(
            store_directory, tid, roles, str(status["terminal_id"]), status["revocations"],
            chain, after_seq, force,
        )  # fmt: skip
        for revocation in plan.revocations:
            daemon.call("POST", "/v1/revocations", raw=revocation.encoded)
    else:
        with Terminal.open(via) as terminal:
            if terminal.store_id != store_directory.identity.store_id:
                raise UsageError(f"{via} belongs to another store")
            plan = _plan_revocation(
                store_directory, tid, roles, terminal.terminal_id,
                reports.revocations(terminal.replica),
                reports.chain(terminal.replica, tid, after_seq), after_seq, force,
            )  # fmt: skip
            for revocation in plan.revocations:
                terminal.publish_revocation(revocation)
    keys = [key_fingerprint(r.key) for r in plan.revocations if r.key]
    result = {
        "revoked": tid,
        "after_seq": plan.after_seq,
        "hash": plan.after_hash.hex() or None,
        "held_seq": plan.held_seq,
        "keys": keys,
        "via": plan.via,
    }
    if as_json:
        emit_json(result)
        return
    pinned = f" (hash {plan.after_hash.hex()[:16]})" if plan.after_hash else ""
    scope = f" (key {', '.join(keys)})" if keys else ""
    console.print(
        f"terminal {tid}{scope} revoked after seq {plan.after_seq}{pinned}: its records up to "
        f"seq {plan.after_seq} count, later ones never; {plan.via} holds up to seq "
        f"{plan.held_seq} and spreads the revocation",
        markup=False,
    )


@dataclass(frozen=True, slots=True)
class _Plan:
    revocations: list[Revocation]
    after_seq: int
    after_hash: bytes
    held_seq: int  # the head of the terminal's chain that --via holds
    via: str


def _plan_revocation(
    store_directory: StoreDirectory,
    tid: TerminalId,
    roles: dict[TerminalId, Role],
    via: str,
    revoked: dict[str, Any],
    chain: dict[str, Any],
    after_seq: int | None,
    force: bool,
) -> _Plan:
    """The revocations to sign, after the guard rails (``UsageError`` when one refuses)."""
    if via == tid and not force:
        raise UsageError(
            f"--via {via} is the terminal being revoked: peers drop it as soon as they learn "
            "the revocation; spread it through another lane (or --force)"
        )
    if roles.get(tid) is Role.MANAGER and not force:
        unrevoked = {
            t
            for t, role in roles.items()
            if role is Role.MANAGER and not _wholly_revoked(revoked.get(t))
        }
        if unrevoked <= {tid}:
            raise UsageError(
                f"{tid} is the last unrevoked manager: without one no lane can set prices; "
                "enroll another manager first (or --force)"
            )
    held_seq = int(chain["head"]["seq"])
    if after_seq is None:
        after_seq = held_seq
        digest = chain["head"]["hash"]
    else:
        digest = chain["record"]["hash"]
    after_hash = bytes.fromhex(digest) if digest else b""
    keys = [b""]
    if tid == CLOUD_TERMINAL_ID:
        # Every cloud of the store signs as `cloud`: revoke the keys certified so far, so a
        # cloud certified afterwards (another key) is accepted.
        keys = sorted({bytes.fromhex(c["public_key"]) for c in chain["certificates"]})
        if not keys:
            raise UsageError(
                f"{via} holds no certificate of the cloud (it has not synced with it): "
                "revoke through a lane that has"
            )
    revocations = [store_directory.revoke(tid, after_seq, after_hash, key) for key in keys]
    return _Plan(revocations, after_seq, after_hash, held_seq, via)


def _wholly_revoked(entry: dict[str, Any] | None) -> bool:
    return entry is not None and (
        entry.get("after_seq") is not None or entry.get("revoked_at_ms") is not None
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
