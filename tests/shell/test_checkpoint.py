"""The checkpoint of the views in a real terminal database: used when it fits, refused (and
logged) when it is corrupted, stale or of another format, written with each compaction, and
an older database without one still opens and works."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import sqlite3
from pathlib import Path

import msgpack
import pytest

from lanesync.core.checkpoint import CHECKPOINT_DIGEST_SIZE
from lanesync.core.identity import Role
from lanesync.shell import storage
from lanesync.shell.terminal import Terminal

from .conftest import Lanes
from .helpers import (
    head_seq,
    observable,
    on_hand,
    price,
    query_open,
    receipt,
    sale,
    void,
    write_together,
)

LOGGER = "lanesync.terminal"


def checkpoints(monkeypatch: pytest.MonkeyPatch, *, every_write: bool) -> None:
    """A checkpoint after every write (the real threshold is 256 KiB of log), or none."""
    monkeypatch.setattr(storage, "CHECKPOINT_MIN_LOG_BYTES", 0 if every_write else 1 << 40)
    monkeypatch.setattr(storage, "CHECKPOINT_LOG_FRACTION", 1 << 40)


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoints(monkeypatch, every_write=True)


def store_day(lanes: Lanes) -> tuple[Terminal, Terminal]:
    """A manager and a cashier that sold, voided, priced and exchanged bundles."""
    manager = lanes.new("lane1", Role.MANAGER)
    manager.write(price("milk", 149))
    manager.write(receipt("milk", 40))
    first = manager.write(sale("milk:2"))
    cashier = lanes.new("lane2")
    cashier.import_bundle(manager.export_bundle())
    cashier.write(sale("milk:3"))
    cashier.write(void(str(first.id)))  # the manager's sale, voided on another lane
    manager.write(void(str(first.id)))  # and here too, while apart: credited once
    manager.import_bundle(cashier.export_bundle())
    write_together(manager, [sale("milk:1"), receipt("bread", 5), sale("bread:2:299")])
    return manager, cashier


def checkpoint_row(terminal: Terminal) -> tuple[int, bytes]:
    ((through, data),) = query_open(terminal, "SELECT through, data FROM checkpoint")
    assert isinstance(through, int)
    assert isinstance(data, bytes)
    return through, data


def set_checkpoint(db: Path, data: bytes, through: int | None = None) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE checkpoint SET data = ?", (data,))
        if through is not None:
            conn.execute("UPDATE checkpoint SET through = ?", (through,))
        conn.commit()


def last_line(caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    lines = [r for r in caplog.records if r.name == LOGGER]
    assert lines, "the reopen logged nothing about its views"
    return lines[-1]


def restored_from(caplog: pytest.LogCaptureFixture) -> str:
    return last_line(caplog).getMessage()


def test_reopen_from_the_checkpoint_holds_exactly_the_full_fold(
    lanes: Lanes, eager: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    manager, _ = store_day(lanes)
    expected = observable(manager)
    assert on_hand(manager, "milk") == 40 - 3 - 1  # the voided sale credited back once
    through, _ = checkpoint_row(manager)
    assert through > 0

    manager = lanes.reopen(manager)
    assert "loaded stock and sales from the checkpoint" in restored_from(caplog)
    assert observable(manager) == expected

    # The same database with the checkpoint gone: folded in full, to the same views.
    lanes.close(manager)
    with contextlib.closing(sqlite3.connect(manager.directory.database)) as conn:
        conn.execute("DELETE FROM checkpoint")
        conn.commit()
    checkpoints(monkeypatch, every_write=False)  # keep it absent
    manager = lanes.open(manager.directory.path)
    records = manager.replica.views.accepted_count()
    # in plain words: what was rebuilt, from how many records, and why (the logs' reference)
    assert f"rebuilt stock and sales from {records} records (no checkpoint)" in restored_from(
        caplog
    )
    assert observable(manager) == expected
    # And the terminal goes on where it stopped.
    record = manager.write(sale("milk:1"))
    assert record.seq == head_seq(manager)


def test_rows_after_the_checkpoint_are_folded_on_top_of_it(
    lanes: Lanes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    checkpoints(monkeypatch, every_write=True)
    manager, cashier = store_day(lanes)
    checkpoints(monkeypatch, every_write=False)  # none newer than the day's
    cashier.write(sale("bread:1:299"))
    latest = cashier.write(sale("milk:1"))
    manager.import_bundle(cashier.export_bundle())
    manager.write(void(str(latest.id)))
    expected = observable(manager)

    manager = lanes.reopen(manager)
    assert "loaded stock and sales from the checkpoint, then 3 later changes" in restored_from(
        caplog
    )
    assert observable(manager) == expected


def test_corrupted_stale_or_foreign_format_checkpoints_are_refused(
    lanes: Lanes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    checkpoints(monkeypatch, every_write=True)
    manager, _ = store_day(lanes)
    stale_through, stale = checkpoint_row(manager)
    manager.write(sale("milk:4"))
    manager.write(void(str(manager.write(sale("bread:1:299")).id)))
    expected = observable(manager)
    through, good = checkpoint_row(manager)
    db = manager.directory.database
    lanes.close(manager)
    checkpoints(monkeypatch, every_write=False)  # keep the spoiled one in place

    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0x40
    body = msgpack.packb([0, "s1", {}, []], use_bin_type=True)
    old_format = body + hashlib.blake2b(body, digest_size=CHECKPOINT_DIGEST_SIZE).digest()
    cases = [
        (bytes(flipped), through, "checkpoint corrupted"),
        (good[:-1], through, "checkpoint corrupted"),
        (old_format, through, "checkpoint of format 0"),
        # an older checkpoint claiming to cover every row
        (stale, through, "does not match the stored documents"),
        # the current one claiming to cover fewer rows than it does
        (good, stale_through, "does not match the stored documents"),
    ]
    for data, covers, reason in cases:
        set_checkpoint(db, data, covers)
        caplog.clear()
        terminal = lanes.open(manager.directory.path)
        message = restored_from(caplog)
        assert "rebuilt stock and sales from " in message, message
        assert reason in message, message
        assert last_line(caplog).levelno == logging.WARNING
        assert observable(terminal) == expected
        lanes.close(terminal)


def test_compaction_writes_the_checkpoint_with_the_snapshot(
    lanes: Lanes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    monkeypatch.setattr(storage, "COMPACT_MIN_LOG_BYTES", 1)
    checkpoints(monkeypatch, every_write=False)  # only compaction writes one
    terminal = lanes.new("lane1", Role.MANAGER)
    terminal.write(receipt("milk", 100))
    for i in range(30):
        write_together(terminal, [sale(f"milk:{1 + i % 2}:149"), receipt("bread", 1)])
    # Only compactions wrote checkpoints here; the last one covers every row it kept.
    checkpoint_row(terminal)
    terminal.storage.compact(terminal.replica, terminal.replica.doc_names()[-1])
    ((kept,),) = query_open(terminal, "SELECT coalesce(max(id), 0) FROM updates")
    assert checkpoint_row(terminal)[0] == kept
    expected = observable(terminal)

    terminal = lanes.reopen(terminal)
    assert "loaded stock and sales from the checkpoint" in restored_from(caplog)
    assert observable(terminal) == expected


def test_database_of_schema_1_opens_folds_once_and_gets_a_checkpoint(
    lanes: Lanes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    manager, _ = store_day(lanes)
    expected = observable(manager)
    db = manager.directory.database
    lanes.close(manager)
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("DROP TABLE checkpoint")  # what lanesync with schema 1 wrote
        conn.execute("PRAGMA user_version=1")
        conn.commit()

    checkpoints(monkeypatch, every_write=True)
    manager = lanes.open(manager.directory.path)
    assert " records (no checkpoint)" in restored_from(caplog)
    assert observable(manager) == expected
    assert query_open(manager, "PRAGMA user_version") == [(storage.SCHEMA_VERSION,)]
    manager.write(sale("milk:1"))
    expected = observable(manager)
    manager = lanes.reopen(manager)
    assert "loaded stock and sales from the checkpoint" in restored_from(caplog)
    assert observable(manager) == expected


def test_no_checkpoint_while_merged_updates_wait_for_their_commit(
    lanes: Lanes, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A daemon merges peers' updates and commits them a little later; a checkpoint taken
    in between would hold views of entries the log does not have yet."""
    caplog.set_level(logging.INFO, LOGGER)
    checkpoints(monkeypatch, every_write=True)
    manager, cashier = store_day(lanes)
    cashier.write(sale("milk:1"))
    before = checkpoint_row(manager)
    missing = cashier.replica.updates_since(manager.replica.state_vectors())
    change = manager.replica.merge(list(missing.items()), manager.now_ms())
    assert manager.replica.unpersisted_updates > 0
    manager.compact_if_due()
    assert checkpoint_row(manager) == before

    manager.commit([change])
    assert manager.replica.unpersisted_updates == 0
    manager.compact_if_due()
    assert checkpoint_row(manager) != before
    expected = observable(manager)
    manager = lanes.reopen(manager)
    assert "loaded stock and sales from the checkpoint, then 0 later changes" in restored_from(
        caplog
    )
    assert observable(manager) == expected
