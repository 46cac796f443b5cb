"""``lanesync close``, ``report`` and ``days`` run offline, as real processes (the daemon path
is in tests/mesh/test_days_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from .conftest import Shop
from .helpers import assert_error

REPORT_KEYS = {
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


def today() -> str:
    return datetime.now(UTC).date().isoformat()  # the shop's store time is UTC


def test_close_then_report_then_days(shop: Shop) -> None:
    cli = shop.cli
    day = today()
    assert cli.json("close", "lane1") == {"closed": [day]}
    assert cli.json("close", "lane1") == {"closed": []}
    assert cli.ok("close", "lane1").stdout.startswith("nothing to close")
    report = cli.json("report", "lane1")
    assert set(report) == REPORT_KEYS
    assert report["day"] == day
    assert report["store_id"] == "shop-1"
    # lane2 never wrote a record: a spare holds no day open
    assert (report["complete"], report["missing_terminals"]) == (True, [])
    assert report["terminals"] == [
        {
            "terminal_id": "lane1",
            "first_seq": 1,
            "last_seq": 5,
            "sales": 2,
            "voids": 1,
            "gross_cents": 447,
            "voided_cents": 298,
            "net_cents": 149,
        }
    ]
    assert report["skus"] == [{"sku": "milk", "units": 1, "net_cents": 149}]
    assert report["totals"] == {
        "sales": 2,
        "voids": 1,
        "gross_cents": 447,
        "voided_cents": 298,
        "net_cents": 149,
    }
    assert report["sealed"] is False
    assert cli.json("report", "lane1", "--day", day) == report
    assert cli.json("days", "lane1") == {
        "days": [
            {"day": day, "state": "closed", "records": 5, "report_hash": report["report_hash"]}
        ]
    }
    verified = cli.json("verify", "lane1")
    assert verified["ok"] is True
    assert verified["day_end_mismatches"] == []
    assert verified["records_after_close"] == []


def plain(stdout: str) -> str:
    """Text output without the tables' box drawing, runs of whitespace folded."""
    return " ".join("".join(" " if 0x2500 <= ord(c) <= 0x257F else c for c in stdout).split())


def test_the_text_report_is_readable(shop: Shop) -> None:
    cli = shop.cli
    cli.ok("close", "lane1")
    text = plain(cli.ok("report", "lane1").stdout)
    assert f"Z-report store shop-1 day {today()} (complete)" in text
    assert "lane1 1-5 2 1 4.47 2.98 1.49" in text
    assert "milk 1 1.49" in text
    assert "sales 2 voids 1 gross 4.47 voided 2.98 net 1.49" in text
    assert "report hash " in text
    days = plain(cli.ok("days", "lane1").stdout)
    assert f"{today()} closed 5" in days


def test_two_lanes_print_the_same_bytes(shop: Shop) -> None:
    cli = shop.cli
    cli.ok("close", "lane1")
    cli.ok("export", "lane1", "closed.bundle")
    cli.ok("import", "lane2", "closed.bundle")
    day = today()
    one = cli.ok("report", "lane1", "--day", day, "--json").stdout
    two = cli.ok("report", "lane2", "--day", day, "--json").stdout
    assert one == two
    assert (
        cli.ok("report", "lane1", "--day", day).stdout
        == cli.ok("report", "lane2", "--day", day).stdout
    )


def test_day_commands_refuse_bad_input_in_one_line(shop: Shop) -> None:
    cli = shop.cli
    before = cli.digest("lane1")
    assert_error(cli.run("close", "lane1", "--day", "2999-01-01"), "has not ended")
    assert_error(cli.run("close", "lane1", "--day", "yesterday"), "invalid day")
    assert_error(cli.run("report", "lane1", "--day", "2026-02-30"), "invalid day")
    assert_error(cli.run("report", "lane2"), "closed no day")
    assert_error(cli.run("days", "plain"), None)
    assert cli.digest("lane1") == before
