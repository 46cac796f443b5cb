"""Bad entries injected into a replica's documents are detected, reported and never counted."""

from __future__ import annotations

import itertools

import pycrdt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.hlc import Hlc
from lanesync.core.identity import Role
from lanesync.core.ids import CATALOG_DOC, CONFIG_DOC, Sku, TerminalId
from lanesync.core.records import (
    Adjustment,
    PriceChange,
    Receipt,
    Record,
    Sale,
    SaleLine,
    make_record,
    parse_record,
)
from lanesync.core.replica import Change, LocalIdentity, Replica, certificate_key
from lanesync.errors import RemoteError

from .helpers import (
    HOUR_MS,
    NOW,
    TODAY_DOC,
    Store,
    crafted_update,
    enrolled_observer,
    no_problems,
    overwrite,
    put_records,
    record_chain,
    stored_value,
    sync,
    sync_all,
)

TOMORROW_DOC = "ledger/2026-11-19"
LANE1 = TerminalId("lane1")


def problem_keys(replica: Replica, kind: str) -> list[tuple[object, object]]:
    return [(p.get("doc"), p.get("key")) for p in replica.ledger.problems()[kind]]


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

    replica = enrolled_observer(store, cert)
    put_records(replica, TODAY_DOC, {"lane1:1": tampered}, client_id=4242)
    assert replica.ledger.on_hand() == {}
    assert replica.ledger.accepted_count() == 0
    assert problem_keys(replica, "unverified") == [(TODAY_DOC, "lane1:1")]
    # positive control: the genuine record is counted by the same kind of replica
    honest = enrolled_observer(store, cert)
    put_records(honest, TODAY_DOC, {"lane1:1": genuine.encoded}, client_id=4242)
    assert honest.ledger.on_hand() == {"X": 10}
    assert no_problems(honest)


def test_no_single_byte_flip_of_a_record_is_ever_counted() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    (genuine,) = record_chain(key, "lane1", [Sale.of((SaleLine(Sku("X"), 2, 150),))])
    for position in range(len(genuine.encoded)):
        replica = enrolled_observer(store, cert)
        put_records(replica, TODAY_DOC, {"lane1:1": flipped(genuine, position)}, client_id=77)
        assert replica.ledger.accepted_count() == 0, position
        assert replica.ledger.on_hand() == {}, position
        problems = replica.ledger.problems()
        assert problems["rejected"] or problems["unverified"], position


def test_record_signed_by_an_unenrolled_key_is_never_counted() -> None:
    store = Store()
    intruder = Store()  # another authority, even with the same store id
    key = SigningKey.generate()
    foreign_cert = intruder.certificate("lane7", key, Role.MANAGER)
    (forged,) = record_chain(key, "lane7", [Receipt(Sku("X"), 99)])
    (impostor,) = record_chain(key, "lane1", [Receipt(Sku("X"), 98)])
    genuine_cert = store.certificate("lane1", SigningKey.generate())

    replica = enrolled_observer(store, genuine_cert, foreign_cert)
    assert [c.terminal_id for c in replica.ledger.certificates()] == ["lane1"]
    put_records(replica, TODAY_DOC, {"lane7:1": forged.encoded}, client_id=9)
    put_records(replica, TODAY_DOC, {"lane1:1": impostor.encoded}, client_id=10)
    assert replica.ledger.on_hand() == {}
    assert replica.ledger.heads() == []
    assert problem_keys(replica, "unverified") == [
        (TODAY_DOC, "lane1:1"),
        (TODAY_DOC, "lane7:1"),
    ]
    # and it stays that way after a full rebuild
    replica.rebuild(NOW)
    assert replica.ledger.on_hand() == {}
    assert len(replica.ledger.problems()["unverified"]) == 2


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (TODAY_DOC, "lane1:2"),
        (TODAY_DOC, "lane2:1"),
        (TODAY_DOC, "lane1:01"),
        (TODAY_DOC, ""),
        (TOMORROW_DOC, "lane1:1"),
        (CATALOG_DOC, "lane1:1"),
    ],
)
def test_record_stored_under_the_wrong_key_or_document_is_rejected(doc: str, key: str) -> None:
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer)
    (record,) = record_chain(signer, "lane1", [Receipt(Sku("X"), 10)])
    replica = enrolled_observer(store, cert)
    put_records(replica, doc, {key: record.encoded}, client_id=31)
    assert replica.ledger.on_hand() == {}
    assert problem_keys(replica, "rejected") == [(doc, key)]


def test_price_change_must_live_in_the_catalog() -> None:
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer, Role.MANAGER)
    (price,) = record_chain(signer, "lane1", [PriceChange(Sku("X"), 250)])
    misplaced = enrolled_observer(store, cert)
    put_records(misplaced, TODAY_DOC, {"lane1:1": price.encoded}, client_id=31)
    assert misplaced.ledger.price_of(Sku("X")) is None
    assert problem_keys(misplaced, "rejected") == [(TODAY_DOC, "lane1:1")]
    placed = enrolled_observer(store, cert)
    put_records(placed, CATALOG_DOC, {"lane1:1": price.encoded}, client_id=31)
    assert placed.ledger.price_of(Sku("X")) is not None
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
    problems = replica.ledger.problems()
    assert [(p["terminal"], p["from_seq"]) for p in problems["broken_chains"]] == [("lane1", 2)]
    assert problems["gaps"] == []
    assert replica.ledger.head(LANE1).seq == 1
    assert replica.ledger.on_hand() == {"A": 1}


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
            if record is y and replica.ledger.is_accepted(x3):
                rebuilt = True  # seq 2 and 3 were counted; the fork below them forces a rebuild
                assert replica.ledger.on_hand() == {"A": 26}
            put_records(
                replica, doc_of(record), {str(record.id): record.encoded}, client_id=100 + n
            )
        assert_broken_at_2(replica)
        assert not replica.ledger.is_accepted(x)
        assert not replica.ledger.is_accepted(y)
        digests.add(replica.digest())
    assert rebuilt
    assert len(digests) == 1
    # all four in one merge
    together = enrolled_observer(store, cert)
    together.merge(
        [
            (TODAY_DOC, crafted_update("records", {"lane1:1": r1.encoded, "lane1:3": x3.encoded})),
            (TODAY_DOC, crafted_update("records", {"lane1:2": x.encoded}, client_id=5)),
            (TOMORROW_DOC, crafted_update("records", {"lane1:2": y.encoded}, client_id=6)),
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
    put_records(p, TODAY_DOC, {"lane1:1": r1.encoded}, client_id=50)
    sync(p, q)
    put_records(p, TODAY_DOC, {"lane1:2": x.encoded, "lane1:3": x3.encoded}, client_id=51)
    put_records(q, TOMORROW_DOC, {"lane1:2": y.encoded}, client_id=52)
    assert p.ledger.on_hand() == {"A": 26}
    assert q.ledger.on_hand() == {"A": 8}
    sync_all([p, q])
    for replica in (p, q):
        assert_broken_at_2(replica)
    late = enrolled_observer(store)
    sync(p, late)
    assert late.digest() == p.digest() == q.digest()
    assert_broken_at_2(late)


def test_fork_under_one_key_is_agreed_by_every_replica_with_the_same_digest() -> None:
    """Two replicas hold different records under the same key (one seq signed twice). The CRDT
    keeps one value; replicas that saw both stop the chain. A replica with the same digest must
    reach the same views, or equal digests no longer mean converged."""
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, x = record_chain(key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 5)])
    y = make_record(key, LANE1, 2, r1.hash, Hlc(NOW + 1, 0), Receipt(Sku("A"), 7))
    p, q = enrolled_observer(store, cert), enrolled_observer(store, cert)
    put_records(p, TODAY_DOC, {"lane1:1": r1.encoded}, client_id=59)
    sync(p, q)
    put_records(p, TODAY_DOC, {"lane1:2": x.encoded}, client_id=60)
    put_records(q, TODAY_DOC, {"lane1:2": y.encoded}, client_id=61)
    sync_all([p, q])
    sync_all([p, q])
    assert p.digest() == q.digest()
    assert p.ledger.on_hand() == q.ledger.on_hand()
    assert_broken_at_2(p)
    late = enrolled_observer(store)
    sync(p, late)
    assert late.digest() == p.digest()
    assert late.ledger.on_hand() == p.ledger.on_hand()
    assert late.ledger.problems() == p.ledger.problems()


# -- gaps and late certificates -------------------------------------------------------------------


def test_gap_pauses_the_chain_until_the_missing_record_arrives() -> None:
    store = Store()
    key = SigningKey.generate()
    cert = store.certificate("lane1", key)
    r1, r2, r3 = record_chain(
        key, "lane1", [Receipt(Sku("A"), 1), Receipt(Sku("A"), 2), Receipt(Sku("A"), 4)]
    )
    replica = enrolled_observer(store, cert)
    put_records(replica, TODAY_DOC, {"lane1:1": r1.encoded, "lane1:3": r3.encoded}, 70)
    assert replica.ledger.on_hand() == {"A": 1}
    assert replica.ledger.problems()["gaps"] == [
        {"terminal": "lane1", "missing_seq": 2, "waiting": 1}
    ]
    assert not replica.ledger.is_accepted(r3)
    put_records(replica, TODAY_DOC, {"lane1:2": r2.encoded}, 71)
    assert replica.ledger.on_hand() == {"A": 7}
    assert replica.ledger.head(LANE1).seq == 3
    assert no_problems(replica)


def test_records_that_arrive_before_their_certificate_count_once_it_arrives() -> None:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 5), NOW)
    lane.replica.append(Sale.of((SaleLine(Sku("A"), 2, 100),)), NOW + 1)
    everything = lane.replica.updates_since({})
    replica = store.observer()
    replica.merge([(TODAY_DOC, everything[TODAY_DOC])], NOW)
    assert replica.ledger.on_hand() == {}
    assert problem_keys(replica, "unverified") == [(TODAY_DOC, "lane1:1"), (TODAY_DOC, "lane1:2")]
    change = replica.merge([(CONFIG_DOC, everything[CONFIG_DOC])], NOW)
    assert replica.ledger.on_hand() == {"A": 3}
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
        assert replica.ledger.price_of(Sku("X")) is None
        assert problem_keys(replica, "unauthorized") == [(CATALOG_DOC, str(record.id))]
        assert replica.ledger.on_hand() == {"X": 3}
    manager.replica.append(PriceChange(Sku("X"), 250), NOW + 2)
    sync_all([cashier.replica, manager.replica], NOW + 3)
    for replica in (cashier.replica, manager.replica):
        price = replica.ledger.price_of(Sku("X"))
        assert price is not None
        assert (price.unit_cents, price.terminal) == (250, "lane2")


def test_later_price_wins_on_every_replica() -> None:
    store = Store()
    a = store.terminal("lane1", Role.MANAGER)
    b = store.terminal("lane2", Role.MANAGER)
    a.replica.append(PriceChange(Sku("X"), 100), NOW + 5)
    b.replica.append(PriceChange(Sku("X"), 200), NOW)
    sync_all([a.replica, b.replica], NOW + 6)
    for replica in (a.replica, b.replica):
        price = replica.ledger.price_of(Sku("X"))
        assert price is not None
        assert price.unit_cents == 100


# -- garbage at the door ----------------------------------------------------------------------


def seeded_replica() -> tuple[Store, Replica]:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 5), NOW)
    return store, lane.replica


@pytest.mark.parametrize(("wall_ms", "enrolled"), [(253_402_300_800_000, True), (2**64 - 1, False)])
def test_record_with_a_timestamp_beyond_the_calendar_is_rejected(
    wall_ms: int, enrolled: bool
) -> None:
    """parse_record accepts any non-negative wall_ms; the replica must not crash on the first
    date past year 9999 (the document check runs before any signature check)."""
    store = Store()
    signer = SigningKey.generate()
    cert = store.certificate("lane1", signer)
    record = make_record(signer, LANE1, 1, bytes(32), Hlc(wall_ms, 0), Receipt(Sku("A"), 5))
    replica = enrolled_observer(store, *([cert] if enrolled else []))
    put_records(replica, TODAY_DOC, {"lane1:1": record.encoded}, client_id=13)
    assert replica.ledger.on_hand() == {}
    assert problem_keys(replica, "rejected") + problem_keys(replica, "unverified") == [
        (TODAY_DOC, "lane1:1")
    ]
    replica.digest()


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_updates_raise_remote_error_and_change_nothing(data: bytes) -> None:
    _, replica = seeded_replica()
    digest, vectors, stock = replica.digest(), replica.state_vectors(), replica.ledger.on_hand()
    try:
        replica.merge([(TODAY_DOC, data)], NOW)
    except RemoteError:
        assert replica.state_vectors() == vectors
        assert replica.digest() == digest
    else:
        # pycrdt decoded the bytes as a (pointless) update: still nothing counted
        pycrdt.get_state(data)
    assert replica.ledger.on_hand() == stock


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
    assert replica.ledger.on_hand() == {}
    replica.merge(list(good.items()), NOW)
    assert replica.ledger.on_hand() == {"A": 5}


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
    assert replica.ledger.on_hand() == {}


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
    stock = replica.ledger.on_hand()
    key = "lane9:1" if doc == TODAY_DOC else "cert:lane9:0000000000000000"
    root = "certs" if doc == CONFIG_DOC else "records"
    replica.merge([(doc, crafted_update(root, {key: value}))], NOW)
    assert replica.ledger.on_hand() == stock
    if doc == TODAY_DOC and value is not None:
        assert problem_keys(replica, "rejected") == [(doc, key)]
    replica.digest()  # must not raise: a peer's bad value may not take the replica down
    peer = store.observer()
    sync(replica, peer)
    assert peer.digest() == replica.digest()
    assert peer.ledger.on_hand() == stock


# -- misbehaving enrolled peers overwriting records -----------------------------------------------


@pytest.mark.parametrize("replacement", ["junk", "tampered", "other record", "deleted"])
def test_overwritten_accepted_record_is_written_back(replacement: str) -> None:
    store = Store()
    lane = store.terminal("lane1")
    record, _ = lane.replica.append(Receipt(Sku("A"), 5), NOW)
    key = str(record.id)
    digest, stock, heads = (
        lane.replica.digest(),
        lane.replica.ledger.on_hand(),
        lane.replica.ledger.heads(),
    )
    (other,) = record_chain(SigningKey.generate(), "lane9", [Receipt(Sku("B"), 1)])
    value = {
        "junk": b"junk",
        "tampered": flipped(record, len(record.payload) - 1),
        "other record": other.encoded,
        "deleted": None,
    }[replacement]
    update = overwrite(lane.replica, TODAY_DOC, key, value, client_id=666)

    change = lane.replica.merge([(TODAY_DOC, update)], NOW + 1)
    assert len(change.updates) >= 2  # the received update, then the repair to persist
    assert change.updates[0] == (TODAY_DOC, update)
    assert stored_value(lane.replica, TODAY_DOC, key) == record.encoded
    assert lane.replica.digest() == digest
    assert lane.replica.ledger.on_hand() == stock
    assert lane.replica.ledger.heads() == heads
    assert no_problems(lane.replica), lane.replica.ledger.problems()

    # a peer that first got the overwrite converges on the genuine record too
    peer = store.observer()
    peer.merge([(TODAY_DOC, lane.replica.full_state(TODAY_DOC))], NOW)
    sync(lane.replica, peer, NOW + 2)
    assert stored_value(peer, TODAY_DOC, key) == record.encoded
    assert peer.ledger.on_hand() == stock


def test_two_lanes_repairing_the_same_overwrite_while_apart_converge() -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    record, _ = a.replica.append(Receipt(Sku("A"), 5), NOW)
    sync_all([a.replica, b.replica])
    update = overwrite(a.replica, TODAY_DOC, str(record.id), b"junk", client_id=666)
    a.replica.merge([(TODAY_DOC, update)], NOW + 1)  # each repairs on its own
    b.replica.merge([(TODAY_DOC, update)], NOW + 1)
    sync_all([a.replica, b.replica], NOW + 2)  # both repairs are concurrent writes of one value
    sync_all([a.replica, b.replica], NOW + 2)
    assert a.replica.digest() == b.replica.digest()
    for replica in (a.replica, b.replica):
        assert stored_value(replica, TODAY_DOC, str(record.id)) == record.encoded
        assert replica.ledger.on_hand() == {"A": 5}


def test_overwritten_certificate_is_written_back_and_survives_a_restart() -> None:
    """Certificates are immutable like records: a peer overwriting one must not make another
    terminal's records unverifiable, neither now nor after this replica restarts."""
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("A"), 5), NOW)
    changes = [b.restored, sync(a.replica, b.replica)]
    assert b.replica.ledger.on_hand() == {"A": 5}
    key = certificate_key(a.cert)
    update = overwrite(b.replica, CONFIG_DOC, key, b"junk", client_id=666)
    changes.append(b.replica.merge([(CONFIG_DOC, update)], NOW + 1))
    assert b.replica.ledger.on_hand() == {"A": 5}
    assert stored_value(b.replica, CONFIG_DOC, key) == a.cert.encoded
    again = Replica(store.identity, b.replica.client_id, LocalIdentity(b.cert, b.key))
    again.restore(durable_log(*changes), set(), NOW + 2)
    assert again.ledger.on_hand() == {"A": 5}
    assert no_problems(again), again.ledger.problems()


# -- restart --------------------------------------------------------------------------------------


def durable_log(*changes: Change) -> dict[str, list[bytes]]:
    stored: dict[str, list[bytes]] = {}
    for change in changes:
        for name, update in change.updates:
            stored.setdefault(name, []).append(update)
    return stored


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
    assert again.ledger.on_hand() == {"A": 6}
    assert len(change.verdicts) == 3
    record, _ = again.append(Adjustment(Sku("A"), -1, "broken"), NOW + 11)
    assert record.seq == 4
    assert again.ledger.on_hand() == {"A": 5}


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
    assert again.ledger.on_hand() == {"A": 4}
    assert no_problems(again)


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
            update = crafted_update("certs", {certificate_key(cert): cert.encoded}, 300 + n)
            replica.merge([(CONFIG_DOC, update)], NOW)
        put_records(replica, TODAY_DOC, {"lane1:1": record.encoded}, client_id=400)
    assert first_old.digest() == first_new.digest()
    assert first_old.ledger.on_hand() == first_new.ledger.on_hand()
    assert first_old.ledger.problems() == first_new.ledger.problems()
