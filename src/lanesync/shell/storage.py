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
* A checkpoint of the views (``Replica.checkpoint``) is stored with the id of the last log row
  it covers, in the same transaction as the snapshot a compaction writes (and on its own when
  the log since the last one has grown as large as the checkpoint itself). Loading splits the
  log there; ``Replica.restore`` then checks the checkpoint against the loaded documents and
  folds only the rows after it, or everything when it does not fit.
"""

from __future__ import annotations

import os
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from lanesync.core.change import Change
from lanesync.core.eventpack import Pack
from lanesync.core.replica import Replica
from lanesync.core.sealcheck import StoredSeal
from lanesync.core.sealdays import Sealing
from lanesync.core.sealing import SealedDay, read_seal_rows
from lanesync.errors import ConfigError, StorageError

# 2: the checkpoint table. A version-1 database gains it when opened (CREATE TABLE IF NOT
# EXISTS) and is folded in full once, after which it has a checkpoint like any other.
# 3: the sealed_days table. Older code must not open a database with sealed days: it would not
# see them and take the days for missing (the requests and events tables were additive).
# 4: the sealed_events table. Older code would replay a change feed without the events of the
# days sealed since, so it must not open such a database either.
# 5: the verified table holds verdict keys (``records.verdict_key``: payload and signature), no
# longer record hashes; the rows of an older database are deleted when it is opened (its records
# are verified once more). Older code would take the new rows for hashes matching nothing.
SCHEMA_VERSION = 5
# The first schema whose verified rows are verdict keys.
VERDICT_KEYS_SINCE = 5
# An idempotency key is honoured this long: a POS retries within seconds or, after an outage,
# hours; a week covers any retry and keeps the table small (one row per keyed write).
REQUEST_KEEP_MS = 7 * 24 * 3600 * 1000
# Below this a document's log is not worth compacting: replaying 1 MiB of small updates takes
# a few milliseconds (~300k small updates/s applied with pycrdt 0.14, measured 2026-11-26).
COMPACT_MIN_LOG_BYTES = 1024 * 1024
# A new checkpoint is written once the log rows after the last one hold more bytes than this
# and than a quarter of the checkpoint itself. Measured (docs/reference/benchmarks.md,
# foundation): a reopen folds a log row after the checkpoint in ~60 us (221 B a sale), a
# checkpoint holds ~38 B a record and costs ~25 ms to write at 116k records. So 256 KiB
# (~1,200 sales, ~70 ms to fold) while small; at 100k sales a rewrite every ~4k sales (~0.25 s
# to fold), which keeps the rewrite work linear in the data (one per ~4 % growth).
CHECKPOINT_MIN_LOG_BYTES = 256 * 1024
CHECKPOINT_LOG_FRACTION = 4
# A reopen that asks about more verdict keys than this (a full fold asks about each) reads
# the whole verdict table at once; below it, each is looked up (a checkpoint's tail).
VERIFIED_LOOKUPS_BEFORE_LOAD = 1000

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
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through INTEGER NOT NULL,  -- the last updates.id whose row the checkpoint covers
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS requests (  -- idempotency keys of API writes, with their record
    key TEXT PRIMARY KEY,
    fingerprint BLOB NOT NULL,
    record_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (  -- the change feed's durable accept order (shell.feedlog)
    id INTEGER PRIMARY KEY,  -- the event id: ids only grow, in the order records were accepted
    doc TEXT NOT NULL,  -- where the record is stored, under
    key TEXT NOT NULL,  -- this key
    origin TEXT NOT NULL,  -- core.feed.Origin
    at_ms INTEGER  -- when it was made durable here (revocations, which have no time of their own)
);
CREATE TABLE IF NOT EXISTS sealed_days (  -- core.sealing: a sealed day's archive
    day TEXT PRIMARY KEY,
    state TEXT NOT NULL,  -- 'sealed', or 'reopened' by a late record (its log rows hold it)
    meta BLOB NOT NULL,  -- sealing.encode_meta
    archive BLOB NOT NULL,  -- the day document's CRDT state, archive_codec.compress'd
    report BLOB NOT NULL,  -- the sealed Z-report, canonical JSON
    signature BLOB NOT NULL,  -- by the sealing terminal, over sealing.archive_digest
    sealed_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sealed_events (  -- a sealed day's events, moved from `events`
    doc TEXT PRIMARY KEY,
    first_id INTEGER NOT NULL,
    last_id INTEGER NOT NULL,
    data BLOB NOT NULL  -- core.eventpack: read with the day's archive in sealed_days
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sealed_events_by_first_id ON sealed_events (first_id);
"""


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A write sent with an idempotency key: stored with its record, in the same transaction."""

    key: str
    request_digest: bytes  # the same key with another request is refused (column `fingerprint`)
    record_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """A record's place in the change feed, stored in the transaction that makes it durable."""

    event_id: int
    doc: str
    key: str
    origin: str
    at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StoredPack:
    """A sealed day's packed events as stored (``core.eventpack``)."""

    doc: str
    first_id: int
    last_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class Loaded:
    """What ``Storage.load`` read: the arguments of ``Replica.restore``."""

    stored: dict[str, list[bytes]]  # per document: snapshot, then log rows the checkpoint covers
    tail: list[tuple[str, bytes]]  # log rows after the checkpoint (every row without one)
    verified: Container[bytes]
    checkpoint: bytes | None
    sealed: list[SealedDay] = field(default_factory=list)  # the days sealed
    # Days a late record opened again: the report hashes of their earlier seals, by document.
    amended: dict[str, tuple[str, ...]] = field(default_factory=dict)


class LazyVerdicts:
    """Verdict keys (``records.verdict_key``) as a ``Container[bytes]`` for one restore, read
    lazily: ``known`` at once (the keys noted after the checkpoint, where a storage can tell
    them), any other key looked up singly by ``lookup``. With a checkpoint only the records
    after it are asked about; a full fold asks about every record, so after
    ``VERIFIED_LOOKUPS_BEFORE_LOAD`` lookups the whole table is read once by ``load_all`` (a
    set of 100k keys costs ~0.2 s and ~10 MB, for nothing when a checkpoint fits). This SQLite
    file and PostgreSQL (lanesync.cloud.pgstorage) each give their two queries."""

    def __init__(
        self,
        lookup: Callable[[bytes], bool],
        load_all: Callable[[], set[bytes]],
        known: Container[bytes] = frozenset(),
    ) -> None:
        self._lookup = lookup
        self._load_all = load_all
        self._known = known
        self._asked = 0
        self._all: set[bytes] | None = None

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, bytes):
            return False
        if item in self._known:
            return True
        if self._all is None and self._asked >= VERIFIED_LOOKUPS_BEFORE_LOAD:
            self._all = self._load_all()
        if self._all is not None:
            return item in self._all
        self._asked += 1
        return self._lookup(item)


def _reason(exc: sqlite3.Error) -> str:
    """SQLite's message and its error name: ``database or disk is full (SQLITE_FULL)``,
    ``disk I/O error (SQLITE_IOERR_WRITE)``, which tell the operator which OS error it was."""
    name = getattr(exc, "sqlite_errorname", None)
    return f"{exc} ({name})" if name else str(exc)


def due_for_compaction(log_bytes: dict[str, int], snapshot_bytes: dict[str, int]) -> list[str]:
    """Documents whose log outgrew both the minimum and their snapshot (geometric compaction)."""
    return sorted(
        doc
        for doc, size in log_bytes.items()
        if size > max(COMPACT_MIN_LOG_BYTES, snapshot_bytes.get(doc, 0))
    )


class ReplicaStorage(Protocol):
    """Where a replica's documents live: this SQLite file for a terminal, or PostgreSQL for the
    cloud's replica of a store (lanesync.cloud.pgstorage). The guarantees above hold for both."""

    def load(self) -> Loaded: ...

    def commit(self, changes: Iterable[Change], requests: Sequence[KeyedRequest] = ()) -> None: ...

    def find_request(self, key: str) -> KeyedRequest | None: ...

    def forget_requests(self, before_ms: int) -> None: ...

    def documents_to_compact(self) -> list[str]: ...

    def compact(self, replica: Replica, doc: str) -> None: ...

    def checkpoint_due(self) -> bool: ...

    def write_checkpoint(self, replica: Replica) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class SealingStorage(Protocol):
    """A ``ReplicaStorage`` that keeps sealed days (``core.sealing``): this SQLite file, and
    PostgreSQL for the cloud (lanesync.cloud.pgstorage). ``seal`` stores the days' archives and
    drops their documents' log and snapshots in one transaction; ``read_archive`` is what
    ``Replica.attach_archives`` reads a sealed day from."""

    def seal(
        self,
        sealings: Sequence[Sealing],
        replica: Replica,
        at_ms: int,
        packs: Mapping[str, Pack] | None = None,
    ) -> None: ...

    def read_archive(self, day: str) -> bytes: ...


def create_private_database(path: Path) -> None:
    """Create the database file empty (an empty file is an empty SQLite database) and readable
    by its owner only, unless it exists; an existing file keeps its mode.

    sqlite3 would create it 0644 (less the umask), and the file holds every sale. SQLite
    creates the -wal and -shm files with the mode of the database file, so they are private
    too."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT, 0o600))
    except OSError as exc:
        raise StorageError(f"cannot open database {path}: {exc.strerror}") from exc


def read_sealed_report(path: Path, day: str) -> bytes | None:
    """The Z-report stored when ``day`` was sealed, read from the database at ``path`` opened
    read-only, with nothing else loaded (``lanesync report --day`` of a sealed day, issue #17:
    under 100 ms). None when the day is not sealed there or the database cannot be read so (a
    database a newer lanesync wrote, or none yet): the caller then opens the terminal, which
    says what is wrong. The caller holds the directory's lock: no writer is at work."""
    for journal in ("-wal", "-journal"):
        try:
            if path.with_name(path.name + journal).stat().st_size:
                return None  # commits the file does not hold yet: a full open replays them
        except FileNotFoundError:
            continue
        except OSError:
            return None
    try:
        # Immutable: no locks and no -shm file (``Storage`` keeps none: see its comment), and
        # true here, as the caller holds the lock and no journal holds a commit (above).
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            return None
        row = db.execute(
            "SELECT report FROM sealed_days WHERE day = ? AND state = 'sealed'", (day,)
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return None if row is None else bytes(row[0])


class Storage:
    def __init__(self, path: Path) -> None:
        create_private_database(path)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open database {path}: {_reason(exc)}") from exc
        try:
            # Exclusive locking before WAL is first used keeps the WAL index in this process's
            # heap instead of a shared-memory file (the SQLite documentation of WAL, "Use of
            # WAL Without Shared-Memory"). Only this process opens the database (the directory
            # lock), and a memory-mapped -shm file that cannot grow (a full or read-only
            # filesystem, an immutable file) kills the process with SIGBUS instead of failing
            # the write with an error we can answer (reproduced with chattr +i, 2026-12-07).
            self._db.execute("PRAGMA locking_mode=EXCLUSIVE")
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise ConfigError(
                    f"{path} was written by a newer lanesync (schema {version}); upgrade lanesync"
                )
            self._db.executescript(_SCHEMA)
            if 0 < version < VERDICT_KEYS_SINCE:
                self._db.execute("DELETE FROM verified")
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, ConfigError) as exc:
            self._db.close()
            if isinstance(exc, ConfigError):
                raise
            raise StorageError(f"cannot open database {path}: {_reason(exc)}") from exc
        self._path = path
        self._snapshot_bytes: dict[str, int] = defaultdict(int)
        self._log_bytes: dict[str, int] = defaultdict(int)
        self._checkpoint_bytes = 0
        self._uncheckpointed_bytes = 0  # log bytes committed after the stored checkpoint

    def close(self) -> None:
        self._db.close()

    def load(self) -> Loaded:
        """Every document's snapshot and log (in order), split at the stored checkpoint, and
        the verdict keys of the records verified (``records.verdict_key``)."""
        stored: dict[str, list[bytes]] = defaultdict(list)
        tail: list[tuple[str, bytes]] = []
        try:
            row = self._db.execute("SELECT through, data FROM checkpoint").fetchone()
            through, checkpoint = (-1, None) if row is None else (int(row[0]), bytes(row[1]))
            for doc, data in self._db.execute("SELECT doc, data FROM snapshots"):
                stored[doc].append(bytes(data))
                self._snapshot_bytes[doc] = len(data)
            for row_id, doc, data in self._db.execute(
                "SELECT id, doc, data FROM updates ORDER BY id"
            ):
                if row_id <= through:
                    stored[doc].append(bytes(data))
                else:
                    tail.append((doc, bytes(data)))
                    self._uncheckpointed_bytes += len(data)
                self._log_bytes[doc] += len(data)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read database {self._path}: {_reason(exc)}") from exc
        sealed, amended = self._sealed_days()
        verified = LazyVerdicts(
            lambda key: bool(self._read("SELECT 1 FROM verified WHERE hash = ?", (key,))),
            lambda: {bytes(h) for (h,) in self._read("SELECT hash FROM verified", ())},
        )
        if checkpoint is None:
            # Everything will be folded: worth a checkpoint as soon as the replica has one.
            self._uncheckpointed_bytes += sum(self._snapshot_bytes.values())
        self._checkpoint_bytes = len(checkpoint or b"")
        return Loaded(dict(stored), tail, verified, checkpoint, sealed, amended)

    def _sealed_days(self) -> tuple[list[SealedDay], dict[str, tuple[str, ...]]]:
        rows = self._read("SELECT state, meta FROM sealed_days ORDER BY day", ())
        return read_seal_rows(rows, str(self._path))

    def read_archive(self, day: str) -> bytes:
        """A sealed day's archive (``Replica.attach_archives``)."""
        rows = self._read("SELECT archive FROM sealed_days WHERE day = ?", (day,))
        if not rows:
            raise StorageError(f"{self._path} holds no archive of {day}")
        return bytes(rows[0][0])

    def sealed_report(self, day: str) -> bytes | None:
        """The Z-report stored when ``day`` was sealed, if it is sealed."""
        rows = self._read(
            "SELECT report FROM sealed_days WHERE day = ? AND state = 'sealed'", (day,)
        )
        return bytes(rows[0][0]) if rows else None

    def stored_seal(self, day: str) -> StoredSeal | None:
        """What is stored of a sealed day (``verify --day`` checks it), if it is sealed."""
        rows = self._read(
            "SELECT meta, archive, signature, report FROM sealed_days "
            "WHERE day = ? AND state = 'sealed'",
            (day,),
        )
        return StoredSeal(*(bytes(column) for column in rows[0])) if rows else None

    def seal(
        self,
        sealings: Sequence[Sealing],
        replica: Replica,
        at_ms: int,
        packs: Mapping[str, Pack] | None = None,
    ) -> None:
        """Store sealed days' archives, drop their documents' logs and snapshots, and store the
        replica's checkpoint, in one transaction: the checkpoint before it may cover log rows of
        the days after it was taken, which are gone now (``replica`` must hold nothing
        uncommitted, as ``compact`` asks). The verdicts of the days' records go too (41 B a
        record on disk): only a rebuild without a usable checkpoint reads them, and it then
        verifies a sealed day's records again. ``packs``: by document, the day's change-feed
        events packed against its new archive (``core.eventpack``), which replace their rows
        and any earlier pack of the day."""
        packs = packs or {}
        checkpoint = replica.checkpoint()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            for sealing in sealings:
                self._db.execute(
                    "INSERT INTO sealed_days (day, state, meta, archive, report, signature, "
                    "sealed_at_ms) VALUES (?, 'sealed', ?, ?, ?, ?, ?) ON CONFLICT (day) DO "
                    "UPDATE SET state = 'sealed', meta = excluded.meta, "
                    "archive = excluded.archive, report = excluded.report, "
                    "signature = excluded.signature, sealed_at_ms = excluded.sealed_at_ms",
                    (
                        sealing.sealed.day,
                        sealing.meta,
                        sealing.archive,
                        sealing.report,
                        sealing.signature,
                        at_ms,
                    ),
                )
                self._db.execute("DELETE FROM updates WHERE doc = ?", (sealing.sealed.doc,))
                self._db.execute("DELETE FROM snapshots WHERE doc = ?", (sealing.sealed.doc,))
                self._db.executemany(
                    "DELETE FROM verified WHERE hash = ?", [(h,) for h in sealing.verdicts]
                )
                pack = packs.get(sealing.sealed.doc)
                if pack is not None:
                    self._put_pack(sealing.sealed.doc, pack)
            self._put_checkpoint(checkpoint)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(f"sealing days in {self._path} failed: {_reason(exc)}") from exc
        for sealing in sealings:
            self._log_bytes.pop(sealing.sealed.doc, None)
            self._snapshot_bytes.pop(sealing.sealed.doc, None)
        self._checkpoint_bytes, self._uncheckpointed_bytes = len(checkpoint), 0

    def commit(
        self,
        changes: Iterable[Change],
        requests: Sequence[KeyedRequest] = (),
        events: Sequence[EventRow] = (),
    ) -> None:
        """Write every change, the idempotency keys of the writes they hold and the feed's
        rows of the records they made durable, in one durable transaction (group commit)."""
        rows: list[tuple[str, bytes]] = []
        verdicts: list[tuple[bytes]] = []
        unsealed: list[str] = []
        for change in changes:
            rows.extend(change.updates)
            verdicts.extend((h,) for h in change.verdicts)
            unsealed.extend(change.unsealed)
        if not rows and not verdicts and not requests and not events:
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT INTO updates (doc, data) VALUES (?, ?)", rows)
            self._db.executemany("INSERT OR IGNORE INTO verified (hash) VALUES (?)", verdicts)
            self._db.executemany(
                "INSERT INTO requests (key, fingerprint, record_id, at_ms) VALUES (?, ?, ?, ?)",
                [(r.key, r.request_digest, r.record_id, r.at_ms) for r in requests],
            )
            if events:
                self._db.executemany(
                    "INSERT INTO events (id, doc, key, origin, at_ms) VALUES (?, ?, ?, ?, ?)",
                    [(e.event_id, e.doc, e.key, e.origin, e.at_ms) for e in events],
                )
            if unsealed:
                # The days' archives lead their log rows now: the seal is undone until the
                # day is sealed again (the row keeps the earlier report hash).
                self._db.executemany(
                    "UPDATE sealed_days SET state = 'reopened' WHERE day = ?",
                    [(doc.removeprefix("ledger/"),) for doc in unsealed],
                )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(f"commit to {self._path} failed: {_reason(exc)}") from exc
        for doc, data in rows:
            self._log_bytes[doc] += len(data)
            self._uncheckpointed_bytes += len(data)

    def find_request(self, key: str) -> KeyedRequest | None:
        try:
            row = self._db.execute(
                "SELECT fingerprint, record_id, at_ms FROM requests WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self._path}: {_reason(exc)}") from exc
        return None if row is None else KeyedRequest(key, bytes(row[0]), str(row[1]), int(row[2]))

    def _put_pack(self, doc: str, pack: Pack) -> None:
        self._db.execute(
            "INSERT INTO sealed_events (doc, first_id, last_id, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (doc) DO UPDATE SET first_id = excluded.first_id, "
            "last_id = excluded.last_id, data = excluded.data",
            (doc, pack.first_id, pack.last_id, pack.data),
        )
        self._db.executemany("DELETE FROM events WHERE id = ?", [(i,) for i in pack.event_ids])

    def last_event_id(self) -> int:
        """The id of the last event stored, in a row or a sealed day's pack (0: none)."""
        row = self._read(
            "SELECT max(coalesce((SELECT max(id) FROM events), 0), "
            "coalesce((SELECT max(last_id) FROM sealed_events), 0))",
            (),
        )
        return int(row[0][0])

    def events_of(self, doc: str) -> list[EventRow]:
        """The event rows of document ``doc``'s entries, in id order (not its pack's)."""
        return [
            EventRow(int(i), doc, str(key), str(origin), at_ms)
            for i, key, origin, at_ms in self._read(
                "SELECT id, key, origin, at_ms FROM events WHERE doc = ? ORDER BY id", (doc,)
            )
        ]

    def packed_events(self, doc: str) -> bytes | None:
        """Document ``doc``'s packed events, if a sealing packed them."""
        rows = self._read("SELECT data FROM sealed_events WHERE doc = ?", (doc,))
        return bytes(rows[0][0]) if rows else None

    def packed_docs(self) -> list[str]:
        """The documents whose events a sealing packed."""
        return [str(doc) for (doc,) in self._read("SELECT doc FROM sealed_events ORDER BY doc", ())]

    def packs_between(self, after_id: int, through_id: int) -> list[StoredPack]:
        """The packs holding an event with ``after_id < id <= through_id`` possibly (by their
        ranges), in order of their first id."""
        return [
            StoredPack(str(doc), int(first), int(last), bytes(data))
            for doc, first, last, data in self._read(
                "SELECT doc, first_id, last_id, data FROM sealed_events "
                "WHERE first_id <= ? AND last_id > ? ORDER BY first_id",
                (through_id, after_id),
            )
        ]

    def events_after(self, after_id: int, through_id: int, limit: int) -> list[EventRow]:
        """At most ``limit`` events with ``after_id < id <= through_id``, in id order."""
        return [
            EventRow(int(i), str(doc), str(key), str(origin), at_ms)
            for i, doc, key, origin, at_ms in self._read(
                "SELECT id, doc, key, origin, at_ms FROM events WHERE id > ? AND id <= ? "
                "ORDER BY id LIMIT ?",
                (after_id, through_id, limit),
            )
        ]

    def event_keys(self, doc: str | None) -> set[str]:
        """The key of every event stored (of document ``doc``'s entries only, unless None)."""
        if doc is None:
            return {str(key) for (key,) in self._read("SELECT key FROM events", ())}
        return {str(k) for (k,) in self._read("SELECT key FROM events WHERE doc = ?", (doc,))}

    def _read(self, sql: str, args: tuple[int | str | bytes, ...]) -> list[tuple[Any, ...]]:
        try:
            rows: list[tuple[Any, ...]] = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read {self._path}: {_reason(exc)}") from exc
        return rows

    def forget_requests(self, before_ms: int) -> None:
        """Drop idempotency keys stored before ``before_ms``."""
        try:
            self._db.execute("DELETE FROM requests WHERE at_ms < ?", (before_ms,))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot prune {self._path}: {_reason(exc)}") from exc

    def _rollback(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            # No transaction was open (BEGIN itself failed): nothing to undo.
            return

    def documents_to_compact(self) -> list[str]:
        return due_for_compaction(self._log_bytes, self._snapshot_bytes)

    def checkpoint_due(self) -> bool:
        return self._uncheckpointed_bytes > max(
            CHECKPOINT_MIN_LOG_BYTES, self._checkpoint_bytes // CHECKPOINT_LOG_FRACTION
        )

    def write_checkpoint(self, replica: Replica) -> None:
        """Store the replica's checkpoint as covering every log row committed so far.

        Call it only when everything the replica holds is committed (the shell's write paths
        commit before they return). Should it hold something that is not, the checkpoint's
        document fingerprints do not match at the next open and it is ignored."""
        checkpoint = replica.checkpoint()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._put_checkpoint(checkpoint)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(f"checkpoint in {self._path} failed: {_reason(exc)}") from exc
        self._checkpoint_bytes, self._uncheckpointed_bytes = len(checkpoint), 0

    def _put_checkpoint(self, checkpoint: bytes) -> None:
        # Inside the caller's transaction: the rows it covers are exactly those committed (and
        # kept, after a compaction). SQLite gives a new row max(id) + 1, so every later row has
        # a larger id even where compaction deleted the last rows: "through" never covers one.
        self._db.execute(
            "INSERT INTO checkpoint (id, through, data) "
            "VALUES (1, (SELECT coalesce(max(id), 0) FROM updates), ?) "
            "ON CONFLICT (id) DO UPDATE SET through = excluded.through, data = excluded.data",
            (checkpoint,),
        )

    def compact(self, replica: Replica, doc: str) -> None:
        """Replace ``doc``'s snapshot with the replica's full state; drop covered log rows;
        store the replica's checkpoint with them (the old one covers rows that are gone)."""
        snapshot = replica.full_state(doc)
        # A replica ahead of the disk would checkpoint views of entries the log may never
        # hold; then the stale checkpoint is dropped instead (the next open folds everything).
        checkpoint = replica.checkpoint() if replica.unpersisted_updates == 0 else None
        try:
            rows = self._db.execute(
                "SELECT id, data FROM updates WHERE doc = ? ORDER BY id", (doc,)
            ).fetchall()
            flags = replica.covered(doc, (data for _, data in rows))
            covered = {row_id for (row_id, _), flag in zip(rows, flags, strict=True) if flag}
            kept = sum(len(data) for row_id, data in rows if row_id not in covered)
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO snapshots (doc, data) VALUES (?, ?) "
                "ON CONFLICT (doc) DO UPDATE SET data = excluded.data",
                (doc, snapshot),
            )
            self._db.executemany("DELETE FROM updates WHERE id = ?", [(i,) for i in covered])
            if checkpoint is None:
                self._db.execute("DELETE FROM checkpoint")
            else:
                self._put_checkpoint(checkpoint)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            raise StorageError(
                f"compaction of {doc} in {self._path} failed: {_reason(exc)}"
            ) from exc
        self._snapshot_bytes[doc] = len(snapshot)
        self._log_bytes[doc] = kept
        if checkpoint is None:
            self._checkpoint_bytes, self._uncheckpointed_bytes = 0, sum(self._log_bytes.values())
        else:
            self._checkpoint_bytes, self._uncheckpointed_bytes = len(checkpoint), 0
