"""Sealed business days: a complete, acknowledged day's ledger document leaves memory and the
state-vector exchange, and lives on as a compact archive.

A sealed day is not gone: its archive is the day document's exact CRDT state (every record, byte
for byte, with the CRDT item ids every other replica holds), compressed, plus what the replica
needs of it without opening it (``SealedDay``: its state vector and fingerprint, the digest of
its content, its Z-report's hash, which seqs of which terminal it holds). So a sealed day can be
served to a peer that lacks it, read back when a later void names one of its sales, folded
again in a rebuild, and opened again (un-sealed) when a record of it arrives late, all from the
archive, without another copy.

What leaves the exchange: a replica's state names no sealed day; it carries one summary entry
instead (``Summary``: the days sealed, as ranges, and a digest of their contents), so a state
message no longer grows with the days a store has behind it. Between two replicas:

* a day one side sealed and the other holds open: the sealed side answers the open side's state
  vector from the archive, and names its archived vector in its own state to that peer (the
  "echo"), so each sends the other exactly what it lacks, as if the day were open on both;
* a day sealed on both sides: nothing, unless the digests of the days both sealed differ (a
  record that reached one side after the other sealed, during a split): then every sealed day's
  vector is named to that peer until they agree, which is the open case again;
* a day one side holds and the other neither holds nor sealed: sent whole, as before.

When a day may be sealed (``sealable``): every lane that must close it did, by this replica's
records (the Z-report is ``complete``), and the day is acknowledged, by the cloud in a store
that has one (the cloud's state covers the day, as the leader saw it or a peer says), by every
connected peer otherwise; the cloud's own replica acknowledges a day it holds by itself
(``sealdays.cloud_acknowledges``). Sealing only ever changes where a day is kept, never what it
holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any

import msgpack

from lanesync.core.ids import LEDGER_PREFIX, StoreId
from lanesync.core.statevector import covers, decode_state_vector
from lanesync.errors import RemoteError, StorageError

# The entry of a state message that carries the sealed days (``Summary``); not a document name,
# so no document can take it.
SEALED_SUMMARY = "sealed"
ARCHIVE_FORMAT = 1
SUMMARY_FORMAT = 1
DIGEST_SIZE = 32
# A summary names at most this many ranges of days; more means a store sealed days out of
# order for years, which no replica does (it seals a day once it is complete and acknowledged).
MAX_SUMMARY_RANGES = 4096


@dataclass(frozen=True, slots=True)
class SealedDay:
    """What a replica keeps in memory of a sealed day: everything but its records."""

    day: str
    state_vector: bytes  # the day document's, as pycrdt gives it (what a peer is answered from)
    fingerprint: tuple[bytes, bytes]  # checkpoint.document_fingerprints of the document
    digest: bytes  # documents.content_digest of the document
    records: int  # records of the day the views count
    report_hash: str
    amended_from: tuple[str, ...] = ()  # report hashes of earlier seals of the day, oldest first
    # (terminal, first seq, last seq): the runs of consecutive seqs of each terminal's records
    # the document holds, exactly: where a read of one record looks, and how far each chain's
    # hashes may be dropped from memory (``DocumentSet.sealed_prefixes``).
    seqs: tuple[tuple[str, int, int], ...] = ()

    @property
    def doc(self) -> str:
        return LEDGER_PREFIX + self.day

    def holds_seq(self, terminal: str, seq: int) -> bool:
        return any(t == terminal and lo <= seq <= hi for t, lo, hi in self.seqs)

    def token(self) -> int:
        """This day's share of a summary digest (the digests of days XOR together)."""
        h = hashlib.blake2b(self.day.encode() + self.digest, digest_size=DIGEST_SIZE)
        return int.from_bytes(h.digest(), "big")


def read_seal_rows(
    rows: Iterable[tuple[str, bytes]], where: str
) -> tuple[list[SealedDay], dict[str, tuple[str, ...]]]:
    """The ``(state, meta)`` rows storage keeps of sealed days (a lane's ``sealed_days``, the
    cloud's ``store_archives``): the days sealed, and for each day opened again the report
    hashes of its earlier seals, by document. ``StorageError`` names ``where`` for a row that
    does not decode or has another state: taking it for either would hide or invent a day's
    records."""
    sealed: list[SealedDay] = []
    amended: dict[str, tuple[str, ...]] = {}
    for state, meta in rows:
        try:
            day = decode_meta(bytes(meta))
        except ValueError as exc:
            raise StorageError(f"{where}: {exc}") from exc
        if state == "sealed":
            sealed.append(day)
        elif state == "reopened":
            amended[day.doc] = (*day.amended_from, day.report_hash)
        else:
            raise StorageError(f"{where}: sealed day {day.day} has state {state!r}")
    return sealed, amended


def encode_meta(sealed: SealedDay) -> bytes:
    return bytes(
        msgpack.packb(
            [
                ARCHIVE_FORMAT,
                sealed.day,
                sealed.state_vector,
                list(sealed.fingerprint),
                sealed.digest,
                sealed.records,
                sealed.report_hash,
                list(sealed.amended_from),
                [list(s) for s in sealed.seqs],
            ],
            use_bin_type=True,
        )
    )


def decode_meta(data: bytes) -> SealedDay:
    """``ValueError`` for bytes ``encode_meta`` did not write (a damaged database)."""
    try:
        fields = msgpack.unpackb(data, raw=False)
        match fields:
            case [
                1,
                str(day),
                bytes(vector),
                [bytes(state), bytes(deletions)],
                bytes(digest),
                int(records),
                str(report_hash),
                list(amended),
                list(seqs),
            ]:
                return SealedDay(
                    day,
                    vector,
                    (state, deletions),
                    digest,
                    records,
                    report_hash,
                    tuple(str(h) for h in amended),
                    tuple((str(t), int(lo), int(hi)) for t, lo, hi in seqs),
                )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ValueError(f"a sealed day's description does not decode: {exc}") from exc
    raise ValueError("a sealed day's description has an unknown layout")


def archive_digest(store_id: StoreId, meta: bytes, archive: bytes) -> bytes:
    """What the sealing terminal signs: the store, the day's description and its archive."""
    h = hashlib.blake2b(digest_size=DIGEST_SIZE)
    for part in (store_id.encode(), meta, archive):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


# -- the summary a state message carries -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    """The days a replica sealed (as inclusive ranges of day ordinals) and the XOR of their
    ``SealedDay.token``s."""

    ranges: tuple[tuple[int, int], ...]
    digest: int

    def days(self) -> frozenset[str]:
        return _days_of(self.ranges)

    def holds(self, day: str) -> bool:
        n = date.fromisoformat(day).toordinal()
        return any(lo <= n <= hi for lo, hi in self.ranges)


# A state message carries a summary, and every state a peer sends is read for it: the same few
# summaries, decoded and expanded again each time (0.16 ms for a year's 365 days, per message
# and peer), are kept instead.
@lru_cache(maxsize=64)
def _days_of(ranges: tuple[tuple[int, int], ...]) -> frozenset[str]:
    return frozenset(
        date.fromordinal(n).isoformat() for lo, hi in ranges for n in range(lo, hi + 1)
    )


def summarize(days: Iterable[SealedDay]) -> Summary:
    sealed = list(days)
    ordinals = sorted(date.fromisoformat(s.day).toordinal() for s in sealed)
    ranges: list[tuple[int, int]] = []
    for n in ordinals:
        if ranges and ranges[-1][1] == n - 1:
            ranges[-1] = (ranges[-1][0], n)
        else:
            ranges.append((n, n))
    digest = 0
    for s in sealed:
        digest ^= s.token()
    return Summary(tuple(ranges), digest)


def encode_summary(summary: Summary) -> bytes:
    return bytes(
        msgpack.packb(
            [SUMMARY_FORMAT, [list(r) for r in summary.ranges], summary.digest.to_bytes(32, "big")],
            use_bin_type=True,
        )
    )


def decode_summary(data: bytes) -> Summary:
    """``RemoteError`` for a summary no replica writes (it comes from a peer)."""
    try:
        fields = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise RemoteError("the sealed-days summary does not decode") from exc
    match fields:
        case [1, list(raw), bytes(digest)] if len(raw) <= MAX_SUMMARY_RANGES and len(digest) == 32:
            ranges = []
            for item in raw:
                match item:
                    case [int(lo), int(hi)] if 1 <= lo <= hi <= date.max.toordinal():
                        ranges.append((lo, hi))
                    case _:
                        raise RemoteError("the sealed-days summary has a malformed range")
            if sum(hi - lo + 1 for lo, hi in ranges) > MAX_SUMMARY_RANGES * 16:
                raise RemoteError("the sealed-days summary names too many days")
            return Summary(tuple(ranges), int.from_bytes(digest, "big"))
    raise RemoteError("the sealed-days summary has an unknown layout")


def peer_summary(state: Mapping[str, bytes]) -> Summary | None:
    """The sealed days a peer's state names (``SEALED_SUMMARY``), or None when it names none
    or the entry does not decode (a peer's bytes: then it is taken to have sealed nothing)."""
    raw = state.get(SEALED_SUMMARY)
    return None if raw is None else _decoded(bytes(raw))


@lru_cache(maxsize=64)  # see _days_of
def _decoded(raw: bytes) -> Summary | None:
    try:
        return decode_summary(raw)
    except RemoteError:
        return None


def amended_hashes(earlier: tuple[str, ...], now: str) -> tuple[str, ...]:
    """The report hashes of a day's earlier seals that amend it now, its report being ``now``:
    all of them, less a last one equal to ``now`` (a day opened again by something that counts
    in no report, a rejected entry or a record after a close, is not amended by it). The one
    rule for a sealed report (``sealdays``) and a folded one (``zreport``)."""
    return earlier[:-1] if earlier and earlier[-1] == now else earlier


def vector_covers(held: bytes, wanted: bytes) -> bool:
    """Does a document at state vector ``held`` hold all a document at ``wanted`` holds? False
    when either does not decode."""
    h, w = decode_state_vector(held), decode_state_vector(wanted)
    return h is not None and w is not None and covers(h, w)


def same_vector(theirs: bytes, sealed: SealedDay) -> bool:
    """Does a peer's vector name exactly the items of ``sealed`` (pycrdt may encode one state
    vector in several byte orders, so the bytes are not compared)?"""
    return decode_state_vector(theirs) == decode_state_vector(sealed.state_vector)


def digest_of(sealed: Mapping[str, SealedDay], days: Iterable[str]) -> int:
    digest = 0
    for day in days:
        digest ^= sealed[day].token()
    return digest


def wire_entry(sealed: SealedDay) -> dict[str, Any]:
    """A sealed day as ``lanesync days --json`` lists it."""
    return {
        "day": sealed.day,
        "state": "sealed",
        "records": sealed.records,
        "report_hash": sealed.report_hash,
    }
