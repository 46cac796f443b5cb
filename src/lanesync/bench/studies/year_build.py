"""``lanesync bench year``, the store's year: N lanes of one store sell day by day on a simulated
clock, through the real storage (``Terminal`` and SQLite, in batches as ``lanesync bench
foundation`` fills its terminal), and every lane closes every day (its signed day-end record).

Lane 1 is the lane whose directory is measured: it also merges every other lane's records of the
day (sales and day-ends) through ``Replica.merge`` and commits them like a daemon receiving them,
so its directory holds the whole store's year. The other lanes keep only their own records.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.foundation_lanesync import BUILD_BATCH
from lanesync.bench.studies.workload import make_workload, sale_builders
from lanesync.core.identity import Role
from lanesync.core.ids import CONFIG_DOC
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import BodyBuilder, Terminal

# A store's zone with daylight-saving changes, so the days that are 23 and 25 hours long are in
# the year too: a record belongs to the business day of its timestamp in this zone.
TIMEZONE = "America/New_York"
OPENS_AT_HOUR = 8  # sales are spread evenly over the opening hours, 08:00-22:00 store time
CLOSES_AT_HOUR = 22
# The daemon closes yesterday at 04:00 store time (issue #17's default); the study closes then.
DAY_CLOSE_HOUR = 4
MERGE_BATCH = BUILD_BATCH  # updates per Replica.merge on lane 1 (one commit each)
# Certificates must cover the simulated year and the real days the CLI reads it afterwards.
VALIDITY_MARGIN_DAYS = 30

DocUpdate = tuple[str, bytes]  # (document name, CRDT update), as Change.updates holds them


def lane_name(index: int) -> str:
    return f"lane{index}"


def local_ms(day: date, hour: int, tz: ZoneInfo, plus_ms: int = 0) -> int:
    """``hour``:00 store time on ``day``, as UTC epoch milliseconds."""
    start = datetime(day.year, day.month, day.day, hour, tzinfo=tz)
    return int(start.timestamp() * 1000) + plus_ms


def sale_times(day: date, sales: int, tz: ZoneInfo) -> list[int]:
    """When the store's ``sales`` sales of ``day`` happen: evenly over the opening hours."""
    opens = local_ms(day, OPENS_AT_HOUR, tz)
    span = local_ms(day, CLOSES_AT_HOUR, tz) - opens
    return [opens + i * span // sales for i in range(sales)]


def config_of(lane: Terminal) -> DocUpdate:
    """The lane's whole config document (its certificate among it)."""
    return CONFIG_DOC, lane.replica.updates_since({})[CONFIG_DOC]


@dataclass
class SimClock:
    """The lanes' wall clock: the study moves it; ``Terminal.open(clock=...)`` reads it."""

    ms: int

    def __call__(self) -> int:
        return self.ms


@dataclass
class YearStore:
    """The store being built: its lanes open in this process, the day it has reached."""

    root: Path
    first_day: date
    sales_per_day: int
    clock: SimClock
    lanes: list[Terminal]
    builders: list[BodyBuilder]
    days_built: int = 0
    suspended: bool = False

    @classmethod
    def create(
        cls, root: Path, lanes: int, days: int, sales_per_day: int, first_day: date
    ) -> YearStore:
        tz = ZoneInfo(TIMEZONE)
        clock = SimClock(local_ms(first_day, 0, tz))
        store = StoreDirectory.init(root / "store", "bench-year", TIMEZONE)
        for index in range(1, lanes + 1):
            name = lane_name(index)
            store.enroll(root / name, name, Role.CASHIER, clock(), days + VALIDITY_MARGIN_DAYS)
        opened = [Terminal.open(root / lane_name(i), clock=clock) for i in range(1, lanes + 1)]
        # One day's baskets, the same every day (the records differ: seq, time, signature).
        builders = sale_builders(make_workload(sales_per_day))
        year = cls(root, first_day, sales_per_day, clock, opened, builders)
        # Lane 1 learns the other lanes' certificates (their config documents), as the mesh's
        # first exchange does, or it could verify none of their records.
        year._receive(opened[0], [config_of(lane) for lane in opened[1:]])
        return year

    @property
    def tz(self) -> ZoneInfo:
        return self.lanes[0].replica.tz

    @property
    def measured_path(self) -> Path:
        return self.root / lane_name(1)

    @property
    def sales_written(self) -> int:
        return self.days_built * self.sales_per_day

    def day(self, number: int) -> date:
        """The date of day ``number`` (1-based) of the year."""
        return self.first_day + timedelta(days=number - 1)

    def morning_after(self, number: int) -> int:
        """Opening time of the day after day ``number`` (when a checkpoint reopens the lane)."""
        return local_ms(self.day(number + 1), OPENS_AT_HOUR, self.tz)

    def build_day(self) -> None:
        """Sell the next day's sales on every lane, close the day on every lane, and merge
        every other lane's records of the day into lane 1."""
        number = self.days_built + 1
        day = self.day(number)
        times = sale_times(day, self.sales_per_day, self.tz)
        count = len(self.lanes)
        forwarded: list[DocUpdate] = []
        for index, lane in enumerate(self.lanes):
            mine = range(index, self.sales_per_day, count)  # round-robin, like the bench load
            updates = self._sell(lane, [(times[i], self.builders[i]) for i in mine])
            if index > 0:
                forwarded.extend(updates)
        self.clock.ms = local_ms(day + timedelta(days=1), DAY_CLOSE_HOUR, self.tz)
        for index, lane in enumerate(self.lanes):
            updates = self._close(lane, day.isoformat())
            if index > 0:
                forwarded.extend(updates)
        self._receive(self.lanes[0], forwarded)
        # Lane 1 holds the store's day now and no peer is connected to it: it acknowledges its
        # own days and seals what is complete, as its daemon would (shell.dayclosing).
        self.lanes[0].seal_due(lambda _day: True)
        self.days_built = number

    def _sell(self, lane: Terminal, sales: Sequence[tuple[int, BodyBuilder]]) -> list[DocUpdate]:
        updates: list[DocUpdate] = []
        for start in range(0, len(sales), BUILD_BATCH):
            changes = []
            for at_ms, build in sales[start : start + BUILD_BATCH]:
                self.clock.ms = at_ms
                changes.append(lane.stage(build)[1])
            lane.commit(changes)
            lane.compact_if_due()
            for change in changes:
                updates.extend(change.updates)
        return updates

    def _close(self, lane: Terminal, day: str) -> list[DocUpdate]:
        """Sign and commit the lane's day-end of ``day`` (what ``lanesync close`` does)."""
        records, change = lane.stage_close(day)
        if len(records) != 1:
            raise BenchError(f"{lane.terminal_id} signed {len(records)} day-ends for {day}")
        lane.commit([change])
        lane.compact_if_due()
        return list(change.updates)

    def _receive(self, lane: Terminal, updates: Sequence[DocUpdate]) -> None:
        """What a daemon does with its peers' updates: merge (verify, fold), commit."""
        for start in range(0, len(updates), MERGE_BATCH):
            change = lane.replica.merge(updates[start : start + MERGE_BATCH], self.clock())
            lane.commit([change])
            lane.compact_if_due()

    def records_held(self) -> int:
        """Records on lane 1's chains of the store's lanes: every sale and day-end so far."""
        names = {lane.terminal_id for lane in self.lanes}
        return sum(h.seq for h in self.lanes[0].replica.views.heads() if h.terminal in names)

    def expected_records(self) -> int:
        return self.sales_written + self.days_built * len(self.lanes)

    def suspend_measured(self) -> None:
        """Close lane 1 so a fresh process can open (a copy of) its directory."""
        self.lanes[0].close()
        self.suspended = True

    def resume_measured(self) -> None:
        self.lanes[0] = Terminal.open(self.measured_path, clock=self.clock)
        self.suspended = False

    def copy_measured(self, target: Path) -> Path:
        """A copy of lane 1's directory (probes write a sale; the year must not hold it)."""
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(self.measured_path, target)
        return target

    def close(self) -> None:
        for lane in self.lanes[1:] if self.suspended else self.lanes:
            lane.close()
