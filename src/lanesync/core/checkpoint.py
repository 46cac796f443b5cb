"""Checkpoints of a replica's views: their byte layout, and when one fits the stored documents.

A checkpoint lets a reopen skip folding every entry again. It is the views (``Views.export_views``)
plus a fingerprint of exactly the document state they were folded from, msgpack-encoded, followed
by a BLAKE2b digest of that body. ``Replica.checkpoint`` makes one; ``Replica.restore`` calls
``open_checkpoint`` and takes the views only when it answers ``Opened``: a checkpoint that is
corrupted, of another format or store, or stale (the documents moved on) is ``Refused`` with a
reason, and the views are folded from the documents instead. Nothing here raises on bad bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgpack
from pycrdt import Doc

from lanesync.core.ids import StoreId
from lanesync.core.updates import (
    EMPTY_STATE,
    EMPTY_UPDATE,
    canonical_deletions,
    canonical_state,
)

if TYPE_CHECKING:  # the views' own checkpoint layout is theirs: at run time they are passed in
    from lanesync.core.views import Views

# Version of the checkpoint layout; a checkpoint of any other version is refused and the views
# are folded from the documents, so changing the layout needs no migration, only a new number.
# 2: the views also carry the fork resolutions and closures they were judged under, and each
# chain the branches of its resolved fork. 3: document fingerprints in canonical form (clients
# ascending), so a document rebuilt in another order (a compacted snapshot) still matches.
# 4: the tally also carries the days each terminal closed (its day-end records). 5: each chain
# carries its base (the seqs whose hashes are read back from sealed days, ``Chains.compact``).
# 6: each price carries the hash of the record that set it (``tally.Price``'s last tie-break).
CHECKPOINT_FORMAT = 6
CHECKPOINT_DIGEST_SIZE = 32  # BLAKE2b-256 over the checkpoint's body, appended to it


@dataclass(frozen=True, slots=True)
class Opened:
    """The checkpoint fits: ``views`` is what ``Views.export_views`` gave, not yet checked
    (``Views.load_views`` judges it and raises ``ValueError`` when it does not fit)."""

    views: object


@dataclass(frozen=True, slots=True)
class Refused:
    """The checkpoint does not fit; ``reason`` is one line for the shell's log."""

    reason: str


def document_fingerprints(docs: Mapping[str, Doc[Any]]) -> dict[str, list[bytes]]:
    """Per non-empty document: its state vector (which insertions it holds; pending ones
    excluded) and a hash of its delete set (which of them are deleted), both in canonical form
    (``updates.canonical_state``). Two states of one document hold the same entries exactly when
    their fingerprints are equal, whatever order their updates were applied in."""
    out: dict[str, list[bytes]] = {}
    for name, doc in sorted(docs.items()):
        state = bytes(doc.get_state())
        deletions = bytes(doc.get_update(state))
        if state == EMPTY_STATE and deletions == EMPTY_UPDATE:
            continue
        deleted = canonical_deletions(deletions)
        out[name] = [canonical_state(state), hashlib.blake2b(deleted, digest_size=32).digest()]
    return out


def make_checkpoint(store_id: StoreId, prints: dict[str, list[bytes]], views: list[Any]) -> bytes:
    """The checkpoint of ``views``, folded from documents whose ``document_fingerprints`` are
    ``prints``."""
    body: bytes = msgpack.packb(
        [CHECKPOINT_FORMAT, store_id, prints, views],
        use_bin_type=True,
    )
    return body + hashlib.blake2b(body, digest_size=CHECKPOINT_DIGEST_SIZE).digest()


def open_checkpoint(
    checkpoint: bytes, store_id: StoreId, prints: dict[str, list[bytes]]
) -> Opened | Refused:
    """The views of ``checkpoint`` if it was made for this store from documents whose
    ``document_fingerprints`` are ``prints``; else why not."""
    body, digest = checkpoint[:-CHECKPOINT_DIGEST_SIZE], checkpoint[-CHECKPOINT_DIGEST_SIZE:]
    if hashlib.blake2b(body, digest_size=CHECKPOINT_DIGEST_SIZE).digest() != digest:
        return Refused("checkpoint corrupted")
    try:
        fields = msgpack.unpackb(body, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return Refused("checkpoint does not decode")
    if not (isinstance(fields, list) and len(fields) == 4):
        return Refused("checkpoint has the wrong shape")
    fmt, stored_store_id, stored_prints, views = fields
    if fmt != CHECKPOINT_FORMAT:
        return Refused(f"checkpoint of format {fmt!r}, this version reads {CHECKPOINT_FORMAT}")
    if stored_store_id != store_id:
        return Refused("checkpoint of another store")
    if stored_prints != prints:
        return Refused("checkpoint does not match the stored documents")
    return Opened(views)


def load_checkpoint(
    checkpoint: bytes,
    store_id: StoreId,
    prints: dict[str, list[bytes]],
    views: Views,
    verified: Container[bytes],
) -> str | None:
    """Load ``views`` from ``checkpoint`` if it was made for this store from exactly the
    documents whose fingerprints are ``prints`` (``Replica.restore``: the open documents' and
    the sealed days'); else return why not, and the caller folds the views from the documents
    instead (views that refused a checkpoint are left half loaded: replace them)."""
    opened = open_checkpoint(checkpoint, store_id, prints)
    if isinstance(opened, Refused):
        return opened.reason
    try:
        views.load_views(opened.views, verified)
    except ValueError as exc:
        return str(exc)
    return None
