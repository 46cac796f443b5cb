"""The checkpoint of a store's views on PostgreSQL (``PostgresStoreStorage``, table
``store_checkpoints``), with several processes writing the store.

Each process is a replica and its storage on its own connection, as in test_pgstorage. A store
opened again loads its views from the checkpoint and folds only the rows after it, and whatever
happened since (rows committed by others, their compactions, a failed transaction) the views it
ends with are exactly those of a full fold of the same rows. A process that has not pulled what
another committed writes no checkpoint.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from core.helpers import NOW, CoreTerminal, Store  # tests/ is on sys.path, as for `support`

from lanesync.cloud import pgstorage
from lanesync.cloud.pgstorage import PostgresStoreStorage, store_head
from lanesync.cloud.schema import migrate_postgresql, postgresql_version
from lanesync.cloud.sql import Sql, connect
from lanesync.core.change import Change
from lanesync.core.ids import Sku
from lanesync.core.records import Receipt, Sale, SaleLine
from lanesync.core.replica import Replica
from lanesync.tools.pgserver import PostgresServer

from .conftest import migrated_database

_stores = itertools.count(1)
FROM_CHECKPOINT = "loaded stock and sales from the checkpoint, then "


@pytest.fixture(scope="module")
def database(pg_server: PostgresServer) -> str:
    return migrated_database(pg_server, "pgcheckpoint")


@pytest.fixture
def connections(database: str) -> Iterator[list[Sql]]:
    """Three connections: two processes serving the store, and a third opening it."""
    opened = [connect(database) for _ in range(3)]
    try:
        yield opened
    finally:
        for sql in opened:
            sql.close()


@dataclass
class Process:
    """One cloud process's replica of the store and its storage on its own connection."""

    sql: Sql
    replica: Replica
    storage: PostgresStoreStorage

    def receive(self, change: Change) -> None:
        """A leader uploaded ``change``: merge it and commit it, as the mesh does."""
        merged = self.replica.merge(list(change.updates), NOW)
        self.storage.commit([merged])
        self.replica.persisted([merged])

    def pull(self) -> None:
        """What a process's follower does: merge what the others committed."""
        with self.sql.transaction():
            pulled = self.storage.pull()
        merged = self.replica.merge(pulled.updates, NOW, trusted=pulled.verified)
        self.replica.persisted([merged])  # durable already

    def compact(self) -> None:
        for doc in self.replica.doc_names():
            self.storage.compact(self.replica, doc)


def opened(store: Store, sql: Sql, store_key: str, *, checkpoint: bool = True) -> Process:
    """A process starting up, its replica loaded from the database; ``checkpoint`` false:
    the stored checkpoint is ignored, every row folded (the reference)."""
    storage = PostgresStoreStorage(sql, store_key)
    replica = Replica(store.identity, store.client_id(), None)
    loaded = storage.load()
    replica.restore(
        loaded.stored,
        loaded.verified,
        NOW,
        checkpoint=loaded.checkpoint if checkpoint else None,
        tail=loaded.tail,
        sealed=loaded.sealed,
        amended=loaded.amended,
    )
    return Process(sql, replica, storage)


def sell(lane: CoreTerminal, process: Process, sales: int) -> None:
    for n in range(sales):
        _, change = lane.replica.append(Sale.of((SaleLine(Sku(f"sku{n % 3}"), 1, 149),)), NOW)
        process.receive(change)


def stored_checkpoint(sql: Sql, store_key: str) -> tuple[int, int, bytes] | None:
    rows = sql.execute(
        "SELECT through, gen, data FROM store_checkpoints WHERE store_id = ?", (store_key,)
    )
    return (int(rows[0][0]), int(rows[0][1]), bytes(rows[0][2])) if rows else None


def assert_exact(sql: Sql, store: Store, store_key: str, lane: CoreTerminal) -> Process:
    """A process opening the store now loads from the checkpoint, and ends with the views of
    a full fold of the same rows, and of the lane that made them."""
    fresh = opened(store, sql, store_key)
    assert fresh.replica.restored_from.startswith(FROM_CHECKPOINT), fresh.replica.restored_from
    folded = opened(store, sql, store_key, checkpoint=False)
    assert folded.replica.restored_from.startswith("rebuilt stock and sales from ")
    for replica in (folded.replica, lane.replica):
        assert fresh.replica.digest() == replica.digest()
        assert fresh.replica.views.on_hand() == replica.views.on_hand()
        assert fresh.replica.views.accepted_count() == replica.views.accepted_count()
        assert fresh.replica.views.heads() == replica.views.heads()
    return fresh


def test_a_store_reopens_from_its_checkpoint_and_folds_only_the_rows_after_it(
    connections: list[Sql], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    key = f"ckpt{next(_stores)}"
    a = opened(store, connections[0], key)
    a.receive(lane.restored)
    sell(lane, a, 20)
    assert stored_checkpoint(connections[0], key) is None
    assert not a.storage.checkpoint_due()  # the lane's threshold: 256 KiB of log
    monkeypatch.setattr(pgstorage, "CHECKPOINT_MIN_LOG_BYTES", 1)
    assert a.storage.checkpoint_due()
    a.storage.write_checkpoint(a.replica)
    assert not a.storage.checkpoint_due()
    written = stored_checkpoint(connections[0], key)
    assert written is not None
    assert written[:2] == store_head(connections[0], key)  # every row committed, this gen
    sell(lane, a, 5)  # the tail
    _, change = lane.replica.append(Receipt(Sku("sku1"), 7), NOW)
    a.receive(change)

    loaded = PostgresStoreStorage(connections[2], key).load()
    assert loaded.checkpoint == written[2]
    assert len(loaded.tail) == 6  # one row a commit, each after the checkpoint
    fresh = assert_exact(connections[2], store, key, lane)
    assert fresh.replica.restored_from == FROM_CHECKPOINT + "6 later changes"


def test_a_compaction_by_another_process_writes_its_checkpoint_with_its_snapshots(
    connections: list[Sql],
) -> None:
    """b compacts after a wrote a checkpoint: b's checkpoint replaces a's in the transaction
    that replaces the snapshots, so the stored checkpoint is never older than a snapshot."""
    store = Store()
    lane = store.terminal("lane1")
    key = f"ckpt{next(_stores)}"
    a = opened(store, connections[0], key)
    a.receive(lane.restored)
    sell(lane, a, 10)
    a.storage.write_checkpoint(a.replica)
    first = stored_checkpoint(connections[0], key)
    assert first is not None

    b = opened(store, connections[1], key)
    assert b.replica.restored_from.startswith(FROM_CHECKPOINT)
    sell(lane, b, 10)
    b.compact()
    by_b = stored_checkpoint(connections[1], key)
    assert by_b is not None
    assert by_b[:2] == store_head(connections[1], key) != first[:2]
    assert connections[1].execute(
        "SELECT COUNT(*) FROM store_updates WHERE store_id = ?", (key,)
    ) == [(0,)]  # everything is in the snapshots now

    # a has not pulled b's rows: it may commit, but neither compacts nor writes a checkpoint.
    sell(lane, a, 3)
    a.compact()
    a.storage.write_checkpoint(a.replica)
    assert stored_checkpoint(connections[0], key) == by_b
    assert_exact(connections[2], store, key, lane)

    # Once it pulled, it does.
    a.pull()
    a.compact()
    by_a = stored_checkpoint(connections[0], key)
    assert by_a is not None
    assert by_a[:2] == store_head(connections[0], key)
    assert_exact(connections[2], store, key, lane)


def test_a_process_behind_or_holding_uncommitted_updates_writes_no_checkpoint(
    connections: list[Sql],
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    key = f"ckpt{next(_stores)}"
    a = opened(store, connections[0], key)
    b = opened(store, connections[1], key)
    a.receive(lane.restored)
    sell(lane, a, 2)
    sell(lane, b, 2)  # b has not pulled a's rows
    b.storage.write_checkpoint(b.replica)
    assert stored_checkpoint(connections[1], key) is None
    for doc in b.replica.doc_names():
        b.storage.compact(b.replica, doc)
    assert stored_checkpoint(connections[1], key) is None

    # a is behind too (b's rows), and then merges a sale it has not committed.
    a.storage.write_checkpoint(a.replica)
    assert stored_checkpoint(connections[0], key) is None
    a.pull()
    _, change = lane.replica.append(Sale.of((SaleLine(Sku("sku9"), 1, 99),)), NOW)
    merged = a.replica.merge(list(change.updates), NOW)
    a.storage.write_checkpoint(a.replica)
    assert stored_checkpoint(connections[0], key) is None
    a.storage.commit([merged])
    a.replica.persisted([merged])
    a.storage.write_checkpoint(a.replica)
    written = stored_checkpoint(connections[0], key)
    assert written is not None
    assert written[:2] == store_head(connections[0], key)
    assert_exact(connections[2], store, key, lane)


def test_a_transaction_that_fails_after_writing_a_checkpoint_leaves_the_old_one(
    connections: list[Sql],
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    key = f"ckpt{next(_stores)}"
    a = opened(store, connections[0], key)
    a.receive(lane.restored)
    sell(lane, a, 5)
    a.storage.write_checkpoint(a.replica)
    old = stored_checkpoint(connections[0], key)
    sell(lane, a, 5)

    def compact_and_fail() -> None:
        with connections[0].transaction():
            a.compact()  # snapshots, rows deleted, a new generation and a new checkpoint
            a.storage.write_checkpoint(a.replica)
            assert stored_checkpoint(connections[0], key) != old  # written, not committed
            raise RuntimeError("after the checkpoint")

    with pytest.raises(RuntimeError, match="after the checkpoint"):
        compact_and_fail()
    assert stored_checkpoint(connections[0], key) == old
    assert_exact(connections[2], store, key, lane)


def test_a_database_of_the_previous_schema_migrates_and_folds_once(
    pg_server: PostgresServer,
) -> None:
    url = pg_server.create_database("pgcheckpoint_v4")
    sql = connect(url)
    try:
        migrate_postgresql(sql)
        store = Store()
        lane = store.terminal("lane1")
        old = Process(
            sql, Replica(store.identity, store.client_id(), None), PostgresStoreStorage(sql, "s1")
        )
        old.receive(lane.restored)
        sell(lane, old, 5)
        # What the previous version left: the same rows, without what migration 5 added.
        with sql.transaction():
            sql.execute("DROP TABLE store_checkpoints")
            sql.execute("ALTER TABLE store_heads DROP COLUMN projected_seq")
            sql.execute("UPDATE lanesync_schema SET version = 4")

        assert [m.version for m in migrate_postgresql(sql)] == [5]
        assert postgresql_version(sql) == 5
        first = opened(store, sql, "s1")
        assert (
            first.replica.restored_from == "rebuilt stock and sales from 5 records (no checkpoint)"
        )
        assert first.replica.digest() == lane.replica.digest()
        assert first.storage.checkpoint_due()  # else every open would fold everything again
        first.storage.write_checkpoint(first.replica)
        assert not first.storage.checkpoint_due()
        assert_exact(sql, store, "s1", lane)
    finally:
        sql.close()
