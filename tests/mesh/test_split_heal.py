"""Four lanes in a full mesh through fault proxies (one ``faultproxy.FaultLink`` per pair, with a
little latency and jitter): the store splits into two halves that keep selling, the split
heals, and all four converge to one digest with stock exactly received - sold."""

from __future__ import annotations

import itertools
from collections import Counter
from functools import partial

import pytest
from support import ProxyLoop, parallel, port_of

from lanesync.core.identity import Role

from .cluster import (
    Cluster,
    Daemon,
    wait_connected,
    wait_converged,
    wait_until,
)

pytestmark = pytest.mark.slow

LANES = ("lane1", "lane2", "lane3", "lane4")
HALVES = ({"lane1", "lane2"}, {"lane3", "lane4"})
STOCK = {"milk": 200, "bread": 100}
PRICES = {"milk": 149, "bread": 299}
SALES_PER_LANE = 6
CONVERGE_S = 30.0


def ring(lane: Daemon, count: int, offset: int) -> Counter[str]:
    sold: Counter[str] = Counter()
    for i in range(count):
        sku = ("milk", "bread")[(i + offset) % 2]
        qty = 1 + (i + offset) % 2
        response = lane.post("/v1/sales", {"lines": [{"sku": sku, "qty": qty}]})
        assert response.status_code == 201, response.text
        assert response.json()["total"] == qty * PRICES[sku]
        sold[sku] += qty  # counted only once acknowledged
    return sold


def ring_all(lanes: list[Daemon], count: int) -> Counter[str]:
    results = parallel([partial(ring, lane, count, i) for i, lane in enumerate(lanes)])
    return sum(results, Counter())


def wait_half(lane: Daemon) -> None:
    """Wait until the lane is connected to exactly the other lane of its half."""
    half = next(h for h in HALVES if lane.name in h)
    wait_until(
        lambda: lane.peers() == half - {lane.name},
        15,
        lambda: f"{lane.name} sees only its half: {sorted(lane.peers())}",
    )


def test_split_sell_heal_converges_exactly(cluster: Cluster, proxies: ProxyLoop) -> None:
    store = cluster.store()
    dirs = {
        name: cluster.enroll(store, name, Role.MANAGER if name == "lane1" else Role.CASHIER)
        for name in LANES
    }
    # One proxy per pair; the lower lane dials the higher one through it. The proxies refuse
    # connections until their target lane is listening.
    links = {
        pair: proxies.link(latency_ms=3, jitter_ms=2, seed=i)
        for i, pair in enumerate(itertools.combinations(LANES, 2))
    }
    specs = [
        (dirs[name], [f"ws://127.0.0.1:{links[(name, b)].port}" for b in LANES if b > name])
        for name in LANES
    ]
    lanes = dict(zip(LANES, cluster.start_many(specs), strict=True))
    for (_, target), link in links.items():
        link.target_port = port_of(lanes[target].listen)
    everyone = list(lanes.values())
    for name, lane in lanes.items():
        wait_connected(lane, set(LANES) - {name})

    lane1 = lanes["lane1"]
    for sku, cents in PRICES.items():
        lane1.set_price(sku, cents)
    for sku, qty in STOCK.items():
        lane1.receive(sku, qty)
    sold = ring_all(everyone, SALES_PER_LANE)
    expected = {sku: STOCK[sku] - sold[sku] for sku in STOCK}
    wait_converged(everyone, expected)

    # Split: cut every link between the halves.
    cut = [link for (a, b), link in links.items() if (a in HALVES[0]) != (b in HALVES[0])]
    proxies.partition(*cut)
    for lane in everyone:
        wait_half(lane)
    sold += ring_all(everyone, SALES_PER_LANE)
    left = [lanes[n] for n in sorted(HALVES[0])]
    right = [lanes[n] for n in sorted(HALVES[1])]
    wait_until(lambda: len({x.digest() for x in left}) == 1, 15, "left half converged")
    wait_until(lambda: len({x.digest() for x in right}) == 1, 15, "right half converged")
    assert left[0].digest() != right[0].digest(), "the halves were supposed to be apart"
    assert all(link.partitioned for link in cut)

    proxies.heal(*cut)
    expected = {sku: STOCK[sku] - sold[sku] for sku in STOCK}
    digest = wait_converged(everyone, expected, CONVERGE_S)
    for name, lane in lanes.items():
        wait_connected(lane, set(LANES) - {name})
        report = lane.verify()
        assert report["ok"], (name, report)
        assert report["digest"] == digest
        heads = {h["terminal"]: h["seq"] for h in report["chains"]}
        assert heads == {
            "lane1": len(PRICES) + len(STOCK) + 2 * SALES_PER_LANE,
            **dict.fromkeys(LANES[1:], 2 * SALES_PER_LANE),
        }
        assert report["oversold"] == []
    # The proxies really carried the traffic (and were really cut for a while).
    assert all(link.stats.connections >= 1 for link in links.values())
    assert all(link.stats.connections >= 2 for link in cut)
