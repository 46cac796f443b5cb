"""The read routes of a running daemon (``shell/api_reads.py``): health, the sales journal and
the price catalog, through real ``lanesync run`` processes on loopback.

A manager lane ``m`` (prices set, milk received) and a cashier lane ``c`` that dials it: sales
made on ``c`` reach ``m`` through the mesh, with their own timestamps, while a client pages
through ``m``'s journal. Which routes need the token is checked for every route at once in
test_api.py (``test_every_read_needs_the_token_but_health``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from lanesync.core.identity import Role

from .cluster import Cluster, Daemon, wait_connected, wait_until
from .test_api import assert_json_error

pytestmark = pytest.mark.slow

SALE_KEYS = {
    "id",
    "terminal",
    "seq",
    "at_ms",
    "day",
    "lines",
    "total_cents",
    "voided",
    "void_id",
}


@dataclass(frozen=True, slots=True)
class Lanes:
    cluster: Cluster
    m: Daemon
    c: Daemon


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lanes]:
    cluster = Cluster(tmp_path_factory.mktemp("reads"))
    try:
        store = cluster.store()
        m = cluster.start(cluster.enroll(store, "m", Role.MANAGER))
        c = cluster.start(cluster.enroll(store, "c"), [m.listen])
        m.set_price("milk", 149)
        m.set_price("bread", 250)
        m.receive("milk", 1000)
        wait_connected(m, {"c"})
        yield Lanes(cluster, m, c)
    finally:
        cluster.close()


def listing(daemon: Daemon, **params: Any) -> list[dict[str, Any]]:
    """Every page of ``GET /v1/sales`` with ``params``."""
    sales: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        page = daemon.client.get("/v1/sales", params=query)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"sales", "next_cursor"}
        sales.extend(body["sales"])
        cursor = body["next_cursor"]
        if cursor is None:
            return sales


def converged(lanes: Lanes) -> None:
    wait_until(
        lambda: lanes.m.digest() == lanes.c.digest(),
        20,
        lambda: "m and c hold the same records",
    )


def test_health_is_token_free_and_says_ok(lanes: Lanes) -> None:
    with httpx.Client(base_url=lanes.m.api, trust_env=False, timeout=15) as anonymous:
        response = anonymous.get("/v1/health")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_sales_of_every_lane_page_oldest_first_in_the_contract_shape(lanes: Lanes) -> None:
    m, c = lanes.m, lanes.c
    made = [m.sell("milk", 2), c.sell("bread"), m.sell("milk"), c.sell("milk", 3)]
    converged(lanes)
    for limit in (1, 3, 1000):
        sales = listing(m, limit=limit)
        assert [s["id"] for s in sales if s["id"] in made] == made
        assert sales == sorted(sales, key=lambda s: (s["at_ms"], s["terminal"], s["seq"]))
        assert len({s["id"] for s in sales}) == len(sales)
    on_c = listing(c)
    assert on_c == listing(m)  # the same sales, the same order, on every replica
    first = next(s for s in on_c if s["id"] == made[0])
    assert set(first) == SALE_KEYS
    assert first["terminal"] == "m"
    assert first["seq"] == int(made[0].split(":")[1])
    assert first["lines"] == [{"sku": "milk", "qty": 2, "unit_cents": 149}]
    assert first["total_cents"] == 298
    assert first["voided"] is False
    assert first["void_id"] is None
    assert isinstance(first["at_ms"], int)
    assert first["day"] == lanes.m.get(f"/v1/sales/{made[0]}")["day"]
    only_c = listing(m, terminal="c")
    assert {s["terminal"] for s in only_c} == {"c"}
    assert [s["id"] for s in only_c if s["id"] in made] == [made[1], made[3]]
    assert listing(m, day=first["day"]) == listing(m)
    assert listing(m, day="1999-01-01") == []
    last = on_c[-1]
    assert listing(m, since=last["at_ms"]) == []
    assert listing(m, since=last["at_ms"] - 1)[-1] == last


def test_sales_that_arrive_from_a_peer_while_paging_are_listed_once(lanes: Lanes) -> None:
    """Between the first pages, a sale on ``c`` reaches ``m``: following next_cursor to the
    end lists each sale once, the late ones included."""
    m, c = lanes.m, lanes.c
    before = {s["id"] for s in listing(m)}
    assert len(before) >= 3
    page = m.get("/v1/sales?limit=1")
    seen = [s["id"] for s in page["sales"]]
    arrived = []
    while page["next_cursor"] is not None:
        if len(arrived) < 3:
            sold = c.sell("milk")
            arrived.append(sold)
            wait_until(
                lambda sold=sold: m.client.get(f"/v1/sales/{sold}").status_code == 200,
                20,
                lambda sold=sold: f"{sold} reached m",
            )
        page = m.get(f"/v1/sales?limit=1&cursor={page['next_cursor']}")
        seen.extend(s["id"] for s in page["sales"])
    assert len(seen) == len(set(seen)), "a sale was listed twice"
    assert set(seen) == before | set(arrived), "a sale was skipped"
    assert seen[-3:] == arrived  # after those held when the listing started


def test_one_sale_by_id_with_its_void(lanes: Lanes) -> None:
    m, c = lanes.m, lanes.c
    sold = c.sell("milk", 4)
    converged(lanes)
    void = m.write(f"/v1/sales/{sold}/void")["record_id"]
    converged(lanes)
    for daemon in (m, c):
        sale = daemon.get(f"/v1/sales/{sold}")
        assert set(sale) == SALE_KEYS
        assert (sale["voided"], sale["void_id"], sale["total_cents"]) == (True, void, 596)
        assert [s for s in listing(daemon) if s["id"] == sold] == [sale]


@pytest.mark.parametrize(
    ("path", "status", "code", "words"),
    [
        ("/v1/sales/m:999999", 404, "not_found", "no sale m:999999"),
        ("/v1/sales/m:1", 404, "not_found", "no sale m:1"),  # m's first record is a price
        ("/v1/sales/nobody:1", 404, "not_found", "no sale"),
        ("/v1/sales/m:0", 400, "bad_request", "invalid record id"),
        ("/v1/sales/m:x", 400, "bad_request", "invalid record id"),
        ("/v1/sales/m", 400, "bad_request", "invalid record id"),
        ("/v1/sales/a%20b:1", 400, "bad_request", "invalid record id"),
        ("/v1/prices/caviar", 404, "not_found", "'caviar' has no price"),
        ("/v1/prices/not%20a%20sku", 400, "bad_request", "invalid SKU"),
        ("/v1/sales?limit=0", 400, "bad_request", "limit must be 1 to 1000"),
        ("/v1/sales?limit=1001", 400, "bad_request", "limit must be 1 to 1000"),
        ("/v1/sales?limit=ten", 400, "invalid_request", "limit"),
        ("/v1/sales?since=-5", 400, "bad_request", "since must be"),
        ("/v1/sales?since=yesterday", 400, "invalid_request", "since"),
        ("/v1/sales?day=2026-02-30", 400, "bad_request", "invalid day"),
        ("/v1/sales?day=today", 400, "bad_request", "invalid day"),
        ("/v1/sales?terminal=a%20b", 400, "bad_request", "invalid terminal id"),
        ("/v1/sales?cursor=nonsense!", 400, "bad_request", "invalid cursor"),
        ("/v1/sales?cursor=" + "A" * 9000, 400, "bad_request", "invalid cursor"),
    ],
)
def test_bad_reads_are_json_errors(
    lanes: Lanes, path: str, status: int, code: str, words: str
) -> None:
    error = assert_json_error(lanes.m.client.get(path), status)
    assert error["code"] == code
    assert words in error["message"]


def test_a_cursor_is_refused_with_other_filters(lanes: Lanes) -> None:
    m, c = lanes.m, lanes.c
    c.sell("bread")
    m.sell("bread")
    converged(lanes)
    page = m.get("/v1/sales?limit=1&terminal=m")
    assert page["next_cursor"] is not None
    other = m.client.get("/v1/sales", params={"cursor": page["next_cursor"], "terminal": "c"})
    assert "terminal differs" in assert_json_error(other, 400)["message"]
    same = m.client.get("/v1/sales", params={"cursor": page["next_cursor"], "terminal": "m"})
    assert same.status_code == 200
    assert {s["terminal"] for s in same.json()["sales"]} <= {"m"}


def test_prices_list_the_catalog_and_one_sku(lanes: Lanes) -> None:
    m, c = lanes.m, lanes.c
    m.set_price("tea", 300)
    converged(lanes)
    prices = c.get("/v1/prices")
    assert set(prices) == {"prices"}
    rows = prices["prices"]
    assert [p["sku"] for p in rows] == sorted(p["sku"] for p in rows)
    tea = next(p for p in rows if p["sku"] == "tea")
    assert set(tea) == {"sku", "unit_cents", "set_by", "at_ms"}
    assert (tea["unit_cents"], tea["set_by"]) == (300, "m")
    assert c.get("/v1/prices/tea") == tea
    assert m.get("/v1/prices") == prices


def test_cli_sales_through_the_daemon_lists_what_the_api_lists(lanes: Lanes) -> None:
    m = lanes.m
    m.sell("milk")
    everything = listing(m)
    assert lanes.cluster.cli_json("sales", m.path) == {"sales": everything, "next_cursor": None}
    day = everything[-1]["day"]
    mine = lanes.cluster.cli_json("sales", m.path, "--terminal", "m", "--day", day)
    assert mine["sales"] == listing(m, terminal="m", day=day)
    first = lanes.cluster.cli_json("sales", m.path, "--limit", "1")
    assert first["sales"] == everything[:1]
    rest = lanes.cluster.cli_json("sales", m.path, "--cursor", first["next_cursor"])
    assert first["sales"] + rest["sales"] == everything
    text = lanes.cluster.cli("sales", m.path)
    assert text.returncode == 0, text.describe()
    assert everything[-1]["id"] in text.stdout
    bad = lanes.cluster.cli("sales", m.path, "--limit", "5000")
    assert bad.returncode == 1, bad.describe()
    assert bad.stderr == "error: limit must be 1 to 1000\n"
    unknown = lanes.cluster.cli_json("stock", m.path, "caviar")
    assert unknown == {"items": [{"sku": "caviar", "on_hand": 0}]} == m.get("/v1/stock/caviar")
