"""Sealed days: a complete day leaves memory and the exchange, and nothing it held is lost.

The replicas here exchange states the way ``core.node`` does: each state is made for the peer
it goes to (``Replica.state_vectors(peer_state)``), from the last state that peer sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanesync.core import sealdays, sealing, zreport
from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Role
from lanesync.core.ids import RecordId, Sku, TerminalId, ledger_doc
from lanesync.core.records import Receipt, Sale, SaleLine, Void, make_record
from lanesync.core.replica import Replica
from lanesync.core.sealdays import PeerState
from lanesync.core.sealing import SEALED_SUMMARY
from lanesync.core.wire import State, decode_message, encode_message
from lanesync.errors import RemoteError, UsageError

from .helpers import HOUR_MS, NOW, Store, crafted_update

DAY_MS = 86_400_000
TODAY = "2026-11-18"
MILK = Sku("milk")


class Archives:
    """A replica's sealed days as storage keeps them (the shell's ``sealed_days`` table)."""

    def __init__(self) -> None:
        self.archives: dict[str, bytes] = {}

    def attach(self, replica: Replica) -> None:
        replica.attach_archives(self.archives.__getitem__)

    def seal(self, replica: Replica, day: str) -> sealdays.Sealing:
        self.attach(replica)
        done = sealdays.seal_day(replica, day)
        self.archives[day] = done.archive
        return done


def sale(qty: int = 1, cents: int = 150) -> Sale:
    return Sale.of((SaleLine(MILK, qty, cents),))


def exchange(a: Replica, b: Replica, rounds: int = 3, now_ms: int = NOW) -> None:
    """Anti-entropy between two replicas as the node runs it: each sends its state made for
    the other, and answers the other's state with what it lacks."""
    last_a: Mapping[str, bytes] | None = None  # what a last heard of b
    last_b: Mapping[str, bytes] | None = None
    for _ in range(rounds):
        state_b = b.state_vectors(last_b)
        a.merge(list(b.updates_since(a.state_vectors(last_a)).items()), now_ms)
        last_a = state_b
        state_a = a.state_vectors(last_a)
        b.merge(list(a.updates_since(state_b).items()), now_ms)
        last_b = state_a


def closed_store() -> tuple[Store, list[Replica]]:
    """Two lanes that sold today, closed it, and hold each other's records."""
    store = Store()
    lanes = [store.terminal(f"lane{i}").replica for i in (1, 2)]
    for lane in lanes:
        lane.append(Receipt(MILK, 10), NOW)
        lane.append(sale(), NOW + 1)
    exchange(*lanes)
    for lane in lanes:
        lane.close_days(TODAY, NOW + HOUR_MS)
    exchange(*lanes)
    return store, lanes


def test_a_sealed_day_keeps_its_content_report_and_stock_and_leaves_the_state() -> None:
    _, (lane, other) = closed_store()
    digest, report = lane.digest(), zreport.z_report(lane, TODAY)
    assert report["complete"]
    assert not report["sealed"]
    stock = lane.views.on_hand()
    assert sealdays.sealable(lane, lambda day: True) == [TODAY]
    Archives().seal(lane, TODAY)
    assert ledger_doc(TODAY) not in lane.doc_names()
    assert lane.digest() == digest == other.digest()
    assert lane.views.on_hand() == stock == {MILK: 18}
    sealed = zreport.z_report(lane, TODAY)
    assert sealed["sealed"]
    assert sealed["report_hash"] == report["report_hash"]
    state = lane.state_vectors()
    assert ledger_doc(TODAY) not in state
    assert SEALED_SUMMARY in state
    assert zreport.days(lane)["days"] == [
        {"day": TODAY, "state": "sealed", "records": 6, "report_hash": report["report_hash"]}
    ]


def test_an_incomplete_day_is_neither_sealable_nor_sealed() -> None:
    store = Store()
    lanes = [store.terminal(f"lane{i}").replica for i in (1, 2)]
    for lane in lanes:
        lane.append(sale(), NOW)
    exchange(*lanes)
    lanes[0].close_days(TODAY, NOW + HOUR_MS)  # lane2 has not closed
    exchange(*lanes)
    assert sealdays.sealable(lanes[0], lambda day: True) == []
    with pytest.raises(UsageError, match="not complete"):
        sealdays.seal_day(lanes[0], TODAY)
    assert ledger_doc(TODAY) in lanes[0].doc_names()


def test_a_day_is_sealed_only_once_acknowledged() -> None:
    _, (lane, _) = closed_store()
    assert sealdays.sealable(lane, lambda day: False) == []


def test_a_restart_reads_sealed_days_from_their_archives_and_the_checkpoint_fits() -> None:
    _, (lane, _) = closed_store()
    archives = Archives()
    done = archives.seal(lane, TODAY)
    checkpoint = lane.checkpoint()
    again = Replica(lane.store, lane.client_id, lane.me)
    archives.attach(again)
    stored = {name: [lane.full_state(name)] for name in lane.doc_names()}
    again.restore(stored, (), NOW + HOUR_MS, checkpoint=checkpoint, sealed=[done.sealed])
    assert again.restored_from.startswith("loaded stock and sales from the checkpoint")
    assert again.digest() == lane.digest()
    assert again.views.on_hand() == lane.views.on_hand()
    # Without the checkpoint, the rebuild folds the archive too.
    folded = Replica(lane.store, lane.client_id, lane.me)
    archives.attach(folded)
    folded.restore(stored, (), NOW + HOUR_MS, sealed=[done.sealed])
    assert folded.restored_from.startswith("rebuilt")
    assert folded.views.on_hand() == lane.views.on_hand()
    assert folded.digest() == lane.digest()


def test_a_replica_that_never_held_a_sealed_day_gets_it_whole() -> None:
    store, (lane, _) = closed_store()
    Archives().seal(lane, TODAY)
    newcomer = store.observer()
    exchange(lane, newcomer)
    assert newcomer.digest() == lane.digest()
    assert (
        zreport.z_report(newcomer, TODAY)["report_hash"]
        == zreport.z_report(lane, TODAY)["report_hash"]
    )


def test_a_void_of_a_sealed_sale_reads_its_lines_from_the_archive() -> None:
    _, (lane, other) = closed_store()
    Archives().seal(lane, TODAY)
    sold = RecordId(TerminalId("lane1"), 2)
    lane.append(Void(sold), NOW + DAY_MS)
    assert lane.views.on_hand() == {MILK: 19}
    assert lane.views.is_voided(str(sold))
    exchange(lane, other, now_ms=NOW + DAY_MS)
    assert other.views.on_hand() == {MILK: 19}
    assert other.digest() == lane.digest()


def test_a_late_record_opens_the_sealed_day_again_and_the_day_is_amended() -> None:
    store, (lane, other) = closed_store()
    archives = {lane: Archives(), other: Archives()}
    first = zreport.z_report(lane, TODAY)["report_hash"]
    for replica in (lane, other):
        archives[replica].seal(replica, TODAY)
    # A lane nobody heard of sold today, away from the others, and closed its day.
    late = store.terminal("lane3").replica
    late.append(sale(2, 300), NOW + 2)
    late.close_days(TODAY, NOW + HOUR_MS)
    exchange(late, lane)
    assert ledger_doc(TODAY) in lane.doc_names()  # open again
    reopened = zreport.z_report(lane, TODAY)
    assert reopened["amended"]
    assert reopened["amended_from"] == [first]
    assert reopened["totals"]["sales"] == 3
    assert reopened["complete"]
    assert lane.views.on_hand() == {MILK: 16}
    archives[lane].seal(lane, TODAY)
    resealed = zreport.z_report(lane, TODAY)
    assert resealed["sealed"]
    assert resealed["amended_from"] == [first]
    assert resealed["report_hash"] != first
    # The other sealed lane hears it from the first: both sealed the day, with other contents.
    exchange(lane, other)
    assert other.digest() == lane.digest() == late.digest()
    assert other.views.on_hand() == {MILK: 16}
    assert zreport.z_report(other, TODAY)["report_hash"] == resealed["report_hash"]


def test_a_peer_holding_a_day_open_with_more_gets_asked_for_it() -> None:
    """The echo: a sealed side names its archived vector to a peer that holds the day open."""
    store, (lane, other) = closed_store()
    Archives().seal(lane, TODAY)
    late = store.terminal("lane3").replica
    late.append(sale(), NOW + 3)
    late.close_days(TODAY, NOW + HOUR_MS)
    exchange(late, other)  # other holds the day open, with lane3's records
    assert ledger_doc(TODAY) in other.doc_names()
    state = lane.state_vectors(other.state_vectors())
    assert ledger_doc(TODAY) in state  # echoed: other will send what lane lacks
    exchange(other, lane)
    assert lane.digest() == other.digest()


def test_acknowledgement_without_a_cloud_needs_every_connected_peer() -> None:
    _, (lane, other) = closed_store()
    covering = PeerState(False, other.state_vectors())
    assert sealdays.acknowledged(lane, TODAY, [covering])
    assert sealdays.acknowledged(lane, TODAY, [])  # alone: its own days
    assert not sealdays.acknowledged(lane, TODAY, [covering, PeerState(False, None)])
    lagging = {k: v for k, v in other.state_vectors().items() if k != ledger_doc(TODAY)}
    assert not sealdays.acknowledged(lane, TODAY, [PeerState(False, lagging)])
    Archives().seal(other, TODAY)
    assert sealdays.acknowledged(lane, TODAY, [PeerState(False, other.state_vectors())])


def test_acknowledgement_in_a_store_with_a_cloud_is_the_clouds() -> None:
    store, (lane, other) = closed_store()
    cloud = store.terminal("cloud", Role.CLOUD).replica
    exchange(cloud, lane)
    exchange(lane, other)
    lane_peer = PeerState(False, other.state_vectors())
    assert not sealdays.acknowledged(lane, TODAY, [lane_peer])  # the cloud has not said so
    assert sealdays.acknowledged(lane, TODAY, [PeerState(True, cloud.state_vectors())])
    Archives().seal(lane, TODAY)
    assert sealdays.acknowledged(other, TODAY, [PeerState(False, lane.state_vectors())])


def test_a_lane_told_of_a_cloud_waits_for_it_before_the_clouds_certificate_arrives() -> None:
    """A lane run with --cloud whose cloud never connected holds no cloud certificate: its
    connected lanes' word is not enough (the cloud has acknowledged nothing)."""
    store, (lane, other) = closed_store()
    assert not sealdays.has_cloud(lane)
    lane_peer = PeerState(False, other.state_vectors())
    assert sealdays.acknowledged(lane, TODAY, [lane_peer])  # a store without a cloud
    assert not sealdays.acknowledged(lane, TODAY, [lane_peer], cloud=True)
    assert not sealdays.acknowledged(lane, TODAY, [], cloud=True)  # alone: not its own days
    cloud = store.terminal("cloud", Role.CLOUD).replica
    exchange(lane, cloud)
    assert sealdays.acknowledged(lane, TODAY, [PeerState(True, cloud.state_vectors())], cloud=True)


def test_a_state_message_with_the_summary_round_trips_and_garbage_is_refused() -> None:
    _, (lane, _) = closed_store()
    Archives().seal(lane, TODAY)
    state = State(lane.state_vectors(), reply=True)
    assert decode_message(encode_message(state)) == state
    summary = sealing.decode_summary(state.vectors[SEALED_SUMMARY])
    assert summary.days() == frozenset({TODAY})


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_as_a_summary_decode_or_raise_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemoteError):
        sealing.decode_summary(data)


def test_a_summary_digest_is_the_same_whatever_order_days_sealed_in() -> None:
    days = [
        sealing.SealedDay(f"2026-11-{d:02d}", b"\x00", (b"", b""), bytes([d]) * 32, 1, "h")
        for d in (3, 1, 2, 7)
    ]
    one, two = sealing.summarize(days), sealing.summarize(reversed(days))
    assert one == two
    first, third, seventh = (date(2026, 11, d).toordinal() for d in (1, 3, 7))
    assert one.ranges == ((first, third), (seventh, seventh))


def test_a_state_file_names_every_sealed_day_so_a_bundle_brings_what_the_archive_lacks() -> None:
    """Offline sync: no echo comes back from a file, so a state file names every sealed day's
    vector, and a bundle made against it holds the records of that day the archive lacks."""
    store, (lane, other) = closed_store()
    Archives().seal(lane, TODAY)
    late = store.terminal("lane3").replica
    late.append(sale(), NOW + 3)
    late.close_days(TODAY, NOW + HOUR_MS)
    exchange(late, other)
    assert ledger_doc(TODAY) not in lane.state_vectors()
    state_file = lane.state_vectors(every_sealed=True)
    assert ledger_doc(TODAY) in state_file
    bundle = other.updates_since(state_file)
    assert ledger_doc(TODAY) in bundle
    lane.merge(list(bundle.items()), NOW + HOUR_MS)
    assert lane.digest() == other.digest()


# -- the views keep no hash of a sealed record ----------------------------------------------


def chain_base(replica: Replica, terminal: str) -> int:
    exported = {c[0]: c for c in replica.views.export_views()[0]}
    return int(exported[terminal][-1])


def test_the_views_drop_the_hashes_of_sealed_records_and_read_them_back() -> None:
    _, (lane, other) = closed_store()
    checkpoint_before = len(lane.checkpoint())
    archives = Archives()
    archives.seal(lane, TODAY)
    # lane1 holds seqs 1-3 (receipt, sale, day-end) in the sealed day: all but its head go.
    assert chain_base(lane, "lane1") == 2
    assert len(lane.checkpoint()) < checkpoint_before
    sold = RecordId(TerminalId("lane1"), 2)
    assert lane.views.accepted_key(sold) == other.views.accepted_key(sold)
    assert lane.views.accepted_hash(TerminalId("lane2"), 1) == other.views.accepted_hash(
        TerminalId("lane2"), 1
    )
    record = lane.find_record(sold)
    assert record is not None
    assert lane.views.is_accepted(record)
    assert lane.views.is_sale(str(sold))
    # A reopen from the checkpoint keeps the base, and reads hashes back from the archive.
    again = Replica(lane.store, lane.client_id, lane.me)
    archives.attach(again)
    stored = {name: [lane.full_state(name)] for name in lane.doc_names()}
    sealed = list(lane.sealed_days().values())
    again.restore(stored, (), NOW + HOUR_MS, checkpoint=lane.checkpoint(), sealed=sealed)
    assert again.restored_from.startswith("loaded stock and sales from the checkpoint")
    assert chain_base(again, "lane1") == 2
    assert again.views.accepted_key(sold) == other.views.accepted_key(sold)
    again.append(Void(sold), NOW + DAY_MS)
    assert again.views.on_hand() == {MILK: 19}


def test_a_fork_at_a_sealed_seq_is_found_as_on_a_replica_that_never_sealed() -> None:
    _, (lane, other) = closed_store()
    Archives().seal(lane, TODAY)
    # lane1's key signs a second record at seq 2 (a restored copy selling again): a fork
    # below the head, on a seq whose hash the sealed replica no longer holds.
    fork = make_fork(lane, seq=2)
    for replica in (lane, other):
        replica.merge(list(fork.items()), NOW + HOUR_MS)
    broken = other.views.problems()["broken_chains"]
    assert [b["terminal"] for b in broken] == ["lane1"]
    assert lane.views.problems()["broken_chains"] == broken
    assert lane.views.on_hand() == other.views.on_hand()
    assert lane.digest() == other.digest()


def make_fork(lane: Replica, seq: int) -> dict[str, bytes]:
    """An update holding a second record of lane's terminal at ``seq``, validly signed."""
    assert lane.me is not None
    previous = lane.views.accepted_hash(lane.me.certificate.terminal_id, seq - 1)
    assert previous is not None
    record = make_record(
        lane.me.key, lane.me.certificate.terminal_id, seq, previous, Hlc(NOW + 7, 0), sale(9)
    )
    doc = ledger_doc(record.hlc.business_day(lane.tz))
    return {doc: crafted_update(RECORDS_ROOT, {record.key: record.encoded})}


def test_lanes_that_sealed_a_day_apart_converge_whatever_else_each_sealed() -> None:
    """Found by black-box QA: two lanes that never heard of each other sell on one day and
    each seals it alone (each its own version); one has also sealed two later days. Their
    sealed sets differ, so the digests of the common days must still be compared, or neither
    ever sends the other its version of the day."""
    store = Store()
    p = store.terminal("p", Role.MANAGER).replica
    q = store.terminal("q").replica
    p.append(Receipt(MILK, 10), NOW)
    p.append(sale(), NOW + 1)
    q.append(sale(2), NOW + 2)
    later = NOW + 2 * DAY_MS
    p.close_days(None, later)  # today and the two days after it (empty), p alone
    q.close_days(TODAY, NOW + HOUR_MS)
    p_archives, q_archives = Archives(), Archives()
    p_archives.attach(p)
    q_archives.attach(q)
    for day in sealdays.sealable(p, lambda _day: True):
        p_archives.seal(p, day)
    for day in sealdays.sealable(q, lambda _day: True):
        q_archives.seal(q, day)
    assert len(p.sealed_days()) == 3
    assert list(q.sealed_days()) == [TODAY]
    exchange(p, q, rounds=6, now_ms=later)
    assert p.digest() == q.digest()
    assert p.views.on_hand() == q.views.on_hand() == {MILK: 7}
    report = zreport.z_report(p, TODAY)
    assert report["totals"]["sales"] == 2
    assert report["report_hash"] == zreport.z_report(q, TODAY)["report_hash"]


def test_a_damaged_archive_is_skipped_and_named_and_the_rest_is_still_sent() -> None:
    store, (lane, _) = closed_store()
    done = Archives().seal(lane, TODAY)
    reopened = Replica(lane.store, lane.client_id, lane.me)
    reopened.attach_archives({TODAY: b"not an archive"}.__getitem__)  # a damaged database
    stored = {name: [lane.full_state(name)] for name in lane.doc_names()}
    reopened.restore(stored, (), NOW + HOUR_MS, checkpoint=lane.checkpoint(), sealed=[done.sealed])
    newcomer = store.observer()
    sent = reopened.updates_since(newcomer.state_vectors())
    assert ledger_doc(TODAY) not in sent
    assert "config" in sent
    assert reopened.damaged_archives() == {ledger_doc(TODAY)}


def test_an_entry_that_can_never_count_does_not_hold_a_day_open() -> None:
    """A day holding a record under a key not its own (a misbehaving peer put it there) is
    still sealed: the entry never counts, so the day's report cannot change by it."""
    _, (lane, _) = closed_store()
    assert lane.me is not None
    stray = make_record(
        lane.me.key, lane.me.certificate.terminal_id, 9, bytes(32), Hlc(NOW + 9, 0), sale()
    )
    update = crafted_update(RECORDS_ROOT, {"lane1:9#00": stray.encoded})
    lane.merge([(ledger_doc(TODAY), update)], NOW + HOUR_MS)
    assert sealdays.held_back(lane, TODAY) == []
    assert sealdays.sealable(lane, lambda _day: True) == [TODAY]
