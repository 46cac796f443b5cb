"""One replica of a store's state: the CRDT documents plus the views folded from them.

The replica is the pure core the shell drives. It never touches disk, sockets or the clock:

* ``append`` signs a new local record and returns the CRDT update bytes the shell must commit
  before acknowledging the record;
* ``merge`` applies update bytes that came from elsewhere (a bundle now, a peer later) and
  returns whatever the shell must persist;
* ``state_vectors`` / ``updates_since`` are the two halves of state-vector sync: only what the
  other side lacks is ever sent.

Documents: ``config`` (certificates, revocations, fork resolutions), ``catalog`` (price records)
and one ``ledger/<day>`` per store-local business day. Every map value is an immutable signed
record (or certificate) stored as bytes, because pycrdt turns integers into floats and drops
concurrently created nested maps (both seen with pycrdt 0.14.13, 2026-11-26); all typed data lives
inside the signed msgpack bytes.

The replica is one object around its pycrdt documents: loading, merging and local writes share
the documents' observers and the event queue they fill, and fold that queue into the views. What
needs none of that lives apart, and the replica calls it:

* ``documents``: the documents themselves and every read of their bytes (``DocumentSet``);
* ``change``: what a call hands back to persist (``Change``, ``Merged``);
* ``writable``: may this terminal sign, and where its next record links (revoked, closed or
  broken chain, the certificate window);
* ``closedays``: closing business days (``close_days``) and the reads the Z-report shares;
* ``checkpoint``: the checkpoint layout and loading the views from one;
* ``forks``: the open fork a resolution names (``open_fork``);
* the views (``views`` and the modules beside it: ``chains``, ``trust``, ``tally``...), the
  config document's keys and which of its entries are genuine (``configdoc``) and the checks on
  update bytes (``updates``).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pycrdt import TransactionEvent

from lanesync.core import closedays, configdoc, dayclose, forks, sealdays, writable
from lanesync.core.accepted import AcceptedRecords, AcceptedSubscriber
from lanesync.core.change import Change, Merged
from lanesync.core.checkpoint import document_fingerprints, load_checkpoint, make_checkpoint
from lanesync.core.configdoc import certificate_key, fork_resolution_key, revocation_key
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.documents import ArchiveReader, DocumentSet, with_tail
from lanesync.core.forks import Fork, ForkResolution, parse_fork_resolution
from lanesync.core.hlc import HybridClock
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Revocation,
    StoreIdentity,
    parse_revocation,
)
from lanesync.core.ids import (
    CATALOG_DOC,
    CONFIG_DOC,
    RecordId,
    TerminalId,
    is_valid_doc_name,
    ledger_doc,
)
from lanesync.core.records import (
    Body,
    DayEnd,
    Record,
    Rejection,
    make_record,
    parse_checked,
    parse_record,
)
from lanesync.core.sealing import SealedDay
from lanesync.core.updates import check_update
from lanesync.core.views import Views, expected_doc
from lanesync.errors import ConfigError, RemoteError


class Replica:
    def __init__(
        self,
        store: StoreIdentity,
        client_id: int,
        me: LocalIdentity | None,
        *,
        crypto: Crypto = SODIUM,
    ) -> None:
        """``crypto``: signs this replica's records, verifies everyone's and seals its peer
        connections' frames (core.crypto; only the benchmark passes another than the default)."""
        try:
            self._tz = ZoneInfo(store.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"unknown time zone {store.timezone!r}") from exc
        self.store = store
        self.me = me
        self.crypto = crypto
        self.client_id = client_id
        self.clock = HybridClock()
        self._accepted_subscribers: list[AcceptedSubscriber] = []
        self._documents = DocumentSet(client_id, self._on_map_event, self._on_transaction)
        self.views = self._new_views()
        self._events: list[tuple[str, str, str, object, object]] = []
        self._captured: list[tuple[str, bytes]] = []
        self._digest: str | None = None
        self._silent = False  # restore() folds what it loads itself
        # How the last ``restore`` got its views, one line for the shell's log.
        self.restored_from = "nothing restored"
        self.checkpoint_refused = False  # restore had a checkpoint that did not fit
        # Updates handed out in Changes and not yet reported durable (``persisted``): only with
        # none is a checkpoint of the views one of the stored documents too.
        self.unpersisted_updates = 0
        # Terminals whose new records the last fold added, or None when it also added anything
        # else (certificates, rejected or replaced entries): see Merged.writers.
        self.folded_writers: frozenset[str] | None = frozenset()
        # The business day of a terminal's first record, by that record's hash (a cache of
        # ``closedays.first_record_day``; a record's day never changes).
        self.first_days: dict[bytes, str] = {}

    # -- documents ------------------------------------------------------------------------------

    def doc_names(self) -> list[str]:
        """The documents held open (not the sealed days: ``sealed_days``)."""
        return self._documents.names()

    def all_doc_names(self) -> list[str]:
        """Every document, open or sealed."""
        return self._documents.all_names()

    def sealed_days(self) -> dict[str, SealedDay]:
        """The sealed days, by day (``core.sealing``)."""
        return {s.day: s for s in self._documents.sealed.values()}

    def amended_from(self, doc: str) -> tuple[str, ...]:
        """The report hashes of the earlier seals of a day opened again by a late record."""
        sealed = self._documents.sealed.get(doc)
        if sealed is not None:
            return sealed.amended_from
        return self._documents.amended.get(doc, ())

    def damaged_archives(self) -> set[str]:
        """Sealed days whose archive could not be read when a peer needed it (not sent)."""
        return set(self._documents.damaged)

    def attach_archives(self, reader: ArchiveReader) -> None:
        """Where the sealed days' archives are read from (the owner's storage)."""
        self._documents.read_archive = reader

    def seal_document(self, sealed: SealedDay) -> None:
        """Drop the open document of ``sealed.day``: its archive is stored (``core.sealdays``
        builds both)."""
        self._documents.seal(sealed)
        self._digest = None
        self._compact_chains()

    def _compact_chains(self) -> None:
        """The views drop the hashes of records every one of which is in a sealed day."""
        if self._documents.sealed:
            self.views.compact(self._documents.sealed_prefixes())

    def document_fingerprint(self, doc: str) -> list[bytes]:
        """An open document's fingerprint (``checkpoint.document_fingerprints``)."""
        return document_fingerprints({doc: self._documents.docs[doc]})[doc]

    def state_vector(self, doc: str) -> bytes:
        """An open document's state vector."""
        return bytes(self._documents.docs[doc].get_state())

    def content_digest(self, doc: str) -> bytes:
        return self._documents.content_digest(doc)

    def archived_update(self, doc: str) -> bytes:
        """The CRDT update that makes up a sealed day's archive, decompressed."""
        return self._documents.archived_update(doc)

    def _on_transaction(self, doc: str, event: TransactionEvent) -> None:
        if self._silent:
            return
        self._captured.append((doc, bytes(event.update)))
        self._digest = None  # any change, even deep inside a value a peer nested there

    def _on_map_event(self, doc: str, event: Any) -> None:
        """``event``: pycrdt's Rust ``MapEvent``; its values are plain Python objects (bytes
        for every genuine entry) or pycrdt's Rust types for anything a peer nested there."""
        # Observers run inside pycrdt's commit; exceptions there surface as ExceptionGroups far
        # from their cause (pycrdt re-raises them at commit), so only queue here and fold after
        # the transaction.
        if self._silent:
            return
        keys: dict[str, dict[str, Any]] = getattr(event, "keys", {})
        for key, change in keys.items():
            self._events.append(
                (doc, key, change["action"], change.get("oldValue"), change.get("newValue"))
            )

    # -- folding --------------------------------------------------------------------------------

    def _fold_events(
        self,
        now_ms: int,
        trusted: Container[bytes] = (),
        own: Mapping[str, Record] | None = None,
        *,
        verified: Container[bytes] = (),
    ) -> Change:
        """Fold queued map events into the views; returns local repairs to persist.

        ``own`` maps keys to records this replica just signed: no need to decode or verify them.
        ``verified``: records checked just now elsewhere (``merge_batch``).
        """
        events, self._events = self._events, []
        restore: list[tuple[str, str, bytes]] = []
        checked_ahead: list[bytes] = []  # verdicts of the records ``verified`` names
        checked = _Either(trusted, verified) if verified else trusted
        me = self.me.certificate.terminal_id if self.me else None
        writers: set[str] | None = set()
        own_seen = False  # a record of this terminal came from elsewhere (not just signed)
        for doc, key, action, old, new in events:
            self._digest = None
            if doc == CONFIG_DOC or action != "add":
                writers = None  # not a new record of one terminal
            if action in ("update", "delete") and old is not None and old != new:
                if isinstance(old, bytes | bytearray) and self._was_accepted(doc, key, old):
                    # Entries are immutable and content-addressed: an accepted one that was
                    # overwritten or deleted (only a misbehaving enrolled peer does that) is
                    # written back, so every replica converges on the genuine value.
                    restore.append((doc, key, bytes(old)))
                elif doc != CONFIG_DOC:
                    self.views.forget(doc, key, old)
            if action == "delete":
                continue
            if doc == CONFIG_DOC:
                self._ingest_config(key, new, now_ms)
                continue
            known = own.get(key) if own else None
            parsed, verdict = (known, None) if known is not None else parse_checked(new, checked)
            trust = known is not None or verdict is not None
            self.views.ingest_parsed(doc, key, parsed, trusted=trust, now_ms=now_ms)
            if verified and verdict is not None and verdict in verified:
                # A verdict says some key of the terminal verified the signature (Trust.signer)
                checked_ahead.append(verdict)
            if writers is not None:
                if isinstance(parsed, Rejection):
                    writers = None
                else:
                    writers.add(parsed.terminal)
            # Only counted records move the clock: a forgery naming us (or anyone) must not.
            if not isinstance(parsed, Rejection) and self.views.is_accepted(parsed):
                if parsed.terminal == me:
                    self._adopt_own(parsed)
                else:
                    self.clock.observe(parsed.hlc, now_ms)
            if known is None and not isinstance(parsed, Rejection) and parsed.terminal == me:
                own_seen = True
        reopened = Change()
        if self.views.needs_rebuild:
            self.rebuild(now_ms, checked)
            reopened = self._reopen_recounted()
        if own_seen:
            self._adopt_own_head()
        change = Change(
            verdicts=self.views.drain_new_verdicts() + checked_ahead, entries=len(events)
        )
        change.extend(reopened)
        for doc, key, value in restore:
            change.extend(self._local_put(doc, key, value, now_ms))
        # Last: a write-back above folds too.
        self.folded_writers = None if writers is None else frozenset(writers)
        return change

    def _reopen_recounted(self) -> Change:
        """After a rebuild: open again each sealed day whose report it changed, as a late
        record opens one (``DocumentSet.unseal``: the day is amended from its sealed report),
        so the usual path seals it again with the new one. Only the sealed days that hold a
        record whose verdict a store decision or a fork may have changed (``take_recount``), or
        may hold a void of such a sale, are folded again: a year's sealed days are not.
        The change stores each archive as its day's first log row and marks the seal undone."""
        recount = self.views.take_recount()
        if not recount or not self._documents.sealed:
            return Change()
        docs = set(self._documents.sealed_holding(recount))
        # A day's report counts the prices of its day too, which the catalog holds, not the
        # day's document (``closedays.catalog_by_day``): a price a fork resolution now counts
        # (the simulator's seed 5057 of --lanes 6 --ops 50 --fault-ms 12000).
        docs.update(
            name
            for name in map(ledger_doc, self._price_days(recount))
            if name in self._documents.sealed
        )
        # A void counts with the sale it names, on the void's own day, which is the sale's
        # day or later (the voiding lane had seen the sale): any lane's sealed day from there
        # on may hold a void of a sale that counts otherwise now.
        since = min(self._sale_days(recount), default=None)
        if since is not None:
            docs.update(n for n, s in self._documents.sealed.items() if s.day >= since)
        days = sorted(self._documents.sealed[name].day for name in docs)
        for day in sealdays.recounted(self, days):
            self._documents.unseal(ledger_doc(day))
        change = self._take_unsealed()
        self.unpersisted_updates += len(change.updates)
        return change

    def _sale_days(self, recount: Mapping[TerminalId, int]) -> Iterator[str]:
        """The business days of the voided sales of ``recount``'s terminals at or past its
        seqs (usually none: a void of a withdrawn or newly counted sale)."""
        for sale_id in self.views.voided_sales():
            terminal, _, seq = sale_id.rpartition(":")
            start = recount.get(TerminalId(terminal))
            if start is not None and seq.isdigit() and int(seq) >= start:
                for record in self._documents.records_at(terminal, int(seq)):
                    yield self.business_day(record)

    def _price_days(self, recount: Mapping[TerminalId, int]) -> Iterator[str]:
        """The business days of the catalog records of ``recount``'s terminals at or past its
        seqs, counted or not (one may count now, or no longer)."""
        for _, _, record in self.records([CATALOG_DOC]):
            start = recount.get(record.terminal)
            if start is not None and record.seq >= start:
                yield record.hlc.business_day(self._tz)

    def _was_accepted(self, doc: str, key: str, value: object) -> bool:
        """Was ``value`` a genuine entry under its own content key (worth writing back)?

        Its signature is checked again: the key and the accepted hash cover the payload only,
        so a copy of an accepted record with another signature passes both. Taken for genuine,
        such a copy written over the genuine one would be written back in turn, forever (a
        misbehaving peer's one update overflowed the stack). Only overwrites pay this check."""
        if doc == CONFIG_DOC:
            return configdoc.is_genuine(key, value, self.store)
        previous = parse_record(value)
        return (
            not isinstance(previous, Rejection)
            and previous.key == key
            and self.views.is_accepted(previous)
            and self.views.verifies(previous)
        )

    def _new_views(self) -> Views:
        documents, subscribers = self._documents, self._accepted_subscribers
        return Views(self.store, self._tz, documents, subscribers, crypto=self.crypto)

    def _ingest_config_doc(self, now_ms: int) -> None:
        for key, value in self._documents.entries(CONFIG_DOC):
            self._ingest_config(key, value, now_ms)

    def _ingest_config_doc_at_restore(self, now_ms: int) -> None:
        """``_ingest_config_doc`` into fresh views at a restore: every store decision is new to
        them, and none is new to the sealed days, each stored with the unseal its decision
        caused (``_reopen_recounted``), so nothing is to be folded again for them."""
        self._ingest_config_doc(now_ms)
        self.views.take_recount()

    def _ingest_config(self, key: str, value: object, now_ms: int) -> None:
        entry = configdoc.read_entry(key, value, self.store)
        if isinstance(entry, Certificate):
            self.views.add_certificate(entry, now_ms)
        elif isinstance(entry, ForkResolution):
            self.views.add_fork_resolution(entry)
        elif entry is not None:
            self.views.add_revocation(entry)

    def rebuild(self, now_ms: int, trusted: Container[bytes] = ()) -> None:
        """Recompute every view from the documents (after a fork below an accepted head, a
        revocation, or an entry that broke a chain disappeared)."""
        self.views.begin_rebuild()
        for name in self.all_doc_names():
            if name == CONFIG_DOC:
                continue
            for key, value in self._documents.entries(name):
                parsed, verdict = parse_checked(value, trusted)
                self.views.ingest_parsed(
                    name, key, parsed, trusted=verdict is not None, now_ms=now_ms
                )
        self.views.end_rebuild()
        self._digest = None
        self._compact_chains()

    # -- loading --------------------------------------------------------------------------------

    def restore(
        self,
        stored: Mapping[str, Sequence[bytes]],
        verified: Container[bytes],
        now_ms: int,
        *,
        checkpoint: bytes | None = None,
        tail: Sequence[tuple[str, bytes]] = (),
        sealed: Sequence[SealedDay] = (),
        amended: Mapping[str, tuple[str, ...]] | None = None,
    ) -> Change:
        """Load durable state at open, into a fresh replica.

        ``stored``: per document, its snapshot then its log rows (in commit order) up to where
        ``checkpoint`` (from ``checkpoint()``) was taken; ``tail``: the log rows committed after
        it, as (document, update). The documents are loaded with no observer (no per-key event
        for what was read). If the checkpoint fits the loaded documents exactly (same state
        vectors, same deletions), the views come from it and only the tail is folded, like a
        merge; otherwise (none, another format, corrupted, stale) every entry is folded with the
        canonical rebuild, certificates first, records whose verdict is cached not verified
        again. ``restored_from`` says which happened. ``sealed``: the sealed days (their
        archives are read through ``attach_archives``, attached first); ``amended``: per day
        document opened again by a late record, the report hashes of its earlier seals.
        """
        self._documents.restore_sealed(sealed, amended or {})
        rest = tail if checkpoint is not None else ()
        if checkpoint is None:
            stored = with_tail(stored, tail)
        self._documents.load(stored)
        self._ingest_config_doc_at_restore(now_ms)
        why_not: str | None = "no checkpoint"
        if checkpoint is not None:
            prints = self._fingerprints()
            why_not = load_checkpoint(checkpoint, self.store.store_id, prints, self.views, verified)
        change = Change()
        if why_not is None:
            folded = self._apply_stored(rest, silent=False)
            change.extend(self._fold_events(now_ms, verified))
            self.restored_from = (
                f"loaded stock and sales from the checkpoint, then {folded} later changes"
            )
        else:
            self._apply_stored(rest, silent=True)
            self.views = self._new_views()
            self._ingest_config_doc_at_restore(now_ms)
            self.rebuild(now_ms, trusted=verified)
            self.restored_from = (
                f"rebuilt stock and sales from {self.views.accepted_count()} records ({why_not})"
            )
            self.checkpoint_refused = checkpoint is not None
        self._captured.clear()  # what was just read is stored already
        self._compact_chains()  # a checkpoint of views compacted before holds the same
        for head in self.views.heads():
            if self.me is not None and head.terminal == self.me.certificate.terminal_id:
                self.clock.adopt(head.hlc)
            else:
                self.clock.observe(head.hlc, now_ms)
        if self.me is not None:
            # Nothing this terminal writes may enter a day it closed, whatever its clock says.
            closed = self.views.last_closed_day(self.me.certificate.terminal_id)
            if closed is not None:
                dayclose.adopt_day_after(self.clock, closed, self._tz)
        change.verdicts.extend(self.views.drain_new_verdicts())
        if self.me is not None:
            change.extend(self.publish_certificate(self.me.certificate, now_ms))
        return change

    def _apply_stored(self, rows: Sequence[tuple[str, bytes]], *, silent: bool) -> int:
        """Apply stored log rows in commit order, one transaction per run of one document.
        Returns how many map entries they changed (queued as events unless ``silent``)."""
        self._silent = silent
        try:
            self._documents.apply_runs(rows)
        finally:
            self._silent = False
        return len(self._events)

    # -- checkpoints ----------------------------------------------------------------------------

    def persisted(self, changes: Iterable[Change]) -> None:
        """The owner made ``changes`` durable."""
        self.unpersisted_updates -= sum(len(change.updates) for change in changes)

    def checkpoint(self) -> bytes:
        """The views and the exact document state they were folded from, for a later
        ``restore``: the shell stores it atomically with the log position it covers."""
        return make_checkpoint(self.store.store_id, self._fingerprints(), self.views.export_views())

    def _fingerprints(self) -> dict[str, list[bytes]]:
        """The open documents' fingerprints and the sealed days' (taken when they sealed): a
        checkpoint fits a replica that sealed a day since, as the day's content is the same."""
        prints = document_fingerprints(self._documents.docs)
        for name, sealed in self._documents.sealed.items():
            prints[name] = list(sealed.fingerprint)
        return prints

    # -- merging and publishing -----------------------------------------------------------------

    def merge(
        self, updates: Sequence[tuple[str, bytes]], now_ms: int, trusted: Container[bytes] = ()
    ) -> Change:
        """Apply CRDT updates from elsewhere, all or nothing.

        Every update is decoded before any is applied, so a bad one (RemoteError) changes
        nothing. The returned change persists the updates exactly as received. Records whose
        verdict key is in ``trusted`` were verified by this replica's own storage before (a cloud
        process sharing the database): their signatures are not checked again.
        """
        return self.merge_batch(updates, now_ms, trusted).change

    def merge_batch(
        self,
        updates: Sequence[tuple[str, bytes]],
        now_ms: int,
        trusted: Container[bytes] = (),
        *,
        verified: Container[bytes] = (),
    ) -> Merged:
        """``merge``, plus which of the updates were new here (the relay needs that).
        ``verified``: verdict keys of records checked just now elsewhere (``core.preverify``):
        taken as ``trusted``, and their verdicts kept as this replica's.

        All updates of one document are applied in ONE pycrdt transaction and the views are
        folded once: per update, a transaction of its own with its observer callbacks cost
        ~20 us against ~1.7 us batched (16 per transaction; measured 2026-11-26), and merging
        each received update alone was most of a busy lane's CPU. Duplicates (fully integrated
        already, or repeated within the batch) are neither applied nor stored.
        """
        for name, update in updates:
            if not is_valid_doc_name(name):
                raise RemoteError(f"unknown document name {name!r}")
            check_update(update)
        fresh = self._documents.fresh(updates)
        ordered = sorted(
            (item for item, new in zip(updates, fresh, strict=True) if new),
            key=lambda item: item[0] != CONFIG_DOC,  # certificates before the records they sign
        )
        self._documents.apply_merged(ordered)
        self._captured.clear()
        change = self._take_unsealed()
        change.updates.extend((name, bytes(update)) for name, update in ordered)
        self.unpersisted_updates += len(change.updates)
        change.extend(self._fold_events(now_ms, trusted, verified=verified))
        return Merged(change, tuple(fresh), self.folded_writers)

    def _take_unsealed(self) -> Change:
        """A change that stores, for each sealed day opened again since the last call, its
        archive as the document's first log row (and tells storage the seal is undone). The
        caller counts its updates in ``unpersisted_updates`` with its own: counted here too,
        they stayed unpersisted after the commit, and the terminal sealed, compacted and
        checkpointed nothing more until it was reopened."""
        unsealed, self._documents.unsealed = self._documents.unsealed, []
        change = Change(updates=list(unsealed), unsealed=[name for name, _ in unsealed])
        self._digest = None
        return change

    def publish_certificate(self, cert: Certificate, now_ms: int) -> Change:
        """Make a certificate known to every replica (idempotent)."""
        return self._publish(certificate_key(cert), cert.encoded, now_ms)

    def publish_revocation(self, revocation: Revocation, now_ms: int) -> Change:
        """Record a store-signed revocation; it spreads to every replica like any data."""
        parse_revocation(revocation.encoded, self.store)  # refuse to spread a forged one
        return self._publish(revocation_key(revocation), revocation.encoded, now_ms)

    def publish_fork_resolution(self, resolution: ForkResolution, now_ms: int) -> Change:
        """Record a store-signed fork resolution; it spreads to every replica like any data."""
        parse_fork_resolution(resolution.encoded, self.store)  # refuse to spread a forged one
        return self._publish(fork_resolution_key(resolution), resolution.encoded, now_ms)

    def _publish(self, key: str, encoded: bytes, now_ms: int) -> Change:
        """Put a store-signed entry in the config document, unless it is there already."""
        if self._documents.root(CONFIG_DOC).get(key) == encoded:
            return Change()
        return self._local_put(CONFIG_DOC, key, encoded, now_ms)

    def open_fork(self, terminal: TerminalId) -> Fork:
        """The branches of ``terminal``'s open fork, as this replica holds them (what a
        resolution of it names). A fork already resolved is open again when this replica holds
        records of a branch past the head the resolution named (the lane sold on before it
        heard of the resolution): resolving it again names the longer branches, and every
        replica keeps the resolution that counts more. UsageError when there is nothing to
        resolve here."""
        records = (record for _, _, record in self.records())
        return forks.open_fork(terminal, self.views, records)

    def _local_put(
        self, doc: str, key: str, value: bytes, now_ms: int, own: Mapping[str, Record] | None = None
    ) -> Change:
        """Write one entry here and fold it; ``own``: as in ``_fold_events``."""
        self._captured.clear()
        root = self._documents.root(doc)
        with self._documents.doc(doc).transaction():
            root[key] = value
        change = self._take_unsealed()
        change.updates.extend(self._captured)
        self.unpersisted_updates += len(change.updates)
        self._captured.clear()
        change.extend(self._fold_events(now_ms, own=own))
        return change

    # -- local records --------------------------------------------------------------------------

    def revoked(self) -> bool:
        """Does this replica hold a store-signed revocation of its own terminal (a cut of its
        chain, for its terminal or for its key, or a revocation of the first format, by time,
        whatever its time)? Then it may sign no record (``check_writable``), whatever the
        revocation admits of the records before it. The one place that asks: the write path,
        the status and the metrics all call this."""
        return writable.revoked(self.me, self.views)

    def check_writable(self) -> None:
        """Raise ``TerminalRevoked`` when this terminal may sign nothing more (``revoked``)."""
        writable.check_writable(self.me, self.views)

    def append(self, body: Body, now_ms: int) -> tuple[Record, Change]:
        """Sign ``body`` as the next record of this terminal's chain and add it to the state.

        The record is acknowledged to nobody yet: the shell commits ``Change`` first. Until it
        has, the update must not leave this process (a crash would reuse the CRDT clock).
        A revoked terminal (``revoked``) gets ``TerminalRevoked`` and changes nothing.
        """
        if self.me is None:
            raise ConfigError("this replica has no terminal identity to sign records with")
        self.check_writable()
        cert = self.me.certificate
        head = writable.next_head(cert, self.views)
        self.clock.adopt(head.hlc)
        writable.check_certificate(cert, self.views, self.clock.peek(now_ms).wall_ms)
        record = make_record(
            self.me.key,
            cert.terminal_id,
            head.seq + 1,
            head.hash,
            self.clock.tick(now_ms),
            body,
            self.crypto,
        )
        doc, own = expected_doc(record, self._tz), {record.key: record}
        change = self._local_put(doc, record.key, record.encoded, now_ms, own=own)
        change.verdicts.append(record.verdict_key)  # we signed it: a reopen need not verify it
        return record, change

    def _adopt_own_head(self) -> None:
        """After a fold that brought records of this terminal (peers handing back what a
        restored lane lost): move the clock past its counted head and past the last day it
        closed. A record held back by a gap is counted only when a later entry of the same
        fold fills it, and ``_adopt_own`` never sees it counted: found by the simulator (seed
        495 of the CI batch, under some hash seeds), a lane wrote into a day it had closed."""
        if self.me is None:
            return
        me = self.me.certificate.terminal_id
        head = self.views.head(me)
        if head.seq:
            self.clock.adopt(head.hlc)
        closed = self.views.last_closed_day(me)
        if closed is not None:
            dayclose.adopt_day_after(self.clock, closed, self._tz)

    def _adopt_own(self, record: Record) -> None:
        """Move the clock past one of this terminal's own counted records, and past the day a
        day-end of it closed (after a restore, its peers may hand back its later records)."""
        self.clock.adopt(record.hlc)
        if isinstance(record.body, DayEnd):
            dayclose.adopt_day_after(self.clock, record.body.day, self._tz)

    def close_days(self, until: str | None, now_ms: int) -> tuple[list[Record], Change]:
        """Sign a day-end record for each of this terminal's open business days up to and
        including ``until`` (default: today, store time), empty days included, from the day of
        its first record; a day already closed is skipped (closing again signs nothing). Like
        ``append``, the shell commits the change before telling anyone. Afterwards this
        terminal's clock stands in the day after ``until`` (``core.closedays`` does it).

        ``UsageError`` for a malformed day or one after today; ``TerminalRevoked`` when this
        terminal may sign nothing more; ``PermissionDenied`` for the cloud (it sells nothing).
        """
        return closedays.close_days(self, until, now_ms)

    # -- reading --------------------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        """The store's time zone (business days are store-local)."""
        return self._tz

    def business_day(self, record: Record) -> str:
        """The store-local business day of a record."""
        return record.hlc.business_day(self._tz)

    def state_vectors(
        self, peer: Mapping[str, bytes] | None = None, *, every_sealed: bool = False
    ) -> dict[str, bytes]:
        """Every open document's state vector and the sealed days' summary; with ``peer``
        (the last state a peer sent), also the sealed days' vectors it needs to hear
        (``core.sealing``); with ``every_sealed``, every sealed day's (a state file)."""
        return self._documents.state_vectors(peer, every_sealed=every_sealed)

    def updates_since(self, state_vectors: Mapping[str, bytes]) -> dict[str, bytes]:
        """Per document, exactly what a replica with ``state_vectors`` lacks (sealed days
        included, from their archives)."""
        return self._documents.updates_since(state_vectors)

    def full_state(self, name: str) -> bytes:
        """An open document's whole state; a sealed day's archived one."""
        if name in self._documents.sealed:
            return self.archived_update(name)
        return bytes(self._documents.doc(name).get_update())

    def covered(self, name: str, updates: Iterable[bytes]) -> list[bool]:
        """For each update: is it fully integrated in document ``name`` (nothing pending)?"""
        return self._documents.covered(name, updates)

    def records(self, names: Iterable[str] | None = None) -> Iterator[tuple[str, str, Record]]:
        """Every parseable record held, accepted or not."""
        return self._documents.records(names)

    def entries(self, name: str) -> list[tuple[str, bytes]]:
        """A copy of document ``name``'s entries (key, value), unparsed."""
        return self._documents.entries(name)

    def value_at(self, doc: str, key: str) -> object:
        """The value stored under ``key`` in document ``doc``, or None."""
        return self._documents.value_at(doc, key)

    def find_record(self, record_id: RecordId) -> Record | None:
        """The accepted record with this id, if this replica holds one."""
        key = self.views.accepted_key(record_id)
        return None if key is None else self._documents.record_at(key)

    def subscribe_accepted(self) -> AcceptedRecords:
        """A stream of the records the views accept from now on, and of their rebuilds (see
        ``AcceptedRecords`` for its guarantees). It outlives the views: a ``restore`` that
        replaces them feeds the same stream."""
        stream = AcceptedRecords()
        self.subscribe(stream)
        return stream

    def subscribe(self, subscriber: AcceptedSubscriber) -> None:
        """Tell ``subscriber`` of every record the views accept from now on and of every
        rebuild (a read model kept beside the views: ``core.journal``)."""
        self._accepted_subscribers.append(subscriber)

    def digest(self) -> str:
        """Canonical digest of the replicated content: every (document, key, value hash), sorted.

        The views are a pure function of this content, so equal digests mean converged replicas.
        """
        if self._digest is None:
            self._digest = self._documents.digest()
        return self._digest


class _Either(Container[bytes]):
    """Hashes in either of two containers (records checked before, and just now elsewhere)."""

    __slots__ = ("_first", "_second")

    def __init__(self, first: Container[bytes], second: Container[bytes]) -> None:
        self._first = first
        self._second = second

    def __contains__(self, item: object) -> bool:
        return item in self._first or item in self._second
