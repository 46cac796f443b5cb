"""A daemon SIGKILLed right after it acknowledged sales (HTTP 201) loses none of them.

Killed with SIGKILL, nothing in the daemon runs: its runtime.json stays behind and the kernel
drops its directory lock. The CLI must then work offline on the directory (the stale
runtime.json does not fool it), a new daemon must start on the same directory at once, hold
every acknowledged sale with a verifying chain, continue the chain without reusing a sequence
number, and hand the sales to every peer.
"""

from __future__ import annotations

import json

import pytest

from lanesync.core.identity import Role

from .cluster import Cluster, wait_connected, wait_converged, wait_until

pytestmark = pytest.mark.slow

RECEIVED = 20
PRICE = 150
SALES = 4


def test_sales_acknowledged_before_sigkill_survive_and_spread(cluster: Cluster) -> None:
    store = cluster.store()
    a_dir = cluster.enroll(store, "a", Role.MANAGER)
    b_dir = cluster.enroll(store, "b")
    c_dir = cluster.enroll(store, "c")
    a = cluster.start(a_dir)
    a.set_price("milk", PRICE)
    a.receive("milk", RECEIVED)
    sale_ids = [a.sell("milk", 2) for _ in range(SALES - 1)]
    # The last one: SIGKILL the moment its 201 arrives.
    response = a.post("/v1/sales", {"lines": [{"sku": "milk", "qty": 1}]})
    cluster.kill(a)
    assert response.status_code == 201, response.text
    sale_ids.append(response.json()["sale_id"])
    expected = {"milk": RECEIVED - 2 * (SALES - 1) - 1}
    assert sale_ids == [f"a:{seq}" for seq in range(3, 3 + SALES)]

    # Nothing cleaned up after the kill ...
    stale = json.loads((a_dir / "runtime.json").read_text())
    assert stale["pid"] == a.process.pid
    # ... yet the CLI sees no daemon and works offline on the directory.
    assert cluster.cli_json("stock", a_dir, "milk") == {
        "items": [{"sku": "milk", "on_hand": expected["milk"]}]
    }
    status = cluster.cli_json("status", a_dir)
    assert status["running"] is False
    assert status["records"] == 2 + SALES

    # The lock of the killed daemon does not block a restart on the same directory.
    a2 = cluster.start(a_dir)
    assert a2.process.pid != a.process.pid
    assert a2.on_hand("milk") == expected["milk"]
    report = a2.verify()
    assert report["ok"], report
    assert {h["terminal"]: h["seq"] for h in report["chains"]} == {"a": 2 + SALES}
    # The chain continues: the next sale gets the next sequence number, none is reused.
    assert a2.sell("milk", 1) == f"a:{3 + SALES}"
    expected["milk"] -= 1

    # Every peer receives every sale (they were never sent before the kill: nobody listened).
    b, c = cluster.start_many([(b_dir, [a2.listen]), (c_dir, [a2.listen])])
    wait_connected(a2, {"b", "c"})
    digest = wait_converged([a2, b, c], expected)
    for peer in (b, c):
        report = peer.verify()
        assert report["ok"], report
        assert report["digest"] == digest
        assert {h["terminal"]: h["seq"] for h in report["chains"]} == {"a": 3 + SALES}


def test_sigkill_of_a_peer_mid_sync_loses_nothing(cluster: Cluster) -> None:
    """b acknowledges sales and is SIGKILLed; a (its peer) and b after a restart hold them all,
    and what a sold while b was down reaches b after the restart."""
    a, b = cluster.stocked_pair(cluster.store(), PRICE, RECEIVED)
    sold = 0
    for _ in range(SALES):
        b.sell("milk", 1)
        sold += 1
    cluster.kill(b)
    wait_until(lambda: "b" not in a.peers(), 15, "a noticed b died")
    a.sell("milk", 3)
    sold += 3
    # b comes back on the same directory with the same peer address; a's address is unchanged.
    b2 = cluster.start(b.path, [a.listen])
    wait_connected(a, {"b"})
    digest = wait_converged([a, b2], {"milk": RECEIVED - sold})
    for lane in (a, b2):
        report = lane.verify()
        assert report["ok"], report
        assert report["digest"] == digest
        assert {h["terminal"]: h["seq"] for h in report["chains"]} == {"a": 3, "b": SALES}


def test_lane_killed_before_committing_peers_sales_gets_them_back(cluster: Cluster) -> None:
    """A lane commits peers' updates up to 200 ms after merging them (they are durable at their
    origin): killed in between, it has them in memory only, and the peer sends them again."""
    a, b = cluster.stocked_pair(cluster.store(), PRICE, RECEIVED)
    for _ in range(SALES):
        a.sell("milk", 1)
    wait_until(lambda: b.on_hand("milk") == RECEIVED - SALES, 15, "b merged the sales")
    in_memory = b.status()["records"]
    cluster.kill(b)
    # On disk: b's own certificate and whatever peers' records it committed before the kill.
    assert cluster.cli_json("status", b.path)["records"] <= in_memory
    b2 = cluster.start(b.path, [a.listen])
    wait_connected(a, {"b"})
    digest = wait_converged([a, b2], {"milk": RECEIVED - SALES})
    report = b2.verify()
    assert report["ok"], report
    assert report["digest"] == digest


def test_a_keyed_sale_retried_after_sigkill_and_restart_is_not_counted_twice(
    cluster: Cluster,
) -> None:
    """The POS lost the answer (the lane was killed as it sent it) and retries on the
    restarted lane with the same Idempotency-Key: it gets the same sale back."""
    store = cluster.store()
    a_dir = cluster.enroll(store, "a", Role.MANAGER)
    a = cluster.start(a_dir)
    a.set_price("milk", PRICE)
    a.receive("milk", RECEIVED)
    body = {"lines": [{"sku": "milk", "qty": 2}]}
    headers = {"Idempotency-Key": "till-3/receipt-0815"}
    first = a.client.post("/v1/sales", json=body, headers=headers)
    cluster.kill(a)
    assert first.status_code == 201, first.text
    a2 = cluster.start(a_dir)
    retry = a2.client.post("/v1/sales", json=body, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert a2.on_hand("milk") == RECEIVED - 2
