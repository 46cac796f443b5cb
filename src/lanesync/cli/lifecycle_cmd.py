"""A terminal's life after enrolment: revoking it, renewing its certificate, repairing a fork of
its chain, and where a replaced or re-keyed terminal's chain ends (``enroll --replaces``, in
``setup_cmd``, asks here).

Each of these reads what a lane (``--via``) holds, through its daemon if one runs or its
directory otherwise, before the store signs anything. When a lane breaks
(``docs/how-to/operations.md``): ``enroll --replaces`` replaces or re-keys a terminal, ``store
renew`` renews a certificate, ``store resolve-fork`` repairs a fork. ``main`` adds ``store
renew`` and ``store resolve-fork`` to the ``store`` group.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lanesync.core import reports
from lanesync.core.forks import Branch, Fork
from lanesync.core.identity import Certificate, Revocation, Role, Succession, key_fingerprint
from lanesync.core.ids import CLOUD_TERMINAL_ID, TerminalId, terminal_id
from lanesync.core.records import GENESIS_HASH
from lanesync.errors import DirectoryBusy, UsageError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .common import (
    DEFAULT_VALID_DAYS,
    DIR,
    JSON_OPTION,
    daemon_client,
    reports_errors,
)
from .output import console, emit_json


def _verify_report(via: Path, store: StoreDirectory) -> dict[str, Any]:
    daemon = daemon_client(via)
    if daemon is not None:
        if daemon.call("GET", "/v1/status")["store_id"] != store.identity.store_id:
            raise UsageError(f"{via} belongs to another store")
        report: dict[str, Any] = daemon.call("GET", "/v1/verify")
        return report
    with Terminal.open(via) as terminal:
        if terminal.store_id != store.identity.store_id:
            raise UsageError(f"{via} belongs to another store")
        return terminal.integrity()


def chain_end(
    via: Path, store: StoreDirectory, predecessor: TerminalId, *, rekey: bool
) -> Succession:
    """Where ``via`` holds ``predecessor``'s chain to end: its head, or past a resolved fork the
    highest branch head (the resolution already closed it there)."""
    report = _verify_report(via, store)
    if any(b["terminal"] == predecessor for b in report["broken_chains"]):
        raise UsageError(
            f"{predecessor}'s chain is broken on {via}: if it forked, resolve the fork first "
            f"with `lanesync store resolve-fork STORE_DIR {predecessor} --via {via}`"
        )
    revoked = report["revocations"].get(predecessor)
    if rekey and revoked is not None and _wholly_revoked(revoked):
        raise UsageError(
            f"{predecessor} is revoked, which cuts every key of it: enroll a new terminal id "
            "with --replaces instead of re-keying it"
        )
    for fork in report["resolved_forks"]:
        if fork["terminal"] == predecessor:
            if rekey:
                raise UsageError(
                    f"{predecessor}'s fork was resolved, which closed its chain: enroll a new "
                    "terminal id with --replaces instead of re-keying it"
                )
            last = max(fork["branches"], key=lambda b: (b["head_seq"], b["head_hash"]))
            return Succession(predecessor, last["head_seq"], bytes.fromhex(last["head_hash"]))
    for head in report["chains"]:
        if head["terminal"] == predecessor:
            return Succession(predecessor, head["seq"], bytes.fromhex(head["hash"]))
    return Succession(predecessor, 0, GENESIS_HASH)  # it never wrote a record


def nearest_chain_end(
    store: StoreDirectory, predecessor: TerminalId, *, rekey: bool
) -> tuple[Path, Succession]:
    """``enroll --replaces`` without ``--via``: ask every lane this store enrolled into a
    directory on this machine, and close ``predecessor``'s chain where the lane that holds most
    of it ends it (ties: a lane other than the replaced one, then by id). A lane that cannot
    answer (busy, broken chain) is skipped; if none can, its reason is the error."""
    lanes = store.lane_directories()
    if not lanes:
        raise UsageError(
            f"--replaces needs --via: no lane of store {store.identity.store_id} was enrolled "
            "into a directory on this machine; name a lane that holds the replaced chain"
        )
    ends: list[tuple[int, bool, str, Path, Succession]] = []
    refusals: list[str] = []
    for tid, lane in sorted(lanes.items()):
        try:
            end = chain_end(lane, store, predecessor, rekey=rekey)
        except (UsageError, DirectoryBusy) as exc:
            refusals.append(f"{lane}: {exc}")
            continue
        ends.append((-end.seq, tid == predecessor, tid, lane, end))
    if not ends:
        raise UsageError(f"no lane here can say where {predecessor}'s chain ends ({refusals[0]})")
    *_, lane, end = min(ends)
    return lane, end


def spread_and_seed(via: Path, cert: Certificate, terminal_dir: Path) -> None:
    """Publish the new certificate through ``via`` (the old chain closes everywhere it spreads)
    and give the new lane everything ``via`` holds, the old chain included: a re-keyed lane
    writes after it, and a replacement starts with the store's stock."""
    daemon = daemon_client(via)
    if daemon is not None:
        daemon.call("POST", "/v1/certificates", raw=cert.encoded)
        bundle: bytes = daemon.call("POST", "/v1/export", raw=b"")
    else:
        with Terminal.open(via) as terminal:
            terminal.publish_certificate(cert)
            bundle = terminal.export_bundle()
    with Terminal.open(terminal_dir) as new_lane:
        new_lane.import_bundle(bundle)


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


@click.command("renew")
@click.argument("store_dir", type=DIR)
@click.argument("terminal_dir", type=DIR)
@click.option("--valid-days", type=int, default=DEFAULT_VALID_DAYS, show_default=True)
@JSON_OPTION
@reports_errors
def store_renew(store_dir: Path, terminal_dir: Path, valid_days: int, as_json: bool) -> None:
    """Renew a terminal's certificate before it lapses: same id, same key, a later expiry."""
    cert = StoreDirectory.open(store_dir).renew(terminal_dir, wall_clock_ms(), valid_days)
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        daemon.call("POST", "/v1/certificates", raw=cert.encoded)
    else:
        with Terminal.open(terminal_dir):
            pass  # opening a lane publishes its own certificate: it spreads from there
    if as_json:
        emit_json(
            {
                "terminal_id": cert.terminal_id,
                "key_fingerprint": cert.key_fingerprint,
                "not_after_ms": cert.not_after_ms,
            }
        )
    else:
        console.print(
            f"terminal {cert.terminal_id} renewed (key {cert.key_fingerprint}) in {terminal_dir}",
            markup=False,
        )


@click.command("resolve-fork")
@click.argument("store_dir", type=DIR)
@click.argument("terminal")
@click.option("--via", "via", type=DIR, required=True, help="Lane that holds the fork.")
@JSON_OPTION
@reports_errors
def store_resolve_fork(store_dir: Path, terminal: str, via: Path, as_json: bool) -> None:
    """Declare both branches of a forked chain genuine: each counts once; the chain closes."""
    store_directory = StoreDirectory.open(store_dir)
    tid = terminal_id(terminal)
    store_directory.role_of(tid)  # an enrolled terminal of this store
    daemon = daemon_client(via)
    if daemon is not None:
        found = daemon.call("GET", f"/v1/forks/{tid}")
        fork = Fork(
            tid,
            int(found["fork_seq"]),
            bytes.fromhex(found["base_hash"]),
            tuple(
                Branch(
                    bytes.fromhex(b["first_hash"]),
                    int(b["head_seq"]),
                    bytes.fromhex(b["head_hash"]),
                )
                for b in found["branches"]
            ),
        )
        resolution = store_directory.resolve_fork(fork)
        daemon.call("POST", "/v1/fork-resolutions", raw=resolution.encoded)
    else:
        with Terminal.open(via) as lane:
            if lane.store_id != store_directory.identity.store_id:
                raise UsageError(f"{via} belongs to another store")
            resolution = store_directory.resolve_fork(lane.replica.open_fork(tid))
            lane.publish_fork_resolution(resolution)
    result = {
        "terminal": resolution.terminal,
        "fork_seq": resolution.fork_seq,
        "closed_at": resolution.closed_at,
        "branches": [
            {
                "first_hash": b.first_hash.hex(),
                "head_seq": b.head_seq,
                "head_hash": b.head_hash.hex(),
            }
            for b in resolution.branches
        ],
    }
    if as_json:
        emit_json(result)
    else:
        heads = " and ".join(f"seq {b.head_seq}" for b in resolution.branches)
        console.print(
            f"fork of {tid} at seq {resolution.fork_seq} resolved: both branches count (heads "
            f"{heads}); {tid}'s chain is closed at seq {resolution.closed_at}; {via} spreads it. "
            f"Continue the lane with `lanesync enroll {store_dir} NEW_DIR --terminal-id NEW_ID "
            f"--replaces {tid} --via {via}`",
            markup=False,
        )
