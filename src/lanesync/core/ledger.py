"""Views folded from records: stock on hand, sales and voids, prices, chain heads, problems.

The fold is a pure function of the *set* of records present, whatever order they arrive in:

* A record counts only once its signature verifies against a certificate of the store that was
  valid at the record's time, it sits under its own key, and its terminal's chain up to it is
  complete.
* A terminal's accepted chain is the longest prefix ``1..k`` in which every seq holds exactly
  one distinct validly signed record, linked to its predecessor by hash, with a later HLC.
  Two distinct records at one seq (a fork) or a record that does not link stops the chain there
  for good; a missing seq (a gap) only pauses it until the record arrives.
* Stock on hand of a SKU = receipts + adjustments - units sold + units of voided sales. A sale is
  credited back once however many voids name it (two lanes may void it during a split).

Discovering a fork below an already accepted head cannot be folded in incrementally, so the
ledger asks its owner for a rebuild (``needs_rebuild``); forks are kept across the rebuild, which
makes the rebuilt result the canonical one.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from lanesync.core.hlc import ZERO, Hlc
from lanesync.core.identity import DOMAIN_RECORD, Certificate, StoreIdentity, verify
from lanesync.core.ids import (
    CATALOG_DOC,
    RecordId,
    Sku,
    TerminalId,
    is_decimal,
    ledger_doc,
)
from lanesync.core.records import (
    GENESIS_HASH,
    HASH_SIZE,
    Adjustment,
    PriceChange,
    Receipt,
    Record,
    Rejection,
    Sale,
    Void,
    parse_record,
    record_key,
)


@dataclass(frozen=True, slots=True)
class ChainHead:
    terminal: TerminalId
    seq: int
    hash: bytes
    hlc: Hlc


@dataclass(frozen=True, slots=True)
class Problem:
    """Something a replica holds but does not count. ``where`` is ``doc`` and ``key``."""

    doc: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class Price:
    unit_cents: int
    hlc: Hlc
    terminal: TerminalId


@dataclass(slots=True)
class _Chain:
    # The hashes of the accepted records, concatenated (seq i at [32 * (i - 1), 32 * i)): one
    # buffer instead of one bytes object per record (65 B of header each, 100k per busy day).
    hashes: bytearray = field(default_factory=bytearray)
    # sales[i] is 1 when seq i+1 is a counted sale (accepted and authorised): its lines are
    # read back from the document when a void needs them, so no per-sale object stays around.
    sales: bytearray = field(default_factory=bytearray)
    last_hlc: Hlc = ZERO
    broken_at: int | None = None  # seq from which nothing more is ever accepted
    broken_reason: str = ""
    broken_by: bytes = b""  # hash of the record that broke it by not linking (else empty)
    waiting: dict[int, dict[bytes, tuple[str, str, Record, Certificate]]] = field(
        default_factory=dict
    )

    @property
    def head_seq(self) -> int:
        return len(self.sales)

    @property
    def head_hash(self) -> bytes:
        return self.hash_at(len(self.sales)) if self.sales else GENESIS_HASH

    def hash_at(self, seq: int) -> bytes:
        return bytes(self.hashes[HASH_SIZE * (seq - 1) : HASH_SIZE * seq])

    def all_hashes(self) -> Iterator[bytes]:
        for start in range(0, len(self.hashes), HASH_SIZE):
            yield bytes(self.hashes[start : start + HASH_SIZE])


SaleFinder = Callable[[str], Sale | None]
FORK = "two different records with one sequence number"
BAD_LINK = "record does not link to its predecessor"


def expected_doc(record: Record, tz: ZoneInfo) -> str:
    """Where a record must be stored: prices in the catalog, the rest by store-local day."""
    if isinstance(record.body, PriceChange):
        return CATALOG_DOC
    return ledger_doc(record.hlc.business_day(tz))


class Ledger:
    """Incrementally maintained views over every record entry a replica has seen."""

    def __init__(
        self, store: StoreIdentity, tz: ZoneInfo, find_sale: SaleFinder = lambda _key: None
    ) -> None:
        """``find_sale(key)``: the lines of the counted sale stored under map key ``key`` (its
        owner's documents hold every record the views count), or None when it is not there."""
        self._store = store
        self._tz = tz
        self._find_sale = find_sale
        self._certs: dict[TerminalId, list[Certificate]] = defaultdict(list)
        self._deferring = False
        self._revoked: dict[TerminalId, int] = {}
        # For materialised views (the cloud's head-office tables): records accepted since the
        # last drain, and how many rebuilds happened (a rebuild invalidates what was drained).
        self.collect_accepted = False
        self.rebuilds = 0
        self._reset_views()

    def _reset_views(self) -> None:
        self._chains: dict[TerminalId, _Chain] = defaultdict(_Chain)
        self._unverified: dict[TerminalId, dict[tuple[str, str], Record]] = defaultdict(dict)
        self._rejected: dict[tuple[str, str], str] = {}
        self._unauthorized: dict[tuple[str, str], str] = {}
        self._on_hand: dict[Sku, int] = {}
        self._voids: dict[str, int] = defaultdict(int)
        self._prices: dict[Sku, Price] = {}
        self._accepted = 0
        self._new_verdicts: list[bytes] = []
        self._checked: set[bytes] = set()
        self._accepted_log: list[Record] = []
        self.needs_rebuild = False

    def begin_rebuild(self) -> None:
        """Forget every view (certificates and revocations stay); the owner then ingests every
        entry again and calls ``end_rebuild``. Nothing is accepted until then, so each chain is
        judged with all its candidates in view: the result is a function of the content alone,
        whatever order anything arrived in. Signatures already checked are not checked again."""
        self.rebuilds += 1
        checked = {h for chain in self._chains.values() for h in chain.all_hashes()}
        checked.update(
            h for chain in self._chains.values() for c in chain.waiting.values() for h in c
        )
        self._reset_views()
        self._checked = checked
        self._deferring = True

    def end_rebuild(self) -> None:
        self._deferring = False
        for terminal, chain in list(self._chains.items()):
            self._advance(terminal, chain)
        self.needs_rebuild = False
        # Only a rebuild needs to know what was verified before (it forgets the views); after
        # it the set would hold one hash per record for nothing.
        self._checked = set()

    # -- certificates ---------------------------------------------------------------------------

    def add_certificate(self, cert: Certificate, now_ms: int) -> None:
        known = self._certs[cert.terminal_id]
        if any(c.encoded == cert.encoded for c in known):
            return
        known.append(cert)
        # Records that arrived before their signer's certificate can be judged now.
        waiting = self._unverified.pop(cert.terminal_id, {})
        for (doc, key), record in waiting.items():
            self._ingest_parsed(doc, key, record, trusted=False, now_ms=now_ms)

    def add_revocation(self, terminal: TerminalId, revoked_at_ms: int) -> None:
        """From ``revoked_at_ms`` on, no certificate of ``terminal`` is valid. Records stamped
        earlier stay valid; any later one already counted is withdrawn by a rebuild."""
        current = self._revoked.get(terminal)
        if current is not None and current <= revoked_at_ms:
            return
        self._revoked[terminal] = revoked_at_ms
        # Records already counted, waiting behind a gap, or judged with the old validity may all
        # change verdict: revocations are rare, so judge everything again.
        self.needs_rebuild = True

    def revoked_at(self, terminal: TerminalId) -> int | None:
        return self._revoked.get(terminal)

    def is_revoked(self, terminal: TerminalId, at_ms: int) -> bool:
        revoked = self._revoked.get(terminal)
        return revoked is not None and at_ms >= revoked

    def certificates(self) -> Iterator[Certificate]:
        for certs in self._certs.values():
            yield from certs

    def _signer(self, record: Record, *, trusted: bool) -> Certificate | None:
        """A certificate of the record's terminal, valid at the record's time, whose key made
        the signature; None if there is none (yet). Every candidate is tried, so the answer does
        not depend on the order certificates arrived in; for a price change a manager
        certificate is preferred, since only that authorises it."""
        at_ms = record.hlc.wall_ms
        if self.is_revoked(record.terminal, at_ms):
            return None
        certs = self._certs.get(record.terminal, ())
        checked_before = trusted or record.hash in self._checked
        if len(certs) == 1:
            # The common case: one certificate, so there is no choice between signers.
            (cert,) = certs
            if not cert.valid_at(at_ms):
                return None
            if checked_before:
                return cert  # on a reopen
            if not verify(cert.public_key, DOMAIN_RECORD, record.payload, record.signature):
                return None
            self._new_verdicts.append(record.hash)
            return cert
        candidates = [c for c in certs if c.valid_at(at_ms)]
        if not candidates:
            return None
        if checked_before and (len(candidates) == 1 or not isinstance(record.body, PriceChange)):
            # The signature was verified before. Only for a price change with several candidate
            # certificates does it matter which one signed (their roles may differ).
            return candidates[0]
        signers = [
            c
            for c in candidates
            if verify(c.public_key, DOMAIN_RECORD, record.payload, record.signature)
        ]
        if signers and not trusted:
            self._new_verdicts.append(record.hash)
        managers = [c for c in signers if c.role.may_set_prices]
        if managers:
            return managers[0]
        return signers[0] if signers else None

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
            self._rejected[(doc, key)] = parsed.reason
            return
        self._ingest_parsed(doc, key, parsed, trusted=trusted, now_ms=now_ms)

    def _ingest_parsed(
        self, doc: str, key: str, record: Record, *, trusted: bool, now_ms: int
    ) -> None:
        if key != record.key:
            self._rejected[(doc, key)] = f"record {record.id} is stored under a key not its own"
            return
        if doc != expected_doc(record, self._tz):
            self._rejected[(doc, key)] = f"record {record.id} is stored in the wrong document"
            return
        signer = self._signer(record, trusted=trusted)
        if signer is None:
            self._unverified[record.terminal][(doc, key)] = record
            return
        self._rejected.pop((doc, key), None)
        self._unverified[record.terminal].pop((doc, key), None)
        self._add_valid(doc, key, record, signer)

    def _add_valid(self, doc: str, key: str, record: Record, cert: Certificate) -> None:
        chain = self._chains[record.terminal]
        seq = record.seq
        if chain.broken_at is not None and seq >= chain.broken_at:
            if seq == chain.broken_at and chain.broken_by and record.hash != chain.broken_by:
                # A second record at the seq where one failed to link: a fold that saw both at
                # once calls it a fork, and the views must not depend on arrival order.
                chain.broken_reason, chain.broken_by = FORK, b""
            return  # reported through the chain's broken state
        if seq <= chain.head_seq:
            if chain.hash_at(seq) != record.hash:
                # A fork below the head: what was counted must be judged again as a whole.
                self.needs_rebuild = True
            return
        chain.waiting.setdefault(seq, {})[record.hash] = (doc, key, record, cert)
        if not self._deferring:
            self._advance(record.terminal, chain)

    def _break(self, terminal: TerminalId, seq: int, reason: str, by: bytes = b"") -> None:
        chain = self._chains[terminal]
        if chain.broken_at is None or seq < chain.broken_at:
            chain.broken_at, chain.broken_reason, chain.broken_by = seq, reason, by
        for stale in [s for s in chain.waiting if s >= seq]:
            del chain.waiting[stale]

    def _advance(self, terminal: TerminalId, chain: _Chain) -> None:
        while (candidates := chain.waiting.get(chain.head_seq + 1)) is not None:
            seq = chain.head_seq + 1
            if len(candidates) > 1:
                self._break(terminal, seq, FORK)
                return
            ((doc, key, record, signer),) = candidates.values()
            if record.prev_hash != chain.head_hash or record.hlc <= chain.last_hlc:
                self._break(terminal, seq, BAD_LINK, record.hash)
                return
            del chain.waiting[seq]
            chain.hashes += record.hash
            chain.sales.append(0)  # _apply marks it once it counts as a sale
            chain.last_hlc = record.hlc
            self._accepted += 1
            if self.collect_accepted:
                self._accepted_log.append(record)
            self._apply(doc, key, record, signer, chain)

    def _apply(
        self, doc: str, key: str, record: Record, signer: Certificate, chain: _Chain
    ) -> None:
        body = record.body
        if not signer.role.may_sell and not isinstance(body, PriceChange):
            # A cloud certificate signs catalog records for its store and nothing else.
            self._unauthorized[(doc, key)] = "a cloud certificate may only set prices"
            return
        match body:
            case Sale(lines):
                chain.sales[record.seq - 1] = 1
                # Voided before it counted: its SKUs still appear in the stock view, at +-0.
                sign = 0 if self._voids.get(str(record.id)) else -1
                for line in lines:
                    self._move(line.sku, sign * line.qty)
            case Void(sale_id):
                target = str(sale_id)
                self._voids[target] += 1
                if self._voids[target] == 1 and self._is_counted_sale(sale_id):
                    sale_key = self.accepted_key(sale_id)
                    sale = self._find_sale(sale_key) if sale_key is not None else None
                    if sale is None:
                        # The counted sale's entry is gone from the documents (deleted by a
                        # misbehaving peer, written back after this fold): judge it all again.
                        self.needs_rebuild = True
                        return
                    for line in sale.lines:
                        self._move(line.sku, line.qty)
            case Receipt(sku, qty):
                self._move(sku, qty)
            case Adjustment(sku, delta):
                self._move(sku, delta)
            case PriceChange(sku, unit_cents):
                if not signer.role.may_set_prices:
                    self._unauthorized[(doc, key)] = "a cashier certificate may not set prices"
                    return
                current = self._prices.get(sku)
                candidate = Price(unit_cents, record.hlc, record.terminal)
                if current is None or (candidate.hlc, candidate.terminal) > (
                    current.hlc,
                    current.terminal,
                ):
                    self._prices[sku] = candidate
                self._on_hand.setdefault(sku, 0)

    def _move(self, sku: Sku, delta: int) -> None:
        self._on_hand[sku] = self._on_hand.get(sku, 0) + delta

    # -- checkpoints ----------------------------------------------------------------------------

    def export_views(self) -> list[Any]:
        """Every view as plain msgpack-able values, for a checkpoint (``load_views`` reverses
        it). Records held but not counted yet (waiting behind a gap, or for a certificate)
        are named by document and key only: their bytes are in the documents."""
        if self._deferring:
            raise RuntimeError("a checkpoint of a ledger in the middle of a rebuild")
        return [
            [
                [
                    terminal,
                    bytes(c.hashes),
                    bytes(c.sales),
                    c.last_hlc.wall_ms,
                    c.last_hlc.counter,
                    c.broken_at,
                    c.broken_reason,
                    c.broken_by,
                    sorted([d, k] for held in c.waiting.values() for d, k, _, _ in held.values()),
                ]
                for terminal, c in sorted(self._chains.items())
            ],
            sorted([d, k] for records in self._unverified.values() for d, k in records),
            sorted([d, k, r] for (d, k), r in self._rejected.items()),
            sorted([d, k, r] for (d, k), r in self._unauthorized.items()),
            sorted([sku, n] for sku, n in self._on_hand.items()),
            sorted([rid, n] for rid, n in self._voids.items() if n),
            sorted(
                [sku, p.unit_cents, p.hlc.wall_ms, p.hlc.counter, p.terminal]
                for sku, p in self._prices.items()
            ),
            self._accepted,
            sorted([t, ms] for t, ms in self._revoked.items()),
        ]

    def load_views(
        self, views: Any, lookup: Callable[[str, str], object], trusted: Container[bytes]
    ) -> None:
        """Take the views ``export_views`` gave, into a ledger that has ingested its
        certificates and revocations and nothing else. ``lookup(doc, key)``: a stored value.

        Raises ``ValueError`` when the views do not fit this ledger and its documents (then
        the ledger is unusable: the owner discards it and folds everything again)."""
        try:
            (
                chains,
                unverified,
                rejected,
                unauthorized,
                on_hand,
                voids,
                prices,
                accepted,
                revoked,
            ) = views
            if {TerminalId(t): int(ms) for t, ms in revoked} != self._revoked:
                raise ValueError("the checkpoint was made under other revocations")
            held: list[tuple[str, str]] = []
            for terminal, hashes, sales, wall, counter, broken_at, reason, by, waiting in chains:
                if len(hashes) != HASH_SIZE * len(sales) or not set(sales) <= {0, 1}:
                    raise ValueError("a chain of the checkpoint is malformed")
                chain = self._chains[TerminalId(sys.intern(terminal))]
                chain.hashes, chain.sales = bytearray(hashes), bytearray(sales)
                chain.last_hlc = Hlc(int(wall), int(counter))
                chain.broken_at = None if broken_at is None else int(broken_at)
                chain.broken_reason, chain.broken_by = str(reason), bytes(by)
                held.extend((str(d), str(k)) for d, k in waiting)
            held.extend((str(d), str(k)) for d, k in unverified)
            self._rejected = {(str(d), str(k)): str(r) for d, k, r in rejected}
            self._unauthorized = {(str(d), str(k)): str(r) for d, k, r in unauthorized}
            self._on_hand = {Sku(sys.intern(sku)): int(n) for sku, n in on_hand}
            self._voids.update((str(rid), int(n)) for rid, n in voids)
            self._prices = {
                Sku(sys.intern(sku)): Price(int(cents), Hlc(int(wall), int(counter)), TerminalId(t))
                for sku, cents, wall, counter, t in prices
            }
            self._accepted = int(accepted)
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"the checkpoint's views do not decode: {exc}") from exc
        # Records held but not counted are judged again from the documents, all candidates in
        # view before any chain moves (as in a rebuild); none can move unless the checkpoint
        # was taken mid-fold, and then moving them is what a fold would do.
        self._deferring = True
        for doc, key in held:
            value = lookup(doc, key)
            if value is None:
                raise ValueError(f"the checkpoint holds {doc} {key}, the documents do not")
            parsed = parse_record(value, trusted)
            trust = not isinstance(parsed, Rejection) and parsed.hash in trusted
            self.ingest_parsed(doc, key, parsed, trusted=trust, now_ms=0)
        self._deferring = False
        for terminal, chain in list(self._chains.items()):
            self._advance(terminal, chain)

    # -- reading --------------------------------------------------------------------------------

    def drain_new_verdicts(self) -> list[bytes]:
        """Hashes of records whose signature was verified since the last call (to persist)."""
        verdicts, self._new_verdicts = self._new_verdicts, []
        return verdicts

    def forget(self, doc: str, key: str, value: object) -> None:
        """An entry left the documents (deleted or replaced): drop what the views hold of it.

        Accepted records never get here (they are written back). A record that broke its chain
        changes the verdict on what follows it, so that asks for a rebuild."""
        self._rejected.pop((doc, key), None)
        parsed = parse_record(value)
        if isinstance(parsed, Rejection):
            return
        self._unverified.get(parsed.terminal, {}).pop((doc, key), None)
        chain = self._chains.get(parsed.terminal)
        if chain is None:
            return
        candidates = chain.waiting.get(parsed.seq, {})
        held = candidates.get(parsed.hash)
        if held is not None and held[:2] == (doc, key):
            del candidates[parsed.hash]
            if not candidates:
                del chain.waiting[parsed.seq]
        if chain.broken_at is not None and parsed.seq >= chain.broken_at - 1:
            self.needs_rebuild = True

    def drain_accepted(self) -> list[Record]:
        """Records accepted since the last call (only with ``collect_accepted``)."""
        log, self._accepted_log = self._accepted_log, []
        return log

    def on_hand(self) -> dict[Sku, int]:
        return dict(self._on_hand)

    def on_hand_of(self, sku: Sku) -> int | None:
        return self._on_hand.get(sku)

    def price_of(self, sku: Sku) -> Price | None:
        return self._prices.get(sku)

    def prices(self) -> dict[Sku, Price]:
        return dict(self._prices)

    def _is_counted_sale(self, record_id: RecordId) -> bool:
        chain = self._chains.get(record_id.terminal)
        return (
            chain is not None
            and 1 <= record_id.seq <= chain.head_seq
            and bool(chain.sales[record_id.seq - 1])
        )

    def is_sale(self, record_id: str) -> bool:
        terminal, sep, seq = record_id.rpartition(":")
        if not sep or not is_decimal(seq):
            return False
        rid = RecordId(TerminalId(terminal), int(seq))
        return str(rid) == record_id and self._is_counted_sale(rid)  # "lane1:07" names none

    def is_voided(self, record_id: str) -> bool:
        return self._voids.get(record_id, 0) > 0

    def sale_ids(self) -> Iterator[str]:
        for terminal, chain in self._chains.items():
            for index, counted in enumerate(chain.sales):
                if counted:
                    yield f"{terminal}:{index + 1}"

    def accepted_count(self) -> int:
        return self._accepted

    def head(self, terminal: TerminalId) -> ChainHead:
        chain = self._chains.get(terminal) or _Chain()
        return ChainHead(terminal, chain.head_seq, chain.head_hash, chain.last_hlc)

    def heads(self) -> list[ChainHead]:
        return [self.head(t) for t in sorted(self._chains) if self._chains[t].head_seq]

    def is_broken(self, terminal: TerminalId) -> tuple[int, str] | None:
        chain = self._chains.get(terminal)
        if chain is None or chain.broken_at is None:
            return None
        return chain.broken_at, chain.broken_reason

    def accepted_key(self, record_id: RecordId) -> str | None:
        """The map key of the accepted record with this id, if any."""
        chain = self._chains.get(record_id.terminal)
        if chain is None or not 1 <= record_id.seq <= chain.head_seq:
            return None
        return record_key(record_id, chain.hash_at(record_id.seq))

    def is_accepted(self, record: Record) -> bool:
        chain = self._chains.get(record.terminal)
        return (
            chain is not None
            and record.seq <= chain.head_seq
            and chain.hash_at(record.seq) == record.hash
        )

    def problems(self) -> dict[str, list[dict[str, object]]]:
        """Everything held but not counted, grouped by kind, sorted (for ``verify``)."""
        rejected: list[dict[str, object]] = [
            {"doc": d, "key": k, "reason": r} for (d, k), r in sorted(self._rejected.items())
        ]
        unverified: list[dict[str, object]] = sorted(
            (
                {"doc": d, "key": k, "reason": "no certificate of this store verifies it"}
                for records in self._unverified.values()
                for d, k in records
            ),
            key=lambda p: (str(p["doc"]), str(p["key"])),
        )
        unauthorized: list[dict[str, object]] = [
            {"doc": d, "key": k, "reason": r} for (d, k), r in sorted(self._unauthorized.items())
        ]
        broken: list[dict[str, object]] = [
            {"terminal": t, "from_seq": c.broken_at, "reason": c.broken_reason}
            for t, c in sorted(self._chains.items())
            if c.broken_at is not None
        ]
        gaps: list[dict[str, object]] = [
            {"terminal": t, "missing_seq": c.head_seq + 1, "waiting": len(c.waiting)}
            for t, c in sorted(self._chains.items())
            if c.waiting and c.broken_at is None
        ]
        return {
            "rejected": rejected,
            "unverified": unverified,
            "unauthorized": unauthorized,
            "broken_chains": broken,
            "gaps": gaps,
        }
