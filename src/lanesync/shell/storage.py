"""Durable storage of one replica: an append-only CRDT update log per document, snapshots, and
the verdicts of signature checks, in one SQLite database in WAL mode.

Guarantees:

* ``commit`` returns only after the transaction is durable (``synchronous=FULL``: WAL frames are
  fsynced before COMMIT returns), so a record acknowledged after it survives kill -9 and power
  loss.
* Everything a call to ``commit`` writes becomes visible atomically, or not at all.
* Loading replays each document's snapshot and then its log in commit order; replaying an
  update twice is harmless (CRDT updates are idempotent).
* Compaction folds a document's log into its snapshot once the log outgrows the snapshot
  (geometric, so total rewrite work stays linear in the data). Log rows the document has not
  fully integrated yet (their predecessors are missing) are kept: a snapshot drops them.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from lanesync.core.replica import Change, Replica
from lanesync.errors import ConfigError, StorageError

SCHEMA_VERSION = 1
# Below this a document's log is not worth compacting: replaying 1 MiB of small updates takes
# a few milliseconds (FACTS.md: ~300k small updates/s applied).
COMPACT_MIN_LOG_BYTES = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY,
    doc TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS updates_by_doc ON updates (doc, id);
CREATE TABLE IF NOT EXISTS snapshots (
    doc TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS verified (
    hash BLOB PRIMARY KEY
) WITHOUT ROWID;
"""


class ReplicaStorage(Protocol):
    """Where a replica's documents live: this SQLite file for a terminal, or PostgreSQL for the
    cloud's replica of a store (lanesync.cloud.pgstorage). The guarantees above hold for both."""

    def load(self) -> tuple[dict[str, list[bytes]], set[bytes]]: ...

    def commit(self, changes: Iterable[Change]) -> None: ...

    def documents_to_compact(self) -> list[str]: ...

    def compact(self, replica: Replica, doc: str) -> None: ...

    def close(self) -> None: ...


class Storage:
    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{path} was written by a newer lanesync (schema {version}); upgrade lanesync"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, ConfigError) as exc:
            self._db.close()
            if isinstance(exc, ConfigError):
                raise
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        self._path = path
        self._snapshot_bytes: dict[str, int] = defaultdict(int)
        self._log_bytes: dict[str, int] = defaultdict(int)

    def close(self) -> None:
        self._db.close()

    def load(self) -> tuple[dict[str, list[bytes]], set[bytes]]:
        """Every document's snapshot and log (in order), and the verified record hashes."""
        stored: dict[str, list[bytes]] = defaultdict(list)
        try:
            for doc, data in self._db.execute("SELECT doc, data FROM snapshots"):
                stored[doc].append(bytes(data))
                self._snapshot_bytes[doc] = len(data)
            for doc, data in self._db.execute("SELECT doc, data FROM updates ORDER BY id"):
                stored[doc].append(bytes(data))
                self._log_bytes[doc] += len(data)
            verified = {bytes(h) for (h,) in self._db.execute("SELECT hash FROM verified")}
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read database {self._path}: {exc}") from exc
        return dict(stored), verified

    def commit(self, changes: Iterable[Change]) -> None:
        """Write every change in one durable transaction (group commit)."""
        rows: list[tuple[str, bytes]] = []
        verdicts: list[tuple[bytes]] = []
        for change in changes:
            rows.extend(change.updates)
            verdicts.extend((h,) for h in change.verdicts)
        if not rows and not verdicts:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO updates (doc, data) VALUES (?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO verified (hash) VALUES (?)", verdicts)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(f"commit to {self._path} failed: {exc}") from exc
        for doc, data in rows:
            self._log_bytes[doc] += len(data)

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            # No transaction was open (BEGIN itself failed): nothing to undo.
            return

    def documents_to_compact(self) -> list[str]:
        return sorted(
            doc
            for doc, size in self._log_bytes.items()
            if size > max(COMPACT_MIN_LOG_BYTES, self._snapshot_bytes[doc])
        )

    def compact(self, replica: Replica, doc: str) -> None:
        """Replace ``doc``'s snapshot with the replica's full state; drop covered log rows."""
        snapshot = replica.full_state(doc)
        try:
            rows = self._db.execute(
                "SELECT id, data FROM updates WHERE doc = ? ORDER BY id", (doc,)
            ).fetchall()
            covered = {row_id for row_id, data in rows if replica.is_covered(doc, bytes(data))}
            kept = sum(len(data) for row_id, data in rows if row_id not in covered)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO snapshots (doc, data) VALUES (?, ?) "
                "ON CONFLICT (doc) DO UPDATE SET data = excluded.data",
                (doc, snapshot),
            )
            self._db.executemany("DELETE FROM updates WHERE id = ?", [(i,) for i in covered])
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(f"compaction of {doc} in {self._path} failed: {exc}") from exc
        self._snapshot_bytes[doc] = len(snapshot)
        self._log_bytes[doc] = kept
