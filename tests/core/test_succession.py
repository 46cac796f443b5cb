"""Re-key and replacement: a certificate that names the chain position where its key takes over.

lane1's old key signs seqs 1-3 (a receipt of 100 A, sales of 1 and 2). A re-key certificate
gives lane1 a new key from seq 4 on, linked to seq 3: the chain goes on without a fork, and the
old key (lost or stolen) signs nothing more that counts. A replacement certificate gives a new
terminal (lane1b) its own chain and closes lane1's at seq 3.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core import zreport
from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Revocation,
    Role,
    Succession,
    issue_certificate,
    issue_revocation,
    parse_certificate,
    public_key_of,
)
from lanesync.core.ids import CONFIG_DOC, Sku, TerminalId
from lanesync.core.records import Receipt, Record, Sale, SaleLine, make_record
from lanesync.core.replica import Replica
from lanesync.core.reports import integrity
from lanesync.errors import ConfigError, RemoteError

from .helpers import (
    CERT_NOT_AFTER,
    NOW,
    TODAY_DOC,
    Store,
    config_update,
    crafted_update,
    enrolled_observer,
    keyed,
    put_records,
    record_chain,
    restarted,
    sync,
)

LANE1 = TerminalId("lane1")
A = Sku("A")


def sale(qty: int) -> Sale:
    return Sale.of((SaleLine(A, qty, 100),))


def successor_cert(
    store: Store, name: str, key: SigningKey, succeeds: Succession, not_after: int = CERT_NOT_AFTER
) -> Certificate:
    return issue_certificate(
        store.authority,
        store.store_id,
        TerminalId(name),
        public_key_of(key),
        Role.CASHIER,
        0,
        not_after,
        succeeds,
    )


class Lane:
    def __init__(self) -> None:
        self.store = Store()
        self.old_key = SigningKey.generate()
        self.old_cert = self.store.certificate("lane1", self.old_key)
        self.old = record_chain(self.old_key, "lane1", [Receipt(A, 100), sale(1), sale(2)])
        self.at = Succession(LANE1, 3, self.old[-1].hash)
        self.new_key = SigningKey.generate()
        self.rekey = successor_cert(self.store, "lane1", self.new_key, self.at)

    def next_record(self, key: SigningKey, qty: int, after: Record, wall: int) -> Record:
        return make_record(key, LANE1, after.seq + 1, after.hash, Hlc(wall, 0), sale(qty))


def test_a_succession_certificate_round_trips_and_plain_ones_keep_format_1() -> None:
    lane = Lane()
    parsed = parse_certificate(lane.rekey.encoded, lane.store.identity)
    assert parsed == lane.rekey
    assert parsed.succeeds == lane.at
    assert parsed.is_rekey
    assert parsed.first_seq == 4
    plain = parse_certificate(lane.old_cert.encoded, lane.store.identity)
    assert plain.succeeds is None
    assert plain.first_seq == 1
    assert lane.old_cert.encoded[1] == 1  # msgpack fixarray, then format 1


def test_a_malformed_succession_is_refused() -> None:
    lane = Lane()
    bad = successor_cert(lane.store, "lane1", lane.new_key, Succession(LANE1, 3, b"short"))
    with pytest.raises(RemoteError, match="unknown format"):
        parse_certificate(bad.encoded, lane.store.identity)


# -- re-key --------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_rekeyed_chain_goes_on_without_a_fork_and_the_old_key_counts_no_more(
    data: st.DataObject,
) -> None:
    """Both certificates, the old chain, the new key's seq 4 and 5 and the old key's own seq 4
    (signed after the re-key, e.g. by a thief) arrive in any order."""
    lane = Lane()
    new4 = lane.next_record(lane.new_key, 3, lane.old[-1], NOW + 10)
    new5 = lane.next_record(lane.new_key, 4, new4, NOW + 11)
    stolen4 = lane.next_record(lane.old_key, 50, lane.old[-1], NOW + 12)
    updates = {
        "old certificate": (CONFIG_DOC, config_update(lane.old_cert, client_id=3_000)),
        "re-key certificate": (CONFIG_DOC, config_update(lane.rekey, client_id=3_001)),
    }
    for n, record in enumerate([*lane.old, new4, new5, stolen4]):
        update = crafted_update(RECORDS_ROOT, keyed(record), client_id=5_000 + n)
        updates[f"{record.id}#{record.hash.hex()[:6]}"] = (TODAY_DOC, update)
    schedule = data.draw(st.permutations(list(updates)), label="arrival order")
    replica = lane.store.observer()
    for label in schedule:
        replica.merge([updates[label]], NOW)
    views = replica.views
    assert views.on_hand() == {A: 100 - 1 - 2 - 3 - 4}
    assert views.head(LANE1).seq == 5
    assert not views.is_accepted(stolen4)
    assert views.problems()["broken_chains"] == []
    assert [p["key"] for p in views.problems()["unverified"]] == [stolen4.key]
    assert restarted(replica).views.on_hand() == views.on_hand()


def test_a_rekeyed_lane_writes_after_the_old_chain_and_the_old_key_may_write_no_more() -> None:
    lane = Lane()
    old = lane.store.terminal("lane1", key=lane.old_key, cert=lane.old_cert)
    put_records(old.replica, TODAY_DOC, keyed(*lane.old), client_id=10)
    new = lane.store.terminal("lane1", key=lane.new_key, cert=lane.rekey)
    with pytest.raises(ConfigError, match="signs from seq 4 on, and it holds its chain only up"):
        new.replica.append(sale(3), NOW + 10)
    sync(old.replica, new.replica)
    record, _ = new.replica.append(sale(3), NOW + 10)
    assert (record.seq, record.prev_hash) == (4, lane.old[-1].hash)
    assert new.replica.views.on_hand() == {A: 94}
    sync(new.replica, old.replica)
    assert old.replica.views.on_hand() == {A: 94}
    with pytest.raises(ConfigError, match="re-keyed: another key signs its records from seq 4"):
        old.replica.append(sale(1), NOW + 20)
    report = integrity(old.replica)
    assert report["ok"] is True
    assert report["successions"] == [
        {
            "terminal": "lane1",
            "kind": "rekey",
            "predecessor": "lane1",
            "after_seq": 3,
            "after_hash": lane.old[-1].hash.hex(),
            "key_fingerprint": lane.rekey.key_fingerprint,
        }
    ]


# -- replacement ---------------------------------------------------------------------------------


def test_a_replacement_closes_the_old_chain_and_starts_its_own() -> None:
    lane = Lane()
    old = lane.store.terminal("lane1", key=lane.old_key, cert=lane.old_cert)
    put_records(old.replica, TODAY_DOC, keyed(*lane.old), client_id=10)
    late = lane.next_record(lane.old_key, 50, lane.old[-1], NOW + 12)
    cert = successor_cert(lane.store, "lane1b", lane.new_key, lane.at)
    assert not cert.is_rekey
    assert cert.first_seq == 1
    replacement = Replica(lane.store.identity, 77, LocalIdentity(cert, lane.new_key))
    replacement.restore({}, set(), NOW)
    replacement.merge([(CONFIG_DOC, config_update(lane.old_cert))], NOW)
    put_records(replacement, TODAY_DOC, keyed(*lane.old, late), client_id=11)
    record, _ = replacement.append(sale(3), NOW + 20)
    assert record.id.seq == 1
    views = replacement.views
    assert views.on_hand() == {A: 100 - 1 - 2 - 3}
    assert not views.is_accepted(late)
    assert views.problems()["closed_chains"] == [{"terminal": LANE1, "closed_at": 3, "refused": 1}]
    # the old lane learns it was replaced (after it counted its own late record) and stops
    sync(replacement, old.replica)
    assert old.replica.views.on_hand() == views.on_hand()
    with pytest.raises(ConfigError, match="lane1b replaces it after seq 3"):
        old.replica.append(sale(1), NOW + 30)
    (succession,) = integrity(old.replica)["successions"]
    assert succession["kind"] == "replacement"
    assert (succession["terminal"], succession["predecessor"]) == ("lane1b", "lane1")
    # lane1 sold today and can never close the day, but its chain ends at seq 3, held here:
    # its figures are final, and the day is complete once its replacement closes it.
    replacement.close_days(None, NOW + 40)
    day = TODAY_DOC.removeprefix("ledger/")
    report = zreport.z_report(replacement, day)
    assert (report["complete"], report["missing_terminals"]) == (True, [])
    assert [t["terminal_id"] for t in report["terminals"]] == ["lane1", "lane1b"]


# -- renewal -------------------------------------------------------------------------------------


def test_a_renewed_certificate_for_the_same_key_keeps_the_chain_counting() -> None:
    lane = Lane()
    expiring = lane.store.certificate("lane1", lane.old_key)
    short = issue_certificate(
        lane.store.authority,
        lane.store.store_id,
        LANE1,
        public_key_of(lane.old_key),
        Role.CASHIER,
        0,
        NOW + 5,
    )
    assert expiring.not_after_ms > short.not_after_ms
    late = lane.next_record(lane.old_key, 3, lane.old[-1], NOW + 100)
    replica = enrolled_observer(lane.store, short)
    put_records(replica, TODAY_DOC, keyed(*lane.old, late), client_id=10)
    assert not replica.views.is_accepted(late)  # signed after the short certificate lapsed
    replica.merge([(CONFIG_DOC, config_update(expiring))], NOW)
    assert replica.views.is_accepted(late)
    assert replica.views.on_hand() == {A: 94}


def test_a_rekey_before_the_first_record_closes_the_old_key_too() -> None:
    lane = Lane()
    rekey = successor_cert(lane.store, "lane1", lane.new_key, Succession(LANE1, 0, bytes(32)))
    assert rekey.first_seq == 1
    replica = enrolled_observer(lane.store, lane.old_cert, rekey)
    put_records(replica, TODAY_DOC, keyed(lane.old[0]), client_id=10)  # the old key's seq 1
    assert not replica.views.is_accepted(lane.old[0])
    new = record_chain(lane.new_key, "lane1", [Receipt(A, 7)])
    put_records(replica, TODAY_DOC, keyed(*new), client_id=11)
    assert replica.views.on_hand() == {A: 7}


def test_of_two_replacements_the_lower_closure_holds_whatever_their_order() -> None:
    lane = Lane()
    at_two = Succession(LANE1, 2, lane.old[1].hash)
    first = successor_cert(lane.store, "lane1b", SigningKey.generate(), lane.at)
    second = successor_cert(lane.store, "lane1c", SigningKey.generate(), at_two)
    for order in ((first, second), (second, first)):
        replica = enrolled_observer(lane.store, lane.old_cert)
        put_records(replica, TODAY_DOC, keyed(*lane.old), client_id=10)
        for n, cert in enumerate(order):
            replica.merge([(CONFIG_DOC, config_update(cert, client_id=3_000 + n))], NOW)
        assert replica.views.on_hand() == {A: 99}
        assert replica.views.problems()["closed_chains"] == [
            {"terminal": LANE1, "closed_at": 2, "refused": 1}
        ]


# -- a re-keyed terminal and key-scoped revocations ----------------------------------------------


def revoke_key(lane: Lane, key: SigningKey, after: Record) -> Revocation:
    return issue_revocation(
        lane.store.authority,
        lane.store.store_id,
        LANE1,
        after.seq,
        after.hash,
        public_key_of(key),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_key_scoped_revocation_of_the_old_key_leaves_the_rekeyed_chain_whole(
    data: st.DataObject,
) -> None:
    """The old key was stolen: the store re-keys lane1 at seq 3 and revokes the old key alone
    after seq 3. The old chain and the new key's records count; what the thief signs (at seq 4,
    and at seq 6 on top of the new key's records) is refused, as revoked, in any order."""
    lane = Lane()
    new4 = lane.next_record(lane.new_key, 3, lane.old[-1], NOW + 10)
    new5 = lane.next_record(lane.new_key, 4, new4, NOW + 11)
    stolen4 = lane.next_record(lane.old_key, 50, lane.old[-1], NOW + 12)
    stolen6 = lane.next_record(lane.old_key, 60, new5, NOW + 13)
    revocation = revoke_key(lane, lane.old_key, lane.old[-1])
    updates = {
        "old certificate": (CONFIG_DOC, config_update(lane.old_cert, client_id=3_000)),
        "re-key certificate": (CONFIG_DOC, config_update(lane.rekey, client_id=3_001)),
        "revocation": (CONFIG_DOC, config_update(revocation, client_id=3_002)),
    }
    for n, record in enumerate([*lane.old, new4, new5, stolen4, stolen6]):
        update = crafted_update(RECORDS_ROOT, keyed(record), client_id=5_000 + n)
        updates[f"{record.id}#{record.hash.hex()[:6]}"] = (TODAY_DOC, update)
    schedule = data.draw(st.permutations(list(updates)), label="arrival order")
    replica = lane.store.observer()
    for label in schedule:
        replica.merge([updates[label]], NOW)
    views = replica.views
    assert views.on_hand() == {A: 100 - 1 - 2 - 3 - 4}
    assert views.head(LANE1).seq == 5
    assert not views.is_revoked(LANE1, NOW)
    assert views.revokes(lane.old_cert, NOW)
    assert not views.revokes(lane.rekey, NOW)
    problems = views.problems()
    assert problems["unverified"] == problems["broken_chains"] == []
    assert sorted(p["key"] for p in problems["revoked"]) == sorted([stolen4.key, stolen6.key])
    assert restarted(replica).views.on_hand() == views.on_hand()


def test_a_revoked_successor_key_does_not_hand_the_chain_back_to_the_old_key() -> None:
    """The new key is revoked after seq 4: its seq 5 is refused, and the old key, which the
    re-key closed at seq 3, cannot sign seq 5 instead (with one certificate left admitted, it
    is still the re-key that decides which seqs the old key covers)."""
    lane = Lane()
    new4 = lane.next_record(lane.new_key, 3, lane.old[-1], NOW + 10)
    new5 = lane.next_record(lane.new_key, 4, new4, NOW + 11)
    old5 = lane.next_record(lane.old_key, 50, new4, NOW + 12)
    revocation = revoke_key(lane, lane.new_key, new4)
    replica = enrolled_observer(lane.store, lane.old_cert, lane.rekey)
    replica.merge([(CONFIG_DOC, config_update(revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*lane.old, new4, new5, old5), client_id=10)
    views = replica.views
    assert views.head(LANE1).seq == 4
    assert views.on_hand() == {A: 100 - 1 - 2 - 3}
    assert not views.is_accepted(old5)
    problems = views.problems()
    assert [p["key"] for p in problems["revoked"]] == [new5.key]
    assert [p["key"] for p in problems["unverified"]] == [old5.key]
