"""Record codec, body validation, record signatures and the hybrid logical clock."""

from __future__ import annotations

import itertools
from zoneinfo import ZoneInfo

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core import records
from lanesync.core.hlc import MAX_FORWARD_DRIFT_MS, Hlc, HybridClock
from lanesync.core.identity import DOMAIN_RECORD, public_key_of, verify_signature
from lanesync.core.ids import RecordId, Sku, TerminalId
from lanesync.core.records import (
    GENESIS_HASH,
    MAX_HLC_COUNTER,
    MAX_LINES,
    MAX_QTY,
    MAX_REASON,
    MAX_RECORD_SIZE,
    MAX_UNIT_CENTS,
    MAX_WALL_MS,
    RECORD_FORMAT,
    Adjustment,
    Body,
    Kind,
    PriceChange,
    Receipt,
    Record,
    Rejection,
    Sale,
    SaleLine,
    Void,
    make_record,
    parse_record,
    record_hash,
)

from .helpers import NOW

KEY = SigningKey.generate()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- strategies ---------------------------------------------------------------------------------

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
skus = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,63}", fullmatch=True).map(Sku)
qtys = st.integers(1, MAX_QTY)
cents = st.integers(0, MAX_UNIT_CENTS)
lines = st.builds(SaleLine, skus, qtys, cents)
sales = st.lists(lines, min_size=1, max_size=5).map(lambda ls: Sale.of(tuple(ls)))
voids = st.builds(lambda t, s: Void(RecordId(TerminalId(t), s)), names, st.integers(1, 2**40))
receipts = st.builds(Receipt, skus, qtys)
adjustments = st.builds(
    Adjustment,
    skus,
    st.integers(-MAX_QTY, MAX_QTY).filter(bool),
    st.text(min_size=1, max_size=MAX_REASON),
)
prices = st.builds(PriceChange, skus, cents)
bodies: st.SearchStrategy[Body] = st.one_of(sales, voids, receipts, adjustments, prices)
# Timestamps a record may carry: up to the year 3000 and a 32-bit counter.
hlcs = st.builds(Hlc, st.integers(0, MAX_WALL_MS), st.integers(0, MAX_HLC_COUNTER))


def sample_record(body: Body | None = None, seq: int = 1) -> Record:
    return make_record(
        KEY,
        TerminalId("lane1"),
        seq,
        GENESIS_HASH,
        Hlc(NOW, 0),
        body or Sale.of((SaleLine(Sku("X"), 2, 150), SaleLine(Sku("Y"), 1, 99))),
    )


def raw_record(fields: list[object]) -> bytes:
    """A value shaped like a stored record (payload || 64-byte signature) with any payload."""
    payload: bytes = msgpack.packb(fields, use_bin_type=True)
    signature: bytes = KEY.sign(DOMAIN_RECORD + payload).signature
    return payload + signature


def fields_of(kind: Kind, body: object, /, **overrides: object) -> list[object]:
    base: dict[str, object] = {
        "fmt": RECORD_FORMAT,
        "terminal": "lane1",
        "seq": 1,
        "prev": GENESIS_HASH,
        "wall": NOW,
        "counter": 0,
        "kind": int(kind),
        "body": body,
    }
    base.update(overrides)
    return list(base.values())


def assert_rejected(value: object) -> Rejection:
    result = parse_record(value)
    assert isinstance(result, Rejection), result
    assert result.reason
    assert "\n" not in result.reason
    return result


# -- round trip ---------------------------------------------------------------------------------


@FAST
@given(
    body=bodies,
    terminal=names,
    seq=st.integers(1, 2**40),
    prev=st.binary(min_size=32, max_size=32),
    hlc=hlcs,
)
def test_round_trip_every_body_type(
    body: Body, terminal: str, seq: int, prev: bytes, hlc: Hlc
) -> None:
    record = make_record(KEY, TerminalId(terminal), seq, prev, hlc, body)
    parsed = parse_record(record.encoded)
    assert isinstance(parsed, Record)
    assert parsed.body == body
    assert parsed.id == record.id == RecordId(TerminalId(terminal), seq)
    assert parsed.hlc == hlc
    assert parsed.prev_hash == prev
    assert parsed.hash == record.hash == record_hash(record.payload)
    assert parsed.kind == record.kind
    assert parsed == record
    # a bytearray (what pycrdt hands back) parses the same way
    assert parse_record(bytearray(record.encoded)) == record
    assert verify_signature(public_key_of(KEY), DOMAIN_RECORD, parsed.payload, parsed.signature)


@pytest.mark.parametrize("n_lines", [1, 5, MAX_LINES])
def test_sale_line_count_limits(n_lines: int) -> None:
    sale = Sale.of(tuple(SaleLine(Sku(f"S{i}"), 1, i) for i in range(n_lines)))
    record = sample_record(sale)
    parsed = parse_record(record.encoded)
    assert isinstance(parsed, Record)
    assert parsed.body == sale
    assert len(record.encoded) <= MAX_RECORD_SIZE


def test_sale_total_is_sum_of_lines() -> None:
    sale = Sale.of((SaleLine(Sku("A"), 3, 250), SaleLine(Sku("B"), 2, 1)))
    assert sale.total_cents == 752


# -- rejections -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        Sale.of((SaleLine(Sku("X"), 2, 150),)),
        Void(RecordId(TerminalId("lane2"), 7)),
        Receipt(Sku("X"), 5),
        Adjustment(Sku("X"), -3, "breakage"),
        PriceChange(Sku("X"), 199),
    ],
)
def test_every_truncation_is_rejected(body: Body) -> None:
    encoded = sample_record(body).encoded
    for length in range(len(encoded)):
        assert_rejected(encoded[:length])
    assert isinstance(parse_record(encoded), Record)


def test_trailing_bytes_change_the_record() -> None:
    # The last 64 bytes are the signature: an extra byte shifts the split and breaks the payload.
    encoded = sample_record().encoded
    assert_rejected(encoded + b"\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_are_rejected(data: bytes) -> None:
    assert_rejected(data)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=2000))
def test_random_bytes_with_a_real_signature_are_rejected(data: bytes) -> None:
    assert_rejected(data + KEY.sign(DOMAIN_RECORD + data).signature)


def test_oversized_record_is_rejected() -> None:
    # A well-formed, correctly signed adjustment whose reason makes it too big.
    value = raw_record(fields_of(Kind.ADJUSTMENT, ["X", 1, "r" * MAX_RECORD_SIZE]))
    assert len(value) > MAX_RECORD_SIZE
    assert "size" in assert_rejected(value).reason
    assert "size" in assert_rejected(bytes(MAX_RECORD_SIZE + 1)).reason


@pytest.mark.parametrize(
    "value", [0, 12345, "lane1:1", None, 1.5, [b"x"], {"a": b"b"}, True, memoryview(b"abc")]
)
def test_non_bytes_values_are_rejected(value: object) -> None:
    assert_rejected(value)


@pytest.mark.parametrize(
    "structure",
    [
        {"fmt": 1},
        "a string",
        12,
        None,
        [],
        fields_of(Kind.RECEIPT, ["X", 1])[:7],
        [*fields_of(Kind.RECEIPT, ["X", 1]), "extra"],
        [fields_of(Kind.RECEIPT, ["X", 1])],
        fields_of(Kind.RECEIPT, {"sku": "X", "qty": 1}),
        fields_of(Kind.RECEIPT, "X"),
        fields_of(Kind.RECEIPT, ["X", 1, 2]),
        fields_of(Kind.SALE, ["X", 1]),
        fields_of(Kind.SALE, [[], 0]),
        fields_of(Kind.SALE, [[["X", 1]], 0]),
        fields_of(Kind.SALE, [[["X", 1, 2, 3]], 2]),
        fields_of(Kind.SALE, [[["X", 1, 1]] * (MAX_LINES + 1), MAX_LINES + 1]),
        fields_of(Kind.VOID, []),
        fields_of(Kind.VOID, ["lane1"]),
        fields_of(Kind.VOID, ["lane1:0"]),
        fields_of(Kind.VOID, ["lane1:x"]),
        fields_of(Kind.VOID, ["bad name:1"]),
        fields_of(Kind.VOID, [7]),
        fields_of(Kind.PRICE, ["X"]),
        fields_of(Kind.PRICE, ["X", -1]),
        fields_of(Kind.PRICE, ["X", MAX_UNIT_CENTS + 1]),
        fields_of(Kind.RECEIPT, ["X", 1], fmt=2),
        fields_of(Kind.RECEIPT, ["X", 1], terminal="bad name"),
        fields_of(Kind.RECEIPT, ["X", 1], terminal="lane:1"),
        fields_of(Kind.RECEIPT, ["X", 1], terminal=5),
        fields_of(Kind.RECEIPT, ["X", 1], seq=0),
        fields_of(Kind.RECEIPT, ["X", 1], seq=-1),
        fields_of(Kind.RECEIPT, ["X", 1], seq="1"),
        fields_of(Kind.RECEIPT, ["X", 1], seq=1.0),
        fields_of(Kind.RECEIPT, ["X", 1], prev=bytes(31)),
        fields_of(Kind.RECEIPT, ["X", 1], prev="0" * 32),
        fields_of(Kind.RECEIPT, ["X", 1], wall=-1),
        fields_of(Kind.RECEIPT, ["X", 1], wall=1.5),
        fields_of(Kind.RECEIPT, ["X", 1], counter=-1),
        fields_of(Kind.RECEIPT, ["X", 1], wall=MAX_WALL_MS + 1),
        fields_of(Kind.RECEIPT, ["X", 1], wall=253_402_300_800_000),  # year 10000
        fields_of(Kind.RECEIPT, ["X", 1], wall=2**64 - 1),
        fields_of(Kind.RECEIPT, ["X", 1], counter=MAX_HLC_COUNTER + 1),
        fields_of(Kind.RECEIPT, ["X", 1], counter=2**64 - 1),
        fields_of(Kind.RECEIPT, ["X", 1], kind=1.0),
        fields_of(Kind.RECEIPT, ["X", 1], kind=True),
        fields_of(Kind.RECEIPT, ["X", 1], kind=b"\x03"),
        fields_of(Kind.RECEIPT, ["X", 1], kind=0),
        fields_of(Kind.RECEIPT, ["X", 1], kind=6),
        fields_of(Kind.RECEIPT, ["X", 1], kind="receipt"),
        fields_of(Kind.RECEIPT, ["X", 1], kind=None),
    ],
)
def test_wrong_shapes_are_rejected(structure: object) -> None:
    assert_rejected(raw_record(structure))  # type: ignore[arg-type]


def test_timestamp_limits_are_accepted() -> None:
    for wall, counter in ((MAX_WALL_MS, 0), (0, MAX_HLC_COUNTER), (MAX_WALL_MS, MAX_HLC_COUNTER)):
        parsed = parse_record(
            raw_record(fields_of(Kind.RECEIPT, ["X", 1], wall=wall, counter=counter))
        )
        assert isinstance(parsed, Record), (wall, counter)
        assert parsed.hlc == Hlc(wall, counter)
        # the last accepted timestamp still names a calendar day
        assert parsed.hlc.business_day(ZoneInfo("Pacific/Kiritimati"))


@FAST
@given(
    wall=st.one_of(st.integers(MAX_WALL_MS + 1, 2**64 - 1), st.integers(0, MAX_WALL_MS)),
    counter=st.one_of(st.integers(MAX_HLC_COUNTER + 1, 2**64 - 1), st.integers(0, 3)),
)
def test_timestamp_out_of_range_is_rejected(wall: int, counter: int) -> None:
    record = make_record(
        KEY, TerminalId("lane1"), 1, GENESIS_HASH, Hlc(wall, counter), Receipt(Sku("X"), 1)
    )
    result = parse_record(record.encoded)
    if wall <= MAX_WALL_MS and counter <= MAX_HLC_COUNTER:
        assert result == record
    else:
        assert isinstance(result, Rejection)
        assert "timestamp" in result.reason


@pytest.mark.parametrize("kind", [[3], {"k": 3}])
def test_unhashable_kind_is_rejected_not_raised(kind: object) -> None:
    # parse_record runs on untrusted bytes before any signature check and must never raise.
    assert_rejected(raw_record(fields_of(Kind.RECEIPT, ["X", 1], kind=kind)))


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)


VALID_FIELDS = {
    Kind.SALE: [[["X", 2, 100]], 200],
    Kind.VOID: ["lane2:3"],
    Kind.RECEIPT: ["X", 5],
    Kind.ADJUSTMENT: ["X", -1, "breakage"],
    Kind.PRICE: ["X", 100],
    Kind.DAY_END: ["2026-11-18", 0, 0, 0, 0, 0, 0, 0],
}


@settings(max_examples=400, deadline=None)
@given(
    kind=st.sampled_from(Kind),
    replacements=st.dictionaries(st.integers(0, 7), json_like, min_size=1, max_size=3),
)
def test_mutated_payload_is_rejected_or_parsed_never_raised(
    kind: Kind, replacements: dict[int, object]
) -> None:
    """A valid record payload with one to three fields replaced by arbitrary msgpack values."""
    fields = fields_of(kind, VALID_FIELDS[kind])
    assert isinstance(parse_record(raw_record(fields)), Record)
    for position, value in replacements.items():
        fields[position] = value
    result = parse_record(raw_record(fields))
    assert isinstance(result, Rejection | Record)


@settings(max_examples=200, deadline=None)
@given(st.lists(json_like, max_size=9))
def test_any_msgpack_list_is_rejected_or_parsed_never_raised(fields: list[object]) -> None:
    result = parse_record(raw_record(fields))
    assert isinstance(result, Rejection | Record)


@pytest.mark.parametrize(
    "body",
    [
        [[["X", 2, 100]], 201],
        [[["X", 2, 100]], 199],
        [[["X", 2, 100], ["Y", 1, 5]], 200],
        [[["X", 2, 100]], -200],
        [[["X", 2, 100]], "200"],
    ],
)
def test_sale_whose_total_does_not_match_is_rejected(body: list[object]) -> None:
    assert_rejected(raw_record(fields_of(Kind.SALE, body)))
    # positive control: the same lines with the right total parse
    good = [body[0], sum(q * p for _, q, p in body[0])]  # type: ignore[attr-defined]
    assert isinstance(parse_record(raw_record(fields_of(Kind.SALE, good))), Record)


@pytest.mark.parametrize("qty", [0, -1, -(2**40), MAX_QTY + 1])
def test_quantities_out_of_range_are_rejected(qty: int) -> None:
    assert_rejected(raw_record(fields_of(Kind.SALE, [[["X", qty, 100]], qty * 100])))
    assert_rejected(raw_record(fields_of(Kind.RECEIPT, ["X", qty])))


def test_negative_unit_price_is_rejected() -> None:
    assert_rejected(raw_record(fields_of(Kind.SALE, [[["X", 1, -5]], -5])))


@pytest.mark.parametrize(
    "fields",
    [
        fields_of(Kind.SALE, [[["X", True, 100]], 100]),
        fields_of(Kind.SALE, [[["X", 1, True]], 1]),
        fields_of(Kind.SALE, [[["X", 1, 1]], True]),
        fields_of(Kind.RECEIPT, ["X", True]),
        fields_of(Kind.ADJUSTMENT, ["X", True, "found"]),
        fields_of(Kind.PRICE, ["X", True]),
        fields_of(Kind.RECEIPT, ["X", 1], seq=True),
        fields_of(Kind.RECEIPT, ["X", 1], wall=True),
        fields_of(Kind.RECEIPT, ["X", 1], counter=False),
    ],
)
def test_bool_is_never_an_int(fields: list[object]) -> None:
    assert_rejected(raw_record(fields))


BAD_SKUS = ["", " ", "a b", "x:y", "a|b", "-abc", ".x", "x" * 65, "é", "x\n", 5, None, b"X"]


@pytest.mark.parametrize("bad", BAD_SKUS)
def test_invalid_skus_are_rejected(bad: object) -> None:
    assert_rejected(raw_record(fields_of(Kind.RECEIPT, [bad, 1])))
    assert_rejected(raw_record(fields_of(Kind.SALE, [[[bad, 1, 1]], 1])))
    assert_rejected(raw_record(fields_of(Kind.ADJUSTMENT, [bad, 1, "r"])))
    assert_rejected(raw_record(fields_of(Kind.PRICE, [bad, 1])))


def test_name_caches_stop_growing_at_their_bound_and_never_change_a_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Valid SKUs and terminal names are remembered so the per-record path skips the regular
    expression; a flood of distinct names must not grow the memory without limit, and what is
    refused stays refused however often it is sent."""
    monkeypatch.setattr(records, "_KNOWN_NAMES_MAX", len(records._known_skus) + 3)
    monkeypatch.setattr(records, "_known_terminals", {})
    for i in range(10):
        parsed = parse_record(raw_record(fields_of(Kind.RECEIPT, [f"flood-{i}", 1])))
        assert isinstance(parsed, Record)
        assert parsed.body == Receipt(Sku(f"flood-{i}"), 1)
    assert len(records._known_skus) == records._KNOWN_NAMES_MAX
    assert "flood-9" not in records._known_skus  # past the bound: checked, not remembered
    assert isinstance(parse_record(raw_record(fields_of(Kind.RECEIPT, ["flood-9", 1]))), Record)
    for bad in BAD_SKUS:
        for _ in range(2):
            assert_rejected(raw_record(fields_of(Kind.SALE, [[[bad, 1, 1]], 1])))
    assert records._known_terminals == {"lane1": "lane1"}


def test_sku_may_contain_slash_and_be_64_long() -> None:
    for good in ["a/b-c.d_e", "X" * 64]:
        assert isinstance(parse_record(raw_record(fields_of(Kind.RECEIPT, [good, 1]))), Record)


@pytest.mark.parametrize(
    "body",
    [
        ["X", 0, "nothing"],
        ["X", 1, ""],
        ["X", 1, "r" * (MAX_REASON + 1)],
        ["X", MAX_QTY + 1, "r"],
        ["X", -MAX_QTY - 1, "r"],
        ["X", 1, b"bytes reason"],
        ["X", 1],
    ],
)
def test_bad_adjustments_are_rejected(body: list[object]) -> None:
    assert_rejected(raw_record(fields_of(Kind.ADJUSTMENT, body)))


def test_adjustment_limits_are_accepted() -> None:
    for body in (["X", -MAX_QTY, "r"], ["X", MAX_QTY, "r" * MAX_REASON]):
        assert isinstance(parse_record(raw_record(fields_of(Kind.ADJUSTMENT, body))), Record)


@pytest.mark.parametrize(
    "body",
    [
        Sale((SaleLine(Sku("X"), 1, 100),), 99),
        Sale((), 0),
        Sale.of((SaleLine(Sku("X"), 0, 100),)),
        Sale.of((SaleLine(Sku("X"), -1, 100),)),
        Sale.of((SaleLine(Sku("X"), True, 100),)),
        Sale.of((SaleLine(Sku("X"), 1, -1),)),
        Sale.of((SaleLine(Sku("bad sku"), 1, 1),)),
        Sale.of(tuple(SaleLine(Sku("X"), 1, 1) for _ in range(MAX_LINES + 1))),
        Void(RecordId(TerminalId("bad name"), 1)),
        Void(RecordId(TerminalId("lane1"), 0)),
        Receipt(Sku("X"), 0),
        Receipt(Sku("X"), MAX_QTY + 1),
        Receipt(Sku(""), 1),
        Adjustment(Sku("X"), 0, "zero"),
        Adjustment(Sku("X"), 1, ""),
        Adjustment(Sku("X"), 1, "r" * (MAX_REASON + 1)),
        PriceChange(Sku("X"), -1),
        PriceChange(Sku("X"), MAX_UNIT_CENTS + 1),
        PriceChange(Sku("a:b"), 1),
    ],
)
def test_make_record_refuses_invalid_bodies(body: Body) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        sample_record(body)


# -- signatures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        Sale.of((SaleLine(Sku("X"), 2, 150),)),
        Void(RecordId(TerminalId("lane2"), 7)),
        Adjustment(Sku("X"), -3, "breakage"),
    ],
)
def test_flipping_any_payload_byte_breaks_the_signature(body: Body) -> None:
    record = sample_record(body)
    public = public_key_of(KEY)
    assert verify_signature(public, DOMAIN_RECORD, record.payload, record.signature)
    for i in range(len(record.payload)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(record.payload)
            flipped[i] ^= mask
            assert not verify_signature(public, DOMAIN_RECORD, bytes(flipped), record.signature), (
                i,
                mask,
            )


def test_flipping_any_signature_byte_breaks_the_signature() -> None:
    record = sample_record()
    public = public_key_of(KEY)
    for i in range(len(record.signature)):
        flipped = bytearray(record.signature)
        flipped[i] ^= 0x01
        assert not verify_signature(public, DOMAIN_RECORD, record.payload, bytes(flipped)), i


def test_signature_is_bound_to_key_and_domain() -> None:
    record = sample_record()
    other = public_key_of(SigningKey.generate())
    assert not verify_signature(other, DOMAIN_RECORD, record.payload, record.signature)
    assert not verify_signature(
        public_key_of(KEY), b"lanesync/cert/v1\x00", record.payload, record.signature
    )
    assert not verify_signature(b"short", DOMAIN_RECORD, record.payload, record.signature)
    assert not verify_signature(public_key_of(KEY), DOMAIN_RECORD, record.payload, b"short")


# -- hybrid logical clock -------------------------------------------------------------------------


@FAST
@given(st.lists(st.integers(0, 2**45), min_size=1, max_size=60))
def test_tick_is_strictly_increasing_whatever_the_wall_clock_does(nows: list[int]) -> None:
    clock = HybridClock()
    stamps = [clock.tick(now) for now in nows]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert clock.last == stamps[-1]
    # never behind the wall clock it was given
    assert all(stamp.wall_ms >= now for stamp, now in zip(stamps, nows, strict=True))


def test_tick_when_the_clock_steps_back() -> None:
    clock = HybridClock()
    assert clock.tick(NOW) == Hlc(NOW, 0)
    assert clock.tick(NOW - 5_000) == Hlc(NOW, 1)
    assert clock.tick(NOW) == Hlc(NOW, 2)
    assert clock.tick(NOW + 1) == Hlc(NOW + 1, 0)


@FAST
@given(
    ahead=st.integers(MAX_FORWARD_DRIFT_MS + 1, 10**12),
    counter=st.integers(0, 100),
)
def test_observe_ignores_a_timestamp_too_far_ahead(ahead: int, counter: int) -> None:
    clock = HybridClock()
    clock.tick(NOW)
    clock.observe(Hlc(NOW + ahead, counter), NOW)
    assert clock.last == Hlc(NOW, 0)
    assert clock.tick(NOW) == Hlc(NOW, 1)


@FAST
@given(
    ahead=st.integers(-(10**6), MAX_FORWARD_DRIFT_MS),
    counter=st.integers(0, 100),
)
def test_observe_moves_past_a_timestamp_within_drift(ahead: int, counter: int) -> None:
    clock = HybridClock()
    clock.tick(NOW)
    remote = Hlc(NOW + ahead, counter)
    clock.observe(remote, NOW)
    assert clock.last == max(remote, Hlc(NOW, 0))
    assert clock.tick(NOW) > remote


def test_business_day_uses_the_store_time_zone() -> None:
    # 2026-11-18 02:00 UTC is still 2026-11-17 in New York and already the 18th in Tokyo.
    stamp = Hlc(1_794_967_200_000, 0)
    assert stamp.business_day(ZoneInfo("UTC")) == "2026-11-18"
    assert stamp.business_day(ZoneInfo("America/New_York")) == "2026-11-17"
    assert stamp.business_day(ZoneInfo("Asia/Tokyo")) == "2026-11-18"
