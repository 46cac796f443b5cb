"""The sales journal: every sale that counts on a replica, oldest first, read a page at a time
(``GET /v1/sales``, ``lanesync sales``), as plain JSON-safe dicts.

A sale's place is its timestamp: (HLC wall ms, HLC counter, terminal, seq, map key), a total
order every replica agrees on. The journal keeps the sales' places sorted beside the views (it
subscribes to the records they accept, ``Replica.subscribe``) and reads a sale's lines back
from its document only for the sales of the page it returns; whether a sale still counts and
whether it is voided is asked of the views at read time.

Paging, and what a cursor guarantees. A listing runs in *rounds*. The first round is every
sale the replica held when the listing started: their terminals' seqs up to ``hi`` (per
terminal, the highest seq of a sale held then), in timestamp order. A terminal's accepted
records are always a prefix of its chain (seq 1..head, ``core.chains``), so "seq up to hi" is
a set fixed by the cursor, whatever arrives later. When a round is exhausted, the next round
is every sale past the previous ``hi`` (``lo``) up to the current highest seqs, again in
timestamp order; a sale from a peer stamped before sales already listed therefore comes after
them, in the round that follows its arrival, instead of being skipped. So a client that
follows ``next_cursor`` until it is null sees every sale that counts exactly once, oldest
first within each round, however sales arrive meanwhile (from this lane, from peers with
older or newer timestamps, across a daemon restart: a cursor holds only (terminal, seq)
bounds and a place, nothing of this process). ``next_cursor`` is null when nothing more
matched at the time of the request: the listing is complete. What arrives later is news for
the change feed (``GET /v1/events``), or for a new listing.

Cost, measured 2026-12-07 on the shared 2-core machine with a lane of 100,000 sales
(``Terminal.open`` of a directory filled with ``Terminal.stage``/``commit``, then
``terminal.journal.page``): a page of 100 in about 2 ms (reading its sales back from the
documents is most of it; 11-14 ms through the daemon's HTTP API under a load average of 8), a
page after a new sale the same, the journal's first read of every sale held 0.8-1.9 s (once per
process).

Exceptions, said plainly: a sale the store withdraws (a revocation cutting its chain before
it) disappears from later pages; sales on the branches of a fork the store resolved may come
in the round of their branch's arrival or, when a branch arrives after its seqs were passed,
be missed by a listing already under way; a cursor is valid on the replica that gave it (the
bounds name what that replica held).
"""

from __future__ import annotations

import base64
import binascii
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgpack

from lanesync.core.identity import Role
from lanesync.core.ids import RecordId, TerminalId, is_valid_name, ledger_doc, terminal_id
from lanesync.core.records import MAX_WALL_MS, Record, Rejection, Sale, Void, parse_record
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.errors import NotFound, UsageError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a page of 1000 sales of a few lines is ~300 KiB of JSON
# A cursor holds two seqs per terminal (32 lanes at most on one LAN, each named in up to 64
# characters): 8 KiB of base64 covers that with room, and stays under common URL limits.
MAX_CURSOR = 8192
# Records parsed between two yields of ``SalesJournal.scan``: ~20 ms on the shared 2-core
# machine (100k sales read in 0.8-1.9 s), short enough for the daemon's loop to answer sales.
SCAN_SLICE = 2000
CURSOR_FORMAT = 1
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")

# A sale's place, then what reads it back: (wall ms, counter, terminal, seq, map key, day).
Entry = tuple[int, int, str, int, str, str]
Place = tuple[int, int, str, int, str]


def _place(entry: Entry) -> Place:
    return entry[:5]


def _seq(entry: Entry) -> tuple[int, Place]:
    return entry[3], _place(entry)


def _seq_of(entry: Entry) -> int:
    return entry[3]


@dataclass(frozen=True, slots=True)
class SalesQuery:
    """Which sales a listing shows: stamped after ``since`` (HLC wall ms, exclusive), of the
    store-local business ``day``, made by ``terminal``; None: any."""

    since: int | None = None
    day: str | None = None
    terminal: TerminalId | None = None

    @classmethod
    def of(
        cls, since: int | None = None, day: str | None = None, terminal: str | None = None
    ) -> SalesQuery:
        """Checked values from a user or an API client (UsageError, with what is wrong)."""
        if since is not None and not 0 <= since <= MAX_WALL_MS:
            raise UsageError(f"since must be milliseconds since the epoch, 0 to {MAX_WALL_MS}")
        if day is not None:
            try:
                valid = _DAY.fullmatch(day) is not None and bool(date.fromisoformat(day))
            except ValueError:
                valid = False
            if not valid:
                raise UsageError(f"invalid day {day!r}: expected YYYY-MM-DD, e.g. 2026-12-07")
        return cls(since, day, None if terminal is None else terminal_id(terminal))

    def matches(self, entry: Entry) -> bool:
        return (
            (self.since is None or entry[0] > self.since)
            and (self.day is None or entry[5] == self.day)
            and (self.terminal is None or entry[2] == self.terminal)
        )


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise UsageError(f"limit must be 1 to {MAX_LIMIT}")
    return limit


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a listing stands: its query, the round (per terminal, seqs in ``lo`` < seq <=
    ``hi``) and the place of the last sale returned in it (None: none yet)."""

    query: SalesQuery
    lo: Mapping[str, int]
    hi: Mapping[str, int]
    after: Place | None

    def encode(self) -> str:
        names = sorted(set(self.lo) | set(self.hi))
        q = self.query
        data = [
            CURSOR_FORMAT,
            q.since,
            q.day,
            q.terminal,
            names,
            [self.lo.get(n, 0) for n in names],
            [self.hi.get(n, 0) for n in names],
            None if self.after is None else list(self.after),
        ]
        packed = msgpack.packb(data, use_bin_type=True)
        return base64.urlsafe_b64encode(packed).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """A cursor ``encode`` made; UsageError for anything else (a client may send any
        text)."""
        invalid = UsageError("invalid cursor: pass next_cursor exactly as a listing gave it")
        if len(text) > MAX_CURSOR or _BASE64URL.fullmatch(text) is None:
            raise invalid
        try:
            packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = msgpack.unpackb(packed, raw=False, strict_map_key=True)
        except (binascii.Error, ValueError, msgpack.ExtraData, msgpack.FormatError) as exc:
            raise invalid from exc
        if not isinstance(data, list) or len(data) != 8 or data[0] != CURSOR_FORMAT:
            raise invalid
        _, since, day, terminal, names, lo, hi, after = data
        try:
            query = SalesQuery.of(_int_or_none(since), _str_or_none(day), _str_or_none(terminal))
        except UsageError as exc:
            raise invalid from exc
        if not (
            _all(names, is_valid_name)
            and _all(lo, _is_seq)
            and _all(hi, _is_seq)
            and len(names) == len(lo) == len(hi)
        ):
            raise invalid
        place: Place | None = None
        if after is not None:
            if not (
                isinstance(after, list)
                and len(after) == 5
                and _is_seq(after[0])
                and _is_seq(after[1])
                and is_valid_name(after[2])
                and _is_seq(after[3])
                and isinstance(after[4], str)
            ):
                raise invalid
            place = (after[0], after[1], after[2], after[3], after[4])
        return cls(
            query, dict(zip(names, lo, strict=True)), dict(zip(names, hi, strict=True)), place
        )


def _is_seq(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**63


def _all(values: object, check: Callable[[object], bool]) -> bool:
    return isinstance(values, list) and all(check(v) for v in values)


def _int_or_none(value: object) -> int | None:
    if value is None or type(value) is int:
        return value
    raise UsageError("not an integer")


def _str_or_none(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise UsageError("not a string")


class SalesJournal:
    """The sales of one replica in timestamp order, kept up to date as the views accept
    records (an ``AcceptedSubscriber``). Appends cost a tuple; sorting waits for a read and is
    a merge of what arrived since the last one (timsort over two sorted runs)."""

    def __init__(self, replica: Replica, *, scan: bool = True) -> None:
        """Subscribes to ``replica`` and reads every sale and void it holds already (its views
        may come from a checkpoint, which tells subscribers nothing). ``scan=False`` leaves that
        reading to ``scan()``, a slice at a time, for a caller that must keep serving."""
        self._replica = replica
        self._clear()
        # Keys told by the subscription while a scan is under way: the scan skips them.
        self._told: set[str] | None = set()
        replica.subscribe(self)
        if scan:
            for _ in self.scan():
                pass

    def scan(self, slice_records: int = SCAN_SLICE) -> Iterator[None]:
        """Read the sales and voids held when the journal was made, yielding after every
        ``slice_records`` records; pages are exact once it is exhausted. Each day's document is
        copied before its slices, so merges between slices cannot disturb the reading; what
        the views accept meanwhile arrives through the subscription (and is skipped here), and
        a rebuild of the views tells everything again (the scan stops)."""
        replica, views = self._replica, self._replica.views
        # Sealed days too, read from their archives: a listing holds every sale that counts.
        for name in [n for n in replica.all_doc_names() if n.startswith("ledger/")]:
            held = replica.entries(name)
            for start in range(0, len(held), slice_records):
                if self._told is None:
                    return  # the views were rebuilt: the subscription told everything
                for _, value in held[start : start + slice_records]:
                    record = parse_record(value)
                    if (
                        not isinstance(record, Rejection)
                        and record.key not in self._told
                        and views.is_accepted(record)
                    ):
                        self._take(record)
                yield
        self._told = None

    @property
    def scanned(self) -> bool:
        return self._told is None

    def _clear(self) -> None:
        self._sorted: list[Entry] = []
        self._by_day: dict[str, list[Entry]] = {}
        self._by_terminal: dict[str, list[Entry]] = {}  # by place, like _sorted
        self._seqs: dict[str, list[Entry]] = {}  # the same, by (seq, place)
        self._pending: list[Entry] = []
        self._voids: dict[str, list[tuple[Place, str, str]]] = {}  # sale id -> voids naming it

    # -- the subscription -----------------------------------------------------------------------

    def record_accepted(self, record: Record) -> None:
        if self._told is not None:
            self._told.add(record.key)
        self._take(record)

    def _take(self, record: Record) -> None:
        body = record.body
        if isinstance(body, Sale):
            day = self._replica.business_day(record)
            self._pending.append(
                (
                    record.hlc.wall_ms,
                    record.hlc.counter,
                    record.terminal,
                    record.seq,
                    record.key,
                    day,
                )
            )
        elif isinstance(body, Void):
            place = (
                record.hlc.wall_ms,
                record.hlc.counter,
                record.terminal,
                record.seq,
                record.key,
            )
            self._voids.setdefault(str(body.sale_id), []).append(
                (place, str(record.id), record.terminal)
            )

    def views_rebuilt(self) -> None:
        # The rebuilt views tell every record that still counts again (a scan under way stops).
        self._clear()
        self._told = None

    def _refresh(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        pending.sort()
        _merge(self._sorted, pending)
        days: dict[str, list[Entry]] = {}
        terminals: dict[str, list[Entry]] = {}
        for entry in pending:
            days.setdefault(entry[5], []).append(entry)
            terminals.setdefault(entry[2], []).append(entry)
        for day, entries in days.items():
            _merge(self._by_day.setdefault(day, []), entries)
        for terminal, entries in terminals.items():
            _merge(self._by_terminal.setdefault(terminal, []), entries)
            # Along one chain, seq order is place order (only a resolved fork's branches
            # interleave): a chain growing at its end appends.
            _merge(self._seqs.setdefault(terminal, []), sorted(entries, key=_seq), _seq)

    # -- reading --------------------------------------------------------------------------------

    def page(self, query: SalesQuery, limit: int, cursor: str | None = None) -> dict[str, Any]:
        """``{"sales": [SALE...], "next_cursor": str | None}``: up to ``limit`` sales after
        ``cursor`` (a ``next_cursor`` of an earlier page; None: from the start). With a cursor,
        the query is the cursor's: ``query`` may only repeat it (UsageError otherwise)."""
        self._refresh()
        if cursor is None:
            at = Cursor(query, {}, self._tops(), None)
        else:
            at = Cursor.decode(cursor)
            _check_same(query, at.query)
        found: list[Entry] = []
        in_round = 0  # of ``found``, how many are of the round ``at`` names
        while True:
            for entry in self._round(at):
                if len(found) == limit:
                    after = _place(found[-1]) if in_round else None
                    return self._answer(found, Cursor(at.query, at.lo, at.hi, after).encode())
                found.append(entry)
                in_round += 1
            tops = self._tops()
            if all(top <= at.hi.get(t, 0) for t, top in tops.items()):
                return self._answer(found, None)
            at, in_round = Cursor(at.query, at.hi, tops, None), 0

    def _answer(self, found: list[Entry], next_cursor: str | None) -> dict[str, Any]:
        return {"sales": [self._render(e) for e in found], "next_cursor": next_cursor}

    def _tops(self) -> dict[str, int]:
        """Per terminal, the highest seq of a sale held."""
        return {t: entries[-1][3] for t, entries in self._seqs.items() if entries}

    def _round(self, at: Cursor) -> Iterator[Entry]:
        """The sales of ``at``'s round matching its query, after its place, in order."""
        query, lo, hi = at.query, at.lo, at.hi
        source = self._source(query)
        # The round's first and last places: along one chain, places grow with seq; the
        # branches of a resolved fork interleave, so there every member is looked at.
        views = self._replica.views
        firsts, lasts = [], []
        for terminal, top in hi.items():
            low = lo.get(terminal, 0)
            if top <= low or (query.terminal is not None and terminal != query.terminal):
                continue
            entries = self._seqs.get(terminal, [])
            start = bisect_right(entries, low, key=_seq_of)
            end = bisect_right(entries, top, key=_seq_of)
            if start == end:
                continue
            if views.fork_resolution(TerminalId(terminal)) is None:
                firsts.append(_place(entries[start]))
                lasts.append(_place(entries[end - 1]))
            else:
                firsts.append(min(_place(e) for e in entries[start:end]))
                lasts.append(max(_place(e) for e in entries[start:end]))
        if not firsts:
            return
        begin = min(firsts)
        if at.after is not None:
            begin = max(begin, at.after)
        if query.since is not None:
            begin = max(begin, (query.since + 1, 0, "", 0, ""))
        index = bisect_left(source, begin, key=_place)
        last = max(lasts)
        while index < len(source):
            entry = source[index]
            index += 1
            place = _place(entry)
            if at.after is not None and place <= at.after:
                continue
            if place > last:
                return
            terminal, seq = entry[2], entry[3]
            if (
                lo.get(terminal, 0) < seq <= hi.get(terminal, 0)
                and query.matches(entry)
                and self._counts(entry, views)
            ):
                yield entry

    def _source(self, query: SalesQuery) -> Sequence[Entry]:
        if query.day is not None:
            return self._by_day.get(query.day, [])
        if query.terminal is not None:
            return self._by_terminal.get(query.terminal, [])
        return self._sorted

    @staticmethod
    def _counts(entry: Entry, views: Views) -> bool:
        rid = RecordId(TerminalId(entry[2]), entry[3])
        return bool(views.is_sale(str(rid)) or views.is_ambiguous(rid))

    def sale(self, sale_id: str) -> dict[str, Any]:
        """One sale by id (UsageError for a malformed id, NotFound when none counts here)."""
        rid = RecordId.parse(sale_id)
        self._refresh()
        views = self._replica.views
        if views.is_ambiguous(rid):
            raise UsageError(
                f"{rid} names a sale on each branch of a fork the store resolved: list them "
                f"with ?terminal={rid.terminal}"
            )
        entries = self._seqs.get(rid.terminal, [])
        start = bisect_left(entries, rid.seq, key=_seq_of)
        for entry in entries[start : start + 1]:
            if entry[3] == rid.seq and self._counts(entry, views):
                return self._render(entry)
        raise NotFound(f"no sale {rid} counts on this terminal")

    def _render(self, entry: Entry) -> dict[str, Any]:
        wall_ms, _, terminal, seq, key, day = entry
        record = parse_record(self._replica.value_at(ledger_doc(day), key))
        if isinstance(record, Record) and isinstance(record.body, Sale):
            lines, total = record.body.lines, record.body.total_cents
        else:  # unreachable for an accepted record: its entry is written back if replaced
            lines, total = (), 0
        rid = RecordId(TerminalId(terminal), seq)
        views = self._replica.views
        voided = views.is_voided(str(rid)) and not views.is_ambiguous(rid)
        return {
            "id": str(rid),
            "terminal": terminal,
            "seq": seq,
            "at_ms": wall_ms,
            "day": day,
            "lines": [
                {"sku": line.sku, "qty": line.qty, "unit_cents": line.unit_cents} for line in lines
            ],
            "total_cents": total,
            "voided": voided,
            "void_id": self._void_of(str(rid)) if voided else None,
        }

    def _void_of(self, sale_id: str) -> str | None:
        """The first void (in timestamp order) that credits ``sale_id`` back: one signed by a
        terminal that may sell (a cloud certificate's void does not count)."""
        cloud = {c.terminal_id for c in self._replica.views.certificates() if c.role is Role.CLOUD}
        voids = sorted(v for v in self._voids.get(sale_id, []) if v[2] not in cloud)
        return voids[0][1] if voids else None


def _merge(
    into: list[Entry], new: list[Entry], key: Callable[[Entry], tuple[Any, ...]] | None = None
) -> None:
    """Merge ``new`` into ``into`` (in place), both sorted by ``key`` (None: as tuples, which
    is by place: a place is unique)."""
    into.extend(new)
    if not new or len(into) == len(new):
        return
    first, before = new[0], into[-len(new) - 1]
    if (key(first) < key(before)) if key is not None else first < before:
        into.sort(key=key)  # two sorted runs: timsort merges them in linear time


def _check_same(given: SalesQuery, cursor: SalesQuery) -> None:
    for name in ("since", "day", "terminal"):
        value = getattr(given, name)
        if value is not None and value != getattr(cursor, name):
            raise UsageError(
                f"{name} differs from the listing the cursor continues: repeat its filters or "
                "leave them out"
            )
