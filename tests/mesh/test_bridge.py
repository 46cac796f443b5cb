"""Two groups of lanes that cannot reach each other sell the same SKU at the same time; a fifth
lane that reaches one member of each group joins later and the whole store converges: one
digest everywhere, and stock on hand exactly what was received minus what was acknowledged as
sold (invariants 1-3 of DESIGN.md), with every journal verifying."""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
from support import parallel

from lanesync.core.identity import Role

from .cluster import Cluster, Daemon, wait_connected, wait_converged

pytestmark = pytest.mark.slow

SALES_PER_LANE = 8
MILK_PRICE = 120
RECEIVED_A = 50
RECEIVED_C = 30
CONVERGE_S = 30.0


def ring(daemon: Daemon, count: int) -> Counter[str]:
    """Sell milk ``count`` times on one lane (varying quantities); units acknowledged per SKU."""
    sold: Counter[str] = Counter()
    for i in range(count):
        qty = 1 + i % 3
        line = {"sku": "milk", "qty": qty}
        if daemon.name in ("c", "d"):  # their group never saw the manager's price
            line["unit_price"] = MILK_PRICE
        response = daemon.post("/v1/sales", {"lines": [line]})
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["total"] == qty * MILK_PRICE
        assert body["sale_id"].startswith(f"{daemon.terminal_id}:")
        sold["milk"] += qty
    return sold


def test_bridge_joins_two_groups_that_sold_concurrently(cluster: Cluster) -> None:
    store = cluster.store()
    dirs = {
        name: cluster.enroll(store, name, Role.MANAGER if name == "a" else Role.CASHIER)
        for name in "abcde"
    }
    # Group 1: b dials a. Group 2: d dials c. No address crosses the groups.
    a, c = cluster.start_many([(dirs["a"], []), (dirs["c"], [])])
    b, d = cluster.start_many([(dirs["b"], [a.listen]), (dirs["d"], [c.listen])])
    wait_connected(a, {"b"})
    wait_connected(c, {"d"})
    a.set_price("milk", MILK_PRICE)
    a.receive("milk", RECEIVED_A)
    c.receive("milk", RECEIVED_C)

    # All four lanes sell the same SKU at the same time.
    sold = sum(parallel([partial(ring, x, SALES_PER_LANE) for x in (a, b, c, d)]), Counter())
    group1 = wait_converged([a, b], {"milk": RECEIVED_A - sum(ring_units(SALES_PER_LANE, 2))})
    group2 = wait_converged([c, d], {"milk": RECEIVED_C - sum(ring_units(SALES_PER_LANE, 2))})
    assert group1 != group2, "the groups were supposed to be isolated"
    assert a.peers() == {"b"}
    assert c.peers() == {"d"}

    # The bridge reaches one member of each group.
    e = cluster.start(dirs["e"], [a.listen, c.listen])
    wait_connected(e, {"a", "c"})
    expected = {"milk": RECEIVED_A + RECEIVED_C - sold["milk"]}
    everyone = [a, b, c, d, e]
    digest = wait_converged(everyone, expected, CONVERGE_S)

    # Nothing lost, nothing duplicated: every lane holds every acknowledged record, once.
    records = {x.name: x.status()["records"] for x in everyone}
    assert len(set(records.values())) == 1, records
    assert records["e"] == 1 + 2 + 4 * SALES_PER_LANE  # price, two receipts, the sales
    for x in everyone:
        report = x.verify()
        assert report["ok"], (x.name, report)
        assert report["digest"] == digest
        heads = {h["terminal"]: h["seq"] for h in report["chains"]}
        assert heads == {
            "a": 2 + SALES_PER_LANE,
            "b": SALES_PER_LANE,
            "c": 1 + SALES_PER_LANE,
            "d": SALES_PER_LANE,
        }
        assert x.get("/v1/alerts")["integrity"] == {}


def ring_units(count: int, lanes: int) -> list[int]:
    """Units ``ring`` sells on ``lanes`` lanes of ``count`` sales each."""
    return [1 + i % 3 for i in range(count)] * lanes
