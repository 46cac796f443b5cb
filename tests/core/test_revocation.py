"""Revocation: from ``revoked_at_ms`` on, no certificate of the revoked terminal is valid.

Records stamped earlier stay counted, later ones never count, whatever order the revocation and
the records arrive in; only the store authority can revoke.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.hlc import Hlc
from lanesync.core.identity import Revocation, issue_revocation, parse_revocation
from lanesync.core.ids import CONFIG_DOC, Sku, StoreId, TerminalId
from lanesync.core.records import Receipt, Record, Sale, SaleLine, make_record
from lanesync.core.replica import CERTS_ROOT, RECORDS_ROOT, Replica, revocation_key
from lanesync.errors import RemoteError

from .helpers import (
    NOW,
    TODAY_DOC,
    Store,
    config_update,
    crafted_update,
    enrolled_observer,
    keyed,
    no_problems,
    overwrite,
    put_records,
    restarted,
    stored_value,
    sync,
)

LANE1 = TerminalId("lane1")
LANE_SKU = Sku("A")
REVOKED_AT = NOW + 10
# wall clock of each record of lane1: three before the revocation (the last a millisecond before
# it), three from it on (the first exactly at it)
WALLS = [NOW, NOW + 3, REVOKED_AT - 1, REVOKED_AT, REVOKED_AT + 1, REVOKED_AT + 50]
BEFORE = sum(wall < REVOKED_AT for wall in WALLS)


def lane_records(key: SigningKey) -> list[Record]:
    """lane1's chain: a receipt of 100, then sales of 1, 2, 3 ... units, one per wall time."""
    records: list[Record] = []
    prev = bytes(32)
    for seq, wall in enumerate(WALLS, start=1):
        body = Receipt(LANE_SKU, 100) if seq == 1 else Sale.of((SaleLine(LANE_SKU, seq - 1, 100),))
        record = make_record(key, LANE1, seq, prev, Hlc(wall, 0), body)
        records.append(record)
        prev = record.hash
    return records


def expected_stock(counted: int) -> dict[str, int]:
    """Stock of A once the first ``counted`` records of lane1 count."""
    if counted == 0:
        return {}
    return {LANE_SKU: 100 - sum(range(1, counted))}


class Setup:
    def __init__(self) -> None:
        self.store = Store()
        self.key = SigningKey.generate()
        self.cert = self.store.certificate("lane1", self.key)
        self.records = lane_records(self.key)
        self.revocation = issue_revocation(
            self.store.authority, self.store.store_id, LANE1, REVOKED_AT
        )

    def observer(self) -> Replica:
        return enrolled_observer(self.store, self.cert)


def revocation_update(revocation: Revocation, client_id: int = 4_000) -> bytes:
    return config_update(revocation, client_id=client_id)


def assert_only_earlier_records_count(replica: Replica, records: list[Record]) -> None:
    assert replica.views.is_revoked(LANE1, REVOKED_AT)
    assert not replica.views.is_revoked(LANE1, REVOKED_AT - 1)
    assert replica.views.revoked_at(LANE1) == REVOKED_AT
    assert replica.views.on_hand() == expected_stock(BEFORE)
    assert replica.views.head(LANE1).seq == BEFORE
    for record in records:
        assert replica.views.is_accepted(record) == (record.hlc.wall_ms < REVOKED_AT)
    # the later ones are held, listed and not counted
    listed = {
        p["key"] for kind in ("unverified", "rejected") for p in replica.views.problems()[kind]
    }
    assert {r.key for r in records[BEFORE:]} <= listed


# -- the rule ------------------------------------------------------------------------------------


def test_records_before_the_revocation_stay_counted_and_later_ones_never_count() -> None:
    s = Setup()
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert_only_earlier_records_count(replica, s.records)
    replica.rebuild(NOW)
    assert_only_earlier_records_count(replica, s.records)
    assert_only_earlier_records_count(restarted(replica), s.records)


def test_revocation_published_by_a_replica_spreads_and_applies_everywhere() -> None:
    s = Setup()
    manager = s.store.terminal("lane2")
    change = manager.replica.publish_revocation(s.revocation, NOW)
    assert change.updates
    assert stored_value(manager.replica, CONFIG_DOC, revocation_key(s.revocation)) == (
        s.revocation.encoded
    )
    assert manager.replica.publish_revocation(s.revocation, NOW).updates == []  # idempotent
    assert manager.replica.views.is_revoked(LANE1, REVOKED_AT)
    replica = s.observer()
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    sync(manager.replica, replica)
    assert_only_earlier_records_count(replica, s.records)


def test_a_terminal_revoked_at_a_time_counts_nothing_after_it_even_with_a_new_certificate() -> None:
    """The revocation names the terminal, not one certificate: a second certificate (another
    key) of the same terminal is no way around it."""
    s = Setup()
    new_key = SigningKey.generate()
    new_cert = s.store.certificate("lane1", new_key)
    late = make_record(
        new_key, LANE1, BEFORE + 1, s.records[BEFORE - 1].hash, Hlc(REVOKED_AT + 1, 0),
        Receipt(LANE_SKU, 7),
    )  # fmt: skip
    replica = s.observer()
    replica.merge([(CONFIG_DOC, config_update(new_cert, s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records[:BEFORE], late), client_id=10)
    assert replica.views.on_hand() == expected_stock(BEFORE)
    assert not replica.views.is_accepted(late)


def test_earliest_of_two_revocations_applies_whatever_their_order() -> None:
    s = Setup()
    later = issue_revocation(s.store.authority, s.store.store_id, LANE1, REVOKED_AT + 40)
    for order in ((s.revocation, later), (later, s.revocation)):
        replica = s.observer()
        for n, revocation in enumerate(order):
            replica.merge([(CONFIG_DOC, revocation_update(revocation, 4_000 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
        assert_only_earlier_records_count(replica, s.records)


# -- any arrival order ---------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_later_records_never_count_whatever_the_arrival_order(data: st.DataObject) -> None:
    """Every record, the certificate and the revocation arrive as separate updates (records
    relayed by different peers, so the views may see them in any order, with gaps)."""
    s = Setup()
    updates: dict[str, tuple[str, bytes]] = {
        "certificate": (CONFIG_DOC, config_update(s.cert, client_id=3_000)),
        "revocation": (CONFIG_DOC, revocation_update(s.revocation)),
    }
    for n, record in enumerate(s.records):
        update = crafted_update(RECORDS_ROOT, keyed(record), client_id=5_000 + n)
        updates[f"{record.id} at +{record.hlc.wall_ms - NOW}ms"] = (TODAY_DOC, update)
    schedule = data.draw(st.permutations(list(updates)), label="arrival order")
    replica = s.store.observer()
    for n, label in enumerate(schedule):
        replica.merge([updates[label]], NOW)
        if "revocation" in schedule[: n + 1]:
            for record in s.records[BEFORE:]:
                assert not replica.views.is_accepted(record), (record.id, schedule[: n + 1])
            assert replica.views.head(LANE1).seq <= BEFORE
    assert_only_earlier_records_count(replica, s.records)

    reference = s.observer()
    reference.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    for update in updates.values():
        reference.merge([update], NOW)
    assert replica.digest() == reference.digest()
    assert replica.views.on_hand() == reference.views.on_hand()
    assert replica.views.heads() == reference.views.heads()
    assert replica.views.problems() == reference.views.problems()


# -- withdrawal ----------------------------------------------------------------------------------


@pytest.mark.parametrize("counted_first", [len(WALLS), BEFORE + 1, BEFORE])
def test_records_counted_before_the_revocation_arrived_are_withdrawn(counted_first: int) -> None:
    s = Setup()
    first = s.observer()  # got the revocation first
    first.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(first, TODAY_DOC, keyed(*s.records), client_id=10)

    late = s.observer()  # counted records before it heard of the revocation
    put_records(late, TODAY_DOC, keyed(*s.records[:counted_first]), client_id=10)
    assert late.views.on_hand() == expected_stock(counted_first)
    late.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW + 1)
    put_records(late, TODAY_DOC, keyed(*s.records[counted_first:]), client_id=11)

    assert_only_earlier_records_count(late, s.records)
    sync(first, late)
    sync(late, first)
    assert late.digest() == first.digest()
    assert late.views.on_hand() == first.views.on_hand()
    assert late.views.heads() == first.views.heads()
    assert late.views.problems() == first.views.problems()
    assert sorted(late.views.sale_ids()) == sorted(first.views.sale_ids())


def test_withdrawal_spreads_through_sync() -> None:
    s = Setup()
    a, b = s.observer(), s.observer()
    put_records(a, TODAY_DOC, keyed(*s.records), client_id=10)
    sync(a, b)
    assert b.views.on_hand() == expected_stock(len(WALLS))
    authority_replica = s.store.terminal("lane2").replica
    authority_replica.publish_revocation(s.revocation, NOW)
    sync(authority_replica, a)
    sync(a, b)
    for replica in (a, b):
        assert_only_earlier_records_count(replica, s.records)
    assert a.digest() == b.digest()


def test_fork_among_withdrawn_records_is_judged_alike_whichever_came_first() -> None:
    """Two records with one seq, both after the revocation time. A replica that saw them count
    (and found the fork) before the revocation arrived must end up reporting the same as one
    that had the revocation first, and as itself after a restart: equal digests, equal views."""
    s = Setup()
    fork = make_record(
        s.key, LANE1, BEFORE + 1, s.records[BEFORE - 1].hash, Hlc(REVOKED_AT + 7, 0),
        Receipt(LANE_SKU, 9),
    )  # fmt: skip
    late = s.observer()
    put_records(late, TODAY_DOC, keyed(*s.records, fork), client_id=10)
    assert late.views.problems()["broken_chains"]  # the fork was seen while it counted
    late.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    first = s.observer()
    first.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(first, TODAY_DOC, keyed(*s.records, fork), client_id=10)
    sync(first, late)
    sync(late, first)
    assert late.digest() == first.digest()
    for replica in (late, restarted(late)):
        assert replica.views.on_hand() == first.views.on_hand() == expected_stock(BEFORE)
        assert replica.views.heads() == first.views.heads()
        assert replica.views.problems() == first.views.problems()


# -- forged or misfiled revocations --------------------------------------------------------------


def test_revocation_signed_by_another_authority_changes_nothing() -> None:
    s = Setup()
    forged = issue_revocation(SigningKey.generate(), s.store.store_id, LANE1, REVOKED_AT)
    with pytest.raises(RemoteError):
        parse_revocation(forged.encoded, s.store.identity)
    replica = s.observer()
    digest = replica.digest()
    with pytest.raises(RemoteError):
        replica.publish_revocation(forged, NOW)  # refuses to spread it
    assert replica.digest() == digest
    # delivered by a peer anyway, under its own key
    replica.merge([(CONFIG_DOC, revocation_update(forged))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert replica.views.revoked_at(LANE1) is None
    assert not replica.views.is_revoked(LANE1, REVOKED_AT + 1_000)
    assert replica.views.on_hand() == expected_stock(len(WALLS))
    assert all(replica.views.is_accepted(r) for r in s.records)
    assert no_problems(replica), replica.views.problems()


def test_revocation_for_another_store_or_misfiled_changes_nothing() -> None:
    s = Setup()
    other_store = issue_revocation(s.store.authority, StoreId("shop2"), LANE1, REVOKED_AT)
    genuine = s.revocation
    entries: dict[str, object] = {
        revocation_key(other_store): other_store.encoded,
        revocation_key(genuine).replace("lane1", "lane2"): genuine.encoded,
        f"revoke:lane1:{REVOKED_AT}": genuine.encoded,  # the old key scheme
        "cert:lane1:" + revocation_key(genuine).rsplit(":", 1)[1]: genuine.encoded,
        revocation_key(genuine) + "x": genuine.encoded,
    }
    for n, (key, value) in enumerate(entries.items()):
        replica = s.observer()
        replica.merge([(CONFIG_DOC, crafted_update(CERTS_ROOT, {key: value}, 4_100 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
        assert replica.views.revoked_at(LANE1) is None, key
        assert replica.views.on_hand() == expected_stock(len(WALLS)), key


def test_revocation_round_trip_and_garbage() -> None:
    s = Setup()
    parsed = parse_revocation(s.revocation.encoded, s.store.identity)
    assert parsed == s.revocation
    assert revocation_key(parsed) == revocation_key(s.revocation)
    assert revocation_key(s.revocation).startswith("revoke:lane1:")
    for length in range(len(s.revocation.encoded)):
        with pytest.raises(RemoteError):
            parse_revocation(s.revocation.encoded[:length], s.store.identity)
    for i in range(len(s.revocation.encoded)):
        tampered = bytearray(s.revocation.encoded)
        tampered[i] ^= 0x01
        with pytest.raises(RemoteError):
            parse_revocation(bytes(tampered), s.store.identity)
    for value in (None, 5, "revoke", [b"x"]):
        with pytest.raises(RemoteError):
            parse_revocation(value, s.store.identity)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_revocation_raises_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteError):
        parse_revocation(data, Store().identity)


# -- revocations are immutable entries -----------------------------------------------------------


@pytest.mark.parametrize("replacement", ["junk", "deleted", "a later revocation"])
def test_overwritten_or_deleted_revocation_is_written_back(replacement: str) -> None:
    s = Setup()
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    key = revocation_key(s.revocation)
    value = {
        "junk": b"junk",
        "deleted": None,
        "a later revocation": issue_revocation(
            s.store.authority, s.store.store_id, LANE1, REVOKED_AT + 1_000
        ).encoded,
    }[replacement]
    update = overwrite(replica, CONFIG_DOC, key, value, client_id=666)
    change = replica.merge([(CONFIG_DOC, update)], NOW + 1)
    assert len(change.updates) >= 2
    assert stored_value(replica, CONFIG_DOC, key) == s.revocation.encoded
    assert_only_earlier_records_count(replica, s.records)
    assert_only_earlier_records_count(restarted(replica, now_ms=NOW + 2), s.records)
    fresh = s.store.observer()
    fresh.merge([(CONFIG_DOC, update)], NOW + 2)
    sync(replica, fresh, NOW + 2)
    assert fresh.digest() == replica.digest()
    assert_only_earlier_records_count(fresh, s.records)
