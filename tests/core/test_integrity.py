"""Bad entries injected into a replica's documents are detected, reported and never counted."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.change import Change
from lanesync.core.configdoc import certificate_key
from lanesync.core.hlc import MAX_FORWARD_DRIFT_MS, Hlc
from lanesync.core.identity import SIGNATURE_SIZE, LocalIdentity, Role
from lanesync.core.ids import CATALOG_DOC, CONFIG_DOC, RecordId, Sku, TerminalId
from lanesync.core.records import (
    KEY_HASH_BYTES,
    MAX_WALL_MS,
    Adjustment,
    PriceChange,
    Receipt,
    Record,
    Sale,
    SaleLine,
    make_record,
    parse_record,
    record_key,
)
from lanesync.core.replica import Replica
from lanesync.errors import ConfigError, RemoteError

from .helpers import (
    HOUR_MS,
    NOW,
    TODAY_DOC,
    Store,
    config_update,
    crafted_update,
    durable_log,
    enrolled_observer,
    keyed,
    no_problems,
    overwrite,
    put_records,
    record_chain,
    restarted,
    stored_value,
    sync,
    sync_all,
)

TOMORROW_DOC = "ledger/2026-11-19"
LANE1 = TerminalId("lane1")


def problem_keys(replica: Replica, kind: str) -> list[tuple[object, object]]:
    return [(p.get("doc"), p.get("key")) for p in replica.views.problems()[kind]]


def flipped(record: Record, position: int, mask: int = 0x01) -> bytes:
    data = bytearray(record.encoded)
    data[position] ^= mask
    return bytes(data)


# -- tampering and forgery ------------------------------------------------------------------------


def test_tampered_record_is_not_counted_and_is_listed() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    (genuine,) = record_chain(key, "lane1", [Receipt(Sku("X"), 10)])
    tampered = flipped(genuine, len(genuine.payload) - 1)  # the quantity: 10 -> 11
    parsed = parse_record(tampered)
    assert isinstance(parsed, Record)
    assert parsed.id == genuine.id
    assert parsed.body == Receipt(Sku("X"), 11)
    assert parsed.key != genuine.key  # the key names the content, so it changed too

    # Under the genuine record's key: its hash no longer matches the key.
    replica = enrolled_observer(store, cert)
    put_records(replica, TODAY_DOC, {genuine.key: tampered}, client_id=4242)
    assert replica.views.on_hand() == {}
    assert replica.views.accepted_count() == 0
    assert problem_keys(replica, "rejected") == [(TODAY_DOC, genuine.key)]
    assert problem_keys(replica, "unverified") == []
    # The counts the cloud's /metrics reads say the same, without building the report.
    assert replica.views.uncounted_counts() == {"rejected": 1, "unverified": 0, "unauthorized": 0}
    # Under its own (recomputed) key: the key matches, the signature does not.
    own_key = enrolled_observer(store, cert)
    put_records(own_key, TODAY_DOC, {parsed.key: tampered}, client_id=4243)
    assert own_key.views.on_hand() == {}
    assert own_key.views.accepted_count() == 0
    assert problem_keys(own_key, "unverified") == [(TODAY_DOC, parsed.key)]
    assert problem_keys(own_key, "rejected") == []
    assert own_key.views.uncounted_counts() == {"rejected": 0, "unverified": 1, "unauthorized": 0}
    # positive control: the genuine record is counted by the same kind of replica
    honest = enrolled_observer(store, cert)
    put_records(honest, TODAY_DOC, keyed(genuine), client_id=4242)
    assert honest.views.on_hand() == {"X": 10}
    assert no_problems(honest)


def test_no_single_byte_flip_of_a_record_is_ever_counted() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    (genuine,) = record_chain(key, "lane1", [Sale.of((SaleLine(Sku("X"), 2, 150),))])
    for position in range(len(genuine.encoded)):
        value = flipped(genuine, position)
        parsed = parse_record(value)
        # under the genuine entry's key (a forger overwriting it) and under the flipped
        # record's own key (a signature flip keeps the payload, so the key stays the same)
        map_keys = {genuine.key}
        if isinstance(parsed, Record):
            map_keys.add(parsed.key)
        for map_key in sorted(map_keys):
            replica = enrolled_observer(store, cert)
            put_records(replica, TODAY_DOC, {map_key: value}, client_id=77)
            assert replica.views.accepted_count() == 0, (position, map_key)
            assert replica.views.on_hand() == {}, (position, map_key)
            listed = problem_keys(replica, "rejected") + problem_keys(replica, "unverified")
            assert listed == [(TODAY_DOC, map_key)], (position, map_key)


def test_record_signed_by_an_unenrolled_key_is_never_counted() -> None:
    store = Store()
    intruder = Store()  # another authority, even with the same store id
    key = SigningKey.generate()
    foreign_cert = intruder.certificate("lane7", key, Role.MANAGER)
    (forged,) = record_chain(key, "lane7", [Receipt(Sku("X"), 99)])
    (impostor,) = record_chain(key, "lane1", [Receipt(Sku("X"), 98)])
    genuine_cert = store.certificate("lane1", SigningKey.generate())

    replica = enrolled_observer(store, genuine_cert, foreign_cert)
    assert [c.terminal_id for c in replica.views.certificates()] == ["lane1"]
    put_records(replica, TODAY_DOC, keyed(forged), client_id=9)
    put_records(replica, TODAY_DOC, keyed(impostor), client_id=10)
    assert replica.views.on_hand() == {}
    assert replica.views.heads() == []
    assert problem_keys(replica, "unverified") == [
        (TODAY_DOC, impostor.key),
        (TODAY_DOC, forged.key),
    ]
    assert problem_keys(replica, "rejected") == []
    # and it stays that way after a full rebuild
    replica.rebuild(NOW)
    assert replica.views.on_hand() == {}
    assert len(replica.views.problems()["unverified"]) == 2
    assert replica.views.uncounted_counts()["unverified"] == 2


WRONG_KEYS = {
    "bare id (the old key scheme)": lambda r: str(r.id),
    "another seq": lambda r: record_key(RecordId(r.terminal, 2), r.hash),
    "another terminal": lambda r: record_key(RecordId(TerminalId("lane2"), 1), r.hash),
    "zero-padded seq": lambda r: f"lane1:01#{r.hash[:KEY_HASH_BYTES].hex()}",
    "another hash": lambda r: record_key(r.id, bytes(32)),
    "one hash bit off": lambda r: record_key(r.id, bytes([r.hash[0] ^ 1]) + r.hash[1:]),
    "hash too short": lambda r: r.key[:-2],
    "whole hash": lambda r: f"{r.id}#{r.hash.hex()}",
    "upper-case hash": lambda r: f"{r.id}#{r.hash[:KEY_HASH_BYTES].hex().upper()}",
    "trailing space": lambda r: r.key + " ",
    "empty": lambda _r: "",
}


@pytest.mark.parametrize(
    ("doc", "make_key"),
    [
        *((TODAY_DOC, make_key) for make_key in WRONG_KEYS.values()),
        (TOMORROW_DOC, lambda r: r.key),
        (CATALOG_DOC, lambda r: r.key),
    ],
    ids=[*WRONG_KEYS, "right key, tomorrow", "right key, catalog"],
)
def test_record_stored_under_the_wrong_key_or_document_is_rejected(
    doc: str, make_key: Callable[[Record], str]
) -> None:
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer)
    (record,) = record_chain(signer, "lane1", [Receipt(Sku("X"), 10)])
    key = make_key(record)
    assert (doc, key) != (TODAY_DOC, record.key)
    replica = enrolled_observer(store, cert)
    put_records(replica, doc, {key: record.encoded}, client_id=31)
    assert replica.views.on_hand() == {}
    assert replica.views.accepted_count() == 0
    assert problem_keys(replica, "rejected") == [(doc, key)]
    # positive control: the same record under its own key in its own document counts
    put_records(replica, TODAY_DOC, keyed(record), client_id=32)
    assert replica.views.on_hand() == {"X": 10}
    assert problem_keys(replica, "rejected") == [(doc, key)]  # the misfiled copy stays listed


def test_record_key_is_id_and_hash_prefix() -> None:
    signer = SigningKey.generate()
    (record,) = record_chain(signer, "lane1", [Receipt(Sku("X"), 10)])
    assert record.key == record_key(record.id, record.hash)
    assert record.key == f"lane1:1#{record.hash[:KEY_HASH_BYTES].hex()}"
    parsed = parse_record(record.encoded)
    assert isinstance(parsed, Record)
    assert parsed.key == record.key


def test_price_change_must_live_in_the_catalog() -> None:
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer, Role.MANAGER)
    (price,) = record_chain(signer, "lane1", [PriceChange(Sku("X"), 250)])
    misplaced = enrolled_observer(store, cert)
    put_records(misplaced, TODAY_DOC, keyed(price), client_id=31)
    assert misplaced.views.price_of(Sku("X")) is None
    assert problem_keys(misplaced, "rejected") == [(TODAY_DOC, price.key)]
    placed = enrolled_observer(store, cert)
    put_records(placed, CATALOG_DOC, keyed(price), client_id=31)
    assert placed.views.price_of(Sku("X")) is not None
    assert no_problems(placed)


# -- forks ----------------------------------------------------------------------------------------


def forked_chain(key: SigningKey) -> tuple[Record, Record, Record, Record]:
    """seq 1; two different seq 2 (one on tomorrow's document, so both can be held at once);
    seq 3 continuing the first seq 2."""
    r1, x, x3 = record_chain(
        key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 5), Receipt(Sku("A"), 20)]
    )
    y = make_record(key, LANE1, 2, r1.hash, Hlc(NOW + 24 * HOUR_MS, 0), Receipt(Sku("A"), 7))
    return r1, x, y, x3


def doc_of(record: Record) -> str:
    return TOMORROW_DOC if record.hlc.wall_ms >= NOW + 24 * HOUR_MS else TODAY_DOC


def assert_broken_at_2(replica: Replica) -> None:
    problems = replica.views.problems()
    assert [(p["terminal"], p["from_seq"]) for p in problems["broken_chains"]] == [("lane1", 2)]
    assert problems["gaps"] == []
    assert replica.views.head(LANE1).seq == 1
    assert replica.views.on_hand() == {"A": 1}


def test_fork_stops_the_chain_whatever_the_arrival_order() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    records = forked_chain(key)
    r1, x, y, x3 = records
    digests = set()
    rebuilt = False
    for order in itertools.permutations(records):
        replica = enrolled_observer(store, cert)
        for n, record in enumerate(order):
            if record is y and replica.views.is_accepted(x3):
                rebuilt = True  # seq 2 and 3 were counted; the fork below them forces a rebuild
                assert replica.views.on_hand() == {"A": 26}
            put_records(replica, doc_of(record), keyed(record), client_id=100 + n)
        assert_broken_at_2(replica)
        assert not replica.views.is_accepted(x)
        assert not replica.views.is_accepted(y)
        digests.add(replica.digest())
    assert rebuilt
    assert len(digests) == 1
    # all four in one merge
    together = enrolled_observer(store, cert)
    together.merge(
        [
            (TODAY_DOC, crafted_update("records", keyed(r1, x3))),
            (TODAY_DOC, crafted_update("records", keyed(x), client_id=5)),
            (TOMORROW_DOC, crafted_update("records", keyed(y), client_id=6)),
        ],
        NOW,
    )
    assert_broken_at_2(together)
    assert together.digest() in digests


def test_fork_discovered_after_acceptance_is_agreed_by_every_replica() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, x, y, x3 = forked_chain(key)
    p, q = enrolled_observer(store, cert), enrolled_observer(store, cert)
    put_records(p, TODAY_DOC, keyed(r1), client_id=50)
    sync(p, q)
    put_records(p, TODAY_DOC, keyed(x, x3), client_id=51)
    put_records(q, TOMORROW_DOC, keyed(y), client_id=52)
    assert p.views.on_hand() == {"A": 26}
    assert q.views.on_hand() == {"A": 8}
    sync_all([p, q])
    for replica in (p, q):
        assert_broken_at_2(replica)
    late = enrolled_observer(store)
    sync(p, late)
    assert late.digest() == p.digest() == q.digest()
    assert_broken_at_2(late)


def test_fork_under_one_id_is_seen_by_every_replica_with_the_same_digest() -> None:
    """Two replicas hold different records with one id (one seq signed twice, same document).
    Their keys differ, so the CRDT keeps both: every replica that synced, a third one that
    arrives late and a restarted one all see the fork and stop the chain, with equal digests
    and equal views."""
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, x = record_chain(key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 5)])
    y = make_record(key, LANE1, 2, r1.hash, Hlc(NOW + 1, 0), Receipt(Sku("A"), 7))
    assert x.id == y.id
    assert x.key != y.key
    p, q = enrolled_observer(store, cert), enrolled_observer(store, cert)
    put_records(p, TODAY_DOC, keyed(r1), client_id=59)
    sync(p, q)
    put_records(p, TODAY_DOC, keyed(x), client_id=60)
    put_records(q, TODAY_DOC, keyed(y), client_id=61)
    assert p.views.on_hand() == {"A": 6}
    assert q.views.on_hand() == {"A": 8}
    sync_all([p, q])
    sync_all([p, q])
    late = enrolled_observer(store)
    sync(p, late)
    again = restarted(q)
    for replica in (p, q, late, again):
        assert replica.digest() == p.digest()
        assert_broken_at_2(replica)
        assert stored_value(replica, TODAY_DOC, x.key) == x.encoded
        assert stored_value(replica, TODAY_DOC, y.key) == y.encoded
        assert not replica.views.is_accepted(x)
        assert not replica.views.is_accepted(y)
        assert replica.views.problems() == p.views.problems()


# -- gaps and late certificates -------------------------------------------------------------------


def test_gap_pauses_the_chain_until_the_missing_record_arrives() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, r2, r3 = record_chain(
        key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 2), Receipt(Sku("A"), 4)]
    )
    replica = enrolled_observer(store, cert)
    put_records(replica, TODAY_DOC, keyed(r1, r3), 70)
    assert replica.views.on_hand() == {"A": 1}
    assert replica.views.problems()["gaps"] == [
        {"terminal": "lane1", "missing_seq": 2, "waiting": 1}
    ]
    assert not replica.views.is_accepted(r3)
    put_records(replica, TODAY_DOC, keyed(r2), 71)
    assert replica.views.on_hand() == {"A": 7}
    assert replica.views.head(LANE1).seq == 3
    assert no_problems(replica)


def test_records_that_arrive_before_their_certificate_count_once_it_arrives() -> None:
    store = Store()
    lane = store.terminal("lane1")
    first, _ = lane.replica.append(Receipt(Sku("A"), 5), NOW)
    second, _ = lane.replica.append(Sale.of((SaleLine(Sku("A"), 2, 100),)), NOW + 1)
    everything = lane.replica.updates_since({})
    replica = store.observer()
    replica.merge([(TODAY_DOC, everything[TODAY_DOC])], NOW)
    assert replica.views.on_hand() == {}
    assert problem_keys(replica, "unverified") == [(TODAY_DOC, first.key), (TODAY_DOC, second.key)]
    change = replica.merge([(CONFIG_DOC, everything[CONFIG_DOC])], NOW)
    assert replica.views.on_hand() == {"A": 3}
    assert no_problems(replica)
    assert replica.digest() == lane.replica.digest()
    assert len(change.verdicts) == 2  # both signatures were checked, once


def test_price_change_signed_by_a_cashier_is_not_applied() -> None:
    store = Store()
    cashier = store.terminal("lane1", Role.CASHIER)
    manager = store.terminal("lane2", Role.MANAGER)
    record, _ = cashier.replica.append(PriceChange(Sku("X"), 1), NOW)
    cashier.replica.append(Receipt(Sku("X"), 3), NOW + 1)  # the chain goes on
    sync_all([cashier.replica, manager.replica])
    for replica in (cashier.replica, manager.replica):
        assert replica.views.price_of(Sku("X")) is None
        assert problem_keys(replica, "unauthorized") == [(CATALOG_DOC, record.key)]
        assert replica.views.uncounted_counts()["unauthorized"] == 1
        assert replica.views.on_hand() == {"X": 3}
    manager.replica.append(PriceChange(Sku("X"), 250), NOW + 2)
    sync_all([cashier.replica, manager.replica], NOW + 3)
    for replica in (cashier.replica, manager.replica):
        price = replica.views.price_of(Sku("X"))
        assert price is not None
        assert (price.unit_cents, price.terminal) == (250, "lane2")


@pytest.mark.parametrize("manager_first", [True, False])
def test_price_change_counts_when_a_manager_certificate_verifies_it(manager_first: bool) -> None:
    """One key enrolled twice for one terminal (cashier, then promoted to manager): the price
    change is authorised whichever certificate arrived first."""
    store = Store()
    key = SigningKey.generate()
    certs = [store.certificate("lane1", key, Role.MANAGER), store.certificate("lane1", key)]
    if not manager_first:
        certs.reverse()
    price, receipt = record_chain(key, "lane1", [PriceChange(Sku("X"), 250), Receipt(Sku("X"), 1)])
    replica = store.observer()
    for n, cert in enumerate(certs):
        replica.merge([(CONFIG_DOC, config_update(cert, client_id=500 + n))], NOW)
    put_records(replica, CATALOG_DOC, keyed(price), client_id=510)
    put_records(replica, TODAY_DOC, keyed(receipt), client_id=511)
    current = replica.views.price_of(Sku("X"))
    assert current is not None
    assert current.unit_cents == 250
    assert replica.views.on_hand() == {"X": 1}
    assert no_problems(replica), replica.views.problems()


@pytest.mark.parametrize("manager_first", [True, False])
def test_manager_certificate_of_another_key_does_not_authorise_a_price(
    manager_first: bool,
) -> None:
    """The terminal has a manager certificate, but for another key: the price change signed with
    the cashier key is counted in the chain and not applied, whatever the arrival order."""
    store = Store()
    cashier_key, manager_key = SigningKey.generate(), SigningKey.generate()
    certs = [
        store.certificate("lane1", manager_key, Role.MANAGER),
        store.certificate("lane1", cashier_key),
    ]
    if not manager_first:
        certs.reverse()
    price, receipt = record_chain(
        cashier_key, "lane1", [PriceChange(Sku("X"), 250), Receipt(Sku("X"), 1)]
    )
    replica = store.observer()
    for n, cert in enumerate(certs):
        replica.merge([(CONFIG_DOC, config_update(cert, client_id=500 + n))], NOW)
    put_records(replica, CATALOG_DOC, keyed(price), client_id=510)
    put_records(replica, TODAY_DOC, keyed(receipt), client_id=511)
    assert replica.views.price_of(Sku("X")) is None
    assert problem_keys(replica, "unauthorized") == [(CATALOG_DOC, price.key)]
    assert replica.views.on_hand() == {"X": 1}
    assert replica.views.head(LANE1).seq == 2


def test_certificate_stored_under_a_key_not_its_own_is_not_believed() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    other = store.certificate("lane2", SigningKey.generate())
    (record,) = record_chain(key, "lane1", [Receipt(Sku("A"), 5)])
    misfiled = {
        f"cert:lane1:{cert.key_fingerprint}": cert.encoded,  # the old key scheme
        certificate_key(other): cert.encoded,  # another certificate's key
        certificate_key(cert).replace("lane1", "lane2"): cert.encoded,
        f"revoke:lane1:{certificate_key(cert).rsplit(':', 1)[1]}": cert.encoded,
    }
    for n, (config_key, value) in enumerate(misfiled.items()):
        replica = store.observer()
        replica.merge([(CONFIG_DOC, crafted_update("certs", {config_key: value}, 600 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(record), client_id=610)
        assert list(replica.views.certificates()) == [], config_key
        assert replica.views.on_hand() == {}, config_key
        assert problem_keys(replica, "unverified") == [(TODAY_DOC, record.key)], config_key
    # positive control: under its own key it is believed
    replica = store.observer()
    replica.merge([(CONFIG_DOC, config_update(cert))], NOW)
    put_records(replica, TODAY_DOC, keyed(record), client_id=610)
    assert replica.views.on_hand() == {"A": 5}


def test_later_price_wins_on_every_replica() -> None:
    store = Store()
    a = store.terminal("lane1", Role.MANAGER)
    b = store.terminal("lane2", Role.MANAGER)
    a.replica.append(PriceChange(Sku("X"), 100), NOW + 5)
    b.replica.append(PriceChange(Sku("X"), 200), NOW)
    sync_all([a.replica, b.replica], NOW + 6)
    for replica in (a.replica, b.replica):
        price = replica.views.price_of(Sku("X"))
        assert price is not None
        assert price.unit_cents == 100


# -- garbage at the door ----------------------------------------------------------------------


def seeded_replica() -> tuple[Store, Replica]:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 5), NOW)
    return store, lane.replica


@pytest.mark.parametrize(
    ("wall_ms", "enrolled"),
    [
        (MAX_WALL_MS + 1, True),
        (253_402_300_800_000, True),  # 10000-01-01: past the end of Python's calendar
        (2**64 - 1, False),
        (2**64 - 1, True),
    ],
)
def test_record_with_a_timestamp_beyond_the_calendar_is_rejected(
    wall_ms: int, enrolled: bool
) -> None:
    """The replica must not crash on a date past year 9999 (the document check runs before any
    signature check): such a record is rejected at parsing, whatever key it is stored under."""
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer)
    record = make_record(signer, LANE1, 1, bytes(32), Hlc(wall_ms, 0), Receipt(Sku("A"), 5))
    rejected = parse_record(record.encoded)
    assert not isinstance(rejected, Record)
    assert "timestamp" in rejected.reason
    replica = enrolled_observer(store, *([cert] if enrolled else []))
    put_records(replica, TODAY_DOC, keyed(record), client_id=13)
    put_records(replica, TODAY_DOC, {str(record.id): record.encoded}, client_id=14)
    assert replica.views.on_hand() == {}
    assert replica.views.accepted_count() == 0
    assert problem_keys(replica, "rejected") == sorted(
        [(TODAY_DOC, record.key), (TODAY_DOC, str(record.id))]
    )
    assert problem_keys(replica, "unverified") == []
    replica.digest()
    replica.rebuild(NOW)
    assert replica.views.on_hand() == {}


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_updates_raise_remote_error_and_change_nothing(data: bytes) -> None:
    _, replica = seeded_replica()
    digest, vectors, stock = replica.digest(), replica.state_vectors(), replica.views.on_hand()
    try:
        replica.merge([(TODAY_DOC, data)], NOW)
    except RemoteError:
        assert replica.state_vectors() == vectors
        assert replica.digest() == digest
    else:
        # pycrdt decoded the bytes as a (pointless) update: still nothing counted
        pycrdt.get_state(data)
    assert replica.views.on_hand() == stock


def test_every_truncation_of_a_valid_update_is_refused() -> None:
    store, writer = seeded_replica()
    full = writer.full_state(TODAY_DOC)
    replica = store.observer()
    digest, vectors = replica.digest(), replica.state_vectors()
    for length in range(len(full)):
        with pytest.raises(RemoteError):
            replica.merge([(TODAY_DOC, full[:length])], NOW)
        assert replica.digest() == digest
        assert replica.state_vectors() == vectors
    replica.merge([(TODAY_DOC, full)], NOW)  # positive control
    assert replica.digest() != digest


def test_merge_is_all_or_nothing() -> None:
    store, writer = seeded_replica()
    good = writer.updates_since({})
    replica = store.observer()
    digest = replica.digest()
    batch = [*good.items(), (TODAY_DOC, b"\x01\x02\x03garbage")]
    with pytest.raises(RemoteError):
        replica.merge(batch, NOW)
    assert replica.digest() == digest
    assert replica.views.on_hand() == {}
    replica.merge(list(good.items()), NOW)
    assert replica.views.on_hand() == {"A": 5}


@pytest.mark.parametrize("update", [None, "", "text", 5, b"", bytearray()])
def test_update_that_is_not_bytes_is_refused(update: object) -> None:
    _, replica = seeded_replica()
    digest = replica.digest()
    with pytest.raises(RemoteError):
        replica.merge([(TODAY_DOC, update)], NOW)  # type: ignore[list-item]
    assert replica.digest() == digest


@pytest.mark.parametrize(
    "name", ["evil", "", "ledger/", "ledger/tomorrow", "Config", "catalog/x", "records", None, 5]
)
def test_unknown_document_name_is_refused_and_changes_nothing(name: object) -> None:
    store, writer = seeded_replica()
    update = writer.full_state(TODAY_DOC)
    replica = store.observer()
    digest, names = replica.digest(), replica.doc_names()
    with pytest.raises(RemoteError):
        replica.merge([(name, update)], NOW)  # type: ignore[list-item]
    with pytest.raises(RemoteError):
        replica.merge([(TODAY_DOC, update), (name, update)], NOW)  # type: ignore[list-item]
    assert replica.digest() == digest
    assert replica.doc_names() == names
    assert replica.views.on_hand() == {}


@pytest.mark.parametrize(
    ("doc", "value"),
    [
        (TODAY_DOC, "a string"),
        (TODAY_DOC, 42),
        (TODAY_DOC, None),
        (TODAY_DOC, True),
        (TODAY_DOC, ["x"]),
        (CONFIG_DOC, "a string"),
    ],
    ids=repr,
)
def test_non_bytes_map_values_are_rejected_and_the_replica_keeps_working(
    doc: str, value: object
) -> None:
    store, replica = seeded_replica()
    stock = replica.views.on_hand()
    key = (
        record_key(RecordId(TerminalId("lane9"), 1), bytes(32))
        if doc == TODAY_DOC
        else ("cert:lane9:" + "00" * 16)
    )
    root = "certs" if doc == CONFIG_DOC else "records"
    replica.merge([(doc, crafted_update(root, {key: value}))], NOW)
    assert replica.views.on_hand() == stock
    if doc == TODAY_DOC and value is not None:
        assert problem_keys(replica, "rejected") == [(doc, key)]
    replica.digest()  # must not raise: a peer's bad value may not take the replica down
    peer = store.observer()
    sync(replica, peer)
    assert peer.digest() == replica.digest()
    assert peer.views.on_hand() == stock


# -- misbehaving enrolled peers overwriting records -----------------------------------------------


@pytest.mark.parametrize(
    "replacement",
    ["junk", "tampered", "another signature", "other record", "another accepted record", "deleted"],
)
def test_overwritten_accepted_record_is_written_back(replacement: str) -> None:
    """ "another signature": the same payload (so the same key and hash) with a garbage
    signature; taken for the genuine record, it was written back over the genuine one, which
    was written back over it, until the stack overflowed."""
    store = Store()
    lane = store.terminal("lane1")
    record, _ = lane.replica.append(Receipt(Sku("A"), 5), NOW)
    second, _ = lane.replica.append(Receipt(Sku("B"), 2), NOW + 1)
    key = record.key
    digest, stock, heads = (
        lane.replica.digest(),
        lane.replica.views.on_hand(),
        lane.replica.views.heads(),
    )
    (other,) = record_chain(SigningKey.generate(), "lane9", [Receipt(Sku("B"), 1)])
    value = {
        "junk": b"junk",
        "tampered": flipped(record, len(record.payload) - 1),
        "another signature": record.payload + bytes(SIGNATURE_SIZE),
        "other record": other.encoded,
        "another accepted record": second.encoded,
        "deleted": None,
    }[replacement]
    update = overwrite(lane.replica, TODAY_DOC, key, value, client_id=666)

    change = lane.replica.merge([(TODAY_DOC, update)], NOW + 1)
    assert len(change.updates) >= 2  # the received update, then the repair to persist
    assert change.updates[0] == (TODAY_DOC, update)
    assert stored_value(lane.replica, TODAY_DOC, key) == record.encoded
    assert lane.replica.digest() == digest
    assert lane.replica.views.on_hand() == stock
    assert lane.replica.views.heads() == heads
    assert no_problems(lane.replica), lane.replica.views.problems()

    # a peer that first got the overwrite converges on the genuine record too
    peer = store.observer()
    peer.merge([(TODAY_DOC, lane.replica.full_state(TODAY_DOC))], NOW)
    sync(lane.replica, peer, NOW + 2)
    assert stored_value(peer, TODAY_DOC, key) == record.encoded
    assert peer.views.on_hand() == stock


@pytest.mark.parametrize("doc", [TODAY_DOC, CONFIG_DOC])
def test_identical_value_written_again_is_not_written_back(doc: str) -> None:
    store = Store()
    lane = store.terminal("lane1")
    record, _ = lane.replica.append(Receipt(Sku("A"), 5), NOW)
    key = record.key if doc == TODAY_DOC else certificate_key(lane.cert)
    value = stored_value(lane.replica, doc, key)
    assert isinstance(value, bytes)
    digest = lane.replica.digest()
    update = overwrite(lane.replica, doc, key, value, client_id=667)
    change = lane.replica.merge([(doc, update)], NOW + 1)
    assert change.updates == [(doc, update)]  # persisted as received, nothing written back
    assert lane.replica.digest() == digest
    assert lane.replica.views.on_hand() == {"A": 5}


@pytest.mark.parametrize("replacement", ["junk", "deleted", "another certificate"])
def test_overwritten_or_deleted_certificate_is_written_back(replacement: str) -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("A"), 5), NOW)
    sync(a.replica, b.replica)
    key = certificate_key(a.cert)
    value = {
        "junk": b"junk",
        "deleted": None,
        "another certificate": store.certificate("lane1", SigningKey.generate()).encoded,
    }[replacement]
    update = overwrite(b.replica, CONFIG_DOC, key, value, client_id=668)
    change = b.replica.merge([(CONFIG_DOC, update)], NOW + 1)
    assert len(change.updates) >= 2
    assert stored_value(b.replica, CONFIG_DOC, key) == a.cert.encoded
    assert b.replica.views.on_hand() == {"A": 5}
    assert no_problems(b.replica), b.replica.views.problems()
    late = store.observer()
    late.merge([(CONFIG_DOC, update)], NOW + 1)  # the overwrite first, then everything else
    sync(b.replica, late, NOW + 2)
    assert stored_value(late, CONFIG_DOC, key) == a.cert.encoded
    assert late.views.on_hand() == {"A": 5}
    assert restarted(b.replica, now_ms=NOW + 3).views.on_hand() == {"A": 5}


def test_a_verdict_on_a_record_does_not_vouch_for_a_copy_with_another_signature() -> None:
    """A record waiting behind a gap (verified, its verdict kept) is overwritten by a peer with
    the same payload and a garbage signature: same hash, same key. Restarted with its kept
    verdicts, the replica must refuse the copy as a fresh replica does (keyed by the record's
    hash, the verdict vouched for it: 12 on hand against 5)."""
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    first, second = record_chain(key, "lane1", [Receipt(Sku("A"), 5), Receipt(Sku("A"), 7)])
    replica = enrolled_observer(store, cert)
    verdicts = set(put_records(replica, TODAY_DOC, keyed(second), client_id=700).verdicts)
    copy = second.payload + bytes(SIGNATURE_SIZE)
    replica.merge([(TODAY_DOC, overwrite(replica, TODAY_DOC, second.key, copy, 701))], NOW)
    verdicts.update(put_records(replica, TODAY_DOC, keyed(first), client_id=702).verdicts)
    again = Replica(replica.store, replica.client_id, replica.me)
    stored = {name: [replica.full_state(name)] for name in replica.doc_names()}
    again.restore(stored, verdicts, NOW)
    fresh = enrolled_observer(store, cert)
    sync(replica, fresh)
    for other in (replica, again, fresh):
        assert other.views.on_hand() == {"A": 5}
        assert problem_keys(other, "unverified") == [(TODAY_DOC, second.key)]


@pytest.mark.parametrize("replacement", ["junk", "deleted"])
def test_unverified_record_replaced_before_its_certificate_arrives_is_not_counted(
    replacement: str,
) -> None:
    """A record waiting for its certificate is overwritten (or deleted) by a peer. It was never
    accepted, so it is not written back; whatever is counted must then be what the document
    holds: a replica that only ever saw the final content, and a restarted one, agree."""
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    (record,) = record_chain(key, "lane1", [Receipt(Sku("A"), 5)])
    replica = store.observer()
    put_records(replica, TODAY_DOC, keyed(record), client_id=700)
    assert problem_keys(replica, "unverified") == [(TODAY_DOC, record.key)]
    value = None if replacement == "deleted" else b"junk"
    update = overwrite(replica, TODAY_DOC, record.key, value, client_id=701)
    replica.merge([(TODAY_DOC, update)], NOW)
    replica.merge([(CONFIG_DOC, config_update(cert))], NOW)
    fresh = store.observer()
    sync(replica, fresh)
    assert fresh.digest() == replica.digest()
    assert fresh.views.on_hand() == {}
    for other in (replica, restarted(replica)):
        assert other.views.on_hand() == fresh.views.on_hand()
        assert other.views.heads() == fresh.views.heads()
        assert other.views.problems() == fresh.views.problems()


@pytest.mark.parametrize("replacement", ["junk", "deleted"])
def test_record_waiting_behind_a_gap_replaced_before_the_gap_fills_is_not_counted(
    replacement: str,
) -> None:
    """Like an unverified record, a validly signed one waiting for its predecessor is not yet
    accepted; if a peer replaces it, the views must follow the content once the gap fills."""
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, r2, r3 = record_chain(
        key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 2), Receipt(Sku("A"), 4)]
    )
    replica = enrolled_observer(store, cert)
    put_records(replica, TODAY_DOC, keyed(r1, r3), client_id=710)
    assert replica.views.problems()["gaps"] != []
    value = None if replacement == "deleted" else b"junk"
    replica.merge([(TODAY_DOC, overwrite(replica, TODAY_DOC, r3.key, value, 711))], NOW)
    put_records(replica, TODAY_DOC, keyed(r2), client_id=712)
    fresh = enrolled_observer(store)
    sync(replica, fresh)
    assert fresh.digest() == replica.digest()
    assert fresh.views.on_hand() == {"A": 3}
    for other in (replica, restarted(replica)):
        assert other.views.on_hand() == fresh.views.on_hand()
        assert other.views.heads() == fresh.views.heads()
        assert other.views.problems() == fresh.views.problems()


def test_problem_of_a_deleted_entry_is_not_listed_any_more() -> None:
    """Junk that a peer later deletes is no longer held: listing it would make two replicas with
    one digest report different problems."""
    store, replica = seeded_replica()
    junk_key = record_key(RecordId(TerminalId("lane9"), 1), bytes(32))
    put_records(replica, TODAY_DOC, {junk_key: b"junk"}, client_id=720)
    assert problem_keys(replica, "rejected") == [(TODAY_DOC, junk_key)]
    replica.merge([(TODAY_DOC, overwrite(replica, TODAY_DOC, junk_key, None, 721))], NOW)
    fresh = store.observer()
    sync(replica, fresh)
    assert fresh.digest() == replica.digest()
    assert no_problems(fresh)
    assert replica.views.problems() == fresh.views.problems()


def test_two_lanes_repairing_the_same_overwrite_while_apart_converge() -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    record, _ = a.replica.append(Receipt(Sku("A"), 5), NOW)
    sync_all([a.replica, b.replica])
    update = overwrite(a.replica, TODAY_DOC, record.key, b"junk", client_id=666)
    repair_a = a.replica.merge([(TODAY_DOC, update)], NOW + 1)  # each repairs on its own
    repair_b = b.replica.merge([(TODAY_DOC, update)], NOW + 1)
    assert len(repair_a.updates) >= 2
    assert len(repair_b.updates) >= 2
    # both repairs are concurrent writes of one value: receiving the other's repair overwrites
    # the entry with an identical value, which must not be written back again (no loop)
    for src, dst in ((a.replica, b.replica), (b.replica, a.replica)):
        received = sync(src, dst, NOW + 2)
        assert len(received.updates) == 1, "an identical value was written back"
    digest = a.replica.digest()
    for _ in range(3):
        for src, dst in ((a.replica, b.replica), (b.replica, a.replica)):
            # (a diff always carries the delete set, so it is not empty; it changes nothing)
            again = sync(src, dst, NOW + 3)
            assert again.entries == 0
            assert len(again.updates) <= 1
            assert dst.digest() == digest
    assert a.replica.digest() == b.replica.digest()
    for replica in (a.replica, b.replica):
        assert stored_value(replica, TODAY_DOC, record.key) == record.encoded
        assert replica.views.on_hand() == {"A": 5}
        assert no_problems(replica), replica.views.problems()


def test_overwritten_certificate_is_written_back_and_survives_a_restart() -> None:
    """Certificates are immutable like records: a peer overwriting one must not make another
    terminal's records unverifiable, neither now nor after this replica restarts."""
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("A"), 5), NOW)
    changes = [b.restored, sync(a.replica, b.replica)]
    assert b.replica.views.on_hand() == {"A": 5}
    key = certificate_key(a.cert)
    update = overwrite(b.replica, CONFIG_DOC, key, b"junk", client_id=666)
    changes.append(b.replica.merge([(CONFIG_DOC, update)], NOW + 1))
    assert b.replica.views.on_hand() == {"A": 5}
    assert stored_value(b.replica, CONFIG_DOC, key) == a.cert.encoded
    again = Replica(store.identity, b.replica.client_id, LocalIdentity(b.cert, b.key))
    again.restore(durable_log(*changes), set(), NOW + 2)
    assert again.views.on_hand() == {"A": 5}
    assert no_problems(again), again.views.problems()


# -- restart --------------------------------------------------------------------------------------


def test_restore_from_the_durable_log_gives_the_same_state() -> None:
    store = Store()
    lane = store.terminal("lane1")
    changes: list[Change] = [lane.restored]
    for k in range(3):
        _, change = lane.replica.append(Receipt(Sku("A"), k + 1), NOW + k)
        changes.append(change)
    again = Replica(store.identity, lane.replica.client_id, LocalIdentity(lane.cert, lane.key))
    change = again.restore(durable_log(*changes), set(), NOW + 10)
    assert again.digest() == lane.replica.digest()
    assert again.views.on_hand() == {"A": 6}
    assert len(change.verdicts) == 3
    record, _ = again.append(Adjustment(Sku("A"), -1, "broken"), NOW + 11)
    assert record.seq == 4
    assert again.views.on_hand() == {"A": 5}


def test_own_chain_survives_a_clock_step_back_across_a_restart() -> None:
    """Records written while the clock ran ahead (then corrected by NTP) are this terminal's own:
    after a restart its next record must still follow them, however far back the clock went."""
    store = Store()
    lane = store.terminal("lane1")
    changes: list[Change] = [lane.restored]
    for k in range(3):
        _, change = lane.replica.append(Receipt(Sku("A"), 1), NOW + k)
        changes.append(change)
    earlier = NOW - 2 * 60_000  # the clock is stepped back two minutes, then the lane restarts
    again = Replica(store.identity, lane.replica.client_id, LocalIdentity(lane.cert, lane.key))
    again.restore(durable_log(*changes), set(), earlier)
    record, _ = again.append(Receipt(Sku("A"), 1), earlier)
    assert record.seq == 4
    assert record.hlc > Hlc(NOW + 2, 0)
    assert again.views.on_hand() == {"A": 4}
    assert no_problems(again)


def test_append_refuses_when_the_own_chain_is_broken_and_writes_nothing() -> None:
    """A terminal directory restored from an old copy signs a second, different seq 2. Once the
    fork is known, neither copy may append: nothing they sign could ever be counted."""
    store = Store()
    lane = store.terminal("lane1")
    _, first = lane.replica.append(Receipt(Sku("A"), 5), NOW)
    copy = Replica(store.identity, store.client_id(), LocalIdentity(lane.cert, lane.key))
    copy.restore(durable_log(lane.restored, first), set(), NOW)
    lane.replica.append(Receipt(Sku("A"), 1), NOW + 1)
    copy.append(Receipt(Sku("A"), 2), NOW + 2)
    sync_all([lane.replica, copy], NOW + 3)
    for replica in (lane.replica, copy):
        assert replica.views.is_broken(LANE1) is not None
        assert replica.views.on_hand() == {"A": 5}
        digest, vectors = replica.digest(), replica.state_vectors()
        heads, problems = replica.views.heads(), replica.views.problems()
        with pytest.raises(ConfigError, match="broken"):
            replica.append(Receipt(Sku("A"), 3), NOW + 4)
        assert replica.digest() == digest
        assert replica.state_vectors() == vectors
        assert replica.views.heads() == heads
        assert replica.views.problems() == problems
        assert replica.views.on_hand() == {"A": 5}
    # a restart does not heal it either
    with pytest.raises(ConfigError, match="broken"):
        restarted(copy, now_ms=NOW + 5).append(Receipt(Sku("A"), 3), NOW + 5)


@pytest.mark.parametrize("signer", ["unenrolled key", "another terminal's key"])
def test_forged_record_in_my_name_does_not_move_my_clock(signer: str) -> None:
    """Only this terminal's own records are adopted by its clock however far ahead they are;
    a record that merely claims its terminal id (and does not verify) is anyone's forgery and
    must be bounded like any remote timestamp (MAX_FORWARD_DRIFT_MS), or one peer could push
    every later record of this lane years ahead."""
    store = Store()
    lane = store.terminal("lane1")
    other = store.terminal("lane2")
    lane.replica.append(Receipt(Sku("A"), 1), NOW)
    key = SigningKey.generate() if signer == "unenrolled key" else other.key
    ten_years = NOW + 10 * 365 * 24 * HOUR_MS
    forged = make_record(key, LANE1, 2, bytes(32), Hlc(ten_years, 0), Receipt(Sku("A"), 1))
    forged_doc = f"ledger/{forged.hlc.business_day(ZoneInfo('UTC'))}"
    put_records(lane.replica, forged_doc, keyed(forged), client_id=900)
    assert problem_keys(lane.replica, "unverified") == [(forged_doc, forged.key)]
    record, change = lane.replica.append(Receipt(Sku("A"), 1), NOW + 5)
    assert record.hlc.wall_ms <= NOW + 5 + MAX_FORWARD_DRIFT_MS, record.hlc
    assert [name for name, _ in change.updates] == [TODAY_DOC]
    assert lane.replica.views.on_hand() == {"A": 2}


def test_digest_follows_edits_inside_a_nested_value() -> None:
    """A peer may store a nested CRDT map as a value and edit inside it later. The digest must
    stay a function of the content: the running replica and a replica restarted from the very
    same state must agree."""
    _, replica = seeded_replica()
    peer: pycrdt.Doc[pycrdt.Map[object]] = pycrdt.Doc(client_id=901)
    root: pycrdt.Map[object] = peer.get("records", type=pycrdt.Map)
    with peer.transaction():
        root["nested"] = pycrdt.Map({"x": b"1"})
    replica.merge([(TODAY_DOC, bytes(peer.get_update()))], NOW)
    assert replica.digest() == restarted(replica).digest()
    before = peer.get_state()
    nested = root["nested"]
    assert isinstance(nested, pycrdt.Map)
    with peer.transaction():
        nested["x"] = b"2"
    replica.merge([(TODAY_DOC, bytes(peer.get_update(before)))], NOW)
    assert replica.digest() == restarted(replica).digest()
    assert replica.views.on_hand() == {"A": 5}


def test_certificate_arrival_order_does_not_change_the_views() -> None:
    """A terminal enrolled twice (a new key after a disk swap): which records count must not
    depend on which of its certificates a replica happened to receive first."""
    store = Store()
    old_key, new_key = SigningKey.generate(), SigningKey.generate()
    old_cert = store.certificate("lane1", old_key)
    new_cert = store.certificate("lane1", new_key)
    (record,) = record_chain(new_key, "lane1", [Receipt(Sku("A"), 5)])
    first_old = enrolled_observer(store)
    first_new = enrolled_observer(store)
    for replica, certs in ((first_old, (old_cert, new_cert)), (first_new, (new_cert, old_cert))):
        for n, cert in enumerate(certs):
            replica.merge([(CONFIG_DOC, config_update(cert, client_id=300 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(record), client_id=400)
    assert first_old.digest() == first_new.digest()
    for replica in (first_old, first_new):
        assert replica.views.on_hand() == {"A": 5}  # the record verifies with the new key
        assert no_problems(replica), replica.views.problems()
