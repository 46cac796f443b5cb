"""Sealing a replica's days (core.sealdays): a late record, or a store decision that changes
what a sealed day counts, opens it again, and the day is sealed again naming the earlier
report."""

from __future__ import annotations

import json

import pytest

from lanesync.core import archive_codec, sealdays, zreport
from lanesync.core.change import Change
from lanesync.core.forks import issue_fork_resolution
from lanesync.core.identity import Role, issue_revocation
from lanesync.core.ids import Sku, TerminalId, ledger_doc
from lanesync.core.records import PriceChange, Sale, SaleLine, Void
from lanesync.core.replica import Replica
from lanesync.core.sealdays import Sealing
from lanesync.errors import UsageError

from .helpers import NOW, Store, sync, sync_all

DAY_MS = 86_400_000
YESTERDAY = "2026-11-17"
MILK = Sku("milk")


def sale(qty: int) -> Sale:
    return Sale.of((SaleLine(MILK, qty, 100),))


def attached_archives(replica: Replica) -> dict[str, bytes]:
    """Where ``replica`` reads its sealed days' archives: a dict standing in for storage."""
    archives: dict[str, bytes] = {}
    replica.attach_archives(archives.__getitem__)
    return archives


def seal(replica: Replica, day: str, archives: dict[str, bytes]) -> sealdays.Sealing:
    """Seal ``day`` on ``replica`` and keep its archive where the replica reads it."""
    sealed = sealdays.seal_day(replica, day)
    archives[day] = sealed.archive
    return sealed


def resolve_fork(store: Store, replica: Replica, terminal: TerminalId) -> Change:
    """What ``lanesync store resolve-fork`` does: resolve ``terminal``'s open fork as
    ``replica`` holds it and publish the resolution through it."""
    fork = replica.open_fork(terminal)
    resolution = issue_fork_resolution(
        store.authority, store.store_id, fork.terminal, fork.fork_seq, fork.base_hash,
        fork.branches,
    )  # fmt: skip
    return replica.publish_fork_resolution(resolution, NOW)


def test_a_late_record_opens_a_sealed_day_counts_and_is_sealed_again_as_amended() -> None:
    store = Store()
    lane1, lane2, lane3 = (store.terminal(n) for n in ("lane1", "lane2", "lane3"))
    sync_all([lane1.replica, lane2.replica, lane3.replica])  # certificates only
    lane1.replica.append(sale(1), NOW - DAY_MS)
    lane2.replica.append(sale(2), NOW - DAY_MS)
    lane1.replica.close_days(YESTERDAY, NOW)
    lane2.replica.close_days(YESTERDAY, NOW)
    sync_all([lane1.replica, lane2.replica])
    # lane3 sold that day too, away from the others: they do not know it wrote anything.
    lane3.replica.append(sale(4), NOW - DAY_MS)
    lane3.replica.close_days(YESTERDAY, NOW)
    replica = lane1.replica
    archives = attached_archives(replica)
    assert sealdays.sealable(replica, lambda day: True) == [YESTERDAY]
    first = seal(replica, YESTERDAY, archives)
    owed = replica.unpersisted_updates

    # lane3 comes back: the state lane1 sends it names the sealed day's vector (the echo to a
    # peer that holds the day open), so lane3 answers with its records of the day.
    vectors = replica.state_vectors(lane3.replica.state_vectors())
    change = replica.merge(list(lane3.replica.updates_since(vectors).items()), NOW)
    assert change.unsealed == [ledger_doc(YESTERDAY)]
    replica.persisted([change])
    # The archive leading the change is owed once: once stored, nothing is (a count left
    # above zero stops every later seal and checkpoint of the terminal).
    assert replica.unpersisted_updates == owed
    assert replica.views.on_hand()[MILK] == -7

    report = zreport.z_report(replica, YESTERDAY)
    assert report["complete"] is True
    assert report["totals"]["sales"] == 3
    assert report["amended_from"] == [first.sealed.report_hash]
    again = seal(replica, YESTERDAY, archives)
    assert again.sealed.amended_from == (first.sealed.report_hash,)
    assert again.sealed.report_hash == report["report_hash"] != first.sealed.report_hash
    assert replica.views.on_hand()[MILK] == -7


def test_a_day_holding_a_forked_lanes_records_is_not_sealed_before_the_resolution() -> None:
    """The fork's resolution arrives in the config document, not in the day: a day sealed
    before it would keep a report that no longer holds, and no late record would open it."""
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    twin = store.terminal("lane3")
    other = store.terminal("lane3", key=twin.key, cert=twin.cert)  # restored from a backup
    replicas = [lane1.replica, lane2.replica, twin.replica, other.replica]
    sync_all(replicas)  # certificates only
    twin.replica.append(sale(1), NOW - DAY_MS)
    other.replica.append(sale(2), NOW - DAY_MS)  # the same seq 1: a fork
    lane1.replica.append(sale(4), NOW - DAY_MS)
    lane2.replica.append(sale(8), NOW - DAY_MS)
    lane1.replica.close_days(YESTERDAY, NOW)
    lane2.replica.close_days(YESTERDAY, NOW)
    sync_all(replicas)
    replica = lane1.replica
    # lane3's first record does not count while its chain is forked: it is not waited for.
    assert zreport.z_report(replica, YESTERDAY)["complete"] is True
    assert sealdays.held_back(replica, YESTERDAY) == ["lane3:1", "lane3:1"]
    assert sealdays.sealable(replica, lambda day: True) == []
    with pytest.raises(UsageError, match="may count later"):
        sealdays.seal_day(replica, YESTERDAY)
    before = zreport.z_report(replica, YESTERDAY)["report_hash"]

    resolve_fork(store, replica, twin.name)
    # Both branches count now, and the report with them: what a seal before would have hidden.
    assert sealdays.held_back(replica, YESTERDAY) == []
    after = zreport.z_report(replica, YESTERDAY)
    assert after["report_hash"] != before
    assert after["totals"]["sales"] == 4


def _sealed_with_lane2s_sale(store: Store) -> tuple[Replica, Replica, dict[str, bytes], Sealing]:
    """lane1 seals yesterday counting a sale of lane2 (seq 1, its day-end seq 2); lane2 has
    sold today too (seq 3). Returns lane1's replica, lane2's, lane1's archives and the seal."""
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    sync_all([lane1.replica, lane2.replica])  # certificates only
    lane1.replica.append(sale(1), NOW - DAY_MS)
    lane2.replica.append(sale(2), NOW - DAY_MS)
    lane1.replica.close_days(YESTERDAY, NOW)
    lane2.replica.close_days(YESTERDAY, NOW)
    lane2.replica.append(sale(4), NOW)
    sync_all([lane1.replica, lane2.replica])
    replica = lane1.replica
    archives = attached_archives(replica)
    sealed = seal(replica, YESTERDAY, archives)
    assert json.loads(sealed.report)["totals"]["sales"] == 2
    return replica, lane2.replica, archives, sealed


def _revoke(store: Store, replica: Replica, after_seq: int) -> Change:
    """The store revokes lane2 with a cut after ``after_seq``, published on another replica
    and merged into ``replica`` (a store decision that reaches it after its seal)."""
    office = store.observer()
    sync(replica, office)
    revocation = issue_revocation(store.authority, store.store_id, TerminalId("lane2"), after_seq)
    office.publish_revocation(revocation, NOW)
    return sync(office, replica)


def test_a_sealed_day_a_later_revocation_recounts_is_opened_again_and_sealed_amended() -> None:
    """lane2's cut after seq 0 withdraws its sale and day-end of a day lane1 sealed: the day is
    opened again as a late record opens one, and sealed again with the new report, amended."""
    store = Store()
    replica, _, archives, first = _sealed_with_lane2s_sale(store)
    owed = replica.unpersisted_updates

    change = _revoke(store, replica, after_seq=0)
    assert change.unsealed == [ledger_doc(YESTERDAY)]
    # The archive leads the change and is owed once, like a late record's.
    assert (ledger_doc(YESTERDAY), archive_codec.decompress(first.archive)) in change.updates
    replica.persisted([change])
    assert replica.unpersisted_updates == owed
    assert YESTERDAY not in replica.sealed_days()

    report = zreport.z_report(replica, YESTERDAY)
    assert (report["complete"], report["sealed"]) == (True, False)
    assert report["totals"]["sales"] == 1
    assert report["amended_from"] == [first.sealed.report_hash]
    again = seal(replica, YESTERDAY, archives)
    assert again.sealed.amended_from == (first.sealed.report_hash,)
    assert again.sealed.report_hash == report["report_hash"] != first.sealed.report_hash


def test_a_revocation_that_changes_no_sealed_day_opens_none() -> None:
    """A cut after lane2's day-end withdraws only today's sale: the sealed day still counts
    what it was sealed with and stays sealed."""
    store = Store()
    replica, _, _, first = _sealed_with_lane2s_sale(store)
    assert replica.views.is_sale("lane2:3")

    change = _revoke(store, replica, after_seq=2)
    assert change.unsealed == []
    assert not replica.views.is_sale("lane2:3")
    assert replica.sealed_days()[YESTERDAY] == first.sealed
    assert zreport.z_report(replica, YESTERDAY)["report_hash"] == first.sealed.report_hash


def test_a_sealed_void_of_a_sale_a_later_revocation_withdraws_opens_its_day_again() -> None:
    """The void's day holds no record of the revoked lane (its chain already ended there): it
    is found through the voided sale, whose day is at or before the void's."""
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    sync_all([lane1.replica, lane2.replica])  # certificates only
    before = "2026-11-16"
    sold, _ = lane2.replica.append(sale(2), NOW - 2 * DAY_MS)
    lane2.replica.close_days(before, NOW - DAY_MS)
    lane1.replica.append(sale(1), NOW - 2 * DAY_MS)
    lane1.replica.close_days(before, NOW - DAY_MS)
    replica = lane1.replica
    # The store ends lane2's chain after its close: it owes no close of the next day.
    _revoke(store, replica, after_seq=2)
    sync_all([replica, lane2.replica])
    replica.append(Void(sold.id), NOW - DAY_MS)
    replica.close_days(YESTERDAY, NOW)
    archives = attached_archives(replica)
    for day in sealdays.sealable(replica, lambda day: True):
        seal(replica, day, archives)
    void_day = replica.sealed_days()[YESTERDAY]
    assert not any(terminal == "lane2" for terminal, _, _ in void_day.seqs)

    change = _revoke(store, replica, after_seq=0)
    assert change.unsealed == [ledger_doc(before), ledger_doc(YESTERDAY)]
    report = zreport.z_report(replica, YESTERDAY)
    assert report["amended_from"] == [void_day.report_hash]
    assert report["report_hash"] != void_day.report_hash


def test_a_fork_found_after_a_seal_opens_the_day_until_its_resolution() -> None:
    """lane3's first branch counted in a day lane1 sealed; the second branch, sold today by
    lane3 restored from a backup, reaches lane1 later: the first stops counting (the fork is
    open), so the day is opened again and held until the store resolves the fork (it would have
    kept a report no replica could fold while the fork was open)."""
    store = Store()
    lane1, twin = store.terminal("lane1"), store.terminal("lane3")
    other = store.terminal("lane3", key=twin.key, cert=twin.cert)  # restored from a backup
    sync_all([lane1.replica, twin.replica, other.replica])  # certificates only
    for lane in (lane1, twin):
        lane.replica.append(sale(1), NOW - DAY_MS)
        lane.replica.close_days(YESTERDAY, NOW)
    sync_all([lane1.replica, twin.replica])
    replica = lane1.replica
    archives = attached_archives(replica)
    first = seal(replica, YESTERDAY, archives)
    other.replica.append(sale(2), NOW)  # lane3:1 again, today

    change = sync(other.replica, replica)
    assert change.unsealed == [ledger_doc(YESTERDAY)]
    assert sealdays.held_back(replica, YESTERDAY) == ["lane3:1", "lane3:2"]
    assert sealdays.sealable(replica, lambda day: True) == []

    resolve_fork(store, replica, twin.name)
    # Both branches count: the day counts what it was sealed with again (the second branch's
    # sale is today's), so sealing it again amends nothing.
    report = zreport.z_report(replica, YESTERDAY)
    assert report["totals"]["sales"] == 2
    assert report["report_hash"] == first.sealed.report_hash
    assert "amended_from" not in report
    assert sealdays.sealable(replica, lambda day: True) == [YESTERDAY]


def test_a_price_a_fork_resolution_counts_opens_the_day_it_belongs_to() -> None:
    """lane3 (a manager) set a price yesterday, then was restored from a backup and signed a
    second lane3:1 today: its chain forks at seq 1 and the price counts nowhere, so lane1
    seals yesterday without it. The price is in the catalog, not in yesterday's document, yet
    it belongs to yesterday's report: the resolution that counts it opens that day again (the
    simulator's seed 5057 of --lanes 6 --ops 50 --fault-ms 12000)."""
    store = Store()
    lane1, manager = store.terminal("lane1"), store.terminal("lane3", Role.MANAGER)
    restored = store.terminal("lane3", key=manager.key, cert=manager.cert)
    sync_all([lane1.replica, manager.replica, restored.replica])  # certificates only
    manager.replica.append(PriceChange(MILK, 250), NOW - DAY_MS)
    restored.replica.append(sale(1), NOW)  # lane3:1 again, today
    lane1.replica.append(sale(1), NOW - DAY_MS)
    lane1.replica.close_days(YESTERDAY, NOW)
    replica = lane1.replica
    sync(manager.replica, replica)
    sync(restored.replica, replica)
    assert replica.views.is_broken(manager.name) is not None
    archives = attached_archives(replica)
    first = seal(replica, YESTERDAY, archives)
    assert [t["terminal_id"] for t in json.loads(first.report)["terminals"]] == ["lane1"]

    change = resolve_fork(store, replica, manager.name)
    assert change.unsealed == [ledger_doc(YESTERDAY)]
    report = zreport.z_report(replica, YESTERDAY)
    assert [t["terminal_id"] for t in report["terminals"]] == ["lane1", "lane3"]
    assert report["amended_from"] == [first.sealed.report_hash]


def test_the_cloud_acknowledges_a_day_it_holds_by_itself_and_a_lane_does_not() -> None:
    """The cloud is the acknowledger (``sealdays.cloud_acknowledges``): its replica seals a
    complete day it holds on its own word, with no peer connected; a lane's replica never
    counts as acknowledging, and a day the cloud does not hold is not acknowledged."""
    store = Store()
    lane1, lane2 = (store.terminal(n) for n in ("lane1", "lane2"))
    cloud = store.terminal("cloud", Role.CLOUD)
    sync_all([lane1.replica, lane2.replica, cloud.replica])  # certificates only
    lane1.replica.append(sale(1), NOW - DAY_MS)
    lane2.replica.append(sale(2), NOW - DAY_MS)
    lane1.replica.close_days(YESTERDAY, NOW)
    sync_all([lane1.replica, lane2.replica, cloud.replica])
    replica = cloud.replica

    def acknowledged(day: str) -> bool:
        return sealdays.cloud_acknowledges(replica, day)

    assert not sealdays.cloud_acknowledges(lane1.replica, YESTERDAY)
    assert not acknowledged("2026-11-10")  # held nowhere here
    assert sealdays.sealable(replica, acknowledged) == []  # lane2 has not closed it
    lane2.replica.close_days(YESTERDAY, NOW)
    sync(lane2.replica, replica)
    assert acknowledged(YESTERDAY)
    assert sealdays.sealable(replica, acknowledged) == [YESTERDAY]
    archives = attached_archives(replica)
    sealed = seal(replica, YESTERDAY, archives)
    assert sealed.sealed.records == 4  # two sales and two day-ends
    # Sealed: no longer held open, so not acknowledged again (nothing to seal twice).
    assert not acknowledged(YESTERDAY)
    assert sealdays.sealable(replica, acknowledged) == []
