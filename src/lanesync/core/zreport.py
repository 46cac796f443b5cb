"""The store's Z-report of a business day, folded from the records a replica holds.

Computed, never typed: every figure comes from counted records, so every replica that holds the
same records prints the same report, byte for byte, with the same ``report_hash`` (SHA-256 of
the canonical JSON of the report without ``report_hash`` and ``sealed``). A terminal's signed
day-end (``records.DayEnd``) says which of its records the day holds; the report counts those
and checks nothing against the signed totals (``day_findings`` does: a disagreement is a
``verify`` finding, never a silent difference).

What a day holds, per terminal: its counted records (day-ends aside) whose business day is the
day, up to its day-end of that day (or of any later day: a record it signed after closing a day
that still falls in it was written with a wrong clock, and is a ``records_after_close`` finding,
counted in no report). A void counts on the day of the void, with the total of the sale it
voids; a day's report never changes when a later day voids one of its sales. Past a fork the
store resolved, both branches' records of the day count (each sale is genuine) and neither
finding applies to that terminal: a day-end covers its own branch only.

``complete``: every lane terminal (cashier or manager; the cloud's chain sells nothing and closes
no day) whose first record falls on the day or before it has a day-end of the day, except a
terminal whose chain the store ended (revoked, replaced, fork resolved) and that holds no record
of the day: it can never close it, and holds nothing of it open. Nor does a terminal the store
ended at a seq (a revocation's cut, a replacement's closure: ``Views.final_seq``) once this
replica counts its chain up to that seq: it cannot close the day (a revoked terminal signs
nothing), and nothing of it that is not held can ever count, so its figures of the day are
final. Without this, a lane revoked or replaced after selling, before closing, would hold its
days open for ever: never complete, never sealed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from lanesync.core import closedays, dayclose, sealing
from lanesync.core.dayclose import DayFigures, figures_json
from lanesync.core.ids import RecordId, TerminalId, ledger_doc
from lanesync.core.records import DayEnd, Record, Void, is_valid_day
from lanesync.errors import UsageError

if TYPE_CHECKING:  # the replica folds sealed days again through sealdays: passed in, not imported
    from lanesync.core.replica import Replica
    from lanesync.core.views import Views

_FIGURES = ("sales", "voids", "gross_cents", "voided_cents", "net_cents")


@dataclass(slots=True)
class _TerminalDay:
    figures: DayFigures = field(default_factory=DayFigures)
    day_end: Record | None = None
    after_close: list[tuple[Record, int]] = field(default_factory=list)  # record, closing seq
    counted: bool = False  # holds a counted record of the day (day-ends aside)
    forked: bool = False  # the store resolved a fork of its chain
    # A void of the day names a sale on a chain that forked: which sale the id names, and
    # whether it counts, changed with the fork (see _mismatch).
    voids_across_fork: bool = False


@dataclass(slots=True)
class _Day:
    day: str
    records: int = 0  # counted records stored in the day's document, day-ends included
    terminals: dict[TerminalId, _TerminalDay] = field(default_factory=dict)


def check_day(day: str) -> str:
    if not is_valid_day(day):
        raise UsageError(f"invalid day {day!r}: expected YYYY-MM-DD, e.g. 2026-12-07")
    return day


def check_begun(replica: Replica, day: str, now_ms: int) -> str:
    """``day`` for a report asked at ``now_ms``: a well-formed day that has begun, store time (a
    Z-report of a day to come would print an empty, incomplete report with a hash, as if
    something were known of it)."""
    check_day(day)
    today = dayclose.today(now_ms, replica.tz)
    if day > today:
        raise UsageError(f"{day} has not begun: today is {today} (store time)")
    return day


def _close_bounds(replica: Replica) -> dict[TerminalId, list[tuple[str, int]]]:
    """Per terminal with day-ends: (day, least seq of its day-ends of that day or any later)."""
    bounds: dict[TerminalId, list[tuple[str, int]]] = {}
    for terminal in replica.views.closing_terminals():
        closed = sorted(replica.views.closed_days(terminal).items(), reverse=True)
        least, suffix = None, []
        for day, seq in closed:
            least = seq if least is None else min(least, seq)
            suffix.append((day, least))
        bounds[terminal] = suffix[::-1]
    return bounds


def _bound(bounds: list[tuple[str, int]], day: str) -> int | None:
    for closed_day, least in bounds:
        if closed_day >= day:
            return least
    return None


@dataclass(frozen=True, slots=True)
class _Held:
    """What every day's fold needs from the whole replica, gathered once."""

    bounds: dict[TerminalId, list[tuple[str, int]]]
    prices: dict[str, list[Record]]  # counted catalog records by business day
    lanes: frozenset[TerminalId]  # terminals with a cashier or manager certificate


def _held(replica: Replica) -> _Held:
    lanes = frozenset(c.terminal_id for c in replica.views.certificates() if c.role.may_sell)
    return _Held(_close_bounds(replica), closedays.catalog_by_day(replica), lanes)


def _fold(replica: Replica, day: str, held_here: _Held) -> _Day:
    views = replica.views
    folded = _Day(day)
    held: dict[TerminalId, list[Record]] = {}
    in_ledger = [r for _, _, r in replica.records([ledger_doc(day)]) if views.is_accepted(r)]
    folded.records = len(in_ledger)
    for record in [*in_ledger, *held_here.prices.get(day, [])]:
        if record.terminal not in held_here.lanes:
            continue  # the cloud's prices: it sells nothing and closes no day
        terminal_day = folded.terminals.setdefault(record.terminal, _TerminalDay())
        if isinstance(record.body, DayEnd):
            if views.closed_days(record.terminal).get(day) == record.seq:
                terminal_day.day_end = record
        else:
            terminal_day.counted = True
            held.setdefault(record.terminal, []).append(record)
    for terminal, records in held.items():
        terminal_day = folded.terminals[terminal]
        terminal_day.forked = views.fork_resolution(terminal) is not None
        # Past a resolved fork, seqs no longer order one chain: both branches' records count
        # and no day-end bounds the other branch (see _mismatch).
        bound = None if terminal_day.forked else _bound(held_here.bounds.get(terminal, []), day)
        counted = []
        for record in sorted(records, key=lambda r: r.seq):
            if bound is not None and record.seq > bound:
                terminal_day.after_close.append((record, bound))
            else:
                counted.append(record)
        terminal_day.figures = dayclose.fold_day(counted, partial(closedays.counted_sale, replica))
        terminal_day.voids_across_fork = any(
            isinstance(record.body, Void) and _ever_forked(views, record.body.sale_id.terminal)
            for record in counted
        )
    return folded


def _ever_forked(views: Views, terminal: TerminalId) -> bool:
    """Does this replica hold a fork of ``terminal``'s chain, resolved or not?"""
    return views.fork_resolution(terminal) is not None or views.is_broken(terminal) is not None


def _required(replica: Replica, folded: _Day, lanes: frozenset[TerminalId]) -> list[TerminalId]:
    """The lane terminals whose day-end the day needs (see the module docstring)."""
    views = replica.views
    required = []
    for terminal in sorted(lanes):
        first = closedays.first_record_day(replica, terminal)
        if first is None or first > folded.day:
            continue
        held = folded.terminals.get(terminal)
        if views.chain_ended(terminal) and (held is None or not held.counted):
            continue
        final = views.final_seq(terminal)
        if final is not None and views.head(terminal).seq >= final:
            continue
        required.append(terminal)
    return required


def _report(replica: Replica, folded: _Day, held_here: _Held) -> dict[str, Any]:
    missing = [
        t
        for t in _required(replica, folded, held_here.lanes)
        if t not in folded.terminals or folded.terminals[t].day_end is None
    ]
    lines = []
    totals = dict.fromkeys(_FIGURES, 0)
    skus: dict[str, list[int]] = {}
    for terminal, held in sorted(folded.terminals.items()):
        # Every terminal held here has a counted record of the day or its day-end of it.
        figures = held.figures
        signed_fields = figures_json(figures)
        lines.append({"terminal_id": terminal, **signed_fields})
        for name in _FIGURES:
            totals[name] += signed_fields[name]
        for sku, (units, net) in figures.skus.items():
            sums = skus.setdefault(sku, [0, 0])
            sums[0] += units
            sums[1] += net
    report: dict[str, Any] = {
        "store_id": replica.store.store_id,
        "day": folded.day,
        "complete": not missing,
        "missing_terminals": missing,
        "terminals": lines,
        "skus": [{"sku": s, "units": u, "net_cents": n} for s, (u, n) in sorted(skus.items())],
        "totals": totals,
    }
    report["report_hash"] = report_hash(report)
    doc = ledger_doc(folded.day)
    report["sealed"] = folded.day in replica.sealed_days()
    amended = sealing.amended_hashes(replica.amended_from(doc), report["report_hash"])
    if amended:
        # A late record opened the sealed day again: the hashes it was sealed with before.
        report["amended"] = True
        report["amended_from"] = list(amended)
    return report


# Keys of a report that say where the day stands, not what it holds: outside the hash.
_STANDING = ("report_hash", "sealed", "amended", "amended_from")


def report_hash(report: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``report`` without its hash and where the day
    stands (sealed, amended)."""
    body = {k: v for k, v in report.items() if k not in _STANDING}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def z_report(replica: Replica, day: str) -> dict[str, Any]:
    """The store's Z-report of ``day`` as this replica's records make it."""
    check_day(day)
    held = _held(replica)
    return _report(replica, _fold(replica, day, held), held)


def default_day(replica: Replica) -> str:
    """The last day this replica's own terminal closed (what ``report`` shows by default)."""
    if replica.me is None:
        raise UsageError("this replica has no terminal of its own: name a day with --day")
    last = replica.views.last_closed_day(replica.me.certificate.terminal_id)
    if last is None:
        raise UsageError(
            "this terminal has closed no day yet: close one with `lanesync close` or name a "
            "day with --day YYYY-MM-DD"
        )
    return last


def _held_days(replica: Replica) -> list[str]:
    """The days of the open ledger documents (not the sealed days)."""
    days = (dayclose.day_of_doc(name) for name in replica.doc_names())
    return sorted(d for d in days if d is not None)


def days(replica: Replica) -> dict[str, Any]:
    """Every business day this replica holds a ledger of: ``closed`` once its report is complete
    (every lane terminal that must close it did), with its report's hash; ``open`` otherwise;
    ``sealed`` (``core.sealing``) from the sealed day's description, without opening it."""
    held = _held(replica)
    listed = [sealing.wire_entry(s) for s in replica.sealed_days().values()]
    listed += [_entry(replica, day, held) for day in _held_days(replica)]
    return {"days": sorted(listed, key=lambda d: str(d["day"]))}


def day_entry(replica: Replica, day: str) -> dict[str, Any]:
    """``day`` as ``days`` lists it (an open document's day: folded)."""
    sealed = replica.sealed_days().get(day)
    if sealed is not None:
        return sealing.wire_entry(sealed)
    return _entry(replica, day, _held(replica))


def _entry(replica: Replica, day: str, held: _Held) -> dict[str, Any]:
    folded = _fold(replica, day, held)
    report = _report(replica, folded, held)
    closed = report["complete"] and any(t.day_end for t in folded.terminals.values())
    return {
        "day": day,
        "state": "closed" if closed else "open",
        "records": folded.records,
        "report_hash": report["report_hash"] if closed else None,
    }


def _mismatch(held: _TerminalDay) -> dict[str, Any] | None:
    """How ``held``'s day-end disagrees with its records, None when it agrees or cannot be
    checked here: no day-end; a voided sale this replica lacks; a chain whose fork the store
    resolved (a day-end covers its own branch, the day counts both); or a void of a sale on a
    chain that forked. The signer credited that void with the sale its id named when it
    closed, and a fork seen or resolved since may make the id name another sale, two, or one
    that counts only now (the simulator found it: a lane voided a sale of a lane restored from
    an old backup, closed while the fork was open, and the resolution counted the sale)."""
    end = held.day_end
    if end is None or not isinstance(end.body, DayEnd) or not held.figures.whole or held.forked:
        return None
    if held.voids_across_fork:
        return None
    if held.figures.matches(end.body):
        return None
    return {
        "seq": end.seq,
        "signed": figures_json(end.body),
        "computed": figures_json(held.figures),
    }


def day_findings(replica: Replica, only: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """For ``verify``: day-ends whose signed figures disagree with the records they cover (when
    this replica holds every voided sale they need), and records a terminal signed after it
    closed a day that they fall in; of every day held, or of day ``only``."""
    held_here = _held(replica)
    mismatches: list[dict[str, Any]] = []
    after_close: list[dict[str, Any]] = []
    for day in sorted([*_held_days(replica), *replica.sealed_days()]):
        if only is not None and day != only:
            continue
        for terminal, held in sorted(_fold(replica, day, held_here).terminals.items()):
            mismatch = _mismatch(held)
            if mismatch is not None:
                mismatches.append({"terminal": terminal, "day": day, **mismatch})
            after_close += [
                {
                    "record": str(RecordId(terminal, record.seq)),
                    "day": day,
                    "closed_by_seq": bound,
                }
                for record, bound in held.after_close
            ]
    return {"day_end_mismatches": mismatches, "records_after_close": after_close}
