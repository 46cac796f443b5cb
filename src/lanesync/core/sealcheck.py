"""Checking one business day as a replica holds it (``lanesync verify --day``).

A sealed day is checked from what storage keeps of it (``StoredSeal``), nothing taken on trust:
the sealing terminal's signature over the store, the description and the archive
(``sealing.archive_digest``); that the archive decompresses into a CRDT update whose document
has the state vector, fingerprint and content digest the description names; that every record
in it verifies against the store's certificates and that as many count as the description
says; and that the Z-report folded from the archive's records has the description's hash, as
does the report stored beside it. An open day has the checks every day has
(``zreport.day_findings``): day-ends that disagree with their records, records signed after
their day was closed.

Every problem is one line, for people; the report says ``ok`` only when there is none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pycrdt import Doc, Map

from lanesync.core import archive_codec, sealing, zreport
from lanesync.core.checkpoint import document_fingerprints
from lanesync.core.documents import RECORDS_ROOT, map_digest
from lanesync.core.identity import verify_signature
from lanesync.core.ids import ledger_doc
from lanesync.core.records import Rejection, parse_record
from lanesync.core.updates import canonical_state
from lanesync.errors import NotFound

if TYPE_CHECKING:  # the shell passes the replica in
    from lanesync.core.replica import Replica

# The sealing terminal signs the digest itself (``sealdays.seal_day``), under no domain prefix:
# the digest already names what it covers and whose store it is.
ARCHIVE_SIGNATURE_DOMAIN = b""


@dataclass(frozen=True, slots=True)
class StoredSeal:
    """A sealed day as storage keeps it: the columns of its row, unread."""

    meta: bytes  # sealing.encode_meta
    archive: bytes  # archive_codec.compress'd CRDT state
    signature: bytes  # by the sealing terminal, over sealing.archive_digest
    report: bytes  # the sealed Z-report, canonical JSON


def verify_day(replica: Replica, day: str, stored: StoredSeal | None) -> dict[str, Any]:
    """The verify report of ``day``: where it stands, its records and report hash, and every
    problem found (``ok`` when none). ``stored``: the day's row when storage holds it sealed.
    ``NotFound`` when the replica holds no ledger of the day."""
    zreport.check_day(day)
    name = ledger_doc(day)
    sealed = replica.sealed_days().get(day)
    if sealed is None and name not in replica.doc_names():
        raise not_held(day)
    problems: list[str] = []
    if sealed is not None:
        entry = sealing.wire_entry(sealed)
        readable = False
        if stored is None:
            problems.append(f"storage holds no archive of the sealed day {day}")
        else:
            problems, readable = _check_sealed(replica, day, stored)
    else:
        entry, readable = zreport.day_entry(replica, day), True
    # Nothing to fold from an archive that does not read back: its problems say so.
    findings = (
        zreport.day_findings(replica, only=day)
        if readable
        else {"day_end_mismatches": [], "records_after_close": []}
    )
    ok = not problems and not any(findings.values())
    return {**entry, "ok": ok, "problems": problems, **findings}


def not_held(day: str) -> NotFound:
    return NotFound(f"{day} is not held here: `lanesync days` lists the days this lane holds")


def check_sealed(replica: Replica, day: str, stored: StoredSeal) -> list[str]:
    """What is wrong with sealed ``day`` as ``stored``, one line each (none: it verifies).
    Stops at the first problem that leaves nothing further to read (a description or an
    archive that does not decode)."""
    return _check_sealed(replica, day, stored)[0]


def _check_sealed(replica: Replica, day: str, stored: StoredSeal) -> tuple[list[str], bool]:
    """``check_sealed``, and whether the archive reads back (decompresses and loads)."""
    try:
        described = sealing.decode_meta(stored.meta)
    except ValueError as exc:
        return [str(exc)], False
    if described.day != day:
        return [f"the description stored for {day} describes {described.day}"], False
    problems = []
    if not _signed_by_me(replica, stored):
        problems.append(
            "the archive's signature does not verify with this terminal's keys "
            "(the archive or its description changed after it was sealed)"
        )
    try:
        update = archive_codec.decompress(stored.archive)
    except ValueError as exc:
        return [*problems, str(exc)], False
    doc: Doc[Any] = Doc()
    try:
        doc.apply_update(update)
    except (ValueError, RuntimeError) as exc:
        return [*problems, f"the archive is not a CRDT update: {exc}"], False
    state, deletions = document_fingerprints({described.doc: doc}).get(described.doc, [b"", b""])
    if state != canonical_state(described.state_vector) or state != described.fingerprint[0]:
        problems.append("the archive's state vector is not the one its description names")
    if deletions != described.fingerprint[1]:
        problems.append("the archive's deletions are not the ones its description names")
    root: Map[Any] = doc.get(RECORDS_ROOT, type=Map)
    if map_digest(root) != described.digest:
        problems.append("the archive's content digest is not the one its description names")
    counted = 0
    for key, value in sorted(root.items()):
        record = parse_record(value)
        if isinstance(record, Rejection):
            problems.append(f"entry {key} of the archive is not a record: {record.reason}")
            continue
        if not replica.views.verifies(record):
            problems.append(f"record {key} does not verify against the store's certificates")
        counted += replica.views.is_accepted(record)
    if counted != described.records:
        problems.append(
            f"the archive holds {counted} counted records, its description says {described.records}"
        )
    # Folded through the replica, which reads the day from storage: these very bytes in a
    # fresh process; in a daemon, maybe the document it sealed, kept since, whose content is the
    # archive's when the digest above matched.
    folded = zreport.z_report(replica, day)["report_hash"]
    if folded != described.report_hash:
        problems.append(
            f"the Z-report folded from the archive has hash {folded}, the seal says "
            f"{described.report_hash}"
        )
    if not stored_report_matches(stored.report, described.report_hash):
        problems.append(
            "the Z-report stored with the seal is not the one the seal names "
            "(`lanesync report --day` prints it)"
        )
    return problems, True


def _signed_by_me(replica: Replica, stored: StoredSeal) -> bool:
    """Did this replica's terminal seal it? Each replica seals its own copy of a day, and
    storage keeps no signer: any key the store certified for this terminal (a re-key keeps
    the earlier seals valid)."""
    if replica.me is None or not stored.signature:
        return False
    me = replica.me.certificate
    keys = {me.public_key} | {
        c.public_key for c in replica.views.certificates() if c.terminal_id == me.terminal_id
    }
    digest = sealing.archive_digest(replica.store.store_id, stored.meta, stored.archive)
    return any(
        verify_signature(key, ARCHIVE_SIGNATURE_DOMAIN, digest, stored.signature) for key in keys
    )


def stored_report_matches(report: bytes, report_hash: str) -> bool:
    """Does the stored report name ``report_hash`` and hold what that hash covers?"""
    try:
        parsed = json.loads(report)
    except ValueError:
        return False
    return (
        isinstance(parsed, dict)
        and parsed.get("report_hash") == report_hash
        and zreport.report_hash(parsed) == report_hash
    )
