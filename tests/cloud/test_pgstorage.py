"""Several cloud processes' replicas of one store on one PostgreSQL database, in one process.

Hypothesis drives two replicas (``a`` and ``b``, each with its own connection, as two
``cloud serve`` processes would have) through any interleaving of: a lane's records arriving at
either, pulls of what the other committed, and compactions (the threshold lowered so that they
happen). Whatever the interleaving, after a final pull both replicas, and a third one loaded
fresh from the database, hold exactly the lane's state: no row lost to a compaction, none
merged twice into the tables' source.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from core.helpers import NOW, Store  # tests/ is on sys.path, as for `support`
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import CountingCrypto

from lanesync.cloud.pgstorage import COMMIT_CHANNEL, PostgresStoreStorage
from lanesync.cloud.sql import PostgresSql, Row, Sql, connect
from lanesync.core.change import Change
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.ids import Sku
from lanesync.core.records import Receipt, Sale, SaleLine
from lanesync.core.replica import Replica
from lanesync.errors import StorageError
from lanesync.shell import storage as shell_storage
from lanesync.tools.pgserver import PostgresServer

from .conftest import migrated_database

_stores = itertools.count(1)


@pytest.fixture(scope="module")
def database(pg_server: PostgresServer) -> str:
    return migrated_database(pg_server, "pgstorage")


@dataclass
class Process:
    """One cloud process's replica of the store and its storage on its own connection."""

    replica: Replica
    storage: PostgresStoreStorage

    def receive(self, change: Change) -> None:
        """A leader uploaded ``change``: merge it, commit it (as Mesh does), maybe compact."""
        merged = self.replica.merge(list(change.updates), NOW)
        self.storage.commit([merged])
        for doc in self.storage.documents_to_compact():
            self.storage.compact(self.replica, doc)

    def pull(self, sql: Sql) -> None:
        with sql.transaction():
            pulled = self.storage.pull()
        if pulled.updates:
            self.replica.merge(pulled.updates, NOW, trusted=pulled.verified)


def opened(store: Store, sql: Sql, store_key: str, crypto: Crypto = SODIUM) -> Process:
    """A process starting up: its replica loaded from the database."""
    storage = PostgresStoreStorage(sql, store_key)
    replica = Replica(store.identity, store.client_id(), None, crypto=crypto)
    loaded = storage.load()
    replica.restore(
        loaded.stored, loaded.verified, NOW, checkpoint=loaded.checkpoint, tail=loaded.tail
    )
    return Process(replica, storage)


Step = tuple[str, str]  # (what, which process)
STEPS = st.lists(
    st.tuples(st.sampled_from(["sale", "receipt", "pull", "compact"]), st.sampled_from("ab")),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=STEPS, compact_at=st.sampled_from([1, 400, 4000]))
def test_any_interleaving_of_uploads_pulls_and_compactions_converges(
    database: str, monkeypatch: pytest.MonkeyPatch, steps: list[Step], compact_at: int
) -> None:
    monkeypatch.setattr(shell_storage, "COMPACT_MIN_LOG_BYTES", compact_at)
    store = Store()
    lane = store.terminal("lane1")
    store_key = f"hyp{next(_stores)}"
    connections = {name: connect(database) for name in "abc"}
    try:
        processes = {name: opened(store, connections[name], store_key) for name in "ab"}
        processes["a"].receive(lane.restored)  # the lane's certificate, as its leader uploads it
        for what, where in steps:
            process = processes[where]
            if what == "sale":
                _, change = lane.replica.append(Sale.of((SaleLine(Sku("milk"), 1, 149),)), NOW)
                process.receive(change)
            elif what == "receipt":
                _, change = lane.replica.append(Receipt(Sku("milk"), 5), NOW)
                process.receive(change)
            elif what == "pull":
                process.pull(connections[where])
            else:
                for doc in process.replica.doc_names():
                    process.storage.compact(process.replica, doc)

        for name, process in processes.items():
            process.pull(connections[name])
        fresh = opened(store, connections["c"], store_key)
        digests = {name: p.replica.digest() for name, p in processes.items()}
        digests["fresh"] = fresh.replica.digest()
        digests["lane"] = lane.replica.digest()
        assert len(set(digests.values())) == 1, digests
        for process in (*processes.values(), fresh):
            assert process.replica.views.on_hand() == lane.replica.views.on_hand()
            assert process.replica.views.accepted_count() == lane.replica.views.accepted_count()
    finally:
        for sql in connections.values():
            sql.close()


def test_records_another_process_verified_are_not_verified_again(database: str) -> None:
    store = Store()
    lane = store.terminal("lane1")
    store_key = f"trust{next(_stores)}"
    connections = {name: connect(database) for name in "ab"}
    counting = CountingCrypto()
    checks = counting.verified
    try:
        a, b = (opened(store, connections[name], store_key, counting) for name in "ab")
        a.receive(lane.restored)
        for _ in range(20):
            _, change = lane.replica.append(Sale.of((SaleLine(Sku("milk"), 1, 149),)), NOW)
            a.receive(change)
        assert len(checks) == 20  # a verified each sale once
        b.pull(connections["b"])
        assert b.replica.views.accepted_count() == 20
        assert len(checks) == 20, "b checked again what a had verified"
        assert b.replica.digest() == a.replica.digest()
    finally:
        for sql in connections.values():
            sql.close()


def test_signing_holds_the_store_lock_from_the_pull_until_the_commit_is_durable(
    database: str,
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    store_key = f"sign{next(_stores)}"
    connections = {name: connect(database) for name in "abc"}
    observer = connections["c"]  # a third process, looking

    def locked() -> bool:
        try:
            with observer.transaction():
                observer.execute(
                    "SELECT 1 FROM store_heads WHERE store_id = ? FOR UPDATE NOWAIT", (store_key,)
                )
        except StorageError:
            return True
        return False

    def visible_rows() -> int:
        rows = observer.execute(
            "SELECT COUNT(*) FROM store_updates WHERE store_id = ?", (store_key,)
        )
        return int(rows[0][0])

    try:
        a, b = (opened(store, connections[name], store_key) for name in "ab")
        b.receive(lane.restored)
        committed_by_b = visible_rows()
        assert not locked()
        with a.storage.signing() as pulled:
            assert pulled.updates, "what b committed is handed over before a signs"
            a.replica.merge(pulled.updates, NOW, trusted=pulled.verified)
            assert locked()
            _, change = lane.replica.append(Receipt(Sku("milk"), 5), NOW)
            a.storage.commit([a.replica.merge(list(change.updates), NOW)])
            # Durable and visible to everyone once commit returns, and the lock is free.
            assert visible_rows() > committed_by_b
            assert not locked()
        with a.storage.signing():
            assert locked()
        assert not locked()  # a block that commits nothing releases it at its end
        b.pull(connections["b"])
        assert b.replica.digest() == a.replica.digest() == lane.replica.digest()
    finally:
        for sql in connections.values():
            sql.close()


class NotedSql:
    """A real connection whose statements are noted, to see what a pull reads."""

    def __init__(self, sql: PostgresSql) -> None:
        self.sql = sql
        self.dialect = sql.dialect
        self.statements: list[str] = []

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        self.statements.append(statement)
        return self.sql.execute(statement, args)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        self.statements.append(statement)
        self.sql.executemany(statement, rows)

    def transaction(self) -> contextlib.AbstractContextManager[None]:
        return self.sql.transaction()

    def close(self) -> None:
        self.sql.close()


def test_a_pull_after_only_its_own_commits_reads_no_rows_back(database: str) -> None:
    store = Store()
    lane = store.terminal("lane1")
    store_key = f"own{next(_stores)}"
    noted = NotedSql(connect(database))
    other = connect(database)
    try:
        a, b = opened(store, noted, store_key), opened(store, other, store_key)
        a.receive(lane.restored)
        _, change = lane.replica.append(Receipt(Sku("milk"), 5), NOW)
        a.receive(change)
        noted.statements.clear()
        a.pull(noted)  # what the cloud's next commit or refresh does first (StoreRuntime)
        assert not [s for s in noted.statements if "store_updates" in s or "store_verified" in s]
        _, change = lane.replica.append(Sale.of((SaleLine(Sku("milk"), 1, 149),)), NOW)
        b.receive(change)  # another process commits: the next pull reads its rows
        noted.statements.clear()
        a.pull(noted)
        assert [s for s in noted.statements if "store_updates" in s]
        assert a.replica.digest() == lane.replica.digest()
    finally:
        noted.close()
        other.close()


def test_a_commit_is_two_statements_and_its_rows_verdicts_and_notice_all_land(
    database: str,
) -> None:
    """A sale's commit: the store's lock (a seal another process made meanwhile must be seen
    before the day is written, ``_reopening``), then one statement (number, append, verdicts,
    notice); the check for sealed days is skipped when no seal happened since."""
    import psycopg

    store = Store()
    lane = store.terminal("lane1")
    store_key = f"one{next(_stores)}"
    noted = NotedSql(connect(database))
    other = connect(database)
    listener = psycopg.connect(database, autocommit=True)
    try:
        a = opened(store, noted, store_key)
        a.receive(lane.restored)
        _, change = lane.replica.append(Sale.of((SaleLine(Sku("milk"), 1, 149),)), NOW)
        listener.execute(f'LISTEN "{COMMIT_CHANNEL}"')
        noted.statements.clear()
        a.receive(change)
        assert len(noted.statements) == 2, noted.statements
        notices = list(listener.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload) for n in notices] == [(COMMIT_CHANNEL, store_key)]
        fresh = opened(store, other, store_key)  # another process, loading the store
        assert fresh.replica.digest() == lane.replica.digest()
        noted_keys = {
            bytes(h)
            for (h,) in other.execute(
                "SELECT hash FROM store_verified WHERE store_id = ?", (store_key,)
            )
        }
        assert noted_keys != set()
        # The verdicts load as a container that reads what it is asked (shell.storage.LazyVerdicts).
        for verified in (fresh.storage.load().verified, a.storage.load().verified):
            assert all(key in verified for key in noted_keys)
            assert b"not a verdict key" not in verified
    finally:
        noted.close()
        other.close()
        listener.close()
