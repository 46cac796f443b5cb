"""A store's documents in PostgreSQL, shared by every cloud process that serves the store.

The same contract as a terminal's SQLite storage (lanesync.shell.storage): ``commit`` returns
once the transaction is durable, loading replays snapshots then the log, and compaction keeps
log rows the document has not integrated. What PostgreSQL adds is several writers:

* ``store_heads.last_seq`` numbers the store's log. A commit takes that row's lock
  (``UPDATE ... RETURNING``) and holds it until COMMIT, so one store's commits are serialised and
  rows become visible in seq order: a reader that has seen up to seq N and reads ``seq > N``
  later never misses a row another process committed in between.
* ``pull()`` returns the rows other processes committed since we last looked (and their
  snapshots, when one of them compacted), for the caller to merge: CRDT merges are idempotent
  and commutative, so whichever process merged first, every replica ends the same.
* Compaction deletes log rows only when this process has seen the whole log (under the lock),
  and bumps ``snapshot_gen`` so the others reload the snapshot instead of missing rows.
* ``in_commit``, when the owner sets it, runs inside every commit's transaction, under the lock,
  after the commit's rows and before COMMIT, with what the other processes committed meanwhile
  (``pull``): the cloud merges that and projects its head-office tables there
  (``StoreRuntime``), so a merge costs one transaction, and whatever it raises rolls the commit
  back with it.
* ``signing()`` holds the lock from before the cloud signs a record of its own chain until the
  commit holding it is durable: every process signs the cloud's records, and two of them
  signing "the next seq" from their own replicas would fork the cloud's chain.
* Sealed days (``core.sealing``) are kept in ``store_archives``, as a lane keeps them in its
  ``sealed_days``: ``seal`` runs under the lock (``StoreRuntime.seal_due`` holds it with
  ``signing``, having merged everything committed), stores the archives, deletes the days' log
  rows and snapshots and bumps ``snapshot_gen``, so the others pull the seal (``Pulled.sealed``)
  and unload the day too. A process that has not pulled the seal yet may still commit a late
  record of the day to its open copy: ``commit`` then writes the archive ahead of it and marks
  the day reopened, exactly what a replica that knew does (``Replica.merge`` opens the day).
* A checkpoint of the views (``Replica.checkpoint``, table ``store_checkpoints``) is written
  only under the store's lock by a process whose replica holds exactly what is committed: it
  has pulled every other process's rows and snapshots (``is_behind`` false) and merged nothing
  it has not committed (``unpersisted_updates`` 0). It is stamped with ``last_seq`` (the log
  rows it covers) and ``snapshot_gen``. It is written in the transaction of every compaction
  and every seal (which replace snapshots and delete rows, and bump the generation), and on
  its own once the log after it has grown as the lane's rule says (``checkpoint_due``). So the
  stored checkpoint is never older than the stored snapshots: a compaction by another process
  replaces it with its own, and a compaction that cannot write one (its replica holds
  uncommitted updates) deletes it. ``load`` uses it only if its generation is the current one
  (a guard: only compactions and seals move the generation, and they rewrite it) and splits
  the log at ``through``: the rows up to it are what the checkpoint covers, the rest the tail.
  The checkpoint a seal writes fits as a lane's does: a sealed day counts in the fingerprints
  as it was when sealed (``SealedDay``), in the sealing replica, in those that unloaded the
  day after it and in one loaded fresh. Should a checkpoint still not fit (a late record
  reopened a sealed day after it was written, or a fault), ``Replica.restore`` refuses it and
  folds everything: slower, exact. The verdicts of a sealed day's records are kept (a lane
  drops them): such a full fold reads the sealed days back from their archives, and a year of
  a store's records verified again would cost tens of seconds of CPU. With a checkpoint that
  fits, only the tail's are read (``_verdicts``).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from lanesync.cloud.sql import Sql
from lanesync.core import archive_codec
from lanesync.core.change import Change
from lanesync.core.eventpack import Pack
from lanesync.core.ids import LEDGER_PREFIX, ledger_doc
from lanesync.core.replica import Replica
from lanesync.core.sealdays import Sealing
from lanesync.core.sealing import SealedDay, read_seal_rows
from lanesync.errors import StorageError
from lanesync.shell.storage import (
    CHECKPOINT_LOG_FRACTION,
    CHECKPOINT_MIN_LOG_BYTES,
    KeyedRequest,
    LazyVerdicts,
    Loaded,
    due_for_compaction,
)

# The channel every commit of a store's documents notifies, with the store's id
# (cloud.follow: the other processes listen on it).
COMMIT_CHANNEL = "lanesync_store_commit"


# A commit in one statement, not four (a live sale is a commit of its own, and each statement
# costs the cloud 25-70 CPU us in psycopg: benchmarks/README.md, "Where the cloud's CPU goes"):
# take the store's lock and number the rows (``last_seq``), append them, note the verdicts, and
# notify the other processes, which hear it once the transaction commits (cloud.follow). The
# arrays go in binary (%b): as text, a catch-up slice's 64 KiB would be hex both ways. A commit
# of a day's records takes the lock first (``lock``, see ``commit``): two statements. A commit
# that projects in its own transaction (``in_commit``) moves ``projected_seq`` with ``last_seq``.
_COMMIT = """
WITH head AS (
    UPDATE store_heads SET last_seq = last_seq + ?,
        projected_seq = CASE WHEN ?::boolean THEN last_seq + ? ELSE projected_seq END
    WHERE store_id = ?
    RETURNING store_id, last_seq
), appended AS (
    INSERT INTO store_updates (store_id, seq, doc, data)
    SELECT head.store_id, head.last_seq - ? + u.n, u.doc, u.data
    FROM head, unnest(%b::text[], %b::bytea[]) WITH ORDINALITY AS u(doc, data, n)
), noted AS (
    INSERT INTO store_verified (store_id, hash, added_seq)
    SELECT head.store_id, v.hash, head.last_seq FROM head, unnest(%b::bytea[]) AS v(hash)
    ON CONFLICT DO NOTHING
)
SELECT last_seq, pg_notify(?, store_id) FROM head
"""


@dataclass(frozen=True, slots=True)
class Pulled:
    updates: list[tuple[str, bytes]]
    verified: set[bytes]  # records another process verified: no need to check them again
    # After another process compacted or sealed: every day sealed in the database (the caller
    # unloads those it holds open; ``StoreRuntime``).
    sealed: list[SealedDay] = field(default_factory=list)


class PostgresStoreStorage:
    def __init__(self, sql: Sql, store_id: str) -> None:
        self._sql = sql
        self._store = store_id
        self._seen_seq = 0
        self._seen_gen = 0
        # The documents of the days the database held sealed when we last looked (load, pull,
        # our own seals): a commit writing none of them, with no seal since, checks nothing.
        self._sealed_docs: set[str] = set()
        self._mine: set[int] = set()  # seqs we committed that are above _seen_seq
        self._snapshot_bytes: dict[str, int] = defaultdict(int)
        self._log_bytes: dict[str, int] = defaultdict(int)
        # The stored checkpoint's size, and the log bytes this process knows were committed
        # after it (``checkpoint_due``, the lane's rule).
        self._checkpoint_bytes = 0
        self._uncheckpointed_bytes = 0
        # The stored checkpoint will not fit the next open (there is none, or a late record
        # reopened a sealed day it counts as sealed): that open would fold every record the
        # store holds, sealed days included, so one is due at once (``checkpoint_due``).
        self._checkpoint_unfit = False
        # The transaction ``signing`` opened, which the next ``commit`` ends.
        self._held: contextlib.ExitStack | None = None
        # Whether the head-office tables held everything ``load`` read (``projected_seq``).
        self.projected_at_load = False
        # Called inside each commit's transaction, under the store's lock, once the commit's
        # rows are written, with what other processes committed since we last looked; what it
        # writes commits with them, and what it raises rolls them back (see the module's doc).
        self.in_commit: Callable[[Pulled], None] | None = None
        sql.execute(
            "INSERT INTO store_heads (store_id) VALUES (?) ON CONFLICT DO NOTHING", (store_id,)
        )

    def close(self) -> None:
        """The connection is the cloud process's, closed by its owner."""

    def lock(self) -> tuple[int, int]:
        """Take the store's lock for the current transaction; returns (last_seq, snapshot_gen)."""
        rows = self._sql.execute(
            "SELECT last_seq, snapshot_gen FROM store_heads WHERE store_id = ? FOR UPDATE",
            (self._store,),
        )
        return int(rows[0][0]), int(rows[0][1])

    def is_behind(self, head: tuple[int, int]) -> bool:
        """Whether another process committed (or compacted) something we have not pulled."""
        last_seq, gen = head
        # Every seq above _seen_seq that is ours is in _mine; any other one is someone else's.
        return gen != self._seen_gen or last_seq - self._seen_seq != len(self._mine)

    def load(self) -> Loaded:
        """Snapshots, then every log row in seq order, split at the stored checkpoint (the
        rows it covers with their document, the rest as the tail), and the verdict keys of the
        records verified. A checkpoint of another snapshot generation is not used (see the
        module docstring): then every row is the tail, and everything is folded."""
        stored: dict[str, list[bytes]] = defaultdict(list)
        tail: list[tuple[str, bytes]] = []
        with self._sql.transaction():
            last_seq, gen, projected_seq = self._sql.execute(
                "SELECT last_seq, snapshot_gen, projected_seq FROM store_heads "
                "WHERE store_id = ? FOR UPDATE",
                (self._store,),
            )[0]
            self._seen_seq, self._seen_gen = int(last_seq), int(gen)
            self.projected_at_load = int(projected_seq) == self._seen_seq
            through, checkpoint = 0, None
            for seq, checkpoint_gen, data in self._sql.execute(
                "SELECT through, gen, data FROM store_checkpoints WHERE store_id = ?",
                (self._store,),
            ):
                if int(checkpoint_gen) == self._seen_gen:
                    through, checkpoint = int(seq), bytes(data)
            for doc, data in self._sql.execute(
                "SELECT doc, data FROM store_snapshots WHERE store_id = ?", (self._store,)
            ):
                stored[doc].append(bytes(data))
                self._snapshot_bytes[doc] = len(data)
            for seq, doc, data in self._sql.execute(
                "SELECT seq, doc, data FROM store_updates WHERE store_id = ? AND seq <= ? "
                "ORDER BY seq",
                (self._store, self._seen_seq),
            ):
                if seq <= through:
                    stored[doc].append(bytes(data))
                else:
                    tail.append((doc, bytes(data)))
                    self._uncheckpointed_bytes += len(data)
                self._log_bytes[doc] += len(data)
            sealed, amended = self._sealed_days()
        verified = self._verdicts(after_seq=through)
        self._sealed_docs = {day.doc for day in sealed}
        self._mine.clear()
        # Without a checkpoint everything is folded, sealed days included: worth one as soon
        # as the replica has one (an empty store's first open excepted).
        self._checkpoint_unfit = checkpoint is None and bool(stored or tail or sealed)
        self._checkpoint_bytes = len(checkpoint or b"")
        return Loaded(dict(stored), tail, verified, checkpoint, sealed, amended)

    def _verdicts(self, after_seq: int) -> LazyVerdicts:
        """The store's verdict keys for a restore: those noted after ``after_seq`` (the
        tail's records: a verdict is noted with the rows it came in) read at once, any other
        looked up (``LazyVerdicts``). A year of a store is ~900k keys: reading them all costs
        seconds, for nothing when the checkpoint fits."""
        store = self._store
        return LazyVerdicts(
            lambda key: bool(
                self._sql.execute(
                    "SELECT 1 FROM store_verified WHERE store_id = ? AND hash = ?", (store, key)
                )
            ),
            lambda: {
                bytes(h)
                for (h,) in self._sql.execute(
                    "SELECT hash FROM store_verified WHERE store_id = ?", (store,)
                )
            },
            known={
                bytes(h)
                for (h,) in self._sql.execute(
                    "SELECT hash FROM store_verified WHERE store_id = ? AND added_seq > ?",
                    (store, after_seq),
                )
            },
        )

    def _sealed_days(self) -> tuple[list[SealedDay], dict[str, tuple[str, ...]]]:
        """The days sealed, and the report hashes of the earlier seals of those reopened."""
        rows = self._sql.execute(
            "SELECT state, meta FROM store_archives WHERE store_id = ? ORDER BY day",
            (self._store,),
        )
        return read_seal_rows(rows, f"store {self._store}")

    def read_archive(self, day: str) -> bytes:
        """A sealed day's archive (``Replica.attach_archives``)."""
        rows = self._sql.execute(
            "SELECT archive FROM store_archives WHERE store_id = ? AND day = ?",
            (self._store, day),
        )
        if not rows:
            raise StorageError(f"the database holds no archive of {day} of store {self._store}")
        return bytes(rows[0][0])

    def archived_update(self, day: str) -> bytes:
        """The CRDT update a sealed day's archive holds."""
        try:
            return archive_codec.decompress(self.read_archive(day))
        except ValueError as exc:
            raise StorageError(f"store {self._store}: {exc} ({day})") from exc

    def seal(
        self,
        sealings: Sequence[Sealing],
        replica: Replica,
        at_ms: int,
        packs: Mapping[str, Pack] | None = None,
    ) -> None:
        """Store sealed days' archives and drop their documents' log rows and snapshots, in
        one transaction that holds the store's lock (the one ``signing`` opened, else its own):
        nothing of the days may have been committed by another process and not merged here,
        or their archives would lack it (``StorageError`` then: the caller merges first).
        The replica's checkpoint (the days sealed in it) replaces the stored one in the same
        transaction, as on a lane, unless the replica holds updates not committed (then the
        stored one is dropped). ``packs`` are a lane's change feed: the cloud keeps none."""
        checkpoint = self._current_checkpoint(replica)
        held, self._held = self._held, None
        with held if held is not None else self._sql.transaction():
            head = self.lock()
            if self.is_behind(head):
                raise StorageError(
                    f"store {self._store}: another process committed to it while it was sealed"
                )
            for sealing in sealings:
                self._sql.execute(
                    "INSERT INTO store_archives (store_id, day, state, meta, archive, report, "
                    "signature, sealed_at_ms) VALUES (?, ?, 'sealed', ?, ?, ?, ?, ?) "
                    "ON CONFLICT (store_id, day) DO UPDATE SET state = 'sealed', "
                    "meta = excluded.meta, archive = excluded.archive, report = excluded.report, "
                    "signature = excluded.signature, sealed_at_ms = excluded.sealed_at_ms",
                    (
                        self._store,
                        sealing.sealed.day,
                        sealing.meta,
                        sealing.archive,
                        sealing.report,
                        sealing.signature,
                        at_ms,
                    ),
                )
                for table in ("store_updates", "store_snapshots"):
                    self._sql.execute(
                        f"DELETE FROM {table} WHERE store_id = ? AND doc = ?",  # noqa: S608 - fixed table names
                        (self._store, sealing.sealed.doc),
                    )
            # As after a compaction: the others reload what is left and pull the seals.
            gen = self._next_generation()
            self._put_checkpoint(checkpoint, head[0], gen)
        self._seen_gen = gen
        self._seen_seq, self._mine = head[0], set()
        for sealing in sealings:
            self._sealed_docs.add(sealing.sealed.doc)
            self._log_bytes.pop(sealing.sealed.doc, None)
            self._snapshot_bytes.pop(sealing.sealed.doc, None)
        self._checkpoint_written(checkpoint)

    def checkpoint_due(self) -> bool:
        """The lane's rule (``shell.storage``): the log this process knows was committed
        after the stored checkpoint holds more than ``CHECKPOINT_MIN_LOG_BYTES`` and more than
        a ``CHECKPOINT_LOG_FRACTION`` of the checkpoint. Another process's checkpoint is not
        counted: two processes serving one store may each write one, under the lock, in turn."""
        return self._checkpoint_unfit or self._uncheckpointed_bytes > max(
            CHECKPOINT_MIN_LOG_BYTES, self._checkpoint_bytes // CHECKPOINT_LOG_FRACTION
        )

    def write_checkpoint(self, replica: Replica) -> None:
        """Store the replica's checkpoint as covering the log up to ``last_seq``, under the
        store's lock, if the replica holds exactly what is committed: nothing merged and not
        committed, and every other process's rows pulled. Otherwise nothing is written (a
        checkpoint of this replica would not fit the stored documents); a later call will."""
        head = store_head(self._sql, self._store)  # without the lock: a cheap first look
        if replica.unpersisted_updates or head is None or self.is_behind(head):
            return  # spare making a checkpoint that would be dropped
        checkpoint = replica.checkpoint()
        with self._sql.transaction():
            head = self.lock()
            if self.is_behind(head):
                return
            self._put_checkpoint(checkpoint, *head)
        self._checkpoint_written(checkpoint)

    @staticmethod
    def _current_checkpoint(replica: Replica) -> bytes | None:
        """The replica's checkpoint, if it holds nothing it has not committed. Made before
        the lock is taken (~25 ms at 116k records, measured for the lane: shell.storage's
        ``CHECKPOINT_MIN_LOG_BYTES``), which no other process's commit then waits for; the
        caller checks under the lock that nobody committed meanwhile."""
        return replica.checkpoint() if replica.unpersisted_updates == 0 else None

    def _put_checkpoint(self, checkpoint: bytes | None, through: int, gen: int) -> None:
        """Inside the caller's transaction, the lock held and ``is_behind`` false: the stored
        checkpoint now covers the rows up to ``through`` and the snapshots of ``gen``. None
        (the replica holds uncommitted updates) drops the stored one: after the compaction or
        seal in this transaction it would describe fewer documents than are stored."""
        if checkpoint is None:
            self._sql.execute("DELETE FROM store_checkpoints WHERE store_id = ?", (self._store,))
            return
        self._sql.execute(
            "INSERT INTO store_checkpoints (store_id, through, gen, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (store_id) DO UPDATE SET through = excluded.through, "
            "gen = excluded.gen, data = excluded.data",
            (self._store, through, gen, checkpoint),
        )

    def _checkpoint_written(self, checkpoint: bytes | None) -> None:
        """After the transaction that stored (or dropped) the checkpoint committed."""
        if checkpoint is None:
            self._checkpoint_bytes = 0
            self._uncheckpointed_bytes = sum(self._log_bytes.values())
            self._checkpoint_unfit = True
        else:
            self._checkpoint_bytes, self._uncheckpointed_bytes = len(checkpoint), 0
            self._checkpoint_unfit = False

    def pull(self) -> Pulled:
        """What other processes committed since we last looked (their snapshots first when one
        of them compacted, then log rows in commit order), with the hashes of the records they
        verified. Call it inside a transaction: it takes the store's lock, so no compaction can
        delete rows between the reads."""
        last_seq, gen = self.lock()
        updates: list[tuple[str, bytes]] = []
        verified: set[bytes] = set()
        sealed: list[SealedDay] = []
        if gen != self._seen_gen:
            for doc, data in self._sql.execute(
                "SELECT doc, data FROM store_snapshots WHERE store_id = ?", (self._store,)
            ):
                updates.append((doc, bytes(data)))
                self._snapshot_bytes[doc] = len(data)
            sealed = self._sealed_days()[0]
            self._sealed_docs = {day.doc for day in sealed}
            for day in sealed:
                self._log_bytes.pop(day.doc, None)
                self._snapshot_bytes.pop(day.doc, None)
            self._seen_gen = gen
        ours = sum(1 for seq in self._mine if seq <= last_seq)
        if last_seq - self._seen_seq == ours:
            # Every row since we last looked is one we committed (the pull in each of our
            # commits): nothing to read back, which spares a catch-up slice's bytes a round trip.
            self._mine = {seq for seq in self._mine if seq > last_seq}
            self._seen_seq = last_seq
        elif last_seq > self._seen_seq:
            for seq, doc, data in self._sql.execute(
                "SELECT seq, doc, data FROM store_updates "
                "WHERE store_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (self._store, self._seen_seq, last_seq),
            ):
                if seq not in self._mine:
                    updates.append((doc, bytes(data)))
                    self._log_bytes[doc] += len(data)
                    self._uncheckpointed_bytes += len(data)
            verified = {
                bytes(h)
                for (h,) in self._sql.execute(
                    "SELECT hash FROM store_verified "
                    "WHERE store_id = ? AND added_seq > ? AND added_seq <= ?",
                    (self._store, self._seen_seq, last_seq),
                )
            }
            self._mine = {seq for seq in self._mine if seq > last_seq}
            self._seen_seq = last_seq
        return Pulled(updates, verified, sealed)

    @contextlib.contextmanager
    def signing(self) -> Iterator[Pulled]:
        """Take the store's lock and hold it until the next ``commit`` is durable (or until the
        block ends, if nothing is committed in it); yields what other processes committed
        meanwhile (``pull``). The caller merges that, then signs and commits: so it signs after
        the real head of its chain, and nobody else signs or commits in between. The block
        must not wait on anything (no ``await``): the lock stops every process's commits of
        this store."""
        with contextlib.ExitStack() as held:
            held.enter_context(self._sql.transaction())
            self._held = held
            try:
                yield self.pull()
            finally:
                self._held = None  # the commit ended it, or the block does now

    def find_request(self, key: str) -> KeyedRequest | None:
        """Idempotency keys are a terminal's local API's: the cloud keeps none."""
        return None

    def forget_requests(self, before_ms: int) -> None:
        """Nothing to forget (``find_request``)."""

    def commit(self, changes: Iterable[Change], requests: Sequence[KeyedRequest] = ()) -> None:
        """Append every change in one durable transaction (group commit); inside ``signing``,
        the transaction that holds the lock, so it is durable (and the lock released) on return.
        With ``in_commit`` set, the transaction first pulls (``pull``: the lock taken) and ends
        with the call, so the owner writes from a replica holding everything committed."""
        if requests:
            raise StorageError("idempotency keys are kept by terminals, not by the cloud")
        rows: list[tuple[str, bytes]] = []
        verdicts: list[bytes] = []
        unsealed: set[str] = set()
        for change in changes:
            rows.extend(change.updates)
            verdicts.extend(change.verdicts)
            unsealed.update(change.unsealed)
        if not rows and not verdicts:
            return
        held, self._held = self._held, None
        with held if held is not None else self._sql.transaction():
            ahead: list[tuple[str, bytes]] = []
            written = {doc for doc, _ in rows if doc.startswith(LEDGER_PREFIX)}
            pulled = Pulled([], set())
            if self.in_commit is not None:
                # The lock, and what the others committed (inside ``signing``: pulled already,
                # the lock held since). A seal since we last looked is in ``_sealed_docs`` now.
                if held is None:
                    pulled = self.pull()
                if unsealed or written & self._sealed_docs:
                    ahead = self._reopening(rows, unsealed)
            elif written:
                # Taking the lock first: a seal another process commits meanwhile has ended
                # when the days written are checked for seals (``_reopening``). Unless a seal
                # happened since we last looked (the generation moved) or we write a day we
                # know sealed, the check would find nothing: one statement instead of a query.
                _, gen = self.lock()
                if gen != self._seen_gen or unsealed or written & self._sealed_docs:
                    ahead = self._reopening(rows, unsealed)
            rows = [*ahead, *rows]
            last = int(
                self._sql.execute(
                    _COMMIT,
                    (
                        len(rows),
                        self.in_commit is not None,
                        len(rows),
                        self._store,
                        len(rows),
                        [doc for doc, _ in rows],
                        [data for _, data in rows],
                        verdicts,
                        COMMIT_CHANNEL,
                    ),
                )[0][0]
            )
            if self.in_commit is not None:
                # A day this commit reopened is not sealed any more (its seal must not unload
                # it), and the archives written ahead are merged with the others' rows: this
                # replica lacks what the sealing process merged into them last (its rows are
                # gone). Without the call, the next pull reads them back.
                self.in_commit(
                    replace(
                        pulled,
                        updates=[*pulled.updates, *ahead],
                        sealed=[day for day in pulled.sealed if day.doc in self._sealed_docs],
                    )
                )
        read_back = 0 if self.in_commit is not None else len(ahead)
        first = last - len(rows) + 1
        self._mine.update(range(first + read_back, last + 1))
        for doc, data in rows:
            self._log_bytes[doc] += len(data)
            self._uncheckpointed_bytes += len(data)

    def mark_projected(self) -> None:
        """The head-office tables now hold everything committed (the caller projected, in this
        transaction, under the store's lock, from a replica that pulled every row)."""
        self._sql.execute(
            "UPDATE store_heads SET projected_seq = last_seq WHERE store_id = ?", (self._store,)
        )

    def _reopening(
        self, rows: list[tuple[str, bytes]], unsealed: set[str]
    ) -> list[tuple[str, bytes]]:
        """The rows to write ahead of ``rows``; the days they write that the database holds
        sealed are marked reopened (inside the commit's transaction, the lock held). A day
        this replica opened again (``unsealed``) leads its rows with the archive already; a
        day another process sealed after this one last pulled is open here, so its archive is
        written ahead of the rows: either way a load finds the archive, then the late
        records, as a lane's storage has them after ``Replica.merge`` opened a sealed day."""
        days = sorted({d for d, _ in rows if d.startswith(LEDGER_PREFIX)})
        if not days:
            return []
        marks = ", ".join("?" for _ in days)
        sealed = {
            str(day): bytes(archive)
            for day, archive in self._sql.execute(
                "SELECT day, archive FROM store_archives "  # noqa: S608 - placeholders only
                f"WHERE store_id = ? AND state = 'sealed' AND day IN ({marks})",
                (self._store, *(d.removeprefix(LEDGER_PREFIX) for d in days)),
            )
        }
        if not sealed:
            return []
        self._sql.executemany(
            "UPDATE store_archives SET state = 'reopened' WHERE store_id = ? AND day = ?",
            [(self._store, day) for day in sealed],
        )
        self._sealed_docs -= {ledger_doc(day) for day in sealed}
        # The stored checkpoint counts these days sealed: it fits no longer. This process
        # writes the next once it has pulled the archives written ahead (``is_behind``).
        self._checkpoint_unfit = True
        try:
            return [
                (ledger_doc(day), archive_codec.decompress(archive))
                for day, archive in sorted(sealed.items())
                if ledger_doc(day) not in unsealed
            ]
        except ValueError as exc:
            raise StorageError(f"store {self._store}: {exc}") from exc

    def _next_generation(self) -> int:
        """After a compaction or a seal deleted rows: a new snapshot generation, and a notice,
        so the other processes reload what is left (``pull``)."""
        gen = int(
            self._sql.execute(
                "UPDATE store_heads SET snapshot_gen = snapshot_gen + 1 WHERE store_id = ? "
                "RETURNING snapshot_gen",
                (self._store,),
            )[0][0]
        )
        self._notify()
        return gen

    def _notify(self) -> None:
        # Inside the transaction: delivered to the listeners when it commits, never before
        # and never if it rolls back (cloud.follow).
        self._sql.execute("SELECT pg_notify(?, ?)", (COMMIT_CHANNEL, self._store))

    def documents_to_compact(self) -> list[str]:
        return due_for_compaction(self._log_bytes, self._snapshot_bytes)

    def compact(self, replica: Replica, doc: str) -> None:
        """Replace ``doc``'s snapshot with the replica's state and drop the log rows it covers,
        unless another process committed something we have not merged yet (then later). The
        replica's checkpoint replaces the stored one in the same transaction (the module
        docstring says why), or drops it if the replica holds updates not committed."""
        head = store_head(self._sql, self._store)  # without the lock: a cheap first look
        if head is None or self.is_behind(head):
            return  # spare making a checkpoint that would be dropped
        checkpoint = self._current_checkpoint(replica)
        with self._sql.transaction():
            head = self.lock()
            if self.is_behind(head):
                return
            snapshot = replica.full_state(doc)
            rows = self._sql.execute(
                "SELECT seq, data FROM store_updates WHERE store_id = ? AND doc = ?",
                (self._store, doc),
            )
            flags = replica.covered(doc, (data for _, data in rows))
            covered = {seq for (seq, _), flag in zip(rows, flags, strict=True) if flag}
            kept = sum(len(data) for seq, data in rows if seq not in covered)
            self._sql.execute(
                "INSERT INTO store_snapshots (store_id, doc, data) VALUES (?, ?, ?) "
                "ON CONFLICT (store_id, doc) DO UPDATE SET data = excluded.data",
                (self._store, doc, snapshot),
            )
            self._sql.executemany(
                "DELETE FROM store_updates WHERE store_id = ? AND seq = ?",
                [(self._store, seq) for seq in covered],
            )
            gen = self._next_generation()
            self._put_checkpoint(checkpoint, head[0], gen)
        self._seen_gen = gen
        self._seen_seq, self._mine = head[0], set()  # not behind: everything up to it is merged
        self._snapshot_bytes[doc] = len(snapshot)
        self._log_bytes[doc] = kept
        self._checkpoint_written(checkpoint)


def store_head(sql: Sql, store_id: str) -> tuple[int, int] | None:
    """One store's (last_seq, snapshot_gen), if the database has the store."""
    rows = sql.execute(
        "SELECT last_seq, snapshot_gen FROM store_heads WHERE store_id = ?", (store_id,)
    )
    return (int(rows[0][0]), int(rows[0][1])) if rows else None


def store_heads(sql: Sql) -> dict[str, tuple[int, int]]:
    """Every store's (last_seq, snapshot_gen): one cheap query tells which stores moved."""
    return {
        store: (int(seq), int(gen))
        for store, seq, gen in sql.execute(
            "SELECT store_id, last_seq, snapshot_gen FROM store_heads"
        )
    }
