"""The store's Z-report: folded from records, the same on every replica holding them."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanesync.core import dayclose, reports, zreport
from lanesync.core.identity import Certificate, Role, issue_revocation
from lanesync.core.ids import RecordId, Sku
from lanesync.core.records import DayEnd, PriceChange, Receipt, Record, Sale, SaleLine, Void
from lanesync.core.replica import Replica
from lanesync.errors import UsageError

from .helpers import (
    HOUR_MS,
    NOW,
    Store,
    enrolled_observer,
    keyed,
    put_records,
    record_chain,
    sync,
    sync_all,
)

DAY_MS = 86_400_000
TODAY = "2026-11-18"
YESTERDAY = "2026-11-17"
MILK, BREAD = Sku("milk"), Sku("bread")
KEYS = {
    "store_id",
    "day",
    "complete",
    "missing_terminals",
    "terminals",
    "skus",
    "totals",
    "report_hash",
    "sealed",
}


def sale(*lines: tuple[Sku, int, int]) -> Sale:
    return Sale.of(tuple(SaleLine(s, q, c) for s, q, c in lines))


def test_a_closed_days_report() -> None:
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2", Role.MANAGER)
    first, _ = lane1.replica.append(sale((MILK, 2, 150), (BREAD, 1, 300)), NOW)
    lane1.replica.append(Receipt(MILK, 5), NOW + 1)
    lane2.replica.append(sale((MILK, 1, 150)), NOW + 2)
    sync_all([lane1.replica, lane2.replica])
    lane2.replica.append(Void(first.id), NOW + 3)
    lane1.replica.close_days(None, NOW + 4)
    lane2.replica.close_days(None, NOW + 5)
    sync_all([lane1.replica, lane2.replica])
    report = zreport.z_report(lane1.replica, TODAY)
    assert set(report) == KEYS
    assert report["store_id"] == "shop1"
    assert report["complete"] is True
    assert report["missing_terminals"] == []
    assert report["terminals"] == [
        {"terminal_id": "lane1", "first_seq": 1, "last_seq": 2, "sales": 1, "voids": 0,
         "gross_cents": 600, "voided_cents": 0, "net_cents": 600},
        {"terminal_id": "lane2", "first_seq": 1, "last_seq": 2, "sales": 1, "voids": 1,
         "gross_cents": 150, "voided_cents": 600, "net_cents": -450},
    ]  # fmt: skip
    assert report["skus"] == [
        {"sku": "bread", "units": 0, "net_cents": 0},
        {"sku": "milk", "units": 1, "net_cents": 150},
    ]
    assert report["totals"] == {
        "sales": 2, "voids": 1, "gross_cents": 750, "voided_cents": 600, "net_cents": 150
    }  # fmt: skip
    assert report["sealed"] is False
    assert report["report_hash"] == zreport.report_hash(report)
    assert zreport.z_report(lane2.replica, TODAY) == report
    assert json.dumps(report, sort_keys=True) == json.dumps(
        zreport.z_report(lane2.replica, TODAY), sort_keys=True
    )
    assert reports.integrity(lane1.replica)["ok"] is True


def test_a_lane_that_has_not_closed_holds_the_day_open() -> None:
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    lane3 = store.terminal("lane3")  # a spare, never started: writes nothing
    lane1.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    lane2.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    sync_all([lane1.replica, lane2.replica, lane3.replica])
    lane1.replica.close_days(YESTERDAY, NOW)
    sync(lane1.replica, lane2.replica)
    report = zreport.z_report(lane2.replica, YESTERDAY)
    assert report["complete"] is False
    assert report["missing_terminals"] == ["lane2"]
    days = zreport.days(lane2.replica)["days"]
    # two sales and lane1's day-end
    assert days == [{"day": YESTERDAY, "state": "open", "records": 3, "report_hash": None}]
    lane2.replica.close_days(YESTERDAY, NOW)
    closed = zreport.z_report(lane2.replica, YESTERDAY)
    assert closed["complete"] is True
    assert zreport.days(lane2.replica)["days"] == [
        {"day": YESTERDAY, "state": "closed", "records": 4, "report_hash": closed["report_hash"]}
    ]


def test_a_lane_whose_first_record_is_later_is_not_waited_for() -> None:
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    lane1.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    lane2.replica.append(sale((MILK, 1, 100)), NOW)
    lane1.replica.close_days(YESTERDAY, NOW)
    sync_all([lane1.replica, lane2.replica])
    assert zreport.z_report(lane2.replica, YESTERDAY)["complete"] is True
    assert zreport.z_report(lane2.replica, TODAY)["missing_terminals"] == ["lane1", "lane2"]


def test_a_lane_revoked_before_closing_holds_a_day_open_only_until_its_records_are_held() -> None:
    """lane2 sold twice yesterday and was revoked before it closed the day (it never can
    now): its figures of the day are final once a replica counts its chain up to the cut."""
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    lane1.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    lane2.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    sync_all([lane1.replica, lane2.replica])
    last, _ = lane2.replica.append(sale((MILK, 2, 100)), NOW - DAY_MS + 1)
    cut = issue_revocation(store.authority, store.store_id, lane2.name, 2, last.hash)
    lane1.replica.publish_revocation(cut, NOW)
    lane1.replica.append(sale((BREAD, 1, 100)), NOW)
    lane1.replica.close_days(None, NOW + 1)
    assert zreport.z_report(lane1.replica, TODAY)["complete"] is True
    # lane1 lacks lane2's second sale, which counts (it is at the cut): the day waits for it.
    waiting = zreport.z_report(lane1.replica, YESTERDAY)
    assert (waiting["complete"], waiting["missing_terminals"]) == (False, ["lane2"])
    sync_all([lane1.replica, lane2.replica])
    final = zreport.z_report(lane1.replica, YESTERDAY)
    assert (final["complete"], final["missing_terminals"]) == (True, [])
    assert final["totals"]["sales"] == 3
    assert [t["terminal_id"] for t in final["terminals"]] == ["lane1", "lane2"]


def test_a_void_of_a_closed_days_sale_counts_on_the_void_day() -> None:
    lane = Store().terminal("lane1")
    replica = lane.replica
    first, _ = replica.append(sale((MILK, 3, 200)), NOW - DAY_MS)
    replica.close_days(YESTERDAY, NOW - DAY_MS + HOUR_MS)
    before = zreport.z_report(replica, YESTERDAY)
    replica.append(Void(first.id), NOW)
    replica.close_days(None, NOW + 1)
    assert zreport.z_report(replica, YESTERDAY) == before
    today = zreport.z_report(replica, TODAY)
    assert today["totals"] == {
        "sales": 0, "voids": 1, "gross_cents": 0, "voided_cents": 600, "net_cents": -600
    }  # fmt: skip
    assert today["skus"] == [{"sku": "milk", "units": -3, "net_cents": -600}]
    assert reports.integrity(replica)["ok"] is True


def test_signed_totals_that_disagree_with_the_records_are_a_finding() -> None:
    store = Store()
    lane = store.terminal("lane1")
    bodies = [
        sale((MILK, 1, 100)),
        DayEnd(TODAY, 1, 1, 1, 0, 999, 0, 999),  # signed: 999 cents; the sale says 100
    ]
    records = record_chain(lane.key, "lane1", bodies)
    observer = enrolled_observer(store, lane.cert)
    put_records(observer, f"ledger/{TODAY}", keyed(*records), 5151)
    found = reports.integrity(observer)
    assert found["ok"] is False
    assert found["day_end_mismatches"] == [
        {
            "terminal": "lane1",
            "day": TODAY,
            "seq": 2,
            "signed": {"first_seq": 1, "last_seq": 1, "sales": 1, "voids": 0,
                       "gross_cents": 999, "voided_cents": 0, "net_cents": 999},
            "computed": {"first_seq": 1, "last_seq": 1, "sales": 1, "voids": 0,
                         "gross_cents": 100, "voided_cents": 0, "net_cents": 100},
        }
    ]  # fmt: skip
    # The report counts the records, never the signed figures.
    assert zreport.z_report(observer, TODAY)["totals"]["gross_cents"] == 100


def test_a_record_written_into_a_closed_day_is_a_finding_and_not_counted() -> None:
    store = Store()
    lane = store.terminal("lane1")
    bodies = [
        sale((MILK, 1, 100)),
        DayEnd(TODAY, 1, 1, 1, 0, 100, 0, 100),
        sale((MILK, 1, 700)),  # stamped an hour later, still today: a clock that went wrong
    ]
    records = record_chain(lane.key, "lane1", bodies)
    observer = enrolled_observer(store, lane.cert)
    put_records(observer, f"ledger/{TODAY}", keyed(*records), 5152)
    found = reports.integrity(observer)
    assert found["ok"] is False
    assert found["records_after_close"] == [{"record": "lane1:3", "day": TODAY, "closed_by_seq": 2}]
    assert found["day_end_mismatches"] == []
    assert zreport.z_report(observer, TODAY)["totals"]["gross_cents"] == 100


def test_a_void_whose_sale_is_not_held_cannot_be_checked() -> None:
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    first, _ = lane1.replica.append(sale((MILK, 1, 100)), NOW)
    sync(lane1.replica, lane2.replica)
    lane2.replica.append(Void(first.id), NOW + 1)
    lane2.replica.close_days(None, NOW + 2)
    observer = enrolled_observer(store, lane2.cert, lane1.cert)
    records = [r for _, _, r in lane2.replica.records() if r.terminal == "lane2"]
    put_records(observer, f"ledger/{TODAY}", keyed(*records), 5153)
    assert reports.integrity(observer)["day_end_mismatches"] == []
    line = zreport.z_report(observer, TODAY)["terminals"][0]
    assert (line["voids"], line["voided_cents"]) == (1, 0)


def test_the_default_report_day_is_the_last_day_this_terminal_closed() -> None:
    store = Store()
    lane = store.terminal("lane1")
    with pytest.raises(UsageError, match="closed no day"):
        zreport.default_day(lane.replica)
    lane.replica.append(sale((MILK, 1, 100)), NOW - DAY_MS)
    lane.replica.close_days(YESTERDAY, NOW)
    assert zreport.default_day(lane.replica) == YESTERDAY
    with pytest.raises(UsageError, match="no terminal of its own"):
        zreport.default_day(store.observer())
    with pytest.raises(UsageError, match="invalid day"):
        zreport.z_report(lane.replica, "yesterday")


def test_a_day_nobody_wrote_in_is_an_empty_report() -> None:
    store = Store()
    lane = store.terminal("lane1")
    report = zreport.z_report(lane.replica, TODAY)
    assert report["terminals"] == []
    assert report["complete"] is True
    assert zreport.days(lane.replica) == {"days": []}


# -- the same records, in any order, give the same bytes ----------------------------------------


def _store_history(seed: int) -> tuple[Store, list[Certificate], list[Record]]:
    """Two lanes sell and void (across lanes and days) over two days, and close both."""
    rng = random.Random(seed)
    store = Store()
    lanes = [store.terminal("lane1"), store.terminal("lane2", Role.MANAGER)]
    replicas = [lane.replica for lane in lanes]
    t = NOW
    for day_start, closing in ((NOW - DAY_MS, YESTERDAY), (NOW, TODAY)):
        t = day_start
        for _ in range(rng.randint(1, 6)):
            replica = rng.choice(replicas)
            t += rng.randint(1, 1000)
            views = replica.views
            open_sales = sorted(s for s in views.sale_ids() if not views.is_voided(s))
            if open_sales and rng.random() < 0.3:
                replica.append(Void(RecordId.parse(rng.choice(open_sales))), t)
            else:
                item = rng.choice([MILK, BREAD])
                replica.append(sale((item, rng.randint(1, 4), rng.randint(1, 500))), t)
            if rng.random() < 0.5:
                sync_all(replicas, t)
        sync_all(replicas, t)
        for replica in replicas:
            replica.close_days(closing, t + 1)
    sync_all(replicas, t + 2)
    return store, [lane.cert for lane in lanes], [r for _, _, r in replicas[0].records()]


def _doc_of(replica: Replica, record: Record) -> str:
    body = record.body
    return f"ledger/{body.day if isinstance(body, DayEnd) else replica.business_day(record)}"


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), order=st.randoms(use_true_random=False))
def test_any_delivery_order_gives_the_same_report(seed: int, order: random.Random) -> None:
    store, certs, records = _store_history(seed)
    first = enrolled_observer(store, *certs)
    second = enrolled_observer(store, *certs)
    shuffled = order.sample(records, len(records))
    for target, delivered in ((first, records), (second, shuffled)):
        for i, record in enumerate(delivered):
            put_records(target, _doc_of(target, record), keyed(record), 6000 + i)
    for day in (YESTERDAY, TODAY):
        one, two = zreport.z_report(first, day), zreport.z_report(second, day)
        assert json.dumps(one) == json.dumps(two)
        assert one["complete"] is True
    assert zreport.days(first) == zreport.days(second)
    assert [d["state"] for d in zreport.days(first)["days"]] == ["closed", "closed"]
    assert reports.integrity(first)["ok"] is True
    assert reports.integrity(first)["day_end_mismatches"] == []


def test_the_clouds_prices_are_in_no_report_and_a_lanes_are() -> None:
    store = Store()
    cloud = store.terminal("cloud", Role.CLOUD)
    manager = store.terminal("lane1", Role.MANAGER)
    cloud.replica.append(PriceChange(MILK, 120), NOW)
    manager.replica.append(PriceChange(BREAD, 300), NOW + 1)
    sync(cloud.replica, manager.replica)
    manager.replica.close_days(None, NOW + 2)
    report = zreport.z_report(manager.replica, TODAY)
    assert [(t["terminal_id"], t["first_seq"], t["last_seq"]) for t in report["terminals"]] == [
        ("lane1", 1, 1)
    ]
    assert report["complete"] is True


def test_a_second_day_end_of_a_day_does_not_count_as_the_close() -> None:
    store = Store()
    lane = store.terminal("lane1")
    bodies = [
        sale((MILK, 1, 100)),
        DayEnd(TODAY, 1, 1, 1, 0, 100, 0, 100),
        DayEnd(TODAY, 1, 1, 1, 0, 100, 0, 100),
    ]
    observer = enrolled_observer(store, lane.cert)
    put_records(observer, f"ledger/{TODAY}", keyed(*record_chain(lane.key, "lane1", bodies)), 77)
    assert observer.views.closed_days(lane.name) == {TODAY: 2}
    assert zreport.z_report(observer, TODAY)["terminals"][0]["last_seq"] == 1
    assert reports.integrity(observer)["ok"] is True


def test_fold_day_skips_day_ends() -> None:
    lane = Store().terminal("lane1")
    records = record_chain(
        lane.key, "lane1", [sale((MILK, 2, 50)), DayEnd(TODAY, 1, 1, 1, 0, 100, 0, 100)]
    )
    figures = dayclose.fold_day(records, lambda _: None)
    assert (figures.first_seq, figures.last_seq, figures.gross_cents) == (1, 1, 100)
