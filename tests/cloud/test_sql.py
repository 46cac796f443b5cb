"""The cloud's SQL layer on PostgreSQL (``lanesync.cloud.sql``): an ``INSERT ... VALUES`` given
many rows goes as one statement over arrays, and stores exactly what row-by-row inserts would;
and the head-office projection leaves the rows of views that did not change untouched."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from core.helpers import NOW, Store  # tests/ is on sys.path, as for `support`

from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.schema import migrate_postgresql
from lanesync.cloud.sql import PostgresSql, _as_unnest, connect
from lanesync.core.ids import Sku
from lanesync.core.records import Receipt, Sale, SaleLine
from lanesync.tools.pgserver import PostgresServer


@pytest.fixture(scope="module")
def pg(pg_server: PostgresServer) -> Iterator[PostgresSql]:
    sql = connect(pg_server.create_database("sqlrows"))
    try:
        migrate_postgresql(sql)
        yield sql
    finally:
        sql.close()


def test_an_insert_of_rows_is_one_statement_over_arrays_and_nothing_else_is() -> None:
    assert _as_unnest(
        "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = excluded.b", 2
    ) == (
        "INSERT INTO t (a, b) SELECT * FROM unnest(%b, %b) "
        "ON CONFLICT (a) DO UPDATE SET b = excluded.b"
    )
    assert _as_unnest("INSERT INTO t (a, b) VALUES (?, ?)", 3) is None  # rows of another width
    assert _as_unnest("UPDATE t SET a = 1 WHERE b = ?", 1) is None
    assert _as_unnest("DELETE FROM t WHERE a = ?", 1) is None
    assert _as_unnest("INSERT INTO t (a) VALUES (?) ON CONFLICT (a) DO UPDATE SET b = ?", 1) is None


def test_rows_inserted_as_arrays_keep_their_values_and_the_first_of_a_repeated_key(
    pg: PostgresSql,
) -> None:
    rows = [
        ("arrays", b"h1\x00\xff" * 16, 1),
        ("arrays", b"", 2**40),  # an empty hash; beyond 32 bits: the column is BIGINT
        ("arrays", b"h1\x00\xff" * 16, 7),  # the same key again: DO NOTHING keeps the first
    ]
    pg.executemany(
        "INSERT INTO store_verified (store_id, hash, added_seq) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        rows,
    )
    stored = pg.execute(
        "SELECT hash, added_seq FROM store_verified WHERE store_id = 'arrays' ORDER BY added_seq"
    )
    assert [(bytes(h), int(n)) for h, n in stored] == [(b"h1\x00\xff" * 16, 1), (b"", 2**40)]
    pg.executemany("UPDATE store_verified SET added_seq = 0 WHERE hash = ?", [(b"",)])
    assert pg.execute("SELECT added_seq FROM store_verified WHERE hash = ?", (b"",)) == [(0,)]


def test_a_refresh_leaves_the_rows_of_unchanged_views_as_they_are(pg: PostgresSql) -> None:
    store = Store()
    lane = store.terminal("lane1")
    cloud = store.observer()
    accepted = cloud.subscribe_accepted()
    office = HeadOffice(pg)

    def sync_and_project() -> None:
        cloud.merge(list(lane.replica.updates_since(cloud.state_vectors()).items()), NOW + 100)
        with pg.transaction():
            office.project("unchanged", cloud, accepted)

    def versions() -> dict[str, int]:
        # xmin: the transaction that wrote the row's current version.
        rows = pg.execute(
            "SELECT sku, xmin::text::bigint FROM stock_on_hand WHERE store_id = 'unchanged'"
        )
        return {str(sku): int(xmin) for sku, xmin in rows}

    lane.replica.append(Receipt(Sku("milk"), 10), NOW)
    lane.replica.append(Receipt(Sku("eggs"), 12), NOW)
    sync_and_project()
    before = versions()
    lane.replica.append(Sale.of((SaleLine(Sku("eggs"), 2, 300),)), NOW)
    sync_and_project()
    after = versions()
    assert after["milk"] == before["milk"], "milk's row was rewritten though it did not move"
    assert after["eggs"] != before["eggs"]
    assert office.stock("unchanged") == {
        "items": [{"sku": "eggs", "on_hand": 10}, {"sku": "milk", "on_hand": 10}]
    }
