"""Closing a terminal's business days on its replica, and what that reads back from it.

``core.dayclose`` holds the pure rules over records (a day's figures, the first millisecond
after a day); this module applies them to one ``Replica``: it finds the days a terminal has not
closed, folds each from the records the replica counts and signs its day-end through
``Replica.append``, then moves the clock past the last day closed. The Z-report
(``core.zreport``) checks signed day-ends with the same reads (``catalog_by_day``,
``counted_sale``, ``first_record_day``), so both judge a day from the same records.

Apart from ``replica.py`` because none of it touches the replica's documents or observers: it
is written only against the replica's public surface.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from lanesync.core import dayclose
from lanesync.core.change import Change
from lanesync.core.ids import CATALOG_DOC, RecordId, TerminalId, ledger_doc
from lanesync.core.records import Record, Sale, is_valid_day
from lanesync.errors import ConfigError, PermissionDenied, UsageError

if TYPE_CHECKING:  # the replica calls this module: at run time it is passed in, not imported
    from lanesync.core.replica import Replica


def close_days(replica: Replica, until: str | None, now_ms: int) -> tuple[list[Record], Change]:
    """What ``Replica.close_days`` does (its docstring states the contract)."""
    if replica.me is None:
        raise ConfigError("this replica has no terminal identity to sign records with")
    if not replica.me.certificate.role.may_sell:
        raise PermissionDenied("the cloud closes no day: each lane closes its own")
    replica.check_writable()
    today = dayclose.today(now_ms, replica.tz)
    day = today if until is None else until
    if not is_valid_day(day):
        raise UsageError(f"invalid day {day!r}: expected YYYY-MM-DD, e.g. 2026-12-07")
    if day > today:
        raise UsageError(f"{day} has not ended: today is {today} (store time)")
    me = replica.me.certificate.terminal_id
    first = _first_open_day(replica, me)
    signed: list[Record] = []
    change = Change()
    if first is None:
        return signed, change
    closed = replica.views.closed_days(me)
    to_close = [d for d in dayclose.days_between(first, day) if d not in closed]
    prices = catalog_by_day(replica) if to_close else {}
    for open_day in to_close:
        held = [r for _, _, r in replica.records([ledger_doc(open_day)])]
        own = (r for r in [*held, *prices.get(open_day, [])] if r.terminal == me)
        counted = (r for r in own if replica.views.is_accepted(r))
        figures = dayclose.fold_day(counted, partial(counted_sale, replica))
        record, added = replica.append(figures.body(open_day), now_ms)
        signed.append(record)
        change.extend(added)
    if signed:
        dayclose.adopt_day_after(replica.clock, day, replica.tz)
    return signed, change


def _first_open_day(replica: Replica, terminal: TerminalId) -> str | None:
    """The first day ``terminal`` has not closed, from the day of its first record; None
    when it has written nothing."""
    last = replica.views.last_closed_day(terminal)
    if last is not None:
        return dayclose.next_day(last)
    return first_record_day(replica, terminal)


def first_record_day(replica: Replica, terminal: TerminalId) -> str | None:
    """The business day of ``terminal``'s first counted record, None when none counts. Kept
    per record hash (``Replica.first_days``): the record is read back from its document, an
    archive once its day is sealed, and every report asks this of every lane."""
    first_hash = replica.views.accepted_hash(terminal, 1)
    if first_hash is not None:
        known = replica.first_days.get(first_hash)
        if known is not None:
            return known
    first = replica.find_record(RecordId(terminal, 1))
    if first is not None and first_hash is not None:
        day = replica.first_days[first_hash] = first.hlc.business_day(replica.tz)
        return day
    if first is None:
        head = replica.views.head(terminal)
        return None if head.seq == 0 else head.hlc.business_day(replica.tz)
    return first.hlc.business_day(replica.tz)


def catalog_by_day(replica: Replica) -> dict[str, list[Record]]:
    """The counted catalog records (prices), by business day: they belong to the day of
    their timestamp like any record, though they are stored in the catalog document."""
    by_day: dict[str, list[Record]] = {}
    for _, _, record in replica.records([CATALOG_DOC]):
        if replica.views.is_accepted(record):
            by_day.setdefault(record.hlc.business_day(replica.tz), []).append(record)
    return by_day


def counted_sale(replica: Replica, sale_id: RecordId) -> Sale | None:
    """The counted sale with this id, if ``replica`` holds one (what a void takes back)."""
    if replica.views.is_ambiguous(sale_id):
        return None  # two branches of a resolved fork hold this id: no single sale
    record = replica.find_record(sale_id)
    if record is None or not isinstance(record.body, Sale):
        return None
    return record.body
