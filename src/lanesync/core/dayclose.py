"""Closing business days: what a terminal's day-end record says, and where its clock goes after.

A terminal closes a store-local business day by signing a ``DayEnd`` record on its own chain:
the first and last seq of its records of that day and their totals (``records.DayEnd``). A
record belongs to the business day of its HLC timestamp; once a terminal closed a day, its
clock is moved to the first millisecond of the next day (``first_ms_after``), so nothing it
writes afterwards can enter a closed day, whatever its wall clock says. ``Replica`` re-establishes
that from its latest counted day-end when it opens.

Pure functions over records: the replica signs with them (``Replica.close_days``, applied to
the replica in ``core.closedays``) and the Z-report checks signed day-ends against the records
they cover (``core.zreport``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from lanesync.core.hlc import Hlc, HybridClock
from lanesync.core.ids import LEDGER_PREFIX, RecordId, Sku
from lanesync.core.records import DayEnd, Record, Sale, Void

# How far a local midnight may be from the first minute of its day: a daylight-saving jump at
# midnight (e.g. America/Santiago) moves the day's first minute by one hour; two covers any.
_MIDNIGHT_SEARCH_MINUTES = 120


def next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def days_between(first: str, last: str) -> list[str]:
    """Every day from ``first`` to ``last``, both included (empty when first > last)."""
    days, day = [], first
    while day <= last:
        days.append(day)
        day = next_day(day)
    return days


def day_of_ms(wall_ms: int, tz: ZoneInfo) -> str:
    return Hlc(wall_ms, 0).business_day(tz)


def first_ms_of(day: str, tz: ZoneInfo) -> int:
    """The first millisecond (UTC epoch) whose store-local business day is ``day``."""
    local = date.fromisoformat(day)
    start = int(datetime(local.year, local.month, local.day, tzinfo=tz).timestamp()) * 1000
    start -= start % 60_000
    # A local midnight that does not exist (or exists twice) maps near, not onto, the day's
    # first minute: walk to the first minute of the day from a minute of the day before.
    probe = start - _MIDNIGHT_SEARCH_MINUTES * 60_000
    for _ in range(2 * _MIDNIGHT_SEARCH_MINUTES + 1):
        if day_of_ms(probe, tz) >= day:
            return probe
        probe += 60_000
    raise ValueError(f"no first minute found for {day} in {tz.key}")  # pragma: no cover


def first_ms_after(day: str, tz: ZoneInfo) -> int:
    """Where a terminal's clock goes once it closed ``day``."""
    return first_ms_of(next_day(day), tz)


def adopt_day_after(clock: HybridClock, day: str, tz: ZoneInfo) -> None:
    """Move a terminal's clock past ``day``, which it closed: to the first millisecond of the
    next day at least, so nothing it writes from now on can enter ``day``."""
    clock.adopt(Hlc(first_ms_after(day, tz), 0))


def today(now_ms: int, tz: ZoneInfo) -> str:
    return day_of_ms(now_ms, tz)


# When a daemon closes the day before on its own (``lanesync run --close-at``): after the night's
# last sales and before the morning's first, like the Z-report a store prints at opening.
DEFAULT_CLOSE_AT_MINUTE = 4 * 60


def parse_close_at(text: str) -> int:
    """``HH:MM`` (store time) as minutes after midnight; ValueError otherwise."""
    hours, sep, minutes = text.partition(":")
    digits = hours + minutes
    if not (
        sep and len(hours) == 2 and len(minutes) == 2 and digits.isascii() and digits.isdigit()
    ):
        raise ValueError(f"invalid time {text!r}: expected HH:MM, e.g. 04:00")
    if not (int(hours) < 24 and int(minutes) < 60):
        raise ValueError(f"invalid time {text!r}: expected HH:MM, e.g. 04:00")
    return int(hours) * 60 + int(minutes)


def _local(now_ms: int, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=tz)


def due_day(now_ms: int, tz: ZoneInfo, close_at_minute: int) -> str:
    """The last day a daemon closing days at ``close_at_minute`` (store time) has closed by
    ``now_ms``: yesterday once today's closing time has passed, the day before otherwise."""
    local = _local(now_ms, tz)
    behind = 1 if local.hour * 60 + local.minute >= close_at_minute else 2
    return (local.date() - timedelta(days=behind)).isoformat()


def next_close_ms(now_ms: int, tz: ZoneInfo, close_at_minute: int) -> int:
    """The first time after ``now_ms`` at which the store-local clock reads ``close_at_minute``
    (or, on a day that skips it, the first minute after)."""
    local = _local(now_ms, tz).date()
    for offset in range(3):
        day = local + timedelta(days=offset)
        hours, minutes = divmod(close_at_minute, 60)
        at = datetime(day.year, day.month, day.day, hours, minutes, tzinfo=tz)
        at_ms = int(at.timestamp()) * 1000
        if at_ms > now_ms:
            return at_ms
    raise ValueError("no closing time within two days")  # pragma: no cover


def day_of_doc(doc: str) -> str | None:
    """The business day a ledger document holds, or None for another document."""
    return doc[len(LEDGER_PREFIX) :] if doc.startswith(LEDGER_PREFIX) else None


@dataclass(slots=True)
class DayFigures:
    """One terminal's records of one business day, added up (what its day-end signs)."""

    first_seq: int = 0
    last_seq: int = 0
    sales: int = 0
    voids: int = 0
    gross_cents: int = 0
    voided_cents: int = 0
    # sku -> [units, net cents]; not signed, the Z-report's SKU lines add them up.
    skus: dict[Sku, list[int]] = field(default_factory=dict)
    # Every voided sale was found (a day-end can be checked against these figures).
    whole: bool = True

    @property
    def net_cents(self) -> int:
        return self.gross_cents - self.voided_cents

    def add(self, record: Record, voided_sale: Callable[[RecordId], Sale | None]) -> None:
        """Count ``record`` (one of the terminal's records of the day, not a day-end)."""
        if self.first_seq == 0 or record.seq < self.first_seq:
            self.first_seq = record.seq
        self.last_seq = max(self.last_seq, record.seq)
        body = record.body
        if isinstance(body, Sale):
            self.sales += 1
            self.gross_cents += body.total_cents
            self._lines(body, 1)
        elif isinstance(body, Void):
            self.voids += 1
            sale = voided_sale(body.sale_id)
            if sale is None:
                self.whole = False  # this replica lacks the voided sale: its total is unknown
                return
            self.voided_cents += sale.total_cents
            self._lines(sale, -1)

    def _lines(self, sale: Sale, sign: int) -> None:
        for line in sale.lines:
            units_net = self.skus.setdefault(line.sku, [0, 0])
            units_net[0] += sign * line.qty
            units_net[1] += sign * line.qty * line.unit_cents

    def body(self, day: str) -> DayEnd:
        return DayEnd(
            day,
            self.first_seq,
            self.last_seq,
            self.sales,
            self.voids,
            self.gross_cents,
            self.voided_cents,
            self.net_cents,
        )

    def matches(self, signed: DayEnd) -> bool:
        return self.body(signed.day) == signed


def fold_day(
    records: Iterable[Record], voided_sale: Callable[[RecordId], Sale | None]
) -> DayFigures:
    """Add up one terminal's records of one day (day-ends are skipped)."""
    figures = DayFigures()
    for record in records:
        if not isinstance(record.body, DayEnd):
            figures.add(record, voided_sale)
    return figures


def figures_json(figures: DayFigures | DayEnd) -> dict[str, int]:
    """The signed fields of a day-end, as the Z-report and ``verify`` show them."""
    return {
        "first_seq": figures.first_seq,
        "last_seq": figures.last_seq,
        "sales": figures.sales,
        "voids": figures.voids,
        "gross_cents": figures.gross_cents,
        "voided_cents": figures.voided_cents,
        "net_cents": figures.net_cents,
    }
