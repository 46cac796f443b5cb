"""Views folded from records: stock on hand, sales and voids, prices, chain heads, problems.

The fold is a pure function of the *set* of records present, whatever order they arrive in. A
record counts only once its signature verifies against a certificate of the store that was
valid at the record's time (``core.trust``), it sits under its own key in its own document, and
its terminal's chain up to it is complete (``core.chains``).

Discovering a fork below an already accepted head cannot be folded in incrementally, so the
views ask their owner for a rebuild (``needs_rebuild``); forks are kept across the rebuild,
which makes the rebuilt result the canonical one. So is a store object that changes how a
chain is judged, once records of that chain are held: a fork resolution (``core.forks``) or a
certificate that re-keys or replaces a terminal (``identity.Succession``).

``Views`` is the one object its owner (``Replica``) folds into and reads from, so this module
holds that surface and the decisions (which entry is judged when, when to rebuild); the parts
it holds live beside it, one idea each: what a counted record does to stock, voids and prices
(``core.tally``), what is held but not counted (``core.uncounted``), the store's fork
resolutions and closures (``core.storeactions``), the checkpoint layout
(``core.viewstate``), and what a subscriber to accepted records sees (``core.accepted``).
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from lanesync.core import viewstate
from lanesync.core.accepted import AcceptedSubscriber
from lanesync.core.chain import Candidate, Offered
from lanesync.core.chains import ChainHead, Chains
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.forks import ForkResolution
from lanesync.core.identity import AnyRevocation, Certificate, Revocation, StoreIdentity
from lanesync.core.ids import (
    CATALOG_DOC,
    RecordId,
    Sku,
    TerminalId,
    is_decimal,
    ledger_doc,
)
from lanesync.core.records import (
    DayEnd,
    PriceChange,
    Record,
    Rejection,
    Sale,
    parse_checked,
    parse_record,
)
from lanesync.core.storeactions import StoreActions
from lanesync.core.tally import Effect, Price, Tally
from lanesync.core.trust import EVERY_KEY, Cut, Trust
from lanesync.core.uncounted import Uncounted


class Documents(Protocol):
    """What the views read back from their owner's CRDT documents (``Replica`` is one). The
    documents hold every record the views count: the views keep hashes and counts, not the
    records, and read a record back when they need it again."""

    def sale_at(self, key: str) -> Sale | None:
        """The sale stored under map key ``key`` in a day's document, or None if none is."""
        ...

    def value_at(self, doc: str, key: str) -> object:
        """The value stored under ``key`` in document ``doc``, or None."""
        ...

    def records_at(self, terminal: TerminalId, seq: int) -> list[Record]:
        """Every parseable record of ``terminal`` at ``seq`` held in a day's document, looked
        for in the sealed days that hold that seq first (``Chains.compact``)."""
        ...


def expected_doc(record: Record, tz: ZoneInfo) -> str:
    """Where a record must be stored: prices in the catalog, a day-end in the ledger of the
    day it closes (so the day's document holds its own close), the rest by store-local day."""
    body = record.body
    if isinstance(body, PriceChange):
        return CATALOG_DOC
    if isinstance(body, DayEnd):
        return ledger_doc(body.day)
    return ledger_doc(record.hlc.business_day(tz))


def closes_a_later_day(record: Record, tz: ZoneInfo) -> bool:
    """Is ``record`` a day-end of a day after its own business day (a day that has not
    begun when it was signed)? Such a record never counts."""
    body = record.body
    return isinstance(body, DayEnd) and body.day > record.hlc.business_day(tz)


class Views:
    """Incrementally maintained views over every record entry a replica has seen."""

    def __init__(
        self,
        store: StoreIdentity,
        tz: ZoneInfo,
        documents: Documents,
        subscribers: Sequence[AcceptedSubscriber] = (),
        *,
        crypto: Crypto = SODIUM,
    ) -> None:
        """``documents``: where the records the views count are stored. ``subscribers``: told
        of every record accepted and every rebuild (the owner may add to the sequence later).
        ``crypto``: checks records' signatures (core.crypto)."""
        self._store = store
        self._tz = tz
        self._documents = documents
        self._subscribers = subscribers
        self._trust = Trust(crypto)
        # What the store signed about chains; like certificates, kept across a rebuild.
        self._actions = StoreActions()
        self._deferring = False
        # Per terminal, the least seq from which a store decision or a fork may have changed
        # which of its records count, since the owner last took it (``take_recount``): the
        # sealed days holding those seqs may count otherwise after the rebuild. Kept across a
        # rebuild, like what the store signed.
        self._recount: dict[TerminalId, int] = {}
        self._reset_views()

    def _reset_views(self) -> None:
        self._chains = Chains(self._actions.resolutions, self._actions.closures, self._sealed_hash)
        self._uncounted = Uncounted()
        self._tally = Tally()
        self.needs_rebuild = False

    def begin_rebuild(self) -> None:
        """Forget every view (certificates and revocations stay); the owner then ingests every
        entry again and calls ``end_rebuild``. Nothing is accepted until then, so each chain is
        judged with all its candidates in view: the result is a function of the content alone,
        whatever order anything arrived in. Signatures already checked are not checked again."""
        for subscriber in self._subscribers:
            subscriber.views_rebuilt()
        checked = self._chains.known_hashes()
        self._reset_views()
        self._trust.remember_checked(checked)
        self._deferring = True

    def end_rebuild(self) -> None:
        self._deferring = False
        self._count_all(self._chains.advance_all())
        self.needs_rebuild = False
        self._trust.forget_checked()

    # -- certificates ---------------------------------------------------------------------------

    def signing_keys(self) -> dict[TerminalId, tuple[bytes, ...]]:
        """Every enrolled terminal's public keys, as a copy (``Trust.signing_keys``)."""
        return self._trust.signing_keys()

    def add_certificate(self, cert: Certificate, now_ms: int) -> None:
        if not self._trust.add_certificate(cert):
            return
        if cert.succeeds is not None:
            # A re-key changes which key signs which seqs of its terminal; a replacement closes
            # its predecessor's chain: what was judged of either may change.
            self._actions.add_succession(cert)
            if self._chains.knows(cert.succeeds.terminal):
                self.needs_rebuild = True
                # Nothing past the succession's seq counts under another key (a re-key) or at
                # all (a replacement).
                self._may_recount(cert.succeeds.terminal, cert.succeeds.seq + 1)
        # Records that arrived before their signer's certificate can be judged now.
        waiting = self._uncounted.take_unverified(cert.terminal_id)
        for (doc, key), record in waiting.items():
            self._ingest_parsed(doc, key, record, trusted=False, now_ms=now_ms)

    def add_revocation(self, revocation: AnyRevocation) -> None:
        """Records of the revoked terminal past its cut (or, for a format-1 revocation, stamped
        at or after its time) no longer count; any already counted is withdrawn by a rebuild.
        Records up to the cut count whenever they arrive."""
        if self._trust.add_revocation(revocation):
            # Records already counted, waiting behind a gap, or judged with the old validity
            # may all change verdict: revocations are rare, so judge everything again.
            self.needs_rebuild = True
            # A cut withdraws what lies past its seq, and the record at it when its hash is
            # not the one the cut names; a revocation of the first format cuts by time.
            after = revocation.after_seq if isinstance(revocation, Revocation) else 1
            self._may_recount(revocation.terminal_id, max(after, 1))

    def add_fork_resolution(self, resolution: ForkResolution) -> None:
        """The store declared every branch of ``resolution.terminal``'s fork genuine. With two
        resolutions of one terminal (two people resolved it from replicas that held different
        heads), every replica keeps the same one: the one counting the most records, then the
        greatest bytes."""
        if self._actions.add_resolution(resolution) and self._chains.knows(resolution.terminal):
            self.needs_rebuild = True
            self._may_recount(resolution.terminal, resolution.fork_seq)

    def _may_recount(self, terminal: TerminalId, seq: int) -> None:
        known = self._recount.get(terminal)
        self._recount[terminal] = seq if known is None else min(known, seq)

    def take_recount(self) -> dict[TerminalId, int]:
        """Per terminal, the least seq from which a store decision (a revocation's cut, a fork
        resolution, a re-key or a replacement) or a fork found below a head may have changed
        which of its records count, since the last call; the owner calls this after a rebuild
        and opens again the sealed days whose report changed (``Replica``)."""
        recount, self._recount = self._recount, {}
        return recount

    def fork_resolution(self, terminal: TerminalId) -> ForkResolution | None:
        """The fork resolution in force for ``terminal``, if any."""
        return self._actions.resolutions.get(terminal)

    def chain_ended(self, terminal: TerminalId) -> bool:
        """Did the store end ``terminal``'s chain (a replacement or a fork resolution closed
        it, or a revocation cut it): it will sign nothing more."""
        return (
            terminal in self._actions.closures
            or terminal in self._actions.resolutions
            or self._trust.cut_of(terminal) is not None
            or terminal in self._trust.time_revocations()
        )

    def final_seq(self, terminal: TerminalId) -> int | None:
        """The last seq of ``terminal``'s chain that can ever count, where the store ended it
        at a seq (a revocation's cut of every key, a replacement's closure; the earlier of
        the two); None while it may sign more, or where its end is no single seq (a
        revocation by time, a fork resolution's branches)."""
        ends = [self._actions.closures.get(terminal)]
        cut = self._trust.cut_of(terminal)
        if cut is not None:
            ends.append(cut.after_seq)
        known = [end for end in ends if end is not None]
        if not known or terminal in self._actions.resolutions:
            return None
        return min(known)

    def closed_reason(self, cert: Certificate) -> str | None:
        """Why ``cert``'s key may sign no more records of its terminal, or None if it may."""
        return self._actions.closed_reason(cert, self._trust)

    def successions(self) -> list[Certificate]:
        """Certificates that re-key or replace a terminal, sorted by terminal."""
        return sorted(
            (c for c in self._trust.certificates() if c.succeeds is not None),
            key=lambda c: (c.terminal_id, c.first_seq, c.encoded),
        )

    def is_revoked(self, terminal: TerminalId, now_ms: int) -> bool:
        """Is every certificate of ``terminal`` revoked? ``now_ms`` matters only for a
        revocation of the first format (by time): a cut is in force from when it is held."""
        return self._trust.is_revoked(terminal, now_ms)

    def revokes(self, cert: Certificate, now_ms: int) -> bool:
        """Is ``cert`` revoked, with its terminal or by its key (the handshake policy)?"""
        return self._trust.revokes(cert, now_ms)

    def cut_of(self, terminal: TerminalId, key: bytes = EVERY_KEY) -> Cut | None:
        """Where revocations cut ``terminal``'s chain (for certificates of ``key``)."""
        return self._trust.cut_of(terminal, key)

    def revocations(self) -> tuple[dict[tuple[TerminalId, bytes], Cut], dict[TerminalId, int]]:
        """Every cut in force by (terminal, key or EVERY_KEY), and every format-1 revocation
        (terminal -> from when, ms)."""
        return self._trust.cuts(), self._trust.time_revocations()

    def certificates(self) -> Iterator[Certificate]:
        return self._trust.certificates()

    def verifies(self, record: Record) -> bool:
        """Does a certificate of the store, valid for the record, verify its signature?"""
        return self._trust.signer(record, trusted=False) is not None

    # -- records --------------------------------------------------------------------------------

    def ingest(
        self, doc: str, key: str, value: object, *, trusted: bool = False, now_ms: int = 0
    ) -> None:
        """Fold one map entry in. ``trusted`` means its signature was verified before (verdict
        cache) or it was signed by this very replica."""
        self.ingest_parsed(doc, key, parse_record(value), trusted=trusted, now_ms=now_ms)

    def ingest_parsed(
        self, doc: str, key: str, parsed: Record | Rejection, *, trusted: bool, now_ms: int
    ) -> None:
        """``ingest`` for a value the caller already parsed (saves a second decode)."""
        if isinstance(parsed, Rejection):
            self._uncounted.reject(doc, key, parsed.reason)
            return
        self._ingest_parsed(doc, key, parsed, trusted=trusted, now_ms=now_ms)

    def _ingest_parsed(
        self, doc: str, key: str, record: Record, *, trusted: bool, now_ms: int
    ) -> None:
        if key != record.key:
            self._uncounted.reject(
                doc, key, f"record {record.id} is stored under a key not its own"
            )
            return
        if doc != expected_doc(record, self._tz):
            self._uncounted.reject(doc, key, f"record {record.id} is stored in the wrong document")
            return
        if closes_a_later_day(record, self._tz):
            self._uncounted.reject(doc, key, f"record {record.id} closes a day after its own")
            return
        signer = self._trust.signer(record, trusted=trusted)
        if signer is None:
            self._uncounted.unverified[record.terminal][(doc, key)] = record
            return
        self._uncounted.verified(doc, key, record.terminal)
        offered = self._chains.offer(doc, key, record, signer)
        if offered is Offered.BELOW_HEAD_FORK:
            self.needs_rebuild = True
            self._may_recount(record.terminal, record.seq)
        elif offered is Offered.HELD and not self._deferring:
            self._count_all(self._chains.advance(record.terminal))

    def compact(self, sealed_prefixes: dict[TerminalId, int]) -> None:
        """Drop the hashes of each terminal's records up to its prefix (every one of them is
        in a sealed day): read back from there when asked (``Chains.compact``)."""
        if not self._deferring:
            self._chains.compact(sealed_prefixes)

    def _sealed_hash(self, terminal: TerminalId, seq: int) -> bytes | None:
        """The hash of ``terminal``'s accepted record at ``seq``, from the documents: the one
        record there, or the one validly signed among several; None when that leaves none or
        more than one (then ``hash_at`` matches nothing, and a record offered at that seq is
        taken for a fork below the head: the views are rebuilt, with every hash held)."""
        found = self._documents.records_at(terminal, seq)
        if len(found) > 1:
            found = [r for r in found if self._trust.signer(r, trusted=False) is not None]
        hashes = {r.hash for r in found}
        return hashes.pop() if len(hashes) == 1 else None

    def _count_all(self, accepted: Iterable[Candidate]) -> None:
        """Count each record as its chain accepts it (before the next one is judged)."""
        for doc, key, record, signer in accepted:
            self._tally.accepted += 1
            for subscriber in self._subscribers:
                subscriber.record_accepted(record)
            self._apply(doc, key, record, signer)

    def _apply(self, doc: str, key: str, record: Record, signer: Certificate) -> None:
        effect = self._tally.count(record, signer, self._chains, self._documents.sale_at)
        if effect is Effect.SALE_GONE:
            self.needs_rebuild = True
        elif effect is not Effect.COUNTED:
            self._uncounted.refuse(doc, key, effect.value)

    # -- checkpoints ----------------------------------------------------------------------------

    def export_views(self) -> list[Any]:
        """Every view as plain msgpack-able values, for a checkpoint (``load_views`` reverses
        it). Records held but not counted yet (waiting behind a gap, or for a certificate)
        are named by document and key only: their bytes are in the documents."""
        if self._deferring:
            raise RuntimeError("a checkpoint of views in the middle of a rebuild")
        return viewstate.export_views(
            self._chains, self._uncounted, self._tally, self._trust, self._actions
        )

    def load_views(self, views: Any, trusted: Container[bytes]) -> None:
        """Take the views ``export_views`` gave, into views that have ingested their
        certificates and revocations and nothing else; records held but not counted are read
        back from the documents. ``trusted``: verdict keys of records verified before.

        Raises ``ValueError`` when the views do not fit these views and their documents (then
        they are unusable: the owner discards them and folds everything again)."""
        held = viewstate.load_views(
            views, self._chains, self._uncounted, self._tally, self._trust, self._actions
        )
        # Records held but not counted are judged again from the documents, all candidates in
        # view before any chain moves (as in a rebuild); none can move unless the checkpoint
        # was taken mid-fold, and then moving them is what a fold would do.
        self._deferring = True
        for doc, key in held:
            value = self._documents.value_at(doc, key)
            if value is None:
                raise ValueError(f"the checkpoint holds {doc} {key}, the documents do not")
            parsed, verdict = parse_checked(value, trusted)
            self.ingest_parsed(doc, key, parsed, trusted=verdict is not None, now_ms=0)
        self._deferring = False
        self._count_all(self._chains.advance_all())

    # -- reading --------------------------------------------------------------------------------

    def drain_new_verdicts(self) -> list[bytes]:
        """Verdict keys (``records.verdict_key``) of records whose signature was verified since
        the last call (to persist)."""
        return self._trust.drain_new_verdicts()

    def forget(self, doc: str, key: str, value: object) -> None:
        """An entry left the documents (deleted or replaced): drop what the views hold of it.

        Accepted records never get here (they are written back). A record that broke its chain
        changes the verdict on what follows it, so that asks for a rebuild."""
        self._uncounted.rejected.pop((doc, key), None)
        parsed = parse_record(value)
        if isinstance(parsed, Rejection):
            return
        self._uncounted.unverified.get(parsed.terminal, {}).pop((doc, key), None)
        if self._chains.forget(doc, key, parsed):
            self.needs_rebuild = True
            self._may_recount(parsed.terminal, parsed.seq)

    def on_hand(self) -> dict[Sku, int]:
        return dict(self._tally.on_hand)

    def on_hand_of(self, sku: Sku) -> int | None:
        return self._tally.on_hand.get(sku)

    def price_of(self, sku: Sku) -> Price | None:
        return self._tally.prices.get(sku)

    def prices(self) -> dict[Sku, Price]:
        return dict(self._tally.prices)

    def is_sale(self, record_id: str) -> bool:
        terminal, sep, seq = record_id.rpartition(":")
        if not sep or not is_decimal(seq):
            return False
        rid = RecordId(TerminalId(terminal), int(seq))
        # "lane1:07" names none
        return str(rid) == record_id and self._chains.is_counted_sale(rid)

    def is_ambiguous(self, record_id: RecordId) -> bool:
        """Does this id name records of two branches of a resolved fork (no single sale)?"""
        return self._chains.is_ambiguous(record_id)

    def is_voided(self, record_id: str) -> bool:
        return self._tally.is_voided(record_id)

    def voided_sales(self) -> list[str]:
        """The ids of the sales counted voids name (counted or not), sorted."""
        return sorted(sale_id for sale_id, n in self._tally.voids.items() if n > 0)

    def sale_ids(self) -> Iterator[str]:
        return self._chains.sale_ids()

    def accepted_count(self) -> int:
        return self._tally.accepted

    def closed_days(self, terminal: TerminalId) -> dict[str, int]:
        """The days ``terminal`` closed with a counted day-end: day -> the day-end's seq."""
        return dict(self._tally.closed.get(terminal, {}))

    def last_closed_day(self, terminal: TerminalId) -> str | None:
        """The latest day ``terminal`` closed with a counted day-end, if any."""
        return max(self._tally.closed.get(terminal, {}), default=None)

    def closing_terminals(self) -> list[TerminalId]:
        """Every terminal with a counted day-end, sorted."""
        return sorted(t for t, days in self._tally.closed.items() if days)

    def head(self, terminal: TerminalId) -> ChainHead:
        return self._chains.head(terminal)

    def heads(self) -> list[ChainHead]:
        return self._chains.heads()

    def is_broken(self, terminal: TerminalId) -> tuple[int, str] | None:
        return self._chains.is_broken(terminal)

    def accepted_key(self, record_id: RecordId) -> str | None:
        """The map key of the accepted record with this id, if any."""
        return self._chains.accepted_key(record_id)

    def is_accepted(self, record: Record) -> bool:
        return self._chains.is_accepted(record)

    def accepted_hash(self, terminal: TerminalId, seq: int) -> bytes | None:
        """The hash of ``terminal``'s accepted record at ``seq``, if it is accepted here."""
        return self._chains.accepted_hash(terminal, seq)

    def problems(self) -> dict[str, list[dict[str, object]]]:
        """Everything held but not counted, grouped by kind, sorted (for ``verify``)."""
        return {**self._uncounted.problems(self._trust), **self._chains.problems()}

    def uncounted_counts(self) -> dict[str, int]:
        """How many entries are held but not counted: rejected, unverified, unauthorized."""
        return self._uncounted.counts()

    def resolved_forks(self) -> list[dict[str, object]]:
        """Every fork the store resolved, with how far each branch counts (for ``verify``)."""
        return self._actions.resolved_forks(self._chains)
