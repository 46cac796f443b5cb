"""How the cloud keeps one store's replica and its head-office tables in step
(``lanesync.cloud.stores``), in one process: a real lane writes records, the cloud's store
runtime merges and commits them as its mesh would, on SQLite files and on a real PostgreSQL
database shared by two runtimes (two ``cloud serve`` processes). Serving over the network is
test_cloud_e2e's part."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from shell.helpers import receipt, sale  # tests/ is on sys.path, as for `support`

from lanesync.cloud import follow
from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.pgstorage import store_heads
from lanesync.cloud.schema import SQLITE_HEADOFFICE_VERSION
from lanesync.cloud.sql import Row, Sql, SqliteSql
from lanesync.cloud.stores import Backend, StoreRuntime
from lanesync.core import bodies
from lanesync.core.identity import Role
from lanesync.core.records import Record
from lanesync.errors import ConfigError, StorageError
from lanesync.shell.terminal import Terminal

from .conftest import STORE_ID, World, open_runtime


@dataclass
class Cloud:
    """What ``CloudService`` holds for one store: a backend, head office, the store runtime."""

    backend: Backend
    runtime: StoreRuntime
    failures: list[StorageError] = field(default_factory=list)

    @property
    def office(self) -> HeadOffice:
        return self.runtime.headoffice


@pytest.fixture
def clouds(world: World) -> Iterator[tuple[World, ExitStack, list[Cloud]]]:
    opened: list[Cloud] = []
    with ExitStack() as stack:
        yield world, stack, opened


def start(
    world: World,
    stack: ExitStack,
    path: Path,
    opened: list[Cloud],
    wrap: Callable[[Sql], Sql] | None = None,
    headoffice: HeadOffice | None = None,
) -> Cloud:
    cloud = Cloud(*open_runtime(world, stack, path, wrap, headoffice))
    opened.append(cloud)
    return cloud


class CountingSql:
    """A spy around a process's real ``Sql``: every call goes through to the database; it
    counts the transactions (``nested``: those opened inside another, which psycopg sends as
    SAVEPOINTs) and keeps the statements sent (a batch sends nothing when it has no rows)."""

    def __init__(self, sql: Sql) -> None:
        self.sql = sql
        self.dialect = sql.dialect
        self.transactions = 0
        self.nested = 0
        self.statements: list[str] = []
        self._depth = 0

    def execute(self, statement: str, args: Sequence[Any] = ()) -> list[Row]:
        self.statements.append(statement)
        return self.sql.execute(statement, args)

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.statements.append(statement)
        self.sql.executemany(statement, rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self.nested += 1
        else:
            self.transactions += 1
        self._depth += 1
        try:
            with self.sql.transaction():
                yield
        finally:
            self._depth -= 1

    def close(self) -> None:
        self.sql.close()

    def reset(self) -> None:
        self.transactions = self.nested = 0
        self.statements.clear()


def counted(world: World, stack: ExitStack, opened: list[Cloud]) -> tuple[Cloud, CountingSql]:
    """A process whose database connection is spied on, its first projection made."""
    spies: list[CountingSql] = []

    def spy(sql: Sql) -> Sql:
        spies.append(CountingSql(sql))
        return spies[-1]

    cloud = start(world, stack, world.cloud, opened, wrap=spy)
    cloud.runtime.refresh()  # at open (CloudService._open): the full rewrite
    return cloud, spies[0]


def deliver(lane: Terminal, cloud: Cloud) -> None:
    """What the mesh does with a peer's updates: merge, then commit (its ``on_persisted``)."""
    replica = cloud.runtime.terminal.replica
    change = replica.merge(
        list(lane.replica.updates_since(replica.state_vectors()).items()),
        cloud.runtime.terminal.now_ms(),
    )
    cloud.runtime.terminal.commit([change])
    cloud.runtime.committed()


def test_a_merged_commit_is_projected_into_the_head_office_tables(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    world, stack, opened = clouds
    cloud = start(world, stack, world.cloud, opened)
    assert cloud.backend.shared is (world.db is not None)
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    deliver(lane, cloud)
    assert cloud.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 5}]}
    lane.write(receipt("milk", 2))
    deliver(lane, cloud)
    assert cloud.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 7}]}
    # Its own commits never make a process think it is behind (SQLite: nobody else writes).
    head = store_heads(cloud.backend.sql).get(STORE_ID) if cloud.backend.shared else None
    assert not cloud.runtime.is_behind(head)
    assert cloud.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: two database files
def test_a_live_upload_is_committed_and_projected_in_one_transaction(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    world, stack, opened = clouds
    cloud, spy = counted(world, stack, opened)
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    deliver(lane, cloud)
    spy.reset()
    lane.write(sale("milk:2:149"))
    deliver(lane, cloud)
    # One BEGIN/COMMIT holds the log rows and the tables' rows, with no savepoint in it.
    assert (spy.transactions, spy.nested) == (1, 0)
    assert any(s.startswith("INSERT INTO sales ") for s in spy.statements)
    assert cloud.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 3}]}
    assert world.rows("SELECT total_cents FROM sales WHERE store_id = ?", STORE_ID) == [(298,)]
    assert cloud.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: two database files
def test_a_projection_failing_inside_the_commit_leaves_nothing_and_stops_the_store(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    world, stack, opened = clouds
    cloud, spy = counted(world, stack, opened)
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    deliver(lane, cloud)
    log_rows = "SELECT COUNT(*) FROM store_updates WHERE store_id = ?"
    before = (store_heads(cloud.backend.sql)[STORE_ID], world.rows(log_rows, STORE_ID))
    # A real database error in the projection, after the commit's own statement: a constraint
    # no sale meets.
    world.rows("ALTER TABLE sales ADD CONSTRAINT no_sales CHECK (total_cents < 0)")
    lane.write(sale("milk:2:149"))
    with pytest.raises(StorageError, match="no_sales"):
        deliver(lane, cloud)
    assert cloud.failures == [cloud.runtime.terminal.failure]  # the process would stop (74)
    assert (store_heads(cloud.backend.sql)[STORE_ID], world.rows(log_rows, STORE_ID)) == before
    assert world.rows("SELECT COUNT(*) FROM sales") == [(0,)]
    assert world.rows("SELECT COUNT(*) FROM sale_lines") == [(0,)]
    assert world.rows("SELECT kind FROM stock_movements") == [("receipt",)]
    assert cloud.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 5}]}
    # Opened again in the same process: the rollback left the tables holding everything
    # committed (the database says so: projected_seq), so nothing is rewritten; the sale, sent
    # again, counts.
    world.rows("ALTER TABLE sales DROP CONSTRAINT no_sales")
    spy.reset()
    again = start(world, stack, world.copy_cloud("cloud2"), opened, headoffice=cloud.office)
    again.runtime.refresh()
    assert "DELETE FROM sales WHERE store_id = ?" not in spy.statements
    deliver(lane, again)
    assert again.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 3}]}
    assert world.rows("SELECT total_cents FROM sales") == [(298,)]
    assert again.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: rewritten once
def test_a_store_opened_again_on_postgresql_projects_only_what_is_new(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    """Every commit projects in its own transaction and says so (``projected_seq``): a process
    opening the store again (after an eviction, a restart, on another process) finds its rows
    complete and writes only what comes after, instead of rewriting the store's history."""
    world, stack, opened = clouds
    cloud, spy = counted(world, stack, opened)
    assert "DELETE FROM sales WHERE store_id = ?" in spy.statements  # a new store: unknown
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    lane.write(sale("milk:2:149"))
    deliver(lane, cloud)
    spy.reset()
    again = start(world, stack, world.copy_cloud("cloud2"), opened, headoffice=cloud.office)
    again.runtime.refresh()  # at open (CloudService._open)
    assert not [s for s in spy.statements if s.startswith("DELETE")]
    lane.write(sale("milk:1:149"))
    deliver(lane, again)
    assert again.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 2}]}
    assert world.rows("SELECT COUNT(*) FROM sales WHERE store_id = ?", STORE_ID) == [(2,)]
    assert cloud.failures == again.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: rewritten once
def test_a_commit_nobody_projected_is_repaired_by_the_next_opening(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    """A commit without its projection (a process of a version that projected after the
    commit, killed in between) leaves ``projected_seq`` behind: the next opening rewrites the
    store's rows, and they hold the records of that commit."""
    world, stack, opened = clouds
    older = start(world, stack, world.cloud, opened)
    older.runtime.refresh()
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    deliver(lane, older)
    assert older.runtime.shared_storage is not None
    older.runtime.shared_storage.in_commit = None  # commits as before, projects nothing
    lane.write(sale("milk:2:149"))
    replica = older.runtime.terminal.replica
    change = replica.merge(
        list(lane.replica.updates_since(replica.state_vectors()).items()),
        older.runtime.terminal.now_ms(),
    )
    older.runtime.terminal.commit([change])  # and dies before projecting
    assert world.rows("SELECT COUNT(*) FROM sales") == [(0,)]
    spies: list[CountingSql] = []

    def spy(sql: Sql) -> Sql:
        spies.append(CountingSql(sql))
        return spies[-1]

    newer = start(world, stack, world.copy_cloud("cloud2"), opened, wrap=spy)
    newer.runtime.refresh()  # at open
    assert "DELETE FROM sales WHERE store_id = ?" in spies[0].statements
    assert newer.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 3}]}
    assert world.rows("SELECT total_cents FROM sales") == [(298,)]
    assert newer.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite shares nothing
def test_a_commit_projects_from_a_replica_holding_what_another_process_committed(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    """Two processes commit the store, neither following the other: each commit merges the
    other's rows under the lock before it projects, so the current views in the tables (the
    stock on hand, written whole from the committing replica) stay exact."""
    world, stack, opened = clouds
    first = start(world, stack, world.cloud, opened)
    second = start(world, stack, world.copy_cloud("cloud2"), opened)
    lanes = [
        stack.enter_context(Terminal.open(world.enroll(name), lock_wait_s=0))
        for name in ("lane1", "lane2")
    ]

    async def upload() -> None:
        lanes[0].write(receipt("milk", 10))
        deliver(lanes[0], first)
        lanes[1].write(receipt("milk", 4))
        deliver(lanes[1], second)
        assert second.runtime.relay_scheduled  # what it pulled goes to its leaders
        lanes[0].write(receipt("milk", 1))
        deliver(lanes[0], first)
        assert first.runtime.relay_scheduled
        assert first.office.stock(STORE_ID) == stock
        assert first.runtime.terminal.digest() != second.runtime.terminal.digest()
        second.runtime.refresh()  # its follower, told of the first's commit

    stock = {"items": [{"sku": "milk", "on_hand": 15}]}
    asyncio.run(upload())
    assert world.rows("SELECT COUNT(*) FROM stock_movements") == [(3,)]
    assert first.runtime.terminal.digest() == second.runtime.terminal.digest()
    assert second.office.stock(STORE_ID) == stock
    assert first.failures == second.failures == []


async def until_caught_up(follower: Cloud, committer: Cloud) -> None:
    """Wait (10 s at most) until ``follower``'s replica holds what ``committer``'s does."""
    for _ in range(200):
        if follower.runtime.terminal.digest() == committer.runtime.terminal.digest():
            return
        await asyncio.sleep(0.05)


async def cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite shares nothing
def test_a_process_on_a_shared_database_merges_and_follows_what_another_committed(
    clouds: tuple[World, ExitStack, list[Cloud]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second process hears of the first one's commit through PostgreSQL's notification:
    its comparison of every store is an hour away here, and nothing else wakes it."""
    monkeypatch.setattr(follow, "FALLBACK_POLL_S", 3600.0)
    world, stack, opened = clouds
    first = start(world, stack, world.cloud, opened)
    second = start(world, stack, world.copy_cloud("cloud2"), opened)
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))

    async def follow_the_first() -> None:
        listening = asyncio.Event()
        task = asyncio.create_task(
            follow.follow_database(
                second.backend, {STORE_ID: second.runtime}, second.failures.append, listening
            )
        )
        try:
            await asyncio.wait_for(listening.wait(), timeout=10)
            lane.write(receipt("milk", 5))
            deliver(lane, first)
            await until_caught_up(second, first)
        finally:
            await cancelled(task)

    asyncio.run(follow_the_first())
    assert second.runtime.terminal.digest() == first.runtime.terminal.digest()
    assert not second.runtime.is_behind(store_heads(second.backend.sql).get(STORE_ID))
    assert second.office.stock(STORE_ID) == {"items": [{"sku": "milk", "on_hand": 5}]}
    assert second.failures == first.failures == []


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)
def test_a_process_that_cannot_listen_compares_its_stores_instead(
    clouds: tuple[World, ExitStack, list[Cloud]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, stack, opened = clouds
    first = start(world, stack, world.cloud, opened)
    second = start(world, stack, world.copy_cloud("cloud2"), opened)
    # Its listening connection is refused (nothing listens on port 1 of loopback); its
    # queries go on over the connection it has.
    monkeypatch.setattr(second.backend, "url", "postgresql://lanesync@127.0.0.1:1/none")
    lane = stack.enter_context(Terminal.open(world.enroll("lane1"), lock_wait_s=0))
    lane.write(receipt("milk", 5))
    deliver(lane, first)

    async def follow_the_first() -> None:
        task = asyncio.create_task(
            follow.follow_database(second.backend, {STORE_ID: second.runtime}, lambda _: None)
        )
        try:
            await until_caught_up(second, first)
        finally:
            await cancelled(task)

    with caplog.at_level("WARNING", logger="lanesync.cloud"):
        asyncio.run(follow_the_first())
    assert second.runtime.terminal.digest() == first.runtime.terminal.digest()
    assert "cannot listen for commits" in caplog.text


def set_price(cloud: Cloud, sku: str, unit_cents: int) -> Record:
    """What ``POST /v1/stores/{store_id}/prices`` does: the store's committer signs and commits
    a price as the cloud (its ``run`` task serving just this write)."""

    async def write() -> Record:
        committer = cloud.runtime.committer
        task = asyncio.create_task(committer.run())
        try:
            return await committer.write(
                lambda _: bodies.build_price_change(Role.CLOUD, sku, unit_cents)
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return asyncio.run(write())


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: one process a store
def test_two_processes_signing_for_the_cloud_continue_one_chain_and_never_fork_it(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    world, stack, opened = clouds
    first = start(world, stack, world.cloud, opened)
    second = start(world, stack, world.copy_cloud("cloud2"), opened)
    milk = set_price(first, "milk", 149)
    # The second process has not followed the first (its follower runs every 0.25 s): it
    # must still sign after the first's record, not at the same seq.
    bread = set_price(second, "bread", 299)
    assert (bread.seq, bread.prev_hash) == (milk.seq + 1, milk.hash)
    assert second.runtime.terminal.replica.find_record(milk.id) == milk

    async def follow_second() -> None:  # as the first's follower would, on its event loop
        first.runtime.refresh()

    asyncio.run(follow_second())
    for cloud in opened:
        report = cloud.runtime.terminal.integrity()
        assert report["ok"], report
        assert {"terminal": "cloud", "seq": bread.seq, "hash": bread.hash.hex()} in report["chains"]
    assert first.runtime.terminal.digest() == second.runtime.terminal.digest()
    prices = world.rows("SELECT sku, unit_cents FROM prices WHERE store_id = ?", STORE_ID)
    assert sorted(prices) == [("bread", 299), ("milk", 149)]
    assert first.failures == second.failures == []


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # PostgreSQL: the test above
def test_follow_returns_at_once_without_a_shared_database(
    clouds: tuple[World, ExitStack, list[Cloud]],
) -> None:
    world, stack, opened = clouds
    cloud = start(world, stack, world.cloud, opened)
    asyncio.run(
        asyncio.wait_for(
            follow.follow_database(cloud.backend, {}, cloud.failures.append), timeout=5
        )
    )


def test_a_head_office_database_newer_than_this_lanesync_is_refused(tmp_path: Path) -> None:
    directory = CloudDirectory.init(tmp_path / "cloud")
    sql = SqliteSql(directory.headoffice_db)
    try:
        sql.execute(f"PRAGMA user_version={SQLITE_HEADOFFICE_VERSION + 1}")
    finally:
        sql.close()
    with pytest.raises(ConfigError, match="newer than this lanesync knows"):
        Backend.open(directory, None)
    backend = Backend.open(CloudDirectory.init(tmp_path / "fresh"), None)
    try:
        assert backend.description == f"sqlite:{tmp_path / 'fresh' / 'headoffice.db'}"
        assert not backend.shared
    finally:
        backend.close()
