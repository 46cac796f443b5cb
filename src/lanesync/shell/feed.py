"""The daemon's change feed: fans the lane's events out to the clients of ``GET /v1/events``.

Guarantees:

* A subscriber is sent, in this order: the current status (``core.feed.status_events`` from
  nothing), every record event after its ``Last-Event-ID`` that the lane still holds (read
  from the durable log, ``shell.feedlog``, in pages), then every later event as it happens.
  Registering and fixing where the replay ends happen in one step on the event loop, so live
  events start exactly after the last replayed one: none missed, none twice.
* Record events are published only after the commit that made their records durable.
* Status is read every ``STATUS_POLL_S`` while anyone subscribes, and changes are sent as
  status events; they are not replayed.
* Memory is bounded: at most ``MAX_SUBSCRIBERS`` subscribers, each with at most
  ``MAX_QUEUED_BYTES`` of frames waiting; a subscriber past that is dropped (its stream closed,
  a warning logged) and may reconnect with its last id to resume.
* ``close`` ends every stream at once (the daemon stops within its usual time).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Final

from lanesync.core.election import Election
from lanesync.core.feed import KEEPALIVE_FRAME, FeedEvent, StatusSnapshot, status_events
from lanesync.core.identity import Role
from lanesync.errors import LocalError, UsageError
from lanesync.shell.feedlog import FeedLog
from lanesync.shell.mesh import Mesh
from lanesync.shell.uplink import Uplink

log = logging.getLogger("lanesync.feed")

# The SSE convention (and the change-feed contract): a comment line every 15 s keeps proxies,
# load balancers and a client's own idle timer from closing a quiet stream.
KEEPALIVE_S: Final = 15.0
# A store has at most 32 lanes (DESIGN.md); a POS and a dashboard or two per lane stay far
# below this, and each subscriber may hold up to MAX_QUEUED_BYTES.
MAX_SUBSCRIBERS: Final = 32
# ~4,000 sale events of one to three lines (220-310 B framed, measured with core.feed on
# 2026-12-07), or 64 of the largest records (16 KiB); a client that falls this far behind
# reconnects and resumes from the durable log instead.
MAX_QUEUED_BYTES: Final = 1024 * 1024
# Peer, leader and cloud changes reach subscribers within this. One status read walks the open
# links and copies and scans the on-hand view: ~0.4 ms with 5,000 SKUs (timeit of that copy and
# scan, 2026-12-07), so under 0.1 % of a core while anyone listens, nothing otherwise.
STATUS_POLL_S: Final = 0.5


class FeedUnavailable(LocalError):
    """The feed takes no new subscriber now (full, or the daemon is stopping): 503."""


def read_status(mesh: Mesh, election: Election | None, uplink: Uplink | None) -> StatusSnapshot:
    """The daemon's status as the feed's status events describe it."""
    peers = set()
    cloud = False
    for link in mesh.node.links.values():
        if link.is_open and link.peer is not None:
            if link.peer.role is Role.CLOUD:
                cloud = True
            else:
                peers.add(link.peer.terminal_id)
    on_hand = mesh.terminal.replica.views.on_hand()
    return StatusSnapshot(
        peers=frozenset(peers),
        leader=election.leader if election is not None else None,
        term=election.leader_term if election is not None else 0,
        cloud_up=None if uplink is None else cloud,
        oversold=tuple(sorted(sku for sku, n in on_hand.items() if n < 0)),
    )


class Subscriber:
    """One client's stream. ``frames`` yields what to send; ``ended`` is set when it must stop
    (dropped, or the daemon stops) even if a send is blocked on a client that does not read."""

    def __init__(
        self,
        hub: FeedHub,
        number: int,
        after_id: int,
        through_id: int,
        status: list[FeedEvent],
    ) -> None:
        self._hub = hub
        self.number = number
        self._cursor = after_id
        self._through = through_id  # the last id replayed from the log; later ones come live
        self._status = status
        self._queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self._wake = asyncio.Event()
        self.ended = asyncio.Event()
        self.end_reason: str | None = None

    def offer(self, frame: bytes) -> bool:
        """Queue a frame; False (and the subscriber is ended) past ``queue_bytes``."""
        if self.end_reason is not None:
            return True
        self._queue.append(frame)
        self.queued_bytes += len(frame)
        self._wake.set()
        return self.queued_bytes <= self._hub.queue_bytes

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
            self._queue.clear()
            self.queued_bytes = 0
            self.ended.set()
            self._wake.set()

    def close(self) -> None:
        """The stream is over (any reason): leave the hub."""
        self.end("closed")
        self._hub.left(self)

    async def frames(self, feed: FeedLog) -> AsyncIterator[bytes]:
        """Status, then the replay, then live frames and keep-alives until ended."""
        yield b"".join(event.frame() for event in self._status)
        while self._cursor < self._through and self.end_reason is None:
            events, self._cursor = feed.replay(self._cursor, self._through)
            if events:
                yield b"".join(event.frame() for event in events)
        while self.end_reason is None:
            if not self._queue:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._hub.keepalive_s)
                except TimeoutError:
                    yield KEEPALIVE_FRAME
                continue
            chunk = b"".join(self._queue)
            self._queue.clear()
            self.queued_bytes = 0
            yield chunk


class FeedHub:
    def __init__(
        self,
        feed: FeedLog,
        status: Callable[[], StatusSnapshot],
        *,
        keepalive_s: float = KEEPALIVE_S,
        max_subscribers: int = MAX_SUBSCRIBERS,
        queue_bytes: int = MAX_QUEUED_BYTES,
        poll_s: float = STATUS_POLL_S,
    ) -> None:
        self.feed = feed
        self._read_status = status
        self.keepalive_s = keepalive_s
        self.max_subscribers = max_subscribers
        self.queue_bytes = queue_bytes
        self._poll_s = poll_s
        self._subscribers: dict[int, Subscriber] = {}
        self._numbers = itertools.count(1)
        self._status: StatusSnapshot | None = None
        self._closed = False
        # The feed builds a commit's events only for a listener: with no subscriber there is
        # none (building them was ~5 % of a lane's CPU at 2,000 sales/s, bench mesh profile).
        feed.listener = None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, after_id: int) -> Subscriber:
        """A new stream that resumes after ``after_id`` (0: from the first event held)."""
        if self._closed:
            raise FeedUnavailable("the lane is stopping")
        if len(self._subscribers) >= self.max_subscribers:
            raise FeedUnavailable(
                f"{self.max_subscribers} clients follow the change feed already; try again later"
            )
        if after_id > self.feed.last_id:
            # Not an id of this lane: taken as is, it would hold back every event held and
            # every new one until this lane's ids passed it.
            raise UsageError(
                f"Last-Event-ID {after_id} is after every event of this lane (its last is "
                f"{self.feed.last_id}): ids are per lane; resume on the lane that gave it, "
                "or send none"
            )
        status = self._refresh_status()  # the others get what changed; this one all of it
        sub = Subscriber(
            self, next(self._numbers), after_id, self.feed.last_id, status_events(None, status)
        )
        self._subscribers[sub.number] = sub
        self.feed.listener = self.publish  # events after feed.last_id come live from here on
        log.info("feed.subscribed client=%d after=%d", sub.number, after_id)
        return sub

    def left(self, sub: Subscriber) -> None:
        if self._subscribers.pop(sub.number, None) is not None:
            log.info("feed.unsubscribed client=%d reason=%s", sub.number, sub.end_reason)
        if not self._subscribers:
            self.feed.listener = None

    def publish(self, events: list[FeedEvent]) -> None:
        """Record events of a commit that returned (``FeedLog.listener``)."""
        if self._subscribers and events:
            self._broadcast(b"".join(event.frame() for event in events))

    def _broadcast(self, frame: bytes) -> None:
        for sub in list(self._subscribers.values()):
            if not sub.offer(frame):
                reason = f"client does not read: over {self.queue_bytes} bytes waiting for it"
                log.warning(
                    "feed.dropped client=%d reason=%s: its stream is closed; it catches up by "
                    "reconnecting with Last-Event-ID",
                    sub.number,
                    reason,
                )
                sub.end(reason)
                self.left(sub)

    def _refresh_status(self) -> StatusSnapshot:
        status = self._read_status()
        if self._status is not None and self._subscribers:
            changes = status_events(self._status, status)
            if changes:
                self._broadcast(b"".join(event.frame() for event in changes))
        self._status = status
        return status

    async def run(self) -> None:
        """Watch the status while anyone subscribes; run it in the daemon's task group."""
        while True:
            await asyncio.sleep(self._poll_s)
            if self._subscribers:
                self._refresh_status()

    def close(self) -> None:
        """End every stream now and take no new one (the daemon is stopping)."""
        self._closed = True
        for sub in list(self._subscribers.values()):
            sub.end("the lane is stopping")
            self.left(sub)
