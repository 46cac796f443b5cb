"""Reports over a replica (``lanesync.core.reports``): stock, oversold SKUs and their causes,
integrity. Real replicas of the pure core, records appended and synced as lanes do."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from lanesync.core import reports
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.records import PriceChange, Receipt, Sale, SaleLine, Void
from lanesync.errors import NotFound

from .helpers import NOW, TODAY_DOC, Store, keyed, put_records, record_chain, sync_all


def sale_of(item: str, qty: int) -> Sale:
    return Sale.of((SaleLine(Sku(item), qty, 100),))


def test_stock_lists_every_sku_in_order_or_one_on_request() -> None:
    lane = Store().terminal("lane1")
    lane.replica.append(Receipt(Sku("B"), 4), NOW)
    lane.replica.append(Receipt(Sku("A"), 7), NOW + 1)
    lane.replica.append(sale_of("A", 2), NOW + 2)
    assert reports.stock(lane.replica) == {
        "items": [{"sku": "A", "on_hand": 5}, {"sku": "B", "on_hand": 4}]
    }
    assert reports.stock(lane.replica, Sku("B")) == {"items": [{"sku": "B", "on_hand": 4}]}
    # A SKU never received, sold or priced has nothing on hand (issue 18: 200, not 400).
    assert reports.stock(lane.replica, Sku("C")) == {"items": [{"sku": "C", "on_hand": 0}]}


def test_prices_list_the_price_in_force_of_every_sku_with_who_set_it_and_when() -> None:
    store = Store()
    manager = store.terminal("mgr", Role.MANAGER)
    other = store.terminal("mgr2", Role.MANAGER)
    manager.replica.append(PriceChange(Sku("milk"), 149), NOW)
    manager.replica.append(PriceChange(Sku("bread"), 250), NOW + 1)
    other.replica.append(PriceChange(Sku("milk"), 159), NOW + 5)  # later: in force
    sync_all([manager.replica, other.replica], NOW + 10)
    expected = {
        "prices": [
            {"sku": "bread", "unit_cents": 250, "set_by": "mgr", "at_ms": NOW + 1},
            {"sku": "milk", "unit_cents": 159, "set_by": "mgr2", "at_ms": NOW + 5},
        ]
    }
    assert reports.prices(manager.replica) == reports.prices(other.replica) == expected
    assert reports.price(manager.replica, Sku("milk")) == expected["prices"][1]
    with pytest.raises(NotFound, match="'caviar' has no price"):
        reports.price(manager.replica, Sku("caviar"))
    assert reports.prices(store.terminal("lane1").replica) == {"prices": []}


def test_oversold_names_only_the_sales_that_took_the_balance_below_zero() -> None:
    """Two lanes apart sell the last units of A; once synced, the sales are replayed in HLC
    order: the first sale fits, the later ones go below zero and are the causes."""
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("A"), 3), NOW)
    a.replica.append(Receipt(Sku("B"), 1), NOW)
    sync_all([a.replica, b.replica])
    a.replica.append(sale_of("A", 2), NOW + 10)  # fits: 3 -> 1
    late, _ = b.replica.append(sale_of("A", 2), NOW + 20)  # 1 -> -1
    later, _ = b.replica.append(sale_of("A", 1), NOW + 30)  # -1 -> -2
    assert reports.oversold(a.replica) == []  # apart, nobody is oversold yet
    sync_all([a.replica, b.replica], NOW + 40)
    expected = [{"sku": "A", "on_hand": -2, "sales": [str(late.id), str(later.id)]}]
    assert reports.oversold(a.replica) == reports.oversold(b.replica) == expected


def test_a_voided_sale_is_not_a_cause_of_an_oversold_sku() -> None:
    lane = Store().terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 1), NOW)
    voided, _ = lane.replica.append(sale_of("A", 2), NOW + 1)  # 1 -> -1
    lane.replica.append(Void(voided.id), NOW + 2)  # credited back: 1
    kept, _ = lane.replica.append(sale_of("A", 3), NOW + 3)  # 1 -> -2
    assert reports.oversold(lane.replica) == [{"sku": "A", "on_hand": -2, "sales": [str(kept.id)]}]


def test_verify_of_a_healthy_replica_is_ok_with_its_heads_and_counts() -> None:
    lane = Store().terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 1), NOW)
    last, _ = lane.replica.append(sale_of("A", 2), NOW + 1)
    report = reports.integrity(lane.replica)
    assert report["ok"] is True
    assert report["digest"] == lane.replica.digest()
    assert report["records"] == 2
    assert report["chains"] == [{"terminal": "lane1", "seq": 2, "hash": last.hash.hex()}]
    assert report["oversold"] == [{"sku": "A", "on_hand": -1, "sales": [str(last.id)]}]
    assert all(report[kind] == [] for kind in lane.replica.views.problems())


def test_verify_is_not_ok_when_a_record_held_does_not_count() -> None:
    lane = Store().terminal("lane1")
    lane.replica.append(Receipt(Sku("A"), 1), NOW)
    (forged,) = record_chain(SigningKey.generate(), "lane9", [Receipt(Sku("A"), 99)])
    put_records(lane.replica, TODAY_DOC, keyed(forged), client_id=9)
    report = reports.integrity(lane.replica)
    assert report["ok"] is False
    assert report["records"] == 1  # the forged one is held, not counted
    assert len(report["unverified"]) == 1
    assert reports.stock(lane.replica) == {"items": [{"sku": "A", "on_hand": 1}]}
