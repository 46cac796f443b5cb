"""The terminal's own bookkeeping around sealing (shell.terminal), on real directories."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from lanesync.core import sealdays
from lanesync.core.identity import Role
from lanesync.shell import terminal as terminal_module
from lanesync.shell.terminal import COMPLETENESS_RECHECK_MS, Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import price, receipt, sale

DAY_MS = 24 * 3600 * 1000


@dataclass
class Clock:
    ms: int

    def __call__(self) -> int:
        return self.ms


def test_a_closed_day_is_folded_again_when_its_own_documents_change_else_at_most_every_recheck(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Yesterday waits for lane2's close. Today's sales change the replica every second of a
    WAN outage; they do not fold yesterday again, the recheck interval does, and lane2's close
    (in yesterday's document) does at once."""
    folds: list[str] = []
    real = sealdays.is_complete

    def counted(replica: object, day: str) -> bool:
        folds.append(day)
        return real(replica, day)  # type: ignore[arg-type]

    monkeypatch.setattr(terminal_module.sealdays, "is_complete", counted)
    clock = Clock(wall_clock_ms() - DAY_MS)
    one = lanes.enroll("lane1", Role.MANAGER, now_ms=clock.ms - 1)
    two = lanes.enroll("lane2", now_ms=clock.ms - 1)
    with Terminal.open(one, clock=clock) as lane1, Terminal.open(two, clock=clock) as lane2:
        lane1.write(price("milk", 100))
        lane1.write(receipt("milk", 10))
        lane2.import_bundle(lane1.export_bundle())
        lane2.write(sale("milk:1"))
        lane1.import_bundle(lane2.export_bundle())
        lane1.close_days(None)
        yesterday = str(lane1.replica.views.last_closed_day(lane1.terminal_id))
        clock.ms += DAY_MS
        assert lane1.seal_due(lambda _day: True) == []  # lane2 has not closed it
        assert folds == [yesterday]
        lane1.write(sale("milk:1"))  # today's
        assert lane1.seal_due(lambda _day: True) == []
        assert folds == [yesterday]
        clock.ms += COMPLETENESS_RECHECK_MS
        assert lane1.seal_due(lambda _day: True) == []
        assert folds == [yesterday] * 2
        lane2.close_days(yesterday)
        lane1.import_bundle(lane2.export_bundle())
        assert lane1.seal_due(lambda _day: True) == [yesterday]
        assert folds == [yesterday] * 3
