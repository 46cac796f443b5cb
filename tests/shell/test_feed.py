"""The feed's hub (shell.feed) in one event loop, on a real terminal: what a subscriber is sent
and in which order, the cap, a subscriber that falls behind, keep-alives, and the stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from lanesync.core.feed import KEEPALIVE_FRAME, StatusSnapshot
from lanesync.core.identity import Role
from lanesync.errors import UsageError
from lanesync.shell.feed import FeedHub, FeedUnavailable, Subscriber
from lanesync.shell.terminal import Terminal

from .conftest import Lanes
from .helpers import price, receipt

QUIET = StatusSnapshot(frozenset(), "lane1", 1, None, ())


class Status:
    """What the hub reads as the daemon's status; a test changes ``now``."""

    def __init__(self) -> None:
        self.now = QUIET

    def read(self) -> StatusSnapshot:
        return self.now


def hub_of(
    terminal: Terminal,
    status: Status,
    *,
    keepalive_s: float = 15.0,
    max_subscribers: int = 32,
    queue_bytes: int = 1 << 20,
) -> FeedHub:
    assert terminal.feed is not None
    return FeedHub(
        terminal.feed,
        status.read,
        keepalive_s=keepalive_s,
        max_subscribers=max_subscribers,
        queue_bytes=queue_bytes,
        poll_s=0.01,
    )


async def next_chunk(frames: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(frames), 5)


def lines_of(chunk: bytes, field: str) -> list[str]:
    return [
        line.removeprefix(f"{field}: ")
        for line in chunk.decode().split("\n")
        if line.startswith(f"{field}: ")
    ]


def test_status_then_replay_then_live_with_keepalives(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 100))
    lane.write(receipt("milk", 5))
    assert lane.feed is not None
    price_id = lane.feed.last_id - 1

    async def run() -> None:
        status = Status()
        hub = hub_of(lane, status, keepalive_s=0.05)
        lane.write(receipt("milk", 2))  # no subscriber: no event is built, the row is kept
        assert hub.feed.listener is None
        sub = hub.subscribe(price_id)  # seen the price already
        frames = sub.frames(hub.feed)
        assert lines_of(await next_chunk(frames), "event") == ["leader", "oversold"]
        replay = await next_chunk(frames)
        assert lines_of(replay, "id") == [str(price_id + 1), str(price_id + 2)]
        lane.write(receipt("milk", 1))
        assert lines_of(await next_chunk(frames), "id") == [str(price_id + 3)]
        assert await next_chunk(frames) == KEEPALIVE_FRAME  # nothing for 50 ms
        # A status change goes to every subscriber, without an id.
        status.now = StatusSnapshot(frozenset({"lane2"}), "lane1", 1, None, ())
        hub_task = asyncio.create_task(hub.run())
        try:
            chunk = await next_chunk(frames)
            while chunk == KEEPALIVE_FRAME:
                chunk = await next_chunk(frames)
            assert lines_of(chunk, "event") == ["peer_up"]
            assert lines_of(chunk, "id") == []
        finally:
            hub_task.cancel()
        hub.close()
        with pytest.raises(StopAsyncIteration):
            await next_chunk(frames)
        with pytest.raises(FeedUnavailable, match="stopping"):
            hub.subscribe(0)
        assert hub.subscribers == 0
        assert hub.feed.listener is None  # the last subscriber left: events are built no more

    asyncio.run(run())


def test_the_cap_and_a_subscriber_that_falls_behind(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 100))

    async def run() -> None:
        # One receipt event is ~180 bytes framed: two fit, a third does not.
        hub = hub_of(lane, Status(), max_subscribers=2, queue_bytes=400)
        slow: Subscriber = hub.subscribe(0)
        fast = hub.subscribe(0)
        with pytest.raises(FeedUnavailable, match="2 clients"):
            hub.subscribe(0)
        fast_frames = fast.frames(hub.feed)
        await next_chunk(fast_frames)  # status
        await next_chunk(fast_frames)  # the price, replayed
        lane.write(receipt("milk", 1))
        assert lane.feed is not None
        second = lane.feed.last_id
        assert lines_of(await next_chunk(fast_frames), "id") == [str(second)]
        lane.write(receipt("milk", 1))
        lane.write(receipt("milk", 1))  # the slow one never read: over 400 bytes now
        assert slow.ended.is_set()
        assert slow.end_reason is not None
        assert "does not read" in slow.end_reason
        assert slow.queued_bytes == 0  # its backlog is freed at once
        assert lines_of(await next_chunk(fast_frames), "id") == [str(second + 1), str(second + 2)]
        assert hub.subscribers == 1
        again = hub.subscribe(second + 1)  # its place is free; it resumes where it left off
        again_frames = again.frames(hub.feed)
        await next_chunk(again_frames)
        assert lines_of(await next_chunk(again_frames), "id") == [str(second + 2)]
        again.close()
        fast.close()
        assert hub.subscribers == 0

    asyncio.run(run())


def test_an_id_after_every_event_of_this_lane_is_refused(lanes: Lanes) -> None:
    # Ids are per lane (docs/how-to/operations.md). An id past this lane's last one (another
    # lane's, a typo) was taken as is: the client was sent none of the records held, and no
    # new one until this lane's ids passed it, possibly years later.
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 100))
    assert lane.feed is not None
    last = lane.feed.last_id
    hub = hub_of(lane, Status())
    with pytest.raises(UsageError, match="after every event of this lane"):
        hub.subscribe(last + 1)
    assert hub.subscribers == 0
    hub.subscribe(last).close()  # the last id itself: resume with what comes next
