"""The change feed (``GET /v1/events``) of real daemons on loopback, read by a real streaming
HTTP client (tests/mesh/feedclient.py).

Two lanes, manager ``a`` and cashier ``b`` (which dials ``a``): a sale on either appears on
``a``'s feed with its origin; a client that reconnects with ``Last-Event-ID`` (after a
disconnect, after a restart of the daemon) is sent exactly the record events it missed; a lane
going down is a ``peer_down``. Refusals are JSON; a client that does not read is dropped with
a warning while the others go on; the daemon stops promptly with clients connected.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import wait_until

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory

from .cluster import Cluster, Daemon, wait_connected
from .feedclient import FEED_OPTIONS, Event, FeedClient

pytestmark = pytest.mark.slow

MILK_PRICE = 150


@dataclass
class Pair:
    cluster: Cluster
    store: StoreDirectory
    a_dir: Path
    a: Daemon
    b: Daemon


@pytest.fixture
def pair(cluster: Cluster) -> Pair:
    store = cluster.store()
    a_dir = cluster.enroll(store, "a", Role.MANAGER)
    a = cluster.start(a_dir, extra=FEED_OPTIONS)
    b = cluster.start(cluster.enroll(store, "b"), [a.listen], extra=FEED_OPTIONS)
    wait_connected(a, {"b"})
    a.set_price("milk", MILK_PRICE)
    a.receive("milk", 100)
    wait_until(lambda: b.on_hand("milk") == 100, 15, "b got a's receipt")
    return Pair(cluster, store, a_dir, a, b)


def follow(daemon: Daemon, last_id: str | None = None) -> FeedClient:
    feed = FeedClient(daemon, last_id)
    assert feed.status_code == 200, feed.status_code
    assert feed.content_type.startswith("text/event-stream"), feed.content_type
    return feed


def ids(events: list[Event]) -> list[int]:
    return [int(e.id) for e in events if e.id is not None]


def test_sales_here_and_on_another_lane_appear_and_a_resume_misses_nothing(pair: Pair) -> None:
    a, b = pair.a, pair.b
    feed = follow(a)
    try:
        # First the status now, then every record event held (the price and the receipt).
        first = feed.until(lambda e: e.type == "receipt")
        status = {e.type: e.data for e in first if e.id is None}
        assert status["peer_up"] == {"peer": "b", "connected": True}
        assert set(status) == {"peer_up", "leader", "oversold"}
        assert status["oversold"] == {"skus": []}
        records = [e for e in first if e.id is not None]
        assert [e.type for e in records] == ["price", "receipt"]
        assert records[0].data == {
            "id": "a:1", "terminal": "a", "seq": 1, "kind": "price",
            "at_ms": records[0].data["at_ms"], "day": records[0].data["day"],
            "origin": "local", "sku": "milk", "unit_cents": MILK_PRICE,
        }  # fmt: skip

        sale_here = a.sell("milk", 2)
        sale_there = b.sell("milk", 3)
        live = feed.records(2)
        by_id = {e.data["id"]: e for e in live}
        assert set(by_id) == {sale_here, sale_there}
        here, there = by_id[sale_here], by_id[sale_there]
        assert here.type == "sale"
        assert (here.data["origin"], here.data["terminal"]) == ("local", "a")
        assert here.data["lines"] == [{"sku": "milk", "qty": 2, "unit_cents": MILK_PRICE}]
        assert here.data["total_cents"] == 2 * MILK_PRICE
        assert (there.data["origin"], there.data["terminal"]) == ("peer", "b")
        assert there.data["total_cents"] == 3 * MILK_PRICE
        all_ids = ids(records + live)
        assert all_ids == sorted(all_ids)
        assert len(set(all_ids)) == len(all_ids)
        last_seen = str(all_ids[-1])
        # A quiet stream gets keep-alive comments (every 200 ms here).
        wait_until(lambda: feed.comments >= 2, 5, "keep-alive comments")
    finally:
        feed.close()

    # Missed while disconnected: a void here, a sale there.
    void = a.write(f"/v1/sales/{sale_here}/void")["record_id"]
    missed_sale = b.sell("milk", 1)
    wait_until(lambda: a.status()["records"] == 6, 15, "a holds b's last sale")
    feed = follow(a, last_seen)
    try:
        resumed = feed.records(2)
        assert {e.data["id"] for e in resumed} == {void, missed_sale}
        assert min(ids(resumed)) > int(last_seen)
        assert [e.data["sale_id"] for e in resumed if e.type == "void"] == [sale_here]
        last_seen = str(max(ids(resumed)))
        # Nothing else follows: no event twice.
        a.receive("milk", 5)
        (after,) = feed.records(1)
        assert after.type == "receipt"
        assert int(after.id or 0) > int(last_seen)
        last_seen = str(after.id)
    finally:
        feed.close()

    # Across a restart of a: ids continue, a resume gets what came while it was down.
    pair.cluster.stop(a)
    during = b.sell("milk", 4)
    a = pair.cluster.start(pair.a_dir, [b.listen], extra=FEED_OPTIONS)  # a new port: a dials
    wait_until(lambda: a.chain_head("b") >= 3, 20, "a got b's sale made while it was down")
    feed = follow(a, last_seen)
    try:
        (again,) = feed.records(1)
        assert again.data["id"] == during
        assert again.data["origin"] == "peer"
        assert int(again.id or 0) > int(last_seen)
        after_restart = a.sell("milk", 1)
        (newer,) = feed.records(1)
        assert newer.data["id"] == after_restart
        assert int(newer.id or 0) > int(again.id or 0)
        # b goes down: a's feed says so.
        wait_connected(a, {"b"})
        pair.cluster.stop(b)
        down = feed.until(lambda e: e.type == "peer_down")
        assert down[-1].data == {"peer": "b", "connected": False}
    finally:
        feed.close()


def test_refusals_are_json(pair: Pair) -> None:
    a = pair.a
    import httpx

    with httpx.Client(base_url=a.api, trust_env=False, timeout=10) as client:
        response = client.get("/v1/events")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        response = client.get(
            "/v1/events",
            headers={"Authorization": f"Bearer {a.token}", "Last-Event-ID": "not-an-id"},
        )
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "bad_request"


SLOW_QUEUE_BYTES = 64 * 1024  # the daemon's per-client queue in the next test: ~14 of its sales
MAX_CLIENTS = 3


def test_a_client_that_does_not_read_is_dropped_the_rest_go_on_and_the_lane_stops_promptly(
    cluster: Cluster,
) -> None:
    store = cluster.store()
    options = (
        *FEED_OPTIONS,
        "--feed-queue-bytes", str(SLOW_QUEUE_BYTES),
        "--feed-max-clients", str(MAX_CLIENTS),
    )  # fmt: skip
    a = cluster.start(cluster.enroll(store, "a", Role.MANAGER), extra=options)
    a.set_price("milk", MILK_PRICE)
    reader = follow(a)
    # A client that sends its request and never reads a byte, with a small receive buffer so
    # the daemon's queue for it fills after a few hundred kilobytes.
    host, port = a.api.removeprefix("http://").rsplit(":", 1)
    slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.settimeout(10)
    slow.connect((host, int(port)))
    request = f"GET /v1/events HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {a.token}\r\n"
    slow.sendall(f"{request}\r\n".encode())
    wait_until(lambda: "feed.subscribed client=2" in a.log_text(), 10, "the slow client is in")
    try:
        # The cap counts the slow client: one more reader fills it, the next is refused.
        second = follow(a)
        refused = FeedClient(a)
        assert refused.status_code == 503
        second.close()

        big_sale = [{"sku": f"sku{i}", "qty": 1, "unit_price": 100} for i in range(100)]
        sold: list[str] = []
        while "feed.dropped client=2" not in a.log_text():
            assert len(sold) < 2000, "the client that does not read was never dropped"
            sold.append(a.write("/v1/sales", {"lines": big_sale})["sale_id"])
        assert 'level": "warning' in next(
            line for line in a.log_text().splitlines() if "feed.dropped client=2" in line
        )
        # The reader got every sale, in order, while the other was dropped.
        got = [e.data.get("id") for e in reader.until(lambda e: e.data.get("id") == sold[-1])]
        assert [i for i in got if i in sold] == sold
        # The dropped stream is closed: reading it now ends (EOF) after what was buffered.
        received = 0
        while chunk := slow.recv(65536):
            received += len(chunk)
        assert received > 0
        # Its place is free again.
        again = follow(a)
        again.close()
    finally:
        slow.close()

    # Stopping with clients connected: their streams end and the daemon exits well within
    # uvicorn's grace period (it never has to cancel a stream).
    others = [follow(a), follow(a)]
    assert cluster.stop(a) == 0
    for feed in [reader, *others]:
        assert feed.ended.wait(5)
    assert "graceful shutdown exceeded" not in a.log_text()
