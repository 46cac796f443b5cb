"""The change feed's durable log (shell.feedlog) on real terminals and SQLite files: ids in
the order records became durable, kept across a reopen; an event only once its record is
committed; one event per record across a rebuild; a replay of what is still held."""

from __future__ import annotations

import sqlite3

from lanesync.core.feed import EventType, FeedEvent, Origin
from lanesync.core.identity import Role
from lanesync.shell.feedlog import REPLAY_PAGE, FeedLog
from lanesync.shell.terminal import Terminal

from .conftest import Lanes
from .helpers import price, receipt, sale, write_together


def feed_of(terminal: Terminal) -> FeedLog:
    assert terminal.feed is not None
    return terminal.feed


def listen(terminal: Terminal) -> list[FeedEvent]:
    heard: list[FeedEvent] = []
    feed_of(terminal).listener = heard.extend
    return heard


def replay_all(terminal: Terminal, after: int = 0) -> list[FeedEvent]:
    feed = feed_of(terminal)
    events: list[FeedEvent] = []
    while after < feed.last_id:
        page, after = feed.replay(after, feed.last_id)
        events.extend(page)
    return events


def test_ids_follow_commits_and_survive_a_reopen(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    heard = listen(lane)
    lane.write(price("milk", 150))
    write_together(lane, [receipt("milk", 10), sale("milk:2")])
    assert [(e.event_id, e.type, e.data["id"]) for e in heard] == [
        (1, EventType.PRICE, "lane1:1"),
        (2, EventType.RECEIPT, "lane1:2"),
        (3, EventType.SALE, "lane1:3"),
    ]
    assert {e.data["origin"] for e in heard} == {"local"}
    assert replay_all(lane) == heard
    assert replay_all(lane, after=2) == heard[2:]

    lane = lanes.reopen(lane)
    assert feed_of(lane).last_id == 3
    assert replay_all(lane) == heard  # the same events, ids and all, from disk
    heard_after = listen(lane)
    lane.write(sale("milk:1"))
    assert [(e.event_id, e.data["id"]) for e in heard_after] == [(4, "lane1:4")]


def test_a_merge_waits_for_the_commit_that_holds_it(lanes: Lanes) -> None:
    manager = lanes.new("lane1", Role.MANAGER)
    manager.write(price("milk", 150))
    cashier = lanes.new("lane2")
    cashier.import_bundle(manager.export_bundle())
    cashier.write(sale("milk:1"))
    heard = listen(manager)

    # What the mesh does with a peer's frame: merge (the views accept the sale at once) ...
    change = manager.replica.merge(
        list(cashier.replica.updates_since({}).items()), manager.now_ms()
    )
    manager.accepted(Origin.PEER, ready=False)
    # ... and a local write commits before the flush hands the merge over: only the local
    # record is durable, so only its event goes out.
    manager.write(receipt("milk", 5))
    assert [e.data["id"] for e in heard] == ["lane1:2"]
    # The flush hands it over; the next commit makes it durable, and its event follows.
    manager.defer([change])
    manager.commit([])
    assert [(e.data["id"], e.data["origin"]) for e in heard] == [
        ("lane1:2", "local"),
        ("lane2:1", "peer"),
    ]
    assert [e.event_id for e in heard] == [2, 3]


def test_bundles_rebuilds_and_withdrawn_records(lanes: Lanes) -> None:
    manager = lanes.new("lane1", Role.MANAGER)
    manager.write(price("milk", 150))
    cashier = lanes.new("lane2")
    cashier.import_bundle(manager.export_bundle())
    cashier.write(sale("milk:1"))
    heard = listen(manager)
    manager.import_bundle(cashier.export_bundle())
    assert [(e.data["id"], e.data["origin"]) for e in heard] == [("lane2:1", "bundle")]

    # The store revokes lane2 from its first record on: its sale no longer counts. The views
    # are rebuilt (every record accepted again), yet no record gets a second event; the
    # revocation has one of its own.
    revocation = lanes.store.revoke("lane2", 0)
    manager.publish_revocation(revocation)
    manager.write(sale("milk:1"))
    assert [(e.type, e.data["id"]) for e in heard] == [
        (EventType.SALE, "lane2:1"),
        (EventType.REVOCATION, "revocation:lane2"),
        (EventType.SALE, "lane1:2"),
    ]
    revoked = heard[1].data
    assert revoked["origin"] == "local"
    assert (revoked["terminal"], revoked["seq"], revoked["after_seq"]) == ("lane2", 0, 0)
    assert (revoked["hash"], revoked["key"]) == (None, None)
    assert revoked["at_ms"] > 0
    # A replay leaves out what is no longer counted.
    assert [e.data["id"] for e in replay_all(manager)] == [
        "lane1:1",
        "revocation:lane2",
        "lane1:2",
    ]
    assert replay_all(manager)[1] == heard[1]
    manager = lanes.reopen(manager)
    heard = listen(manager)
    manager.write(sale("milk:1"))
    assert [e.data["id"] for e in heard] == ["lane1:3"]  # the revocation is not logged again
    assert [e.event_id for e in heard] == [5]


def test_a_long_replay_comes_in_pages(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 1))
    write_together(lane, [receipt("milk", 1) for _ in range(REPLAY_PAGE + 10)])
    feed = feed_of(lane)
    page, cursor = feed.replay(0, feed.last_id)
    assert len(page) == REPLAY_PAGE
    assert cursor == REPLAY_PAGE
    rest, cursor = feed.replay(cursor, feed.last_id)
    assert len(rest) == 11
    assert cursor == feed.last_id


def test_records_from_before_the_feed_are_logged_once_at_open(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 150))
    write_together(lane, [receipt("milk", 10), sale("milk:2")])
    path = lane.directory.path
    lanes.close(lane)
    # A database written by a lanesync without the feed: no events table rows.
    db = sqlite3.connect(path / "lanesync.db")
    try:
        db.execute("DELETE FROM events")
        db.commit()
    finally:
        db.close()
    lane = lanes.open(path)
    assert [(e.event_id, e.data["id"]) for e in replay_all(lane)] == [
        (1, "lane1:1"),
        (2, "lane1:2"),
        (3, "lane1:3"),
    ]
    lane = lanes.reopen(lane)
    assert feed_of(lane).last_id == 3  # not logged again
