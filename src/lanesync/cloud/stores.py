"""Where the cloud keeps its state, and how one store's replica stays in step with it.

Two backends behind one interface:

* SQLite (the default, one machine): ``CLOUD_DIR/headoffice.db`` for the head-office tables and
  each store's documents in ``CLOUD_DIR/stores/<id>/lanesync.db``, exactly like a terminal.
  One process per directory (the directory lock), so nobody else writes. Two files, two
  transactions: the tables are projected after each durable commit (``StoreRuntime.refresh``).
* PostgreSQL (``--db URL``): everything in one database, which any number of ``cloud serve``
  processes share. Each process holds its own in-memory replica of each store it has resident
  (cloud/service.py: opened on demand, evicted when idle). Every merge's commit takes the
  store's lock, merges what the other processes committed meanwhile, and projects the head-office
  tables from that complete replica in the commit's own transaction (one BEGIN/COMMIT, one
  WAL flush a merge: ``PostgresStoreStorage.in_commit``). So the tables are always written from a
  replica holding everything committed so far, they and the log never disagree, and a record
  counts once however many processes received it (the tables are keyed by record id).
  A follower (cloud.follow) hears of other processes' commits and relays them to this
  process's peers.
  Every process signs as the cloud (a price set through its API): it takes the store's lock,
  merges what the others committed, signs and commits before the lock is released
  (``StoreRuntime.signing``), so the cloud's own chain never forks.

On both, the cloud seals a store's complete days as lanes do (``StoreRuntime.seal_due``: the
archive kept, the day's log and memory dropped, the head-office rows left as they are); on
PostgreSQL under the store's lock, and the other processes unload the day when they follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.pgstorage import PostgresStoreStorage, Pulled
from lanesync.cloud.schema import prepare_sqlite_headoffice, require_current_postgresql
from lanesync.cloud.sql import Sql, SqliteSql, connect, redact
from lanesync.core import sealdays, sealing
from lanesync.core.accepted import AcceptedRecords
from lanesync.core.node import Node
from lanesync.core.sealing import SealedDay
from lanesync.errors import StorageError
from lanesync.shell.admission import HandshakeGate
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.directories import TerminalDirectory
from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators, Mesh
from lanesync.shell.terminal import Terminal, wall_clock_ms
from lanesync.shell.turns import Turns

log = logging.getLogger("lanesync.cloud")
# How much of a leader's upload a store merges per turn of the event loop it shares with every
# other store of the process: a catch-up carries ~204 B a sale (docs/how-to/cloud.md, "WAN
# outages"), and the cloud spends ~0.3 ms a record verifying, folding, committing and projecting
# it (docs/reference/benchmarks.md, "Cloud ingest"), so a turn takes ~100 ms and other stores'
# acknowledgements wait at most about that long behind a day's catch-up.
MERGE_BUDGET_BYTES = 64 * 1024
# How soon the cloud acknowledges what a leader sent. A lane waits ``ACK_DELAY_MS`` (200 ms) to
# save state messages under load; the cloud commits every merge at once anyway, and its
# acknowledgement is what the leader's status (``cloud.last_ack_ms``) and the lanes' sealing
# wait for: 20 ms still folds a burst of frames into one acknowledgement.
CLOUD_ACK_DELAY_MS = 20


@dataclass(slots=True)
class Backend:
    sql: Sql  # head-office tables (and, on PostgreSQL, the store documents too)
    shared: bool  # PostgreSQL: other processes may serve the same stores
    description: str
    url: str | None = field(default=None, repr=False)  # PostgreSQL's, with its password

    @classmethod
    def open(cls, directory: CloudDirectory, db_url: str | None) -> Backend:
        if db_url is None:
            sqlite = SqliteSql(directory.headoffice_db)
            try:
                prepare_sqlite_headoffice(sqlite)
            except BaseException:
                sqlite.close()
                raise
            return cls(sqlite, False, f"sqlite:{directory.headoffice_db}")
        postgres = connect(db_url)
        try:
            require_current_postgresql(postgres, redact(db_url))
        except BaseException:
            postgres.close()
            raise
        return cls(postgres, True, redact(db_url), db_url)

    def close(self) -> None:
        self.sql.close()


@dataclass(slots=True)
class StoreRuntime:
    """One store served by this process: its replica, mesh node and group committer."""

    store_id: str
    terminal: Terminal
    node: Node
    mesh: Mesh
    committer: GroupCommitter
    backend: Backend
    headoffice: HeadOffice
    accepted: AcceptedRecords  # what the replica accepts, for the head-office tables
    shared_storage: PostgresStoreStorage | None = None
    relay_scheduled: bool = field(default=False)
    # When this process last merged records a leader sent (wall clock, ms); None until then.
    last_upload_ms: int | None = None
    # Called after every projection that committed (the service schedules a seal check).
    on_projected: Callable[[], None] = field(default=lambda: None)
    # Set by ``_project_in_commit`` (PostgreSQL), taken by ``committed`` once the commit it
    # ran in is durable: whether it merged rows other processes committed (to relay).
    _projected: bool = field(default=False)
    _pulled: bool = field(default=False)

    def merged_upload(self, seconds: float, observe: Callable[[float], None]) -> None:
        """The mesh merged (and committed) a batch of a leader's records in ``seconds``."""
        self.last_upload_ms = wall_clock_ms()
        observe(seconds)

    def committed(self) -> None:
        """After every durable commit of the store's mesh (its ``on_persisted``). On PostgreSQL
        the commit projected the tables itself, in its own transaction (``_project_in_commit``):
        what is left is to relay what it pulled and to tell ``on_projected``. On SQLite, whose
        head-office tables are another database file, or after a commit that wrote nothing
        (so called nothing): ``refresh``, a transaction of its own."""
        if not self._projected:
            self.refresh()
            return
        pulled, self._projected, self._pulled = self._pulled, False, False
        if pulled:
            self._relay_soon()
        self.on_projected()

    def _project_in_commit(self, new: Pulled) -> None:
        """``PostgresStoreStorage.in_commit``: inside the commit's transaction, under the
        store's lock, merge what other processes committed and project the replica, so the
        tables are written from a replica holding everything committed and commit with the log
        rows, in one transaction. A failure rolls back both and stops the store as a storage
        failure does (``Terminal.commit``): any error is a ``StorageError`` here, since memory
        is now ahead of the database, and only a reopen (which loads what the database holds, and
        whose tables the rollback left holding all of it) is safe."""
        try:
            pulled = self._merge_pulled(new)
            self.headoffice.project(self.store_id, self.terminal.replica, self.accepted)
        except BaseException as exc:
            self.headoffice.forget_projection(self.store_id)  # the next one rewrites all rows
            if isinstance(exc, StorageError) or not isinstance(exc, Exception):
                raise
            raise StorageError(
                f"store {self.store_id}: projecting the head-office tables failed: {exc!r}"
            ) from exc
        self._projected, self._pulled = True, self._pulled or pulled

    def refresh(self) -> None:
        """Project the replica into the head-office tables in a transaction of its own (at
        open, when another process committed: cloud.follow, and after each commit on SQLite);
        on a shared database, first merge what other processes committed, under the store's
        lock."""
        pulled = False
        try:
            with self.backend.sql.transaction():
                if self.shared_storage is not None:
                    pulled = self._merge_pulled(self.shared_storage.pull())
                self.headoffice.project(self.store_id, self.terminal.replica, self.accepted)
                if self.shared_storage is not None:
                    self.shared_storage.mark_projected()  # everything committed is in the tables
        except BaseException:
            self.headoffice.forget_projection(self.store_id)  # the next one rewrites all rows
            raise
        if pulled:
            self._relay_soon()
        self.on_projected()

    def seal_due(self) -> list[str]:
        """Seal the store's days that are complete in this replica (``core.sealdays``, the
        cloud acknowledging them itself: ``sealdays.cloud_acknowledges``), store their archives
        and unload them; returns the days sealed. The head-office rows of their records stay
        (a projection reads a sealed day's records from its archive: ``Replica.records``), and
        the connected leaders hear of the seal at once: their lanes seal the day on it."""
        replica = self.terminal.replica

        def acknowledged(day: str) -> bool:
            return sealdays.cloud_acknowledges(replica, day)

        if not self.terminal.sealable(acknowledged):
            return []  # the store's lock is not taken for nothing
        # On a shared database: under the store's lock, with everything the other processes
        # committed merged first (``signing``), so the archives hold every row the seal deletes.
        with self.signing():
            sealed = self.terminal.seal_due(acknowledged)
        if sealed:
            log.info("store.sealed store=%s days=%s", self.store_id, ",".join(sealed))
            self.mesh.days_sealed()
        return sealed

    def may_seal_later(self) -> bool:
        """Does the replica hold a day some lane closed that is not sealed yet (incomplete,
        or waiting for a commit)? Then a later check may seal it."""
        return bool(sealdays.candidates(self.terminal.replica))

    @contextlib.contextmanager
    def signing(self) -> Iterator[None]:
        """Held while the cloud signs records of its own chain and commits them (the store
        committer's fence). On a shared database every process signs as the cloud: this takes
        the store's lock and merges what the others committed, so the replica signs after the
        chain's real head, and the commit releases the lock once durable; two processes never
        sign one seq (a fork, which every lane would see). On SQLite the store directory's lock
        already makes this process the only one that opens the store."""
        if self.shared_storage is None:
            yield
            return
        with self.shared_storage.signing() as new:
            if self._merge_pulled(new):
                self._relay_soon()  # projected by the process that committed it
            yield

    def _merge_pulled(self, new: Pulled) -> bool:
        """Merge rows other processes committed; whether there were any."""
        if not new.updates and not new.sealed:
            return False
        # Already durable in the database: merged in memory, never re-written; the records the
        # committing process verified are not verified again.
        replica = self.terminal.replica
        merged = replica.merge(new.updates, self.terminal.now_ms(), trusted=new.verified)
        replica.persisted([merged])  # durable already: nothing is owed
        self._unload_sealed(new.sealed)
        return True

    def _unload_sealed(self, sealed: list[SealedDay]) -> None:
        """Another process sealed these days: unload those held open here. Each day's archive
        is merged first (the rows the sealing process merged last are deleted); a day that then
        holds more than its archive (a record merged here and not committed yet) stays open:
        its commit opens the day in the database too (``PostgresStoreStorage.commit``)."""
        assert self.shared_storage is not None  # pulled from it
        replica = self.terminal.replica
        held = set(replica.doc_names())
        unloaded = []
        for day in sealed:
            if day.doc not in held:
                continue
            archived = [(day.doc, self.shared_storage.archived_update(day.day))]
            merged = replica.merge(archived, self.terminal.now_ms())
            replica.persisted([merged])
            if sealing.same_vector(replica.state_vector(day.doc), day):
                replica.seal_document(day)
                unloaded.append(day.day)
        if unloaded:
            log.info("store.unloaded store=%s days=%s", self.store_id, ",".join(unloaded))

    def _relay_soon(self) -> None:
        # Called from inside the mesh's flush or the committer's fence: sync with the peers
        # once it has returned.
        if not self.relay_scheduled:
            self.relay_scheduled = True
            asyncio.get_running_loop().call_soon(self._relay)

    def _relay(self) -> None:
        self.relay_scheduled = False
        self.mesh.bundle_imported()

    def is_behind(self, head: tuple[int, int] | None) -> bool:
        return self.shared_storage is not None and (
            head is None or self.shared_storage.is_behind(head)
        )


def open_store(
    served: TerminalDirectory,
    backend: Backend,
    headoffice: HeadOffice,
    on_failure: Callable[[StorageError], None],
    gate: HandshakeGate,
    collaborators: Collaborators = DEFAULT_COLLABORATORS,
    turns: Turns | None = None,
) -> StoreRuntime:
    """The replica of the store ``served`` (from the cloud's registry: cloud/registry.py)
    holds, signing as the cloud, with its mesh node and committer."""
    store_id = served.store.store_id
    shared = PostgresStoreStorage(backend.sql, store_id) if backend.shared else None
    terminal = Terminal.open_directory(
        served,
        lock_wait_s=0,
        open_storage=None if shared is None else (lambda: shared),
        crypto=collaborators.crypto,
        feed=False,  # head office follows the store through its own tables, not a feed
    )

    def failed(exc: StorageError) -> None:
        # A commit that fails after projecting (its COMMIT) rolled the projection back too.
        headoffice.forget_projection(store_id)
        on_failure(exc)

    terminal.on_failure = failed
    accepted = terminal.replica.subscribe_accepted()
    if shared is not None and shared.projected_at_load:
        # The tables hold every record the replica was loaded with (its loaded records are not
        # in ``accepted``): its first projection writes only what comes after.
        headoffice.projected(store_id, accepted)
    node = Node(
        terminal.replica,
        ack_delay_ms=CLOUD_ACK_DELAY_MS,
        merge_budget_bytes=MERGE_BUDGET_BYTES,
    )
    runtime: StoreRuntime | None = None

    def committed() -> None:
        assert runtime is not None
        runtime.committed()

    # Commit every merge at once: the head-office tables are projected with each commit.
    mesh = Mesh(
        node,
        terminal,
        on_persisted=committed,
        commit_delay_s=0,
        gate=gate,
        observer=collaborators.observer(terminal),
        turns=turns,
    )

    def signing() -> contextlib.AbstractContextManager[None]:
        assert runtime is not None
        return runtime.signing()

    committer = GroupCommitter(terminal, publish=mesh.write, fence=signing)
    runtime = StoreRuntime(
        store_id, terminal, node, mesh, committer, backend, headoffice, accepted, shared
    )
    if shared is not None:
        shared.in_commit = runtime._project_in_commit
    return runtime
