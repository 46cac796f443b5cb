"""``lanesync bench year``'s parts that need no fresh process: the store's days built through the
real storage on a simulated clock, the checkpoints, the estimate, the targets and the table.
(The whole study runs in its tiny form in test_studies.py.)"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from lanesync.bench.studies.year import (
    DEFAULT_CHECKPOINTS,
    Checkpoint,
    YearOptions,
    checkpoint_days,
    estimate_s,
    figures,
    first_day,
    outcomes,
)
from lanesync.bench.studies.year_build import (
    CLOSES_AT_HOUR,
    OPENS_AT_HOUR,
    TIMEZONE,
    YearStore,
    local_ms,
    sale_times,
)
from lanesync.bench.studies.year_figures import (
    NOT_APPLICABLE,
    Scale,
    YearFigure,
    below,
    flat,
    fmt,
    render_table,
    rss_target,
)
from lanesync.cli.main import cli
from lanesync.core.dayclose import day_of_ms
from lanesync.core.ids import ledger_doc
from lanesync.core.records import DayEnd, Sale
from lanesync.shell.terminal import Terminal

TZ = ZoneInfo(TIMEZONE)
# 2026-03-08 is 23 hours long in New York (clocks spring forward at 02:00), 2026-11-01 25.
SHORT_DAY, LONG_DAY = date(2026, 3, 8), date(2026, 11, 1)


@pytest.mark.parametrize("day", [SHORT_DAY, LONG_DAY, date(2026, 12, 7)])
def test_sales_are_stamped_on_their_day_in_opening_hours(day: date) -> None:
    times = sale_times(day, 2_500, TZ)
    assert len(times) == 2_500
    assert times == sorted(times)
    assert {day_of_ms(t, TZ) for t in times} == {day.isoformat()}
    assert times[0] == local_ms(day, OPENS_AT_HOUR, TZ)
    assert times[-1] < local_ms(day, CLOSES_AT_HOUR, TZ)


def test_a_store_builds_its_days_and_lane_one_holds_them_all(tmp_path: Path) -> None:
    start = date(2026, 3, 7)  # its second day is the short one
    store = YearStore.create(tmp_path, lanes=3, days=2, sales_per_day=10, first_day=start)
    try:
        store.build_day()
        store.build_day()
        assert store.sales_written == 20
        assert store.expected_records() == 20 + 2 * 3  # a day-end per lane and day
        assert store.records_held() == store.expected_records()
        held = store.lanes[0].replica
        for lane in store.lanes:
            # Every lane closed both days, and lane 1 counted every lane's day-ends.
            assert set(held.views.closed_days(lane.terminal_id)) == {
                start.isoformat(),
                (start + timedelta(days=1)).isoformat(),
            }
        for number in (1, 2):
            day = store.day(number).isoformat()
            stored = [r for _, _, r in held.records([ledger_doc(day)])]
            sales = [r for r in stored if isinstance(r.body, Sale)]
            assert {held.business_day(r) for r in sales} == {day}
            assert len(sales) == 10
            # A day-end is signed the next morning and stored in the day it closes.
            assert sorted(r.body.day for r in stored if isinstance(r.body, DayEnd)) == [day] * 3
        assert day_of_ms(store.morning_after(2), TZ) == (start + timedelta(days=2)).isoformat()
        store.suspend_measured()
        copy = store.copy_measured(tmp_path / "probe")
        store.resume_measured()
    finally:
        store.close()
    with Terminal.open(copy, clock=lambda: store.morning_after(2)) as reopened:
        assert sum(h.seq for h in reopened.replica.views.heads()) == 26


def test_a_store_closed_while_its_lane_is_suspended(tmp_path: Path) -> None:
    store = YearStore.create(tmp_path, lanes=2, days=1, sales_per_day=2, first_day=first_day(1))
    store.build_day()
    store.suspend_measured()
    store.close()  # lane 1 is closed once, the others too
    with Terminal.open(store.measured_path) as reopened:
        assert reopened.replica.views.accepted_count() > 0


def test_checkpoints_and_estimate() -> None:
    assert checkpoint_days(DEFAULT_CHECKPOINTS, 365) == DEFAULT_CHECKPOINTS
    assert checkpoint_days(DEFAULT_CHECKPOINTS, 60) == (1, 30, 60)
    assert checkpoint_days(DEFAULT_CHECKPOINTS, 45) == (1, 30, 45)
    assert checkpoint_days((0, 7), 3) == (3,)
    small = YearOptions(3, 200, 4, (1, 3), 3)
    full = YearOptions(365, 2_500, 4, DEFAULT_CHECKPOINTS, 3)
    assert 0 < estimate_s(small) < estimate_s(full)
    assert not small.scale.full
    assert full.scale.full
    assert first_day(10) < date.today() - timedelta(days=10)


def test_targets_are_judged_on_the_last_day_of_a_full_run() -> None:
    full, small = Scale(365, 2_500, 4), Scale(60, 2_500, 4)
    assert rss_target({30: 100.0, 365: 110.0})
    assert not rss_target({30: 50.0, 365: 110.0})  # more than 1.2x day 30
    assert not rss_target({30: 130.0, 365: 130.0})
    assert rss_target({1: 10.0, 365: 100.0})  # no day 30: the limit alone
    assert flat({1: 100.0, 365: 140.0})
    assert not flat({1: 100.0, 365: 400.0})
    figure = YearFigure("reopen_s", "Reopen", "s", "lower", {1: 0.1, 365: 0.9}, "< 0.5 s")
    figure.judge = below(0.5)
    figure.finish(full)
    assert figure.result == "FAIL"
    figure.finish(small)
    assert figure.result == "n/a (smaller run)"
    figure.values = {1: 0.1, 365: 0.4}
    figure.finish(full)
    assert figure.result == "PASS"
    unmeasured = YearFigure("x", "Close to sealed", "s", "lower", {365: None}, "< 5 s", below(5))
    unmeasured.finish(full)
    assert unmeasured.result == NOT_APPLICABLE
    untargeted = YearFigure("y", "  documents", "count", "lower", {365: 3.0})
    untargeted.finish(full)
    assert untargeted.result == ""
    table = render_table([figure, unmeasured, untargeted], [1, 365])
    assert "| Reopen" in table
    assert "0.400 s" in table
    assert table.count(NOT_APPLICABLE) >= 2


def test_fmt() -> None:
    assert fmt(None, "s") == NOT_APPLICABLE
    assert fmt(math.nan, "B") == NOT_APPLICABLE
    assert fmt(1234.0, "B") == "1,234 B"
    assert fmt(5.25, "ms") == "5.2 ms"
    assert fmt(52.5, "ms") == "52 ms"
    assert fmt(12.34, "MB") == "12.3 MB"
    assert fmt(3.0, "count") == "3"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--checkpoints", "1,x"], "error: --checkpoints must be comma-separated days"),
        (["--checkpoints", "0,3"], "error: every --checkpoints day must be at least 1"),
        (["--sales-per-day", "3", "--lanes", "4"], "error: --sales-per-day must be at least"),
    ],
)
def test_year_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    done = CliRunner().invoke(cli, ["bench", "year", *args, "--out", str(tmp_path)])
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1].startswith(message)


def _checkpoint(day: int, sealed: int, rss: float, open_s: float) -> Checkpoint:
    def reopen(run: int) -> dict[str, float]:
        return {
            "open_s": open_s + run / 100,
            "open_cpu_s": open_s,
            "rss_mb": rss - 35,
            "rss_after_sale_mb": rss - 34,
            "rss_process_mb": rss,
            "rss_process_after_sale_mb": rss + 1,
            "state_bytes": 90.0,
            "state_docs": 3.0,
            "records": 2_504.0 * day,
        }

    def folded(first_day_sealed: bool) -> dict[str, object]:
        return {
            "report_s": 0.5,
            "start_s": 0.45,
            "work_s": 0.05,
            "report_cpu_s": 0.4,
            "start_cpu_s": 0.37,
            "work_cpu_s": 0.03,
            "complete": True,
            "sales": 2_500,
            "sealed": first_day_sealed,
        }

    states = {"closed": day - sealed} | ({"sealed": sealed} if sealed else {})
    return Checkpoint(
        day=day,
        build_s=1.0,
        builder_rss_mb=100.0,
        disk_bytes=120 * 2_500 * day,
        database_bytes=110 * 2_500 * day,
        sales=2_500 * day,
        reopens=[reopen(run) for run in range(3)],
        reports_old=[folded(sealed > 0) for _ in range(3)],
        reports_new=[folded(False) for _ in range(3)],
        listing={"states": states, "records": 2_504 * day, "days": []},
        resume_s=0.1,
    )


def test_the_sealed_figures_fill_in_once_days_are_sealed() -> None:
    # What a year with sealing would report: day 1 still open to amendments, later days sealed.
    points = [
        _checkpoint(1, 0, 40.0, 0.05),
        _checkpoint(30, 29, 60.0, 0.1),
        _checkpoint(365, 364, 70.0, 0.2),
    ]
    listed = {f.key: f for f in figures(points, Scale(365, 2_500, 4))}
    assert listed["report_old_sealed_ms"].values == {1: None, 30: 50.0, 365: 50.0}
    assert listed["report_old_sealed_ms"].result == "PASS"
    assert listed["days_sealed"].values == {1: 0, 30: 29, 365: 364}
    assert listed["rss_process_mb"].result == "PASS"  # 70 MB, and <= 1.2x day 30
    assert listed["reopen_s"].values[365] == pytest.approx(0.21)  # the median of the runs
    assert listed["reopen_s"].result == "PASS"
    assert listed["state_bytes"].result == "PASS"
    assert listed["disk_bytes_per_sale"].result == "PASS"
    assert listed["close_to_sealed_s"].result == NOT_APPLICABLE
    runs = outcomes(points, list(listed.values()), 3)
    assert [o.repeat for o in runs] == [0, 1, 2]
    assert runs[2].figures["Reopen, day 365"].value == pytest.approx(0.22)  # each run its own
    assert runs[0].figures["Days sealed, day 30"].value == 29
    assert "its own work (first day, sealed), day 1" not in runs[0].figures
    assert runs[0].figures["its own work (first day, sealed), day 365"].value == 50.0
