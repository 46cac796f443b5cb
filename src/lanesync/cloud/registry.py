"""Which stores a cloud serves, and each one's identity and certificate for the cloud's key.

Two registries behind one interface (``StoreRegistry``):

* ``DirectoryStores``: ``CLOUD_DIR/stores/<id>/{store.json,terminal.cert}``, written by
  ``cloud add-store CLOUD_DIR ...``. The only one on SQLite, where one process serves the
  directory.
* ``DatabaseStores``: on PostgreSQL, the table ``registered_stores`` (schema version 3), written
  by ``cloud add-store CLOUD_DIR ... --db URL``, which every process sharing the database reads:
  a store registered once, from any machine, is served by every process, none restarted. The
  stores registered in the process's own directory (before there was a table) are served too,
  so a deployment that ran ``cloud add-store`` in each process's directory keeps working; a
  store in both is served with the database's row (``cloud add-store --db`` moves a store to
  the database, and its files in the directory are no longer read).

Either way the replica's local files (its lock; on SQLite its database) are in
``CLOUD_DIR/stores/<id>/``, created when the store is first opened.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Protocol

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.schema import require_current_postgresql
from lanesync.cloud.sql import Sql, connect, redact
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Role,
    StoreIdentity,
    parse_certificate,
    public_key_of,
)
from lanesync.errors import ConfigError, RemoteError, UsageError
from lanesync.shell.directories import (
    TerminalDirectory,
    identity_to_json,
    make_private_directory,
    parse_identity,
)


class Registration(Enum):
    """Where a store a cloud serves is registered (``cloud stores`` says which)."""

    DIRECTORY = "directory"  # CLOUD_DIR/stores/<id>
    DATABASE = "database"  # the PostgreSQL table registered_stores


class StoreRegistry(Protocol):
    """The stores a cloud serves.

    ``store_ids`` reads the registry afresh at each call, sorted; a caller that must not read it
    too often limits itself (``CloudService`` lists it at most every ``RELIST_STORES_S``).
    ``store_directory`` raises ``UsageError`` for a store that is not registered and
    ``ConfigError`` for a registration that does not hold a valid certificate of this cloud's
    key; the directory it returns exists (the replica's lock is taken there).
    """

    def store_ids(self) -> list[str]: ...

    def store_directory(self, store_id: str) -> TerminalDirectory: ...

    def registered_in(self, store_id: str) -> Registration: ...


class DirectoryStores:
    """The stores of CLOUD_DIR/stores (cloud/directory.py), as a ``StoreRegistry``."""

    def __init__(self, directory: CloudDirectory) -> None:
        self.directory = directory

    def store_ids(self) -> list[str]:
        return self.directory.store_ids()

    def store_directory(self, store_id: str) -> TerminalDirectory:
        return self.directory.store_directory(store_id)

    def registered_in(self, store_id: str) -> Registration:
        self.directory.store_directory(store_id)  # UsageError for a store not served
        return Registration.DIRECTORY


class DatabaseStores:
    """The stores of the PostgreSQL table ``registered_stores``, and those of the directory
    (the table's row wins for a store in both). Queries run on ``sql``, the caller's
    connection, outside any transaction of its own."""

    def __init__(self, directory: CloudDirectory, sql: Sql) -> None:
        self.directory = directory
        self.sql = sql

    def store_ids(self) -> list[str]:
        rows = self.sql.execute("SELECT store_id FROM registered_stores")
        return sorted({str(row[0]) for row in rows} | set(self.directory.store_ids()))

    def store_directory(self, store_id: str) -> TerminalDirectory:
        rows = self.sql.execute(
            "SELECT identity, cert FROM registered_stores WHERE store_id = ?", (store_id,)
        )
        if not rows:
            return self.directory.store_directory(store_id)
        identity, cert = rows[0]
        return self._served(store_id, str(identity).encode(), bytes(cert))

    def registered_in(self, store_id: str) -> Registration:
        rows = self.sql.execute("SELECT 1 FROM registered_stores WHERE store_id = ?", (store_id,))
        if rows:
            return Registration.DATABASE
        self.directory.store_directory(store_id)  # UsageError for a store not served
        return Registration.DIRECTORY

    def add(self, store: StoreIdentity, cert: Certificate) -> None:
        """Register a store (``cert``: checked by ``CloudDirectory.certified``); ``UsageError``
        when the table has it already (the directory may: this moves it to the table)."""
        added = self.sql.execute(
            "INSERT INTO registered_stores (store_id, identity, cert) VALUES (?, ?, ?) "
            "ON CONFLICT (store_id) DO NOTHING RETURNING store_id",
            (store.store_id, identity_to_json(store).decode(), cert.encoded),
        )
        if not added:
            raise UsageError(f"store {store.store_id} is already served by this cloud")

    def _served(self, store_id: str, identity: bytes, encoded: bytes) -> TerminalDirectory:
        """The replica's directory from a row: identity and certificate from the database, the
        lock in CLOUD_DIR/stores/<id> (created now: a store added from another machine has
        nothing there yet)."""
        where = f"registered_stores row of {store_id}"
        store = parse_identity(identity, where)
        if store.store_id != store_id:
            raise ConfigError(f"{where} holds the identity of store {store.store_id}")
        try:
            cert = parse_certificate(encoded, store)
        except RemoteError as exc:
            raise ConfigError(f"certificate in the {where} is invalid: {exc}") from exc
        if cert.role is not Role.CLOUD or cert.public_key != public_key_of(self.directory.key):
            # Another cloud's key (its directory shares this database): this process could
            # sign nothing the store's lanes accept.
            raise ConfigError(
                f"the {where} does not certify the key of {self.directory.path} as the cloud "
                f"of {store_id}"
            )
        path = self.directory.store_path(store_id)
        make_private_directory(path)
        return TerminalDirectory(path, store, LocalIdentity(cert, self.directory.key))


def open_registry(directory: CloudDirectory, sql: Sql | None) -> StoreRegistry:
    """The registry of a cloud on ``sql`` (a PostgreSQL connection at the current schema), or,
    with None, of a cloud on SQLite: its directory."""
    if sql is None:
        return DirectoryStores(directory)
    return DatabaseStores(directory, sql)


def add_store_to_database(
    directory: CloudDirectory, db_url: str, store_identity_file: Path, cert_file: Path
) -> Certificate:
    """``cloud add-store --db``: register a store in the database every process reads, after
    the checks ``cloud add-store`` makes without it (the same errors)."""
    store, cert = directory.certified(store_identity_file, cert_file)
    sql = connect(db_url)
    try:
        require_current_postgresql(sql, redact(db_url))
        DatabaseStores(directory, sql).add(store, cert)
    finally:
        sql.close()
    return cert
