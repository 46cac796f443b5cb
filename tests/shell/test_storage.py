"""Durable storage: reopen reproduces the state, compaction, pending updates, schema, verdicts."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pycrdt
import pytest
from support import CountingCrypto

from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Role
from lanesync.core.ids import sku
from lanesync.core.records import Receipt, make_record
from lanesync.core.views import expected_doc
from lanesync.errors import ConfigError, LanesyncError, LocalError, StorageError
from lanesync.shell import storage
from lanesync.shell.terminal import StorageCall, StorageObserver, Terminal

from .conftest import Lanes
from .helpers import (
    count_rows,
    file_mode,
    head_seq,
    observable,
    on_hand,
    price,
    query,
    query_open,
    receipt,
    sale,
    void,
    write_together,
)


@pytest.fixture
def verifications(lanes: Lanes) -> list[bytes]:
    """Every record signature check the views of terminals opened from now on make (payload
    of each)."""
    counting = CountingCrypto()
    lanes.crypto = counting
    return counting.verified


def busy_day(manager: Terminal) -> None:
    manager.write(price("milk", 149))
    manager.write(price("bread", 299))
    manager.write(receipt("milk", 40))
    manager.write(receipt("bread", 10))
    first = manager.write(sale("milk:2", "bread:1"))
    manager.write(sale("milk:3:120"))
    manager.write(void(str(first.id)))
    write_together(manager, [sale("milk:1"), sale("bread:2"), receipt("eggs", 12)])
    manager.write(price("milk", 159))


def test_reopen_holds_exactly_the_same_state(lanes: Lanes) -> None:
    terminal = lanes.new("lane1", Role.MANAGER)
    busy_day(terminal)
    before = observable(terminal)
    assert before["verify"]["ok"] is True  # type: ignore[index]
    assert on_hand(terminal, "milk") == 40 - 3 - 1
    assert on_hand(terminal, "bread") == 10 - 2
    assert on_hand(terminal, "eggs") == 12

    terminal = lanes.reopen(terminal)
    assert observable(terminal) == before
    # And the reopened terminal continues its chain where it stopped.
    record = terminal.write(sale("milk:1"))
    assert record.seq == head_seq(terminal) == 12
    terminal = lanes.reopen(terminal)
    assert terminal.replica.views.is_sale(str(record.id))
    assert terminal.integrity()["ok"] is True


def test_reopen_after_imports_holds_the_same_state(lanes: Lanes) -> None:
    manager = lanes.new("lane1", Role.MANAGER)
    busy_day(manager)
    cashier = lanes.new("lane2")
    cashier.import_bundle(manager.export_bundle())
    cashier.write(sale("milk:4"))
    manager.import_bundle(cashier.export_bundle())
    assert manager.digest() == cashier.digest()
    before = observable(cashier), observable(manager)

    cashier, manager = lanes.reopen(cashier), lanes.reopen(manager)
    assert (observable(cashier), observable(manager)) == before
    assert on_hand(cashier, "milk") == 40 - 3 - 1 - 4


def test_compaction_keeps_the_state_and_shrinks_the_log(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", 1)
    terminal = lanes.new("lane1", Role.MANAGER)
    terminal.write(price("milk", 149))
    terminal.write(receipt("milk", 1000))
    written = 2
    for i in range(60):
        terminal.write(sale("milk:1"))
        results = write_together(terminal, [sale(f"milk:{1 + i % 3}"), receipt("bread", 1)] * 2)
        written += 1 + len(results)
    assert head_seq(terminal) == written

    snapshots = query_open(terminal, "SELECT doc, length(data) FROM snapshots")
    assert {doc for doc, _ in snapshots} >= {"catalog", "config"}
    assert any(str(doc).startswith("ledger/") for doc, _ in snapshots)
    # Every record was committed as at least one update row; compaction folded many of them
    # (geometrically: a document's log is folded once it outgrows its snapshot).
    assert count_rows(terminal, "updates") < written // 2
    before = observable(terminal)

    terminal = lanes.reopen(terminal)
    assert observable(terminal) == before
    assert on_hand(terminal, "milk") == 1000 - 60 - sum(2 * (1 + i % 3) for i in range(60))
    assert terminal.integrity()["ok"] is True

    # Compacting every document explicitly leaves no log row: every update was integrated.
    for doc in terminal.replica.doc_names():
        terminal.storage.compact(terminal.replica, doc)
    assert count_rows(terminal, "updates") == 0
    terminal = lanes.reopen(terminal)
    assert observable(terminal) == before

    # Without compaction (default threshold) the same state also reloads from snapshot + log.
    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", storage.COMPACT_MIN_LOG_BYTES * 10**9)
    terminal.write(sale("milk:1"))
    expected = observable(terminal)
    terminal = lanes.reopen(terminal)
    assert observable(terminal) == expected


def test_update_after_a_gap_survives_compaction(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record whose predecessor has not arrived is kept through compaction and reopen."""
    writer = lanes.new("lane1", Role.MANAGER)
    reader = lanes.new("lane2")
    writer.write(receipt("milk", 100))
    reader.import_bundle(writer.export_bundle())
    writer.import_bundle(reader.export_bundle())
    assert reader.digest() == writer.digest()

    _, first_change = writer.stage(receipt("milk", 5))
    second, second_change = writer.stage(sale("milk:2:149"))
    writer.commit([first_change, second_change])

    # Only the second update reaches the reader: a gap in lane1's chain.
    change = reader.replica.merge(second_change.updates, reader.now_ms())
    reader.commit([change])
    assert not reader.replica.views.is_sale(str(second.id))
    assert reader.integrity()["gaps"]

    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", 1)
    reader.compact_if_due()
    assert count_rows(reader, "snapshots") > 0
    reader = lanes.reopen(reader)
    assert not reader.replica.views.is_sale(str(second.id))

    change = reader.replica.merge(first_change.updates, reader.now_ms())
    reader.commit([change])
    assert reader.replica.views.is_sale(str(second.id))
    assert reader.digest() == writer.digest()
    assert on_hand(reader, "milk") == on_hand(writer, "milk") == 103
    reader = lanes.reopen(reader)
    assert reader.digest() == writer.digest()
    assert reader.integrity()["ok"] is True


def test_pending_crdt_update_survives_compaction(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An update pycrdt cannot integrate yet (its origin is missing) is invisible and absent
    from snapshots; compaction must keep its log row so it integrates when the origin comes."""
    writer = lanes.new("lane1", Role.MANAGER)
    reader = lanes.new("lane2")
    writer.write(receipt("milk", 100))
    reader.import_bundle(writer.export_bundle())

    me = writer.directory.me
    head = writer.replica.views.head(writer.terminal_id)
    record = make_record(
        me.key,
        writer.terminal_id,
        head.seq + 1,
        head.hash,
        Hlc(head.hlc.wall_ms + 1, 0),
        Receipt(sku("milk"), 7),
    )
    doc_name = expected_doc(record, ZoneInfo(writer.directory.store.timezone))
    # A third party first stores junk under the record's key, then overwrites it with the
    # genuine record: the overwrite's origin is the junk item.
    crafted: pycrdt.Doc[pycrdt.Map[bytes]] = pycrdt.Doc(client_id=424_242)
    root: pycrdt.Map[bytes] = crafted.get(RECORDS_ROOT, type=pycrdt.Map)
    with crafted.transaction():
        root[record.key] = b"junk"
    origin = bytes(crafted.get_update())
    state = crafted.get_state()
    with crafted.transaction():
        root[record.key] = record.encoded
    overwrite = bytes(crafted.get_update(state))

    digest = reader.digest()
    reader.commit([reader.replica.merge([(doc_name, overwrite)], reader.now_ms())])
    assert reader.digest() == digest  # pending: nothing visible
    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", 1)
    reader.compact_if_due()
    assert count_rows(reader, "snapshots") > 0
    reader = lanes.reopen(reader)
    assert reader.digest() == digest

    reader.commit([reader.replica.merge([(doc_name, origin)], reader.now_ms())])
    assert reader.replica.find_record(record.id) == record
    assert on_hand(reader, "milk") == 107
    assert reader.integrity()["ok"] is True
    expected = reader.digest()
    reader = lanes.reopen(reader)
    assert reader.digest() == expected
    assert on_hand(reader, "milk") == 107


def make_newer(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version={storage.SCHEMA_VERSION + 1}")


def test_database_from_a_newer_schema_is_refused(lanes: Lanes) -> None:
    terminal = lanes.new("lane1")
    terminal.write(receipt("milk", 3))
    path = terminal.directory.path
    lanes.close(terminal)
    make_newer(path / "lanesync.db")
    with pytest.raises(ConfigError, match="newer lanesync"):
        Terminal.open(path, lock_wait_s=0)
    # Refusing did not downgrade the version mark, and released the lock.
    assert query(path / "lanesync.db", "PRAGMA user_version") == [(storage.SCHEMA_VERSION + 1,)]
    with contextlib.closing(sqlite3.connect(path / "lanesync.db")) as conn:
        conn.execute(f"PRAGMA user_version={storage.SCHEMA_VERSION}")
    assert on_hand(lanes.open(path, lock_wait_s=0), "milk") == 3


def test_a_database_of_schema_4_forgets_its_verdicts_keyed_by_record_hash(lanes: Lanes) -> None:
    """Schema 4 kept verdicts under record hashes, which a copy with another signature shares:
    opened now, they are deleted (the records are verified once more) and new ones are verdict
    keys."""
    terminal = lanes.new("lane1")
    record = terminal.write(receipt("milk", 3))
    path = terminal.directory.path
    lanes.close(terminal)
    db = path / "lanesync.db"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DELETE FROM verified")
        conn.execute("INSERT INTO verified (hash) VALUES (?)", (record.hash,))
        conn.execute("PRAGMA user_version=4")
        conn.commit()
    reopened = lanes.open(path, lock_wait_s=0)
    assert on_hand(reopened, "milk") == 3
    lanes.close(reopened)
    assert query(db, "PRAGMA user_version") == [(storage.SCHEMA_VERSION,)]
    assert (record.hash,) not in query(db, "SELECT hash FROM verified")


def open_files_of_this_process(path: Path) -> list[str]:
    return [f.path for f in psutil.Process().open_files() if f.path.startswith(str(path))]


def corrupt(db: Path) -> None:
    db.write_bytes(b"this is not an SQLite database" * 100)


@pytest.mark.parametrize("spoil", [make_newer, corrupt])
def test_refused_database_is_closed(lanes: Lanes, spoil: Callable[[Path], None]) -> None:
    """The caller may keep the exception (to log it); the database must not stay open."""
    terminal = lanes.new("lane1")
    path = terminal.directory.path
    lanes.close(terminal)
    spoil(path / "lanesync.db")
    with pytest.raises(LanesyncError) as caught:
        Terminal.open(path, lock_wait_s=0)
    assert isinstance(caught.value, ConfigError | StorageError)
    assert open_files_of_this_process(path) == []


def test_corrupted_database_is_a_storage_error_and_releases_the_lock(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    corrupt(path / "lanesync.db")
    with pytest.raises(StorageError) as caught:
        Terminal.open(path, lock_wait_s=0)
    # Not the caller's mistake (LocalError): the disk, not the call, needs fixing.
    assert not isinstance(caught.value, LocalError)
    assert "\n" not in str(caught.value)
    (path / "lanesync.db").unlink()
    assert lanes.open(path, lock_wait_s=0).integrity()["ok"] is True


def test_verification_counter_sees_imports(lanes: Lanes, verifications: list[bytes]) -> None:
    """Sanity check of the fixture: records arriving in a bundle are verified once each."""
    writer = lanes.new("lane1", Role.MANAGER)
    writer.write(receipt("milk", 5))
    writer.write(sale("milk:1:100"))
    reader = lanes.new("lane2")
    verifications.clear()
    reader.import_bundle(writer.export_bundle())
    assert len(verifications) == 2
    assert len(set(verifications)) == 2


Scenario = Callable[[Lanes], Terminal]


def cashier_day(cashier: Terminal) -> None:
    cashier.write(receipt("milk", 40))
    first = cashier.write(sale("milk:2:149", "bread:1:299"))
    cashier.write(sale("milk:3:120"))
    cashier.write(void(str(first.id)))
    write_together(cashier, [sale("milk:1:149"), receipt("eggs", 12), sale("eggs:2:50")])


def own_writes(lanes: Lanes) -> Terminal:
    cashier = lanes.new("lane1")
    cashier_day(cashier)
    return cashier


def imported_records(lanes: Lanes) -> Terminal:
    cashier = own_writes(lanes)
    observer = lanes.new("lane2")
    observer.import_bundle(cashier.export_bundle())
    return observer


def imported_price_changes(lanes: Lanes) -> Terminal:
    manager = lanes.new("lane1", Role.MANAGER)
    busy_day(manager)
    observer = lanes.new("lane2")
    observer.import_bundle(manager.export_bundle())
    return observer


def own_writes_and_imports(lanes: Lanes) -> Terminal:
    manager = lanes.new("lane1", Role.MANAGER)
    busy_day(manager)
    cashier = lanes.new("lane2")
    cashier.import_bundle(manager.export_bundle())
    cashier.write(sale("milk:2"))
    cashier.write(receipt("milk", 9))
    manager.import_bundle(cashier.export_bundle())
    manager.write(sale("milk:1"))
    return manager


@pytest.mark.parametrize(
    "scenario", [own_writes, imported_records, imported_price_changes, own_writes_and_imports]
)
def test_reopen_does_not_verify_signatures_again(
    lanes: Lanes, verifications: list[bytes], scenario: Scenario
) -> None:
    """Verify on arrival, keep the verdict (re-verifying a 100k-record day cost ~5 s of CPU,
    2026-11-26)."""
    terminal = scenario(lanes)
    expected = observable(terminal)
    assert terminal.replica.views.accepted_count() >= 7
    verifications.clear()
    terminal = lanes.reopen(terminal)
    assert observable(terminal) == expected
    assert verifications == [], f"{len(verifications)} signatures verified again on reopen"
    # A second reopen (after the first one persisted whatever it verified) must not either.
    terminal = lanes.reopen(terminal)
    assert verifications == []


@pytest.mark.usefixtures("usual_umask")
def test_database_and_its_companions_are_private(lanes: Lanes) -> None:
    # Every sale is in the database; SQLite gives its -wal file the database's mode (and makes
    # no -shm file: exclusive locking mode keeps the WAL index in memory).
    terminal = lanes.new("lane1", Role.MANAGER)
    db = terminal.directory.database
    assert file_mode(db) == 0o600
    terminal.write(receipt("milk", 5))
    for path in (db, db.with_name(db.name + "-wal")):
        assert file_mode(path) == 0o600, path.name
    assert not db.with_name(db.name + "-shm").exists()


@pytest.mark.usefixtures("usual_umask")
def test_storage_opened_on_a_new_path_creates_a_private_file(tmp_path: Path) -> None:
    opened = storage.Storage(tmp_path / "fresh.db")
    try:
        assert file_mode(tmp_path / "fresh.db") == 0o600
    finally:
        opened.close()


def test_storage_in_a_missing_directory_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot open database"):
        storage.Storage(tmp_path / "missing" / "lanesync.db")


class StorageCalls(StorageObserver):
    """Notes each storage call it is told of, and whether its transaction was over by then."""

    def __init__(self, terminal: Terminal) -> None:
        self._terminal = terminal
        self.calls: list[tuple[StorageCall, float, bool]] = []

    def stored(self, call: StorageCall, seconds: float) -> None:
        assert isinstance(self._terminal.storage, storage.Storage)
        self.calls.append((call, seconds, self._terminal.storage._db.in_transaction))


def test_a_storage_observer_is_told_each_commit_and_compaction_once_done(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal = lanes.new("lane1", Role.MANAGER)
    watched = StorageCalls(terminal)
    terminal.observer = watched
    terminal.write(price("milk", 149))  # one commit; no log is large enough to compact
    assert [call for call, _, _ in watched.calls] == [StorageCall.COMMIT]
    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", 1)
    terminal.write(receipt("milk", 3))
    commits = [c for c in watched.calls if c[0] is StorageCall.COMMIT]
    compactions = [c for c in watched.calls if c[0] is StorageCall.COMPACT]
    assert len(commits) == 2
    assert compactions
    assert all(seconds >= 0 and not in_transaction for _, seconds, in_transaction in watched.calls)


def test_a_sealed_day_opened_again_survives_a_restart_and_seals_amended(lanes: Lanes) -> None:
    """Storage of the late-record path: the archive becomes the day's first log row and the
    seal row says 'reopened'; a restart then holds the day open with its earlier report hash,
    and the next seal keeps it as amended_from."""
    one, two = lanes.enroll("one"), lanes.enroll("two")
    with Terminal.open(one) as lane:
        lane.write(lambda _views: Receipt(sku("milk"), 5))
        lane.close_days(None)
        day = lane.replica.views.last_closed_day(lane.terminal_id)
        assert lane.seal_due(lambda _day: True) == [day]
        first = lane.sealed_report(str(day))
        assert first is not None
        digest = lane.digest()
    with Terminal.open(two) as late:
        late.write(lambda _views: Receipt(sku("milk"), 2))
        late.close_days(None)
        bundle = late.export_bundle()
    with Terminal.open(one) as lane:
        assert lane.replica.digest() == digest  # sealed, from the archive
        lane.import_bundle(bundle)
        assert day not in lane.replica.sealed_days()
    with Terminal.open(one) as lane:  # the day is open again after the restart
        assert day not in lane.replica.sealed_days()
        assert lane.replica.views.on_hand() == {"milk": 7}
        assert lane.seal_due(lambda _day: True) == [day]
    with Terminal.open(one) as lane:
        sealed = lane.replica.sealed_days()[str(day)]
        assert sealed.amended_from == (first["report_hash"],)
        assert lane.sealed_report(str(day))["amended_from"] == [first["report_hash"]]
        assert lane.replica.views.on_hand() == {"milk": 7}
        assert lane.replica.restored_from.startswith("loaded stock and sales from the checkpoint")
