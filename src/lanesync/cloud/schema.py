"""The cloud's database schema, versioned.

PostgreSQL is migrated explicitly (``lanesync cloud migrate CLOUD_DIR --db URL``): a chain runs
many ``cloud serve`` processes on one database, and none of them may change the schema under the
others. ``serve`` refuses a database whose version is not ``LATEST``. Migrations run in one
transaction under an advisory lock, so two ``migrate`` commands at once apply each step once.

The SQLite database of a single-machine cloud (CLOUD_DIR/headoffice.db, plus one lanesync.db per
store, which is a terminal's own storage) is created and upgraded when ``serve`` opens it: one
machine, one process, nobody else to coordinate with.

The head-office tables are the same on both engines (docs/reference/headoffice-tables.md shows
them and example queries); PostgreSQL also holds each store's CRDT documents, which SQLite
keeps per store.
"""

from __future__ import annotations

from dataclasses import dataclass

from lanesync.cloud.sql import Sql
from lanesync.errors import ConfigError

# pg_advisory_xact_lock key of ``migrate``: any constant unlikely to collide with an
# application's own advisory locks ("lsyn" in ASCII).
MIGRATION_LOCK_KEY = 0x6C73796E


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


def _headoffice_tables(integer: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE IF NOT EXISTS sales (
            store_id TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            seq {integer} NOT NULL,
            business_day TEXT NOT NULL,
            hlc_ms {integer} NOT NULL,
            total_cents {integer} NOT NULL,
            voided INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (store_id, sale_id)
        )""",
        "CREATE INDEX IF NOT EXISTS sales_by_day ON sales (store_id, business_day)",
        f"""CREATE TABLE IF NOT EXISTS sale_lines (
            store_id TEXT NOT NULL,
            sale_id TEXT NOT NULL,
            line_no INTEGER NOT NULL,
            sku TEXT NOT NULL,
            qty {integer} NOT NULL,
            unit_cents {integer} NOT NULL,
            PRIMARY KEY (store_id, sale_id, line_no)
        )""",
        f"""CREATE TABLE IF NOT EXISTS stock_movements (
            store_id TEXT NOT NULL,
            movement_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            delta {integer} NOT NULL,
            kind TEXT NOT NULL,
            business_day TEXT NOT NULL,
            PRIMARY KEY (store_id, movement_id, sku)
        )""",
        f"""CREATE TABLE IF NOT EXISTS stock_on_hand (
            store_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            on_hand {integer} NOT NULL,
            PRIMARY KEY (store_id, sku)
        )""",
        f"""CREATE TABLE IF NOT EXISTS prices (
            store_id TEXT NOT NULL,
            sku TEXT NOT NULL,
            unit_cents {integer} NOT NULL,
            PRIMARY KEY (store_id, sku)
        )""",
        f"""CREATE TABLE IF NOT EXISTS chain_heads (
            store_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            seq {integer} NOT NULL,
            hash TEXT NOT NULL,
            PRIMARY KEY (store_id, terminal_id)
        )""",
    )


def _day_ends_table(integer: str) -> tuple[str, ...]:
    """Each lane's signed day-end records (added in version 2 on both engines)."""
    return (
        f"""CREATE TABLE IF NOT EXISTS day_ends (
            store_id TEXT NOT NULL,
            terminal_id TEXT NOT NULL,
            business_day TEXT NOT NULL,
            seq {integer} NOT NULL,
            first_seq {integer} NOT NULL,
            last_seq {integer} NOT NULL,
            sales {integer} NOT NULL,
            voids {integer} NOT NULL,
            gross_cents {integer} NOT NULL,
            voided_cents {integer} NOT NULL,
            net_cents {integer} NOT NULL,
            PRIMARY KEY (store_id, terminal_id, business_day)
        )""",
    )


# SQLite integers are 64-bit whatever the declared type; its user_version is the schema version.
# 2: the day_ends table (created on open, like every table: IF NOT EXISTS).
SQLITE_HEADOFFICE_VERSION = 2
SQLITE_HEADOFFICE = (*_headoffice_tables("INTEGER"), *_day_ends_table("INTEGER"))

POSTGRESQL_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "head-office tables; store documents (update log, snapshots, verified record hashes)",
        (
            "CREATE TABLE lanesync_schema (version INTEGER NOT NULL)",
            "INSERT INTO lanesync_schema (version) VALUES (0)",
            *_headoffice_tables("BIGINT"),
            # One row per store: last_seq numbers its update log (taking the row lock serialises
            # the store's writers, so rows become visible in seq order); snapshot_gen counts
            # compactions, telling other processes to reload the snapshots.
            """CREATE TABLE store_heads (
                store_id TEXT PRIMARY KEY,
                last_seq BIGINT NOT NULL DEFAULT 0,
                snapshot_gen BIGINT NOT NULL DEFAULT 0
            )""",
            """CREATE TABLE store_updates (
                store_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                doc TEXT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (store_id, seq)
            )""",
            "CREATE INDEX store_updates_by_doc ON store_updates (store_id, doc, seq)",
            """CREATE TABLE store_snapshots (
                store_id TEXT NOT NULL,
                doc TEXT NOT NULL,
                data BYTEA NOT NULL,
                PRIMARY KEY (store_id, doc)
            )""",
            # Hashes of records whose signature a process checked; added_seq (the store's
            # last_seq when committed) lets the other processes pull them with the rows they
            # came with, so a record is verified once, not once per process.
            """CREATE TABLE store_verified (
                store_id TEXT NOT NULL,
                hash BYTEA NOT NULL,
                added_seq BIGINT NOT NULL,
                PRIMARY KEY (store_id, hash)
            )""",
            "CREATE INDEX store_verified_by_seq ON store_verified (store_id, added_seq)",
        ),
    ),
    Migration(2, "day_ends: each lane's signed day-end records", _day_ends_table("BIGINT")),
    Migration(
        3,
        "registered_stores: the stores the cloud serves (cloud add-store --db)",
        (
            # One row per store `cloud add-store --db` registered, read by every process
            # (cloud/registry.py): the store's public identity as its store.json holds it, and
            # the store's certificate for the cloud's key (its encoded bytes, as terminal.cert).
            """CREATE TABLE registered_stores (
                store_id TEXT PRIMARY KEY,
                identity TEXT NOT NULL,
                cert BYTEA NOT NULL,
                added_at TIMESTAMPTZ NOT NULL DEFAULT now()
            )""",
        ),
    ),
    Migration(
        4,
        "store_archives: the days the cloud sealed in a store's documents",
        (
            # One row per business day the cloud sealed (core.sealing), as a lane's sealed_days
            # table keeps them: the day's description (sealing.encode_meta), its archive (the
            # day document's CRDT state, archive_codec.compress'd), its sealed Z-report and the
            # signature of the process that sealed it, as the cloud. Its store_updates and
            # store_snapshots rows are deleted in the same transaction. state is 'reopened' once
            # a late record opened the day again (its log rows then start with the archive).
            """CREATE TABLE store_archives (
                store_id TEXT NOT NULL,
                day TEXT NOT NULL,
                state TEXT NOT NULL,
                meta BYTEA NOT NULL,
                archive BYTEA NOT NULL,
                report BYTEA NOT NULL,
                signature BYTEA NOT NULL,
                sealed_at_ms BIGINT NOT NULL,
                PRIMARY KEY (store_id, day)
            )""",
        ),
    ),
    Migration(
        5,
        "store_checkpoints: a checkpoint of each store's views; store_heads.projected_seq",
        (
            # At most one row per store (pgstorage: ``Replica.checkpoint``, written under the
            # store's lock): the views and the fingerprints of the documents they were folded
            # from, covering the log rows up to ``through`` (store_heads.last_seq then) and the
            # snapshots of generation ``gen``. A table of its own, not columns of store_heads:
            # every commit updates that row, which stays small. A store without a row (every
            # store of an older database) folds its whole history once at its next open.
            """CREATE TABLE store_checkpoints (
                store_id TEXT PRIMARY KEY,
                through BIGINT NOT NULL,
                gen BIGINT NOT NULL,
                data BYTEA NOT NULL
            )""",
            # The store's last_seq when its head-office rows were last projected from a replica
            # holding everything committed (cloud.pgstorage: every commit projects in its own
            # transaction). A process opening the store rewrites its rows only when this is
            # behind last_seq; -1 (a store of before): unknown, rewritten once.
            "ALTER TABLE store_heads ADD COLUMN projected_seq BIGINT NOT NULL DEFAULT -1",
        ),
    ),
)
LATEST = POSTGRESQL_MIGRATIONS[-1].version


def postgresql_version(sql: Sql) -> int:
    """The schema version of a PostgreSQL database; 0 when lanesync never migrated it."""
    exists = sql.execute("SELECT to_regclass('lanesync_schema') IS NOT NULL")
    if not exists[0][0]:
        return 0
    rows = sql.execute("SELECT version FROM lanesync_schema")
    return int(rows[0][0]) if rows else 0


def migrate_postgresql(sql: Sql) -> list[Migration]:
    """Apply every migration the database lacks; returns those applied (none when current)."""
    applied: list[Migration] = []
    with sql.transaction():
        sql.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
        current = postgresql_version(sql)
        if current > LATEST:
            raise ConfigError(_newer(current))
        for migration in POSTGRESQL_MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                sql.execute(statement)
            sql.execute("UPDATE lanesync_schema SET version = ?", (migration.version,))
            applied.append(migration)
    return applied


def require_current_postgresql(sql: Sql, url: str) -> None:
    current = postgresql_version(sql)
    if current > LATEST:
        raise ConfigError(_newer(current))
    if current < LATEST:
        raise ConfigError(
            f"database {url} is at schema version {current}, this lanesync needs {LATEST}: "
            "run `lanesync cloud migrate CLOUD_DIR --db URL` first"
        )


def _newer(current: int) -> str:
    return (
        f"the database is at schema version {current}, newer than this lanesync knows "
        f"({LATEST}): upgrade lanesync"
    )


def prepare_sqlite_headoffice(sql: Sql) -> None:
    version = int(sql.execute("PRAGMA user_version")[0][0])
    if version > SQLITE_HEADOFFICE_VERSION:
        raise ConfigError(
            f"head-office database is at schema version {version}, newer than this lanesync "
            f"knows ({SQLITE_HEADOFFICE_VERSION}): upgrade lanesync"
        )
    for statement in SQLITE_HEADOFFICE:
        sql.execute(statement)
    sql.execute(f"PRAGMA user_version={SQLITE_HEADOFFICE_VERSION}")
