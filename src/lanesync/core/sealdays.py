"""Sealing a replica's business days: which may be sealed, and the archive each one becomes.

``core.sealing`` says what a sealed day is and how replicas exchange them; this module applies
that to one ``Replica``: ``sealable`` finds the days that are complete and acknowledged, and
``seal_day`` builds a day's archive, its description and its sealed Z-report, then drops the day
from the replica's memory. The owner (the shell, the simulator) stores the archive in the same
step, so a sealed day is never only in memory. ``recounted`` finds the sealed days whose report a
store decision changed after the seal (the replica opens them again).

Apart from ``replica.py`` because it is written only against the replica's public surface and
the Z-report; the replica calls ``recounted`` with itself passed in, as it calls
``core.closedays``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lanesync.core import archive_codec, dayclose, sealing, zreport
from lanesync.core.chain import BAD_LINK
from lanesync.core.identity import Role
from lanesync.core.ids import ledger_doc
from lanesync.core.records import Record
from lanesync.core.sealing import SealedDay
from lanesync.core.views import expected_doc
from lanesync.errors import UsageError

if TYPE_CHECKING:  # the shell passes the replica in
    from lanesync.core.replica import Replica


@dataclass(frozen=True, slots=True)
class Sealing:
    """A day sealed on a replica: what storage keeps of it, all in one transaction."""

    sealed: SealedDay
    meta: bytes  # sealing.encode_meta(sealed)
    archive: bytes  # the day document's CRDT state, archive_codec.compress'd
    report: bytes  # the sealed Z-report, canonical JSON
    signature: bytes  # by the sealing terminal over sealing.archive_digest (empty: no terminal)
    verdicts: tuple[bytes, ...]  # verdict keys of the archive's records (storage forgets them)


def has_cloud(replica: Replica) -> bool:
    """Does the store have a cloud (a certificate of the cloud role)? Then the cloud, not the
    connected peers, acknowledges a day before it is sealed."""
    return any(c.role is Role.CLOUD for c in replica.views.certificates())


@dataclass(frozen=True, slots=True)
class PeerState:
    """A connected peer as sealing sees it: is it the cloud, and the last state it sent."""

    is_cloud: bool
    state: Mapping[str, bytes] | None  # None until it sent one


def acknowledged(
    replica: Replica, day: str, peers: Sequence[PeerState], *, cloud: bool = False
) -> bool:
    """Is ``day`` acknowledged, as far as this replica can tell from its connected peers?

    * A store with a cloud (``has_cloud``, or ``cloud``: the owner was told the store has one,
      as a lane run with ``--cloud`` is): the cloud's state covers the day as this replica
      holds it (only the leader talks to the cloud), or a connected lane sealed the day (which
      it did only once the cloud, or a lane before it, had acknowledged it). ``cloud`` matters
      until the cloud's certificate reaches the replica, which only the cloud's first
      connection to a lane brings: without it, a store whose WAN was down since its lanes
      were enrolled sealed its days on the lanes' word alone.
    * A store without one: every connected peer's state covers the day, or names it sealed;
      a lane alone (no peer connected) acknowledges its own days.
    """
    name = ledger_doc(day)
    mine = replica.state_vector(name)

    def holds(peer: PeerState) -> bool:
        if peer.state is None:
            return False
        theirs = peer.state.get(name)
        if theirs is not None and sealing.vector_covers(theirs, mine):
            return True
        return _sealed_by(peer.state, day)

    if cloud or has_cloud(replica):
        return any(
            (holds(p) if p.is_cloud else p.state is not None and _sealed_by(p.state, day))
            for p in peers
        )
    return all(holds(p) for p in peers)


def is_cloud(replica: Replica) -> bool:
    """Is ``replica`` the store's cloud (it signs as the cloud role)?"""
    return replica.me is not None and replica.me.certificate.role is Role.CLOUD


def cloud_acknowledges(replica: Replica, day: str) -> bool:
    """Is ``day`` acknowledged on the cloud's own replica? Yes, as soon as it is held there,
    once the owner has made it durable (``Terminal.seal_due`` seals nothing while an update
    waits for its commit): the cloud is the acknowledger, so its copy needs no one else's word.

    Why a lane waits and the cloud does not: a lane unloads a day only once a replica off the
    premises holds all of it (the cloud's state covers it, or a lane says it sealed it, which
    it did on the cloud's word), so a lost shop floor loses no sale. The cloud's copy is that
    replica: what it seals is in its database, which keeps the archive. Waiting for the lanes'
    sealed summaries would add nothing to that and would leave a store's days in the cloud's
    memory for as long as its WAN is down after the day reached the cloud, since only the
    leader talks to the cloud (and the lanes themselves seal on the cloud's summary, which
    names the day once the cloud sealed it).

    What completeness does not cover is the same for every replica: a lane whose records
    never reached this one is not known to have sold on the day, and its records, arriving
    later, open the day again (a late record): the day is sealed again, amended only if its
    report changed. Only the cloud's replica acknowledges by itself: a lane's says no."""
    return is_cloud(replica) and ledger_doc(day) in replica.doc_names()


def _sealed_by(state: Mapping[str, bytes], day: str) -> bool:
    summary = sealing.peer_summary(state)
    return summary is not None and summary.holds(day)


def candidates(replica: Replica) -> list[str]:
    """The open days that might be sealable: those up to the latest day any lane closed (a
    day no lane closed is not complete). Today's document stays out: cheap to ask often."""
    closed = [replica.views.last_closed_day(t) for t in replica.views.closing_terminals()]
    latest = max((d for d in closed if d is not None), default=None)
    if latest is None:
        return []
    days = (dayclose.day_of_doc(name) for name in replica.doc_names())
    return sorted(d for d in days if d is not None and d <= latest)


def is_complete(replica: Replica, day: str) -> bool:
    """Did every lane that must close ``day`` close it, by this replica's records, and does
    the day hold no record that may count later (``held_back``)?"""
    report = zreport.z_report(replica, day)
    return bool(report["complete"] and report["terminals"]) and not held_back(replica, day)


def held_back(replica: Replica, day: str) -> list[str]:
    """The records of ``day`` held here that the views do not count yet but may count later
    (past an open fork, behind a gap, signed under a certificate not held yet), as ids. A
    sealed day's report would then change with no late record of the day to open it again:
    the fork's resolution, the missing record, the certificate arrive in other documents (the
    simulator found it: a fork resolved after every lane had sealed the day). Records of a
    chain the store ended (revoked, replaced) that do not count never will, unless a fork
    resolution ended it (a later one may name longer branches)."""
    views = replica.views
    name = ledger_doc(day)
    return sorted(
        str(record.id)
        for _, key, record in replica.records([name])
        if not views.is_accepted(record)
        and _may_count(replica, name, key, record)
        and (
            not views.chain_ended(record.terminal)
            or views.fork_resolution(record.terminal) is not None
        )
    )


def _may_count(replica: Replica, doc: str, key: str, record: Record) -> bool:
    """Could ``record``, held under ``key`` in ``doc``, ever count? Not under a key or in a
    document not its own, nor at or past where its chain broke for good (a record that does
    not link): such entries must not hold a day open for ever (a misbehaving peer could)."""
    if key != record.key or doc != expected_doc(record, replica.tz):
        return False
    broken = replica.views.is_broken(record.terminal)
    return broken is None or broken[1] != BAD_LINK or record.seq < broken[0]


def sealable(
    replica: Replica,
    acknowledged: Callable[[str], bool],
    complete: Callable[[str], bool] | None = None,
) -> list[str]:
    """The open days this replica may seal now: complete (``is_complete``, or the caller's
    memo of it) and ``acknowledged`` (the caller knows who acknowledges: ``acknowledged``)."""
    check = complete or (lambda day: is_complete(replica, day))
    return [day for day in candidates(replica) if check(day) and acknowledged(day)]


def seal_day(replica: Replica, day: str) -> Sealing:
    """Seal ``day`` on ``replica``: its archive and description, then the open document is
    dropped. ``UsageError`` when the day is not open here or its report is not complete (the
    caller asked ``sealable``; a day is never sealed incomplete)."""
    name = ledger_doc(day)
    if name not in replica.doc_names():
        raise UsageError(f"{day} is not an open day here")
    report = zreport.z_report(replica, day)
    if not report["complete"]:
        raise UsageError(f"{day} is not complete: {', '.join(report['missing_terminals'])}")
    held = held_back(replica, day)
    if held:
        raise UsageError(f"{day} holds records that may count later: {', '.join(held[:3])}")
    return seal_as_is(replica, day, report)


def seal_as_is(replica: Replica, day: str, report: dict[str, Any]) -> Sealing:
    """Seal open ``day`` with ``report`` (its Z-report as this replica folds it), checking
    nothing: ``seal_day`` checks first (the simulator's planted bug calls this directly)."""
    name = ledger_doc(day)
    update = replica.full_state(name)
    fingerprint = replica.document_fingerprint(name)
    records = [r for _, _, r in replica.records([name])]
    sealed = SealedDay(
        day=day,
        state_vector=replica.state_vector(name),
        fingerprint=(fingerprint[0], fingerprint[1]),
        digest=replica.content_digest(name),
        records=sum(1 for r in records if replica.views.is_accepted(r)),
        report_hash=report["report_hash"],
        amended_from=sealing.amended_hashes(replica.amended_from(name), report["report_hash"]),
        seqs=_seq_ranges((r.terminal, r.seq) for r in records),
    )
    meta = sealing.encode_meta(sealed)
    archive = archive_codec.compress(update)
    signature = b""
    if replica.me is not None:
        digest = sealing.archive_digest(replica.store.store_id, meta, archive)
        signature = bytes(replica.me.key.sign(digest).signature)
    replica.seal_document(sealed)
    report_bytes = report_json(sealed_report(report, sealed))
    verdicts = tuple(r.verdict_key for r in records)
    return Sealing(sealed, meta, archive, report_bytes, signature, verdicts)


def recounted(replica: Replica, days: Iterable[str]) -> list[str]:
    """The sealed days among ``days`` whose report, folded again from the archive, is not the
    one they were sealed with: a store decision that reached this replica after the seal (a
    revocation's cut, a fork resolution) changed what they count. The replica opens each one
    again, as a late record does, and the usual path seals it again, amended."""
    sealed = replica.sealed_days()
    return [
        day
        for day in days
        if day in sealed
        and zreport.z_report(replica, day)["report_hash"] != sealed[day].report_hash
    ]


def _seq_ranges(held: Iterable[tuple[str, int]]) -> tuple[tuple[str, int, int], ...]:
    """The seqs of each terminal held, as runs of consecutive seqs (a day-end signed after the
    next day's first sales sits apart from its day's other records)."""
    runs: list[tuple[str, int, int]] = []
    for terminal, seq in sorted(set(held)):
        if runs and runs[-1][0] == terminal and runs[-1][2] == seq - 1:
            runs[-1] = (terminal, runs[-1][1], seq)
        else:
            runs.append((terminal, seq, seq))
    return tuple(runs)


def sealed_report(report: dict[str, Any], sealed: SealedDay) -> dict[str, Any]:
    """``report`` as a sealed day's: ``sealed`` true and, when a late record amended the day,
    the hashes of its earlier seals."""
    out = dict(report)
    out["sealed"] = True
    if sealed.amended_from:
        out["amended"] = True
        out["amended_from"] = list(sealed.amended_from)
    return out


def report_json(report: dict[str, Any]) -> bytes:
    return json.dumps(report, sort_keys=True, separators=(",", ":")).encode()
