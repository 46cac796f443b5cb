"""The change feed's events, as data: what a record or a status change looks like to a POS
that follows ``GET /v1/events`` (Server-Sent Events), and how one is framed on the wire.

Two families (docs/how-to/operations.md lists every field):

* Record events, one per record this lane accepted and made durable, in the order it did:
  ``sale``, ``void``, ``receipt``, ``adjustment``, ``price`` (and ``revocation``, ``day_close``
  as those records exist). Each has an id (the lane's durable accept order, shell.storage), so
  a client that reconnects with ``Last-Event-ID`` is sent exactly the ones it missed.
* Status events, derived by comparing two ``StatusSnapshot``s: ``peer_up``, ``peer_down``,
  ``leader``, ``cloud_link``, ``oversold``. They are not replayed and carry no id (an id would
  move the client's ``Last-Event-ID`` past record events it has not seen); a client is sent
  the current status as such events when it (re)connects.

Pure: no I/O, no clock; the shell (shell/feed.py) streams what this builds.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

from lanesync.core.dayclose import figures_json
from lanesync.core.ids import is_decimal
from lanesync.core.records import Adjustment, DayEnd, PriceChange, Receipt, Record, Sale, Void
from lanesync.errors import UsageError

# An event id is the decimal form of a positive integer below 2**63 (an SQLite INTEGER
# PRIMARY KEY); anything longer is not one of ours.
MAX_EVENT_ID_DIGITS = 19
# A comment line: ignored by every SSE client (WHATWG HTML, "Server-sent events", section
# 9.2.6: lines starting with a colon), but it keeps proxies and idle timers from closing.
KEEPALIVE_FRAME = b": keep-alive\n\n"


class EventType(enum.StrEnum):
    SALE = "sale"
    VOID = "void"
    RECEIPT = "receipt"
    ADJUSTMENT = "adjustment"
    PRICE = "price"
    REVOCATION = "revocation"
    DAY_CLOSE = "day_close"
    PEER_UP = "peer_up"
    PEER_DOWN = "peer_down"
    LEADER = "leader"
    CLOUD_LINK = "cloud_link"
    OVERSOLD = "oversold"


class Origin(enum.StrEnum):
    """Where this lane got a record from."""

    LOCAL = "local"  # written here, through the API or the CLI
    PEER = "peer"  # merged from another lane
    CLOUD = "cloud"  # merged from the store's cloud
    BUNDLE = "bundle"  # merged from an imported bundle


@dataclass(frozen=True, slots=True)
class FeedEvent:
    """One event as sent: ``event_id`` None for status events (never replayed)."""

    event_id: int | None
    type: EventType
    data: dict[str, Any]

    def frame(self) -> bytes:
        """The event in the SSE wire format: ``id:`` (if any), ``event:``, one ``data:`` line
        of compact JSON (JSON escapes newlines, so one line always suffices), a blank line."""
        head = "" if self.event_id is None else f"id: {self.event_id}\n"
        body = json.dumps(self.data, separators=(",", ":"), ensure_ascii=False)
        return f"{head}event: {self.type.value}\ndata: {body}\n\n".encode()


def _body_fields(record: Record) -> tuple[EventType, dict[str, Any]]:
    match record.body:
        case Sale(lines, total):
            return EventType.SALE, {
                "lines": [
                    {"sku": line.sku, "qty": line.qty, "unit_cents": line.unit_cents}
                    for line in lines
                ],
                "total_cents": total,
            }
        case Void(sale_id):
            return EventType.VOID, {"sale_id": str(sale_id)}
        case Receipt(sku, qty):
            return EventType.RECEIPT, {"sku": sku, "qty": qty}
        case Adjustment(sku, delta, reason):
            return EventType.ADJUSTMENT, {"sku": sku, "delta": delta, "reason": reason}
        case PriceChange(sku, unit_cents):
            return EventType.PRICE, {"sku": sku, "unit_cents": unit_cents}
        case DayEnd():
            # The day it closes (the ledger it is stored in) and its signed totals.
            return EventType.DAY_CLOSE, {"day": record.body.day, **figures_json(record.body)}


def record_event(event_id: int, record: Record, day: str, origin: Origin) -> FeedEvent:
    """The event of an accepted record. ``day``: its store-local business day."""
    kind, fields = _body_fields(record)
    data: dict[str, Any] = {
        "id": str(record.id),
        "terminal": record.terminal,
        "seq": record.seq,
        "kind": kind.value,
        "at_ms": record.hlc.wall_ms,
        "day": day,
        "origin": origin.value,
    }
    data.update(fields)
    return FeedEvent(event_id, kind, data)


def revocation_event(
    event_id: int,
    terminal: str,
    after_seq: int,
    after_hash: bytes,
    key_fingerprint: str | None,
    at_ms: int,
    day: str,
    origin: Origin,
) -> FeedEvent:
    """The event of a store-signed revocation this lane made durable: ``terminal``'s records
    up to ``after_seq`` count (the one at it only with ``after_hash``, when given), of every
    certificate of it (``key_fingerprint`` None) or of one key. Its ``seq`` is ``after_seq``;
    ``at_ms`` and ``day`` say when this lane made it durable (a revocation has no time)."""
    return FeedEvent(
        event_id,
        EventType.REVOCATION,
        {
            "id": f"revocation:{terminal}",
            "terminal": terminal,
            "seq": after_seq,
            "kind": EventType.REVOCATION.value,
            "at_ms": at_ms,
            "day": day,
            "origin": origin.value,
            "after_seq": after_seq,
            "hash": after_hash.hex() or None,
            "key": key_fingerprint,
        },
    )


def parse_last_event_id(value: str | None) -> int:
    """The event id a reconnecting client last saw (``Last-Event-ID``); 0: none, send every
    record event held. Anything not an id of ours is the client's error (400)."""
    if value is None or value.strip() == "":
        return 0
    text = value.strip()
    if not is_decimal(text) or len(text) > MAX_EVENT_ID_DIGITS:
        raise UsageError(f"Last-Event-ID {value[:40]!r} is not an event id of this lane")
    return int(text)


# -- status ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """What the status events describe, read from the daemon at one moment."""

    peers: frozenset[str]  # terminals with an open, verified connection
    leader: str | None  # the elected uplink (None while settling)
    term: int
    cloud_up: bool | None  # None: this lane has no cloud configured
    oversold: tuple[str, ...]  # SKUs with negative stock on hand, sorted


def status_events(before: StatusSnapshot | None, after: StatusSnapshot) -> list[FeedEvent]:
    """The status events that take a client from ``before`` to ``after``; with ``before``
    None, the events that describe ``after`` whole (sent on every (re)connect): a
    ``peer_up`` per connected peer, then ``leader``, ``cloud_link`` (if a cloud is configured)
    and ``oversold``."""
    known: frozenset[str] = frozenset() if before is None else before.peers
    events = [
        FeedEvent(None, EventType.PEER_DOWN, {"peer": peer, "connected": False})
        for peer in sorted(known - after.peers)
    ]
    events.extend(
        FeedEvent(None, EventType.PEER_UP, {"peer": peer, "connected": True})
        for peer in sorted(after.peers - known)
    )
    if before is None or (before.leader, before.term) != (after.leader, after.term):
        events.append(
            FeedEvent(None, EventType.LEADER, {"leader": after.leader, "term": after.term})
        )
    if after.cloud_up is not None and (before is None or before.cloud_up != after.cloud_up):
        events.append(FeedEvent(None, EventType.CLOUD_LINK, {"up": after.cloud_up}))
    if before is None or before.oversold != after.oversold:
        events.append(FeedEvent(None, EventType.OVERSOLD, {"skus": list(after.oversold)}))
    return events
