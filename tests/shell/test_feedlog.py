"""The change feed's durable log (shell.feedlog) on real terminals and SQLite files: ids in
the order records became durable, kept across a reopen; an event only once its record is
committed; one event per record across a rebuild; a replay of what is still held."""

from __future__ import annotations

import shutil
import sqlite3

from lanesync.core.feed import EventType, FeedEvent, Origin
from lanesync.core.identity import Role
from lanesync.core.ids import ledger_doc
from lanesync.shell.feedlog import REPLAY_PAGE, FeedLog, id_floor
from lanesync.shell.storage import Storage
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import price, receipt, sale, write_together

# Before any test of this module opened a terminal: ids are above its floor.
OPENED_AFTER_MS = wall_clock_ms()


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
    first = heard[0].event_id
    assert first > id_floor(OPENED_AFTER_MS)  # an opening's ids start at its time
    assert [(e.event_id - first, e.type, e.data["id"]) for e in heard] == [
        (0, EventType.PRICE, "lane1:1"),
        (1, EventType.RECEIPT, "lane1:2"),
        (2, EventType.SALE, "lane1:3"),
    ]
    assert {e.data["origin"] for e in heard} == {"local"}
    assert replay_all(lane) == heard
    assert replay_all(lane, after=heard[1].event_id) == heard[2:]

    lane = lanes.reopen(lane)
    assert feed_of(lane).last_id >= heard[-1].event_id
    assert replay_all(lane) == heard  # the same events, ids and all, from disk
    heard_after = listen(lane)
    lane.write(sale("milk:1"))
    assert [e.data["id"] for e in heard_after] == ["lane1:4"]
    assert heard_after[0].event_id > heard[-1].event_id


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
    assert heard[1].event_id == heard[0].event_id + 1


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


def test_a_long_replay_comes_in_pages(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 1))
    write_together(lane, [receipt("milk", 1) for _ in range(REPLAY_PAGE + 10)])
    feed = feed_of(lane)
    page, cursor = feed.replay(0, feed.last_id)
    assert len(page) == REPLAY_PAGE
    assert cursor == page[-1].event_id
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
    logged = replay_all(lane)
    assert [e.data["id"] for e in logged] == ["lane1:1", "lane1:2", "lane1:3"]
    assert [e.event_id - logged[0].event_id for e in logged] == [0, 1, 2]
    lane = lanes.reopen(lane)
    assert replay_all(lane) == logged  # not logged again


def test_a_lane_restored_from_an_older_backup_never_hands_out_an_id_again(lanes: Lanes) -> None:
    """A client that saw events after the backup was taken resumes with a newer id than the
    restored database holds: the restored lane's new events must still come after it."""
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 150))
    path = lane.directory.path
    lanes.close(lane)
    backup = path.with_name("backup")
    shutil.copytree(path, backup)
    lane = lanes.open(path)
    heard = listen(lane)
    lane.write(receipt("milk", 10))
    seen_by_client = heard[-1].event_id
    lanes.close(lane)
    shutil.rmtree(path)
    shutil.copytree(backup, path)  # restored: its stored ids end before seen_by_client
    lane = lanes.open(path)
    heard = listen(lane)
    lane.write(sale("milk:1"))
    assert [e.data["id"] for e in heard] == ["lane1:2"]  # the seq comes back; the id does not
    assert heard[0].event_id > seen_by_client
    assert [e.data["id"] for e in replay_all(lane, after=seen_by_client)] == ["lane1:2"]


def _rows_of_days(terminal: Terminal, day: str) -> tuple[int, list[str]]:
    """The event rows of ``day``'s document, and the documents with a pack."""
    assert isinstance(terminal.storage, Storage)
    return len(terminal.storage.events_of(ledger_doc(day))), terminal.storage.packed_docs()


def test_a_sealed_day_keeps_its_events_in_a_pack(lanes: Lanes) -> None:
    """Sealing moves a day's events from their rows into a pack beside its archive; a replay
    reads rows and packs as one log, after a reopen too; a late record that opens the day
    again gets its event, and sealing again packs old and new together; a rebuild of the
    views logs none of them again."""
    lane = lanes.new("lane1", Role.MANAGER)
    lane.write(price("milk", 150))
    write_together(lane, [receipt("milk", 10)] + [sale("milk:1") for _ in range(3)])
    lane.close_days(None)
    before = replay_all(lane)
    assert len(before) == 6  # the price, the receipt, three sales, the day-end
    day = str(lane.replica.views.last_closed_day(lane.terminal_id))
    assert lane.seal_due(lambda _day: True) == [day]
    assert _rows_of_days(lane, day) == (0, [ledger_doc(day)])
    assert replay_all(lane) == before
    assert replay_all(lane, after=before[2].event_id) == before[3:]

    lane = lanes.reopen(lane)
    assert feed_of(lane).last_id >= before[-1].event_id
    assert replay_all(lane) == before

    # lane2 sells on the sealed day: the day opens again, the sale is an event of its own.
    cashier = lanes.new("lane2")
    cashier.import_bundle(lane.export_bundle())
    cashier.write(sale("milk:1"))
    cashier.close_days(None)
    heard = listen(lane)
    lane.import_bundle(cashier.export_bundle())
    assert day not in lane.replica.sealed_days()
    late = [e for e in heard if e.type is EventType.SALE]
    assert [e.data["id"] for e in late] == ["lane2:1"]
    assert lane.seal_due(lambda _day: True) == [day]
    assert _rows_of_days(lane, day) == (0, [ledger_doc(day)])
    assert replay_all(lane) == before + heard

    # The store revokes lane2 from its second record on: the views are rebuilt from every
    # day, sealed ones too, and only the revocation is new.
    heard = listen(lane)
    lane.publish_revocation(lanes.store.revoke("lane2", 1))
    assert [e.type for e in heard] == [EventType.REVOCATION]
    assert replay_all(lane) == [*before, *late, *heard]


def test_a_replay_pages_through_packs_and_rows_in_id_order(lanes: Lanes) -> None:
    lane = lanes.new("lane1", Role.MANAGER)
    heard = listen(lane)
    lane.write(price("milk", 1))
    write_together(lane, [receipt("milk", 1) for _ in range(REPLAY_PAGE + 10)])
    lane.close_days(None)
    assert lane.seal_due(lambda _day: True)
    lane.write(receipt("milk", 2))  # the next day's, in a row
    feed = feed_of(lane)
    page, cursor = feed.replay(0, feed.last_id)
    assert page == heard[:REPLAY_PAGE]
    assert cursor == page[-1].event_id
    rest, cursor = feed.replay(cursor, feed.last_id)
    assert rest == heard[REPLAY_PAGE:]
    assert rest[-1].data["id"] == "lane1:" + str(REPLAY_PAGE + 13)
    assert cursor == feed.last_id
