"""Sealed days through the offline CLI: ``report --day`` answers from the stored report,
``days`` lists the day sealed, ``export --day`` and ``verify --day`` read its archive, and a
late record shows as an amendment (the daemon path is in tests/mesh/test_days_api.py).

The days are closed and sealed in the test process, as the daemon's sealing loop would: a lane
with no peer connected acknowledges its own days (``core.sealdays.acknowledged``)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from lanesync.core import bodies, zreport
from lanesync.shell.terminal import Terminal

from .conftest import Shop
from .helpers import Run, assert_error
from .test_days import REPORT_KEYS, plain, today


def close_and_seal(lane: Path) -> list[str]:
    with Terminal.open(lane) as terminal:
        terminal.close_days(None)
        return terminal.seal_due(lambda _day: True)


@pytest.fixture
def sealed(shop: Shop) -> Shop:
    """The shop with lane1's day (today: every record of the shop is today's) closed and
    sealed on lane1."""
    assert close_and_seal(shop.path("lane1")) == [today()]
    return shop


def folded_report(lane: Path, day: str) -> dict[str, object]:
    """The report folded from the records (the archive's, for a sealed day), in process."""
    with Terminal.open(lane) as terminal:
        return zreport.z_report(terminal.replica, day)


def test_a_sealed_day_reports_lists_and_verifies(sealed: Shop) -> None:
    cli, day = sealed.cli, today()
    report = cli.json("report", "lane1", "--day", day)
    assert set(report) == REPORT_KEYS
    assert report["sealed"] is True
    # read from the database as it is (immutable): no -wal or -shm file made or left behind
    database = sorted(p.name for p in sealed.path("lane1").glob("lanesync.db*"))
    assert database == ["lanesync.db"]
    assert report["totals"]["net_cents"] == 149
    # the report stored with the seal is the one the archive's records fold to
    assert report == folded_report(sealed.path("lane1"), day)
    text = plain(cli.ok("report", "lane1", "--day", day).stdout)
    assert f"Z-report store shop-1 day {day} (complete, sealed)" in text
    assert "amended" not in text
    assert cli.json("days", "lane1") == {
        "days": [
            {"day": day, "state": "sealed", "records": 5, "report_hash": report["report_hash"]}
        ]
    }
    assert f"{day} sealed 5" in plain(cli.ok("days", "lane1").stdout)
    checked = cli.json("verify", "lane1", "--day", day)
    assert checked == {
        "day": day,
        "state": "sealed",
        "records": 5,
        "report_hash": report["report_hash"],
        "ok": True,
        "problems": [],
        "day_end_mismatches": [],
        "records_after_close": [],
    }
    assert f"OK: day {day} (sealed), 5 records" in cli.ok("verify", "lane1", "--day", day).text


def test_a_sealed_days_bundle_carries_its_records(sealed: Shop) -> None:
    cli, day = sealed.cli, today()
    written = cli.json("export", "lane1", "day.bundle", "--day", day)
    assert written["bundle"] == "day.bundle"
    # lane2 holds the day open (it imported lane1's records before the close): it lacks only
    # lane1's day-end, which the bundle of what its state file lacks brings; then it folds the
    # same report from the day's records, and the whole day's bundle brings nothing new
    since = cli.json("export", "lane1", "delta.bundle", "--day", day, "--since", "lane2.state")
    assert 0 < since["bytes"] < written["bytes"]
    assert cli.json("import", "lane2", "delta.bundle")["new_records"] == 1
    assert cli.json("import", "lane2", "day.bundle")["new_records"] == 0
    sealed_report = cli.json("report", "lane1", "--day", day)
    on_lane2 = cli.json("report", "lane2", "--day", day)
    assert on_lane2["report_hash"] == sealed_report["report_hash"]
    assert on_lane2["sealed"] is False
    # an open day has the day checks only
    assert cli.json("verify", "lane2", "--day", day) == {
        "day": day,
        "state": "closed",
        "records": 5,
        "report_hash": sealed_report["report_hash"],
        "ok": True,
        "problems": [],
        "day_end_mismatches": [],
        "records_after_close": [],
    }


def tamper(lane: Path, day: str, column: str, change: bytes | None = None) -> None:
    """Change what lane's database stores of sealed ``day``: flip a byte in the middle of
    ``column``, or write ``change`` there (no lanesync process has the directory open)."""
    with closing(sqlite3.connect(lane / "lanesync.db")) as db, db:
        (value,) = db.execute(f"SELECT {column} FROM sealed_days WHERE day = ?", (day,)).fetchone()  # noqa: S608 - a column name of this test
        if change is None:
            flipped = bytearray(value)
            flipped[len(flipped) // 2] ^= 0x01
            change = bytes(flipped)
        db.execute(f"UPDATE sealed_days SET {column} = ? WHERE day = ?", (change, day))  # noqa: S608 - a column name of this test


def assert_fails(result: Run, reason: str) -> None:
    assert result.returncode == 1, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert result.stderr == "", result.describe()
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"INTEGRITY PROBLEMS: day {today()} (sealed)"), result.describe()
    assert any(reason in line for line in lines[1:]), result.describe()


def test_verify_day_finds_a_flipped_byte_of_the_archive(sealed: Shop) -> None:
    cli, day = sealed.cli, today()
    tamper(sealed.path("lane1"), day, "archive")
    result = cli.run("verify", "lane1", "--day", day)
    assert_fails(result, "archive does not decompress")
    assert_fails(result, "signature does not verify")
    checked = cli.run("verify", "lane1", "--day", day, "--json")
    assert checked.returncode == 1, checked.describe()
    assert checked.json()["ok"] is False


def test_verify_day_finds_a_stored_report_that_is_not_the_sealed_one(sealed: Shop) -> None:
    cli, day = sealed.cli, today()
    lane = sealed.path("lane1")
    with closing(sqlite3.connect(lane / "lanesync.db")) as db:
        (stored,) = db.execute("SELECT report FROM sealed_days WHERE day = ?", (day,)).fetchone()
    report = json.loads(stored)
    report["totals"]["net_cents"] += 100  # what a forged "report --day" would then print
    tamper(lane, day, "report", json.dumps(report).encode())
    assert_fails(cli.run("verify", "lane1", "--day", day), "stored with the seal is not")
    # The whole lane's verify says so too (black-box QA: it printed OK).
    text = cli.run("verify", "lane1")
    assert text.returncode == 1, text.describe()
    assert f"sealed_reports: {day}" in text.stdout
    whole = cli.run("verify", "lane1", "--json")
    assert whole.returncode == 1, whole.describe()
    assert [d["day"] for d in whole.json()["sealed_reports"]] == [day]


def test_day_options_refuse_bad_input_in_one_line(sealed: Shop) -> None:
    cli = sealed.cli
    for command in (
        ("verify", "lane1", "--day", "2026-02-30"),
        ("export", "lane1", "x.bundle", "--day", "yesterday"),
        ("report", "lane1", "--day", "20261207"),
    ):
        assert_error(cli.run(*command), "invalid day")
    assert_error(cli.run("verify", "lane1", "--day", "2001-01-01"), "2001-01-01 is not held here")
    assert_error(
        cli.run("export", "lane1", "x.bundle", "--day", "2001-01-01"), "2001-01-01 is not held"
    )
    assert not (sealed.root / "x.bundle").exists()


def test_a_late_record_amends_the_sealed_day(sealed: Shop) -> None:
    """lane2 sells on lane1's sealed day and closes it; its bundle reaches lane1, which opens
    the day again, counts the sale, seals it again, and reports the earlier hash."""
    cli, day = sealed.cli, today()
    first = cli.json("report", "lane1", "--day", day)
    with Terminal.open(sealed.path("lane2")) as lane2:
        lane2.write(lambda views: bodies.build_sale(views, [bodies.parse_line("milk:1")]))
        lane2.close_days(None)
        bundle = lane2.export_bundle()
    with Terminal.open(sealed.path("lane1")) as lane1:
        lane1.import_bundle(bundle)
        assert day not in lane1.replica.sealed_days()  # opened again by the late sale
        assert lane1.seal_due(lambda _day: True) == [day]
    report = cli.json("report", "lane1", "--day", day)
    assert set(report) == REPORT_KEYS | {"amended", "amended_from"}
    assert (report["sealed"], report["amended"]) == (True, True)
    assert report["amended_from"] == [first["report_hash"]]
    assert report["totals"]["sales"] == first["totals"]["sales"] + 1
    assert report["report_hash"] != first["report_hash"]
    text = plain(cli.ok("report", "lane1", "--day", day).stdout)
    assert f"day {day} (complete, sealed, amended)" in text
    assert f"sealed before with report hash {first['report_hash']}" in text
    assert cli.json("verify", "lane1", "--day", day)["ok"] is True
