"""The change feed's durable log: which records this lane accepted, in which order, from where.

Guarantees (what ``GET /v1/events`` promises rests on them):

* A record gets an event id in the same SQLite transaction that makes it durable here, never
  before: the views accept a record as it is merged or staged in memory, but its event waits
  for the commit that holds its update (``ready``), and listeners hear of it only after that
  commit returned. A crash loses no event of a durable record and leaves none of a lost one.
* Ids only grow, in commit order (an ``INTEGER PRIMARY KEY`` assigned here from the stored
  maximum, so a restart continues where the last run ended), and each opening starts at least
  at its wall-clock time in microseconds (``id_floor``): a lane restored from an older backup
  holds a smaller maximum than the ids its clients saw, and without the floor it would hand
  those ids out again, so a client resuming after one of them would miss new events.
* Each record has at most one event: a rebuild of the views (a fork, a revocation) accepts
  every record again, and those the log holds already are skipped.
* ``replay`` gives the events after an id that the lane still holds: a record the views no
  longer count (withdrawn by a revocation) is left out.
* A sealed day's events leave their rows: sealing packs them beside the day's archive
  (``pack_day``, ``core.eventpack``), and ``replay`` reads rows and packs as one log.

* A revocation (a new or narrowed cut of a terminal's chain) gets an event too, in the first
  commit that holds everything merged so far (``rows_for_commit``); one held but never logged
  (an older lanesync, a crash) is logged then.

Which records are ready: a local record is staged and committed with no await in between, so
it is ready at once; a record from a peer or the cloud is merged by the node in the flush that
hands its change to the terminal (``Mesh.defer``, then ``Terminal.defer``), so it is ready from
that hand-over and any later commit holds it; one accepted outside a hand-over waits for the
next; records a synchronous path merged and then committed (a bundle, a published revocation
or certificate) are in the commit that follows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from lanesync.core import archive_codec, dayclose, eventpack
from lanesync.core.eventpack import Pack, PackedEvent
from lanesync.core.feed import FeedEvent, Origin, record_event, revocation_event
from lanesync.core.identity import key_fingerprint
from lanesync.core.ids import CONFIG_DOC, LEDGER_PREFIX, TerminalId
from lanesync.core.records import Record, Rejection, parse_record
from lanesync.core.replica import Replica
from lanesync.core.trust import Cut
from lanesync.core.views import expected_doc
from lanesync.shell.storage import EventRow, Storage

log = logging.getLogger("lanesync.feed")

# A revocation's key in the log: the revoked terminal and key (hex; empty: every key).
_CUT_PREFIX = "revocation/"


def _cut_key(terminal: TerminalId, key: bytes) -> str:
    return f"{_CUT_PREFIX}{terminal}/{key.hex()}"


# Rows read per query while replaying: a reconnect after a long outage replays in pages, so a
# subscriber holds at most one page beyond its queue; 256 sale events are ~70 KB of frames
# (220-310 B each, core.feed), small next to the 1 MiB a subscriber may queue (shell.feed).
REPLAY_PAGE = 256
# Sealed days' unpacked events kept: a replay reads one day after another, two at a day's edge.
KEPT_PACKS = 2


@dataclass(slots=True)
class _Pending:
    record: Record
    origin: Origin
    ready: bool  # its update is handed to the terminal: the next commit makes it durable


def id_floor(opened_ms: int) -> int:
    """The least id an opening at ``opened_ms`` hands out: above every id of any earlier
    opening, unless a run issued more than a thousand events per millisecond since it opened
    (a lane commits a few thousand records per second at most), or the clock stepped back.
    Milliseconds until the year 2255 times 1,000 stay below 2**53, so a browser's numbers
    hold every id exactly."""
    return opened_ms * 1000


class FeedLog:
    def __init__(self, replica: Replica, storage: Storage, me: TerminalId, opened_ms: int) -> None:
        self._replica = replica
        self._storage = storage
        self._me = me
        self._accepted = replica.subscribe_accepted()
        self._rebuilds_seen = self._accepted.rebuilds
        self._pending: list[_Pending] = []
        # Revocations logged already: a new or narrowed cut is an event. One held at open but
        # never logged (a lanesync without the feed, a crash before the commit that logs it)
        # is logged by the first commit that holds everything.
        logged = storage.event_keys(CONFIG_DOC)
        self._cuts_logged: dict[tuple[TerminalId, bytes], Cut] = {
            (terminal, key): cut
            for (terminal, key), cut in replica.views.revocations()[0].items()
            if _cut_key(terminal, key) in logged
        }
        self._cuts_due: list[tuple[TerminalId, bytes, Cut]] = []
        # Where the last merge before the next commit came from (a revocation's origin).
        self.merged_from: Origin | None = None
        self.last_id = max(storage.last_event_id(), id_floor(opened_ms))
        # Told of the events of every commit, after it returned (the daemon's feed).
        self.listener: Callable[[list[FeedEvent]], None] | None = None
        # The last KEPT_PACKS sealed days' packs read: document -> (pack, its events).
        self._unpacked_days: dict[str, tuple[bytes, list[PackedEvent]]] = {}

    def _origin(self, record: Record, origin: Origin | None) -> Origin:
        if origin is not None:
            return origin
        return Origin.LOCAL if record.terminal == self._me else Origin.PEER

    def take(self, origin: Origin | None, *, ready: bool) -> None:
        """Collect what the views accepted since the last call, from ``origin`` (None: local
        if this terminal signed it, else a peer)."""
        records = self._accepted.drain()
        if self._accepted.rebuilds != self._rebuilds_seen:
            # The rebuilt views accepted every record again: keep only those never logged.
            self._rebuilds_seen = self._accepted.rebuilds
            logged = self._storage.event_keys(None)
            for doc in self._storage.packed_docs():
                logged.update(event.key for event in self._unpacked(doc))
            logged.update(p.record.key for p in self._pending)
            records = [r for r in records if r.key not in logged]
        self._pending.extend(_Pending(r, self._origin(r, origin), ready) for r in records)
        if origin is not None and origin is not Origin.LOCAL:
            self.merged_from = origin

    def mark_ready(self) -> None:
        """Every record merged so far is handed to the terminal for the next commit."""
        for pending in self._pending:
            pending.ready = True

    def rows_for_commit(self, holds_everything: bool, now_ms: int) -> list[EventRow]:
        """The rows of the ready records, numbered from ``last_id``, and, when the commit
        ``holds_everything`` merged so far, of the revocations new since the last such commit;
        ``committed`` once they are durable (nothing changes until then, so a failed commit
        leaves all as it was)."""
        rows = []
        next_id = self.last_id
        for pending in self._pending:
            if pending.ready:
                next_id += 1
                rows.append(
                    EventRow(next_id, self._doc(pending.record), pending.record.key, pending.origin)
                )
        self._cuts_due = []
        if holds_everything:
            origin = self.merged_from or Origin.PEER
            for (terminal, key), cut in sorted(self._replica.views.revocations()[0].items()):
                if self._cuts_logged.get((terminal, key)) != cut:
                    next_id += 1
                    self._cuts_due.append((terminal, key, cut))
                    rows.append(
                        EventRow(next_id, CONFIG_DOC, _cut_key(terminal, key), origin, now_ms)
                    )
        return rows

    def committed(self, rows: list[EventRow]) -> None:
        if not rows:
            return
        done = [p for p in self._pending if p.ready]
        self._pending = [p for p in self._pending if not p.ready]
        self.merged_from = None
        for terminal, key, cut in self._cuts_due:
            self._cuts_logged[(terminal, key)] = cut
        self.last_id = rows[-1].event_id
        if self.listener is not None:
            events: list[FeedEvent | None] = [
                record_event(row.event_id, p.record, self._day(p.record), p.origin)
                for row, p in zip(rows, done, strict=False)
            ]
            events.extend(self._revocation_event(row) for row in rows[len(done) :])
            self.listener([e for e in events if e is not None])

    def _revocation_event(self, row: EventRow) -> FeedEvent | None:
        terminal, _, key_hex = row.key.removeprefix(_CUT_PREFIX).partition("/")
        key = bytes.fromhex(key_hex)
        cut = self._replica.views.revocations()[0].get((TerminalId(terminal), key))
        if cut is None:
            return None  # not held here (the row is from another store's database?)
        at_ms = row.at_ms or 0
        return revocation_event(
            row.event_id,
            terminal,
            cut.after_seq,
            cut.after_hash,
            key_fingerprint(key) if key else None,
            at_ms,
            dayclose.day_of_ms(at_ms, self._replica.tz),
            Origin(row.origin),
        )

    def _day(self, record: Record) -> str:
        return self._replica.business_day(record)

    def _doc(self, record: Record) -> str:
        return expected_doc(record, self._replica.tz)

    def backfill(self) -> None:
        """A lane whose log is empty but which holds records (written by a lanesync without
        the feed): log every accepted record once, oldest first, so that a client starting
        from nothing is sent them all and later ids follow."""
        if self._storage.last_event_id():
            return
        held = [r for _, _, r in self._replica.records() if self._replica.views.is_accepted(r)]
        if not held:
            return
        held.sort(key=lambda r: (r.hlc, r.terminal, r.seq))
        rows = [
            EventRow(i, self._doc(r), r.key, self._origin(r, None))
            for i, r in enumerate(held, start=self.last_id + 1)
        ]
        self._storage.commit([], events=rows)
        self.last_id = rows[-1].event_id
        log.info("feed: logged the %d records held before the change feed existed", len(rows))

    def replay(self, after_id: int, through_id: int) -> tuple[list[FeedEvent], int]:
        """The events after ``after_id`` (up to ``through_id``) of records still held, one page;
        returns them and the id to continue after (``through_id`` once done)."""
        rows = self._rows_after(after_id, through_id)
        cursor = through_id if len(rows) < REPLAY_PAGE else rows[-1].event_id
        events = []
        for row in rows:
            if row.doc == CONFIG_DOC:
                revoked = self._revocation_event(row)
                if revoked is not None:
                    events.append(revoked)
                continue
            record = parse_record(self._replica.value_at(row.doc, row.key))
            if isinstance(record, Rejection):
                continue  # no longer held here (a record gone with its document)
            if self._replica.views.accepted_key(record.id) != row.key:
                continue  # held but no longer counted (withdrawn by a revocation)
            events.append(record_event(row.event_id, record, self._day(record), Origin(row.origin)))
        return events, cursor

    def _rows_after(self, after_id: int, through_id: int) -> list[EventRow]:
        """The first ``REPLAY_PAGE`` events after ``after_id`` (up to ``through_id``), from
        rows and sealed days' packs together. Only the packs that can hold one of them are
        read: in the order of their first ids, until one starts past the page."""
        rows = self._storage.events_after(after_id, through_id, REPLAY_PAGE)
        bound = rows[-1].event_id if len(rows) == REPLAY_PAGE else through_id
        for stored in self._storage.packs_between(after_id, bound):
            if stored.first_id > bound:
                break
            rows.extend(
                EventRow(event.event_id, stored.doc, event.key, event.origin)
                for event in self._unpacked(stored.doc, stored.data)
                if after_id < event.event_id <= bound
            )
            rows.sort(key=lambda row: row.event_id)
            del rows[REPLAY_PAGE:]
            if len(rows) == REPLAY_PAGE:
                bound = rows[-1].event_id
        return rows

    def pack_day(self, day: str) -> Pack | None:
        """``day``'s events, packed against the archive the replica has just sealed it into
        (what sealing stores with it): its rows, and the events of its earlier pack when it was
        sealed before (read with the archive that pack was made with, still the stored one)."""
        doc = LEDGER_PREFIX + day
        origins = {origin.value: origin for origin in Origin}
        events = [
            PackedEvent(row.event_id, row.key, origins[row.origin])
            for row in self._storage.events_of(doc)
            if row.origin in origins  # else a row no lanesync wrote: it stays a row
        ]
        events += self._unpacked(doc)
        # The replica reads its sealed day from the archive it keeps at hand after sealing:
        # no second decompression of what sealing just compressed.
        keys = eventpack.order(key for key, _ in self._replica.entries(doc))
        pack, left_out = eventpack.pack(events, keys)
        if left_out:
            log.warning(
                "feed: %d events of %s name no record of its archive: kept as rows",
                len(left_out),
                day,
            )
        self._unpacked_days.pop(doc, None)
        return pack

    def _unpacked(self, doc: str, data: bytes | None = None) -> list[PackedEvent]:
        """The events of ``doc``'s pack (``data``, else the stored one; none without one),
        named with the keys of the archive stored with it."""
        if data is None:
            data = self._storage.packed_events(doc)
            if data is None:
                return []
        kept = self._unpacked_days.get(doc)
        if kept is not None and kept[0] == data:
            return kept[1]
        day = doc.removeprefix(LEDGER_PREFIX)
        try:
            archive = archive_codec.decompress(self._storage.read_archive(day))
            events = eventpack.unpack(data, eventpack.archive_keys(archive))
        except ValueError as exc:
            # A damaged database: the day's records cannot be read either.
            log.warning(
                "feed: the events of sealed day %s do not read (%s): run `lanesync verify "
                "--day %s`",
                day,
                exc,
                day,
            )
            events = []
        if len(self._unpacked_days) >= KEPT_PACKS:
            del self._unpacked_days[next(iter(self._unpacked_days))]
        self._unpacked_days[doc] = (data, events)
        return events
