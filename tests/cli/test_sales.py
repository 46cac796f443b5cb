"""``lanesync sales`` and ``lanesync stock`` of a SKU never seen, offline (no daemon runs; the
same commands through a daemon are in tests/mesh/test_api_reads.py). The shop of conftest:
lane1 sold lane1:3 (milk x1) and lane1:4 (milk x2, voided by lane1:5); lane2 imported it all."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from .conftest import Shop
from .helpers import assert_error, business_day


def test_sales_lists_every_sale_with_its_lines_total_and_void(shop: Shop) -> None:
    listed = shop.cli.json("sales", "lane1")
    assert set(listed) == {"sales", "next_cursor"}
    assert listed["next_cursor"] is None
    first, second = listed["sales"]
    assert (first["id"], first["total_cents"], first["voided"], first["void_id"]) == (
        "lane1:3",
        149,
        False,
        None,
    )
    assert (second["id"], second["total_cents"], second["voided"], second["void_id"]) == (
        "lane1:4",
        298,
        True,
        "lane1:5",
    )
    assert second["lines"] == [{"sku": "milk", "qty": 2, "unit_cents": 149}]
    assert first["at_ms"] < second["at_ms"]
    assert first["day"] == business_day(first["at_ms"])
    # lane2 imported lane1's records: the same journal.
    assert shop.cli.json("sales", "lane2") == listed


def test_sales_text_shows_local_time_total_and_the_voided_mark(shop: Shop) -> None:
    sales = shop.cli.json("sales", "lane1")["sales"]
    text = shop.cli.ok("sales", "lane1").text
    assert "lane1:3" in text
    assert "lane1:4" in text
    assert "2.98" in text
    assert "1.49" in text
    assert "VOIDED by lane1:5" in text
    at = datetime.fromtimestamp(sales[0]["at_ms"] / 1000, tz=UTC).astimezone()
    assert at.strftime("%Y-%m-%d") in text


@pytest.mark.slow  # eleven commands, ~14 s on a busy 2-core machine
def test_sales_pages_with_limit_and_cursor_and_filters(shop: Shop) -> None:
    cli = shop.cli
    everything = cli.json("sales", "lane1")["sales"]
    first = cli.json("sales", "lane1", "--limit", "1")
    assert first["sales"] == everything[:1]
    assert first["next_cursor"] is not None
    rest = cli.json("sales", "lane1", "--cursor", first["next_cursor"])
    assert rest == {"sales": everything[1:], "next_cursor": None}
    assert "more: lanesync sales lane1 --cursor" in cli.ok("sales", "lane1", "--limit", "1").text
    day = everything[0]["day"]
    assert cli.json("sales", "lane1", "--day", day)["sales"] == everything
    assert cli.json("sales", "lane1", "--day", "1999-12-31")["sales"] == []
    assert cli.json("sales", "lane1", "--terminal", "lane1")["sales"] == everything
    assert cli.json("sales", "lane1", "--terminal", "lane2")["sales"] == []
    other = cli.run("sales", "lane1", "--cursor", first["next_cursor"], "--terminal", "lane2")
    assert_error(other, "terminal differs from the listing the cursor continues")


def test_a_lane_without_sales_lists_none(shop: Shop) -> None:
    shop.cli.ok("enroll", "store", "lane3", "--terminal-id", "lane3")
    assert shop.cli.json("sales", "lane3") == {"sales": [], "next_cursor": None}


def test_stock_of_a_sku_never_seen_is_zero(shop: Shop) -> None:
    assert shop.cli.json("stock", "lane1", "eggs") == {"items": [{"sku": "eggs", "on_hand": 0}]}
    assert "│ eggs │ 0 │" in shop.cli.ok("stock", "lane1", "eggs").text
