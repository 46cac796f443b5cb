"""Closing days in the shell: ``Terminal.close_days`` (offline), ``GroupCommitter.close_days``
and the daemon's schedule (``shell.dayclosing``), on real terminals and real SQLite files."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import pytest

from lanesync.core.change import Change
from lanesync.core.identity import Role
from lanesync.core.records import DayEnd, Record
from lanesync.errors import ConfigError, StorageError
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.dayclosing import close_days_on_schedule
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import sale

DAY_MS = 86_400_000
TIMEOUT_S = 20.0


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date().isoformat()  # store time is UTC


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


CHECK_S = 0.01


def run_schedule(terminal: Terminal, clock: Clock, until: str | None, checks: int = 20) -> bool:
    """Run the schedule beside a committer until ``until`` is closed (None: for ``checks``
    checks) or the schedule ends; returns whether it was still running then. It runs a few
    checks more after the close: a closed day is not closed again."""

    async def main() -> bool:
        committer = GroupCommitter(terminal)
        runner = asyncio.create_task(committer.run())
        closing = asyncio.create_task(
            close_days_on_schedule(terminal, committer, 0, clock, check_every_s=CHECK_S)
        )
        me = terminal.terminal_id
        try:
            for _ in range(round(TIMEOUT_S / CHECK_S) if until is not None else 0):
                if closing.done() or terminal.replica.views.last_closed_day(me) == until:
                    break
                await asyncio.sleep(CHECK_S)
            await asyncio.sleep(checks * CHECK_S)
            return not closing.done()
        finally:
            for task in (closing, runner):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return asyncio.run(main())


def test_the_schedule_closes_the_days_it_missed_and_they_stay_closed(lanes: Lanes) -> None:
    now = wall_clock_ms()
    clock = Clock(now - 3 * DAY_MS)
    path = lanes.enroll("a", Role.MANAGER, now_ms=now - 4 * DAY_MS)
    terminal = Terminal.open(path, clock=clock)
    try:
        terminal.write(sale("milk:1:100"))
        clock.ms = now
        yesterday = day_of(now - DAY_MS)
        assert run_schedule(terminal, clock, yesterday)  # closed, and waiting for the next day
        closed = terminal.replica.views.closed_days(terminal.terminal_id)
        assert sorted(closed) == [day_of(now - 3 * DAY_MS), day_of(now - 2 * DAY_MS), yesterday]
        assert terminal.replica.views.head(terminal.terminal_id).seq == 4  # none closed twice
    finally:
        terminal.close()
    # Reopened with its clock set back into a closed day: its next sale is not in it.
    clock.ms = now - 2 * DAY_MS
    terminal = Terminal.open(path, clock=clock)
    try:
        record = terminal.write(sale("milk:1:100"))
        assert terminal.replica.business_day(record) == day_of(now)
    finally:
        terminal.close()


def test_a_revoked_terminal_ends_its_schedule(lanes: Lanes, store: StoreDirectory) -> None:
    now = wall_clock_ms()
    clock = Clock(now - DAY_MS)
    path = lanes.enroll("r", now_ms=now - 2 * DAY_MS)
    terminal = Terminal.open(path, clock=clock)
    try:
        first = terminal.write(sale("milk:1:100"))
        terminal.publish_revocation(store.revoke("r", first.seq, first.hash))
        clock.ms = now
        assert not run_schedule(terminal, clock, day_of(now - DAY_MS))  # it ended by itself
        assert terminal.replica.views.closed_days(terminal.terminal_id) == {}
    finally:
        terminal.close()


def test_a_terminal_that_wrote_nothing_closes_nothing(lanes: Lanes) -> None:
    terminal = lanes.new("a")
    assert run_schedule(terminal, Clock(wall_clock_ms()), None, checks=5)
    assert terminal.replica.views.head(terminal.terminal_id).seq == 0


def test_offline_close_commits_and_reopens_closed(lanes: Lanes) -> None:
    terminal = lanes.new("a", Role.MANAGER)
    terminal.write(sale("milk:2:100"))
    (record,) = terminal.close_days(None)
    assert isinstance(record.body, DayEnd)
    assert record.body.gross_cents == 200
    assert terminal.close_days(None) == []
    again = lanes.reopen(terminal)
    assert again.replica.views.closed_days(again.terminal_id) == {record.body.day: record.seq}


def test_the_committer_closes_once_and_publishes(lanes: Lanes) -> None:
    terminal = lanes.new("a", Role.MANAGER)
    terminal.write(sale("milk:1:100"))
    published: list[int] = []

    def publish(changes: list[object], commit: object) -> None:
        assert callable(commit)
        commit()
        published.append(len(changes))

    async def main() -> tuple[int, int]:
        committer = GroupCommitter(terminal, publish=publish)  # type: ignore[arg-type]
        first = await committer.close_days(None)
        again = await committer.close_days(day_of(wall_clock_ms()))
        return len(first), len(again)

    assert asyncio.run(main()) == (1, 0)
    assert published == [1]
    assert (
        day_of(wall_clock_ms() + DAY_MS)
        == (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    )


def test_a_failed_close_is_logged_and_tried_again(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = wall_clock_ms()
    clock = Clock(now - DAY_MS)
    terminal = Terminal.open(lanes.enroll("a", now_ms=now - 2 * DAY_MS), clock=clock)
    try:
        terminal.write(sale("milk:1:100"))
        clock.ms = now
        attempts: list[str | None] = []

        def refuse(until: str | None, now_ms: int) -> tuple[list[Record], Change]:
            attempts.append(until)
            raise ConfigError("this terminal's chain is closed")

        monkeypatch.setattr(terminal.replica, "close_days", refuse)
        assert run_schedule(terminal, clock, None, checks=5)  # still running: it tries again
        assert len(attempts) >= 2
        assert "days.close terminal=a failed: this terminal's chain is closed" in caplog.text
    finally:
        terminal.close()


def test_a_storage_failure_ends_the_schedule(lanes: Lanes, monkeypatch: pytest.MonkeyPatch) -> None:
    now = wall_clock_ms()
    clock = Clock(now - DAY_MS)
    terminal = Terminal.open(lanes.enroll("a", now_ms=now - 2 * DAY_MS), clock=clock)
    try:
        terminal.write(sale("milk:1:100"))
        clock.ms = now

        def full_disk(*stored: object) -> None:
            raise StorageError("disk full")

        monkeypatch.setattr(terminal.storage, "commit", full_disk)
        assert not run_schedule(terminal, clock, None, checks=5)  # it ended by itself
        assert terminal.failure is not None
    finally:
        monkeypatch.undo()
        terminal.close()
