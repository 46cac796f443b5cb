"""Signed business records: the immutable facts every view is folded from.

Wire format of one record (the value stored under its key in a CRDT map)::

    payload   = msgpack [FORMAT, terminal, seq, prev_hash, hlc_wall_ms, hlc_counter, kind, body]
    record    = payload || Ed25519 signature over (DOMAIN_RECORD || payload)
    hash      = BLAKE2b-256(payload)           -- the next record's prev_hash

The signature covers the exact payload bytes, so verification never re-encodes anything, and a
record's hash (and therefore the chain) is stable across replicas.
``docs/reference/record-format.md`` describes every body.
"""

from __future__ import annotations

import enum
import hashlib
import re
import sys
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import msgpack
from nacl.signing import SigningKey

from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.hlc import Hlc
from lanesync.core.identity import SIGNATURE_SIZE
from lanesync.core.ids import RecordId, Sku, TerminalId, is_decimal, is_valid_name, is_valid_sku

RECORD_FORMAT = 1
HASH_SIZE = 32
KEY_HASH_BYTES = 16
# Timestamps past the year 3000 are not a clock error anyone should keep: they cannot be turned
# into a calendar day everywhere (Python's datetime ends at 9999) and would freeze the HLC.
MAX_WALL_MS = 32_503_680_000_000  # 3000-01-01T00:00:00Z
MAX_HLC_COUNTER = 2**32 - 1
GENESIS_HASH = bytes(HASH_SIZE)  # prev_hash of a terminal's first record
MAX_RECORD_SIZE = 16 * 1024  # a 200-line sale is ~6 KiB; anything bigger is not a POS record
MAX_LINES = 200
MAX_QTY = 1_000_000
MAX_UNIT_CENTS = 100_000_000_000  # one billion currency units: far above any shelf price
MAX_REASON = 200
# Totals must stay inside a signed 64-bit integer so every store (and SQL) can hold them.
MAX_TOTAL = 2**63 - 1


class Kind(enum.IntEnum):
    SALE = 1
    VOID = 2
    RECEIPT = 3
    ADJUSTMENT = 4
    PRICE = 5
    DAY_END = 6


@dataclass(frozen=True, slots=True)
class SaleLine:
    sku: Sku
    qty: int
    unit_cents: int


@dataclass(frozen=True, slots=True)
class Sale:
    lines: tuple[SaleLine, ...]
    total_cents: int

    @classmethod
    def of(cls, lines: tuple[SaleLine, ...]) -> Sale:
        return cls(lines, sum(line.qty * line.unit_cents for line in lines))


@dataclass(frozen=True, slots=True)
class Void:
    sale_id: RecordId


@dataclass(frozen=True, slots=True)
class Receipt:
    sku: Sku
    qty: int


@dataclass(frozen=True, slots=True)
class Adjustment:
    sku: Sku
    delta: int
    reason: str


@dataclass(frozen=True, slots=True)
class PriceChange:
    sku: Sku
    unit_cents: int


@dataclass(frozen=True, slots=True)
class DayEnd:
    """A terminal closes a store-local business day: which of its records the day holds and
    what they add up to (``core.dayclose`` folds it; ``core.zreport`` checks it).

    ``first_seq``/``last_seq``: the least and greatest seq of the terminal's records (day-ends
    aside) whose business day is ``day``, 0/0 for a day without any. ``sales``/``gross_cents``:
    its sales of the day; ``voids``/``voided_cents``: its voids of the day, each with the total of
    the sale it voids (a void counts on the day of the void); ``net_cents`` = gross - voided (may
    be negative: a day whose voids undo the day before's sales)."""

    day: str
    first_seq: int
    last_seq: int
    sales: int
    voids: int
    gross_cents: int
    voided_cents: int
    net_cents: int


Body = Sale | Void | Receipt | Adjustment | PriceChange | DayEnd

KIND_OF: dict[type, Kind] = {
    Sale: Kind.SALE,
    Void: Kind.VOID,
    Receipt: Kind.RECEIPT,
    Adjustment: Kind.ADJUSTMENT,
    PriceChange: Kind.PRICE,
    DayEnd: Kind.DAY_END,
}


@dataclass(frozen=True, slots=True)
class Record:
    terminal: TerminalId
    seq: int
    prev_hash: bytes
    hlc: Hlc
    body: Body
    payload: bytes
    signature: bytes
    hash: bytes
    # Derived once: views ask for them for every record, and a reopen folds 100k records.
    id: RecordId = field(init=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        rid = RecordId(self.terminal, self.seq)
        object.__setattr__(self, "id", rid)
        object.__setattr__(self, "key", record_key(rid, self.hash))

    @property
    def kind(self) -> Kind:
        return KIND_OF[type(self.body)]

    @property
    def encoded(self) -> bytes:
        return self.payload + self.signature

    @property
    def verdict_key(self) -> bytes:
        """What a verdict on this record's signature is kept under (``verdict_key``)."""
        return verdict_key(self.encoded)


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a value could not be accepted as a record. ``reason`` is safe to show a user."""

    reason: str


_KINDS: dict[int, Kind] = {int(k): k for k in Kind}


class _Invalid(Exception):
    """Internal: unwinds the body validators; never escapes this module."""


def _body_fields(body: Body) -> list[object]:
    match body:
        case Sale(lines, total):
            return [[[line.sku, line.qty, line.unit_cents] for line in lines], total]
        case Void(sale_id):
            return [str(sale_id)]
        case Receipt(sku, qty):
            return [sku, qty]
        case Adjustment(sku, delta, reason):
            return [sku, delta, reason]
        case PriceChange(sku, unit_cents):
            return [sku, unit_cents]
        case DayEnd():
            return [
                body.day,
                body.first_seq,
                body.last_seq,
                body.sales,
                body.voids,
                body.gross_cents,
                body.voided_cents,
                body.net_cents,
            ]


def _int(value: object, low: int, high: int, what: str) -> int:
    # bool is an int subclass in Python; a msgpack true is never a quantity.
    if type(value) is not int or not low <= value <= high:
        raise _Invalid(f"{what} out of range")
    return value


# Valid SKUs and terminal names seen so far, each mapped to one shared (interned) string: a
# store has a few thousand SKUs and at most 32 lanes, so the regular expression runs once per
# name instead of once per record line, and 100k sale lines of 500 SKUs share 500 strings.
# Bounded so a flood of distinct names cannot grow it without limit: past the bound, names are
# checked every time (still correct, just slower).
_KNOWN_NAMES_MAX = 65_536
_known_skus: dict[str, str] = {}
_known_terminals: dict[str, str] = {}


def _remembered(
    value: object, known: dict[str, str], is_valid: Callable[[object], bool]
) -> str | None:
    """``value`` as the one shared string of its name, or None when ``is_valid`` refuses it."""
    if type(value) is str:
        hit = known.get(value)
        if hit is not None:
            return hit
    if not is_valid(value):
        return None
    name = sys.intern(str(value))
    if len(known) < _KNOWN_NAMES_MAX:
        known[name] = name
    return name


def _sku(value: object) -> Sku:
    sku = _remembered(value, _known_skus, is_valid_sku)
    if sku is None:
        raise _Invalid("invalid SKU")
    return Sku(sku)


def _terminal(value: object) -> TerminalId | None:
    """The terminal name ``value`` as a shared string, or None when it is not a valid name."""
    terminal = _remembered(value, _known_terminals, is_valid_name)
    return None if terminal is None else TerminalId(terminal)


def _parse_sale(fields: list[Any]) -> Sale:
    # Written out rather than as a pattern and helper calls: sales are nearly every record a
    # lane receives, and this is the per-record path (`lanesync bench receive-path`).
    if len(fields) != 2 or type(fields[0]) is not list:
        raise _Invalid("malformed sale body")
    raw_lines, total = fields
    if not 1 <= len(raw_lines) <= MAX_LINES:
        raise _Invalid("sale has no lines or too many")
    lines = []
    sum_cents = 0
    for raw in raw_lines:
        if type(raw) is not list or len(raw) != 3:
            raise _Invalid("malformed sale line")
        sku, qty, unit_cents = raw
        # bool is an int subclass in Python; a msgpack true is never a quantity.
        if type(qty) is not int or not 1 <= qty <= MAX_QTY:
            raise _Invalid("quantity out of range")
        if type(unit_cents) is not int or not 0 <= unit_cents <= MAX_UNIT_CENTS:
            raise _Invalid("unit price out of range")
        lines.append(SaleLine(_sku(sku), qty, unit_cents))
        sum_cents += qty * unit_cents
    if _int(total, 0, MAX_TOTAL, "total") != sum_cents:
        raise _Invalid("sale total does not match its lines")
    return Sale(tuple(lines), sum_cents)


_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
# Seqs and counts of one day stay far below this; it keeps them inside SQL's BIGINT.
MAX_SEQ = 2**63 - 1


def is_valid_day(value: object) -> bool:
    """``YYYY-MM-DD`` naming a real calendar date."""
    if type(value) is not str or _DAY.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _parse_day_end(fields: list[Any]) -> DayEnd:
    if len(fields) != 8:
        raise _Invalid("malformed day_end body")
    day, first, last, sales, voids, gross, voided, net = fields
    if not is_valid_day(day):
        raise _Invalid("day-end names an invalid day")
    first = _int(first, 0, MAX_SEQ, "first seq")
    last = _int(last, 0, MAX_SEQ, "last seq")
    if first > last or (first == 0) != (last == 0):
        raise _Invalid("day-end seq range is invalid")
    sales = _int(sales, 0, MAX_SEQ, "sales count")
    voids = _int(voids, 0, MAX_SEQ, "voids count")
    gross = _int(gross, 0, MAX_TOTAL, "gross total")
    voided = _int(voided, 0, MAX_TOTAL, "voided total")
    if _int(net, -MAX_TOTAL, MAX_TOTAL, "net total") != gross - voided:
        raise _Invalid("day-end net is not gross minus voided")
    if first == 0 and sales + voids:
        raise _Invalid("day-end counts records of an empty day")
    return DayEnd(day, first, last, sales, voids, gross, voided, net)


def _parse_body(kind: Kind, fields: object) -> Body:
    if not isinstance(fields, list):
        raise _Invalid("body is not a list")
    if kind is Kind.SALE:
        return _parse_sale(fields)
    if kind is Kind.DAY_END:
        return _parse_day_end(fields)
    match kind, fields:
        case Kind.VOID, [str(sale_id)]:
            terminal, sep, seq = sale_id.rpartition(":")
            if not (sep and is_valid_name(terminal) and is_decimal(seq) and int(seq) >= 1):
                raise _Invalid("void names an invalid sale id")
            return Void(RecordId(TerminalId(terminal), int(seq)))
        case Kind.RECEIPT, [sku, qty]:
            return Receipt(_sku(sku), _int(qty, 1, MAX_QTY, "quantity"))
        case Kind.ADJUSTMENT, [sku, delta, str(reason)]:
            if _int(delta, -MAX_QTY, MAX_QTY, "adjustment") == 0:
                raise _Invalid("adjustment of zero")
            if not 1 <= len(reason) <= MAX_REASON:
                raise _Invalid("adjustment reason is empty or too long")
            return Adjustment(_sku(sku), delta, reason)
        case Kind.PRICE, [sku, unit_cents]:
            return PriceChange(_sku(sku), _int(unit_cents, 0, MAX_UNIT_CENTS, "unit price"))
    raise _Invalid(f"malformed {kind.name.lower()} body")


def validate_body(body: Body) -> None:
    """Check a body built locally obeys the same rules a receiver applies; raises ValueError."""
    try:
        _parse_body(KIND_OF[type(body)], _body_fields(body))
    except _Invalid as exc:
        raise ValueError(str(exc)) from None


def make_record(
    key: SigningKey,
    terminal: TerminalId,
    seq: int,
    prev_hash: bytes,
    hlc: Hlc,
    body: Body,
    crypto: Crypto = SODIUM,
) -> Record:
    """Build and sign a record; ``seq`` and ``prev_hash`` must continue the chain."""
    validate_body(body)
    if isinstance(body, DayEnd) and body.last_seq >= seq:
        raise ValueError("a day-end covers only seqs before its own")
    payload = msgpack.packb(
        [
            RECORD_FORMAT,
            terminal,
            seq,
            prev_hash,
            hlc.wall_ms,
            hlc.counter,
            int(KIND_OF[type(body)]),
            _body_fields(body),
        ],
        use_bin_type=True,
    )
    if len(payload) + SIGNATURE_SIZE > MAX_RECORD_SIZE:
        raise ValueError(f"record would be larger than {MAX_RECORD_SIZE} bytes")
    return Record(
        terminal,
        seq,
        prev_hash,
        hlc,
        body,
        payload,
        crypto.sign_record(key, payload),
        record_hash(payload),
    )


def record_key(record_id: RecordId, digest: bytes) -> str:
    """The CRDT map key of a record: its id and the first 128 bits of its hash.

    Content-addressed keys mean no value can ever displace another in the map: two different
    records with one id (a fork, or a forgery) both stay visible to every replica, so the fork
    is detected everywhere, and a forger cannot overwrite a genuine record (finding a second
    record with the same 128-bit prefix costs 2**64 work even to the signer).
    """
    return f"{record_id}#{digest[:KEY_HASH_BYTES].hex()}"


def record_hash(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=HASH_SIZE).digest()


def verdict_key(encoded: bytes) -> bytes:
    """What a verdict of a signature check is kept under (storage's verified table, the sets of
    records checked ahead): BLAKE2b-256 of the complete record, payload and signature. Not the
    record's hash, which covers the payload only: a copy of a record with another signature has
    the same hash (and key), and a verdict on the genuine copy must not vouch for it."""
    return hashlib.blake2b(encoded, digest_size=HASH_SIZE).digest()


def parse_checked(
    value: object, checked: Container[bytes]
) -> tuple[Record | Rejection, bytes | None]:
    """``parse_record`` of a value whose verdict may be in ``checked`` (a verdict cache): the
    record, and its verdict key when ``checked`` holds it (else None). One hash and one lookup
    a value: the verdict cache may answer from SQLite (``shell.storage``)."""
    if not checked or not isinstance(value, bytes | bytearray):
        return parse_record(value), None
    key = verdict_key(bytes(value))
    if key not in checked:
        return parse_record(value), None
    parsed = parse_record(value, trusted=True)
    return parsed, None if isinstance(parsed, Rejection) else key


def parse_record(value: object, *, trusted: bool = False) -> Record | Rejection:
    """Decode a stored record WITHOUT checking its signature (``Trust.signer`` checks it).

    Never raises: anything malformed becomes a ``Rejection``. ``trusted``: this replica
    validated and verified the record before (its verdict cache holds it: ``parse_checked``);
    its body is trusted to be well-formed and is not validated again, which halves the cost of
    a reopen.
    """
    if not isinstance(value, bytes | bytearray):
        return Rejection("value is not bytes")
    if not SIGNATURE_SIZE < len(value) <= MAX_RECORD_SIZE:
        return Rejection("record has an impossible size")
    data = value if type(value) is bytes else bytes(value)
    payload, signature = data[:-SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    try:
        fields = msgpack.unpackb(payload, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return Rejection("record payload is not valid msgpack")
    if not (isinstance(fields, list) and len(fields) == 8):
        return Rejection("record payload has the wrong shape")
    fmt, terminal, seq, prev_hash, wall_ms, counter, kind, body = fields
    if type(fmt) is not int or fmt != RECORD_FORMAT:
        return Rejection(f"unknown record format {fmt!r}")
    terminal = _terminal(terminal)
    if terminal is None:
        return Rejection("record names an invalid terminal")
    if type(seq) is not int or seq < 1:
        return Rejection("record has an invalid sequence number")
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
        return Rejection("record has an invalid previous hash")
    if type(wall_ms) is not int or type(counter) is not int:
        return Rejection("record has an invalid timestamp")
    if not (0 <= wall_ms <= MAX_WALL_MS and 0 <= counter <= MAX_HLC_COUNTER):
        return Rejection("record timestamp is out of range")
    record_kind = _KINDS.get(kind) if type(kind) is int else None
    if record_kind is None:
        return Rejection(f"unknown record kind {kind!r}")
    digest = record_hash(payload)
    try:
        if trusted:
            parsed_body = _trusted_body(record_kind, body)
        else:
            parsed_body = _parse_body(record_kind, body)
    except _Invalid as exc:
        return Rejection(str(exc))
    if type(parsed_body) is DayEnd and parsed_body.last_seq >= seq:
        return Rejection("day-end covers seqs not before its own")
    return Record(
        terminal,
        seq,
        prev_hash,
        Hlc(wall_ms, counter),
        parsed_body,
        payload,
        signature,
        digest,
    )


def _trusted_body(kind: Kind, fields: list[Any]) -> Body:
    """Build a body known to be valid (it passed ``_parse_body`` before), without checks."""
    match kind:
        case Kind.SALE:
            lines = tuple(SaleLine(Sku(sys.intern(s)), q, u) for s, q, u in fields[0])
            return Sale(lines, fields[1])
        case Kind.VOID:
            terminal, _, seq = fields[0].rpartition(":")
            return Void(RecordId(TerminalId(terminal), int(seq)))
        case Kind.RECEIPT:
            return Receipt(Sku(sys.intern(fields[0])), fields[1])
        case Kind.ADJUSTMENT:
            return Adjustment(Sku(sys.intern(fields[0])), fields[1], fields[2])
        case Kind.PRICE:
            return PriceChange(Sku(sys.intern(fields[0])), fields[1])
        case Kind.DAY_END:
            return DayEnd(*fields)
