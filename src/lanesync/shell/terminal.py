"""A terminal directory opened for work: the replica, its storage and its lock.

Every write follows one path: build the body from the current views (pure), append it to the
replica (pure, signs it), commit the resulting CRDT updates to SQLite (durable), and only then
return the record, which is the acknowledgement. Many writes can share one commit
(``stage`` several, then ``commit``): that is group commit, used by the daemon under load.

Peers' updates need not be durable here before they are used: each is durable at the terminal
that wrote it, which sends it only once committed. The daemon therefore ``defer``s them and
commits them with the next commit of any kind, so the log always holds changes in the order they
were made in memory, and one fsync covers many received frames.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from lanesync.core import reports, sealcheck, sealdays, zreport
from lanesync.core.bundle import encode_bundle, encode_state, parse_bundle, parse_state
from lanesync.core.change import Change
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.eventpack import Pack
from lanesync.core.feed import Origin
from lanesync.core.forks import ForkResolution
from lanesync.core.identity import Certificate, Revocation, Role
from lanesync.core.ids import CONFIG_DOC, Sku, StoreId, TerminalId, ledger_doc
from lanesync.core.journal import SalesJournal
from lanesync.core.records import Body, Record
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.errors import StorageError, UsageError
from lanesync.shell.directories import TerminalDirectory, new_client_id
from lanesync.shell.feedlog import FeedLog
from lanesync.shell.lock import DirectoryLock
from lanesync.shell.storage import (
    REQUEST_KEEP_MS,
    KeyedRequest,
    ReplicaStorage,
    SealingStorage,
    Storage,
    read_sealed_report,
)

log = logging.getLogger("lanesync.terminal")

BodyBuilder = Callable[[Views], Body]
# A CLI command waits this long for a busy directory (another command finishing its commit)
# before reporting it busy; a running daemon holds it for good.
DEFAULT_LOCK_WAIT_S = 10.0
# How stale a closed day's "complete" may be when neither its document nor the config document
# changed (``Terminal._complete``): sealing waits at most this much longer for a completeness
# that arrived through another document (a gap of a chain filled in an earlier day).
COMPLETENESS_RECHECK_MS = 30_000


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class ImportResult:
    documents: int
    records_before: int
    records_after: int
    digest: str


class StorageCall(StrEnum):
    """The storage calls a ``StorageObserver`` is told the duration of."""

    COMMIT = "commit"  # one transaction with its fsync
    COMPACT = "compact"  # one document's log folded into a snapshot


class StorageObserver(Protocol):
    """Watches a terminal's storage from outside (the benchmark). Observation only: it must
    never change state. Not told of failed calls: a failure stops the terminal."""

    def stored(self, call: StorageCall, seconds: float) -> None:
        """``call`` succeeded after ``seconds`` of wall time in SQLite, on the caller's thread
        (the event loop serves nothing else meanwhile). After a commit, what it held is
        durable."""
        return


@dataclass(frozen=True, slots=True)
class _Completeness:
    """``sealdays.is_complete`` of a day, as folded at ``at_ms`` from content ``digest`` (and
    the day's and config document's state vectors, ``own``)."""

    digest: str
    own: bytes
    at_ms: int
    complete: bool


class Terminal:
    def __init__(
        self,
        directory: TerminalDirectory,
        lock: DirectoryLock,
        storage: ReplicaStorage,
        replica: Replica,
        clock: Callable[[], int],
        *,
        feed: bool = True,
    ) -> None:
        self.directory = directory
        self.replica = replica
        self.storage = storage
        self._lock = lock
        self._clock = clock
        self._failed: StorageError | None = None
        self._deferred: list[Change] = []  # merged from peers, not committed yet
        # Told once, on the first storage failure: the daemon stops on it (a supervisor
        # restarts it, and the reopen replays what is durable).
        self.on_failure: Callable[[StorageError], None] | None = None
        # Told once, when a change (a bundle, a peer's update, a published revocation) brings
        # this terminal's own revocation: the daemon logs it. A terminal opened revoked
        # already is not told: its owner asks ``revoked`` at start.
        self.on_revoked: Callable[[], None] | None = None
        self._revoked = replica.revoked()
        # Set by whoever watches it (the Mesh's observer, in the benchmark); None costs nothing.
        self.observer: StorageObserver | None = None
        self._journal: SalesJournal | None = None
        self._completeness: dict[str, _Completeness] = {}  # by day
        self._journal_slices: Iterator[None] = iter(())
        # A lane's change feed (shell.feedlog), kept by every writer of its database (the
        # daemon, offline CLI commands); the cloud's replicas have none.
        self._feed_storage = storage if feed and isinstance(storage, Storage) else None
        self.feed: FeedLog | None = None
        if self._feed_storage is not None:
            self.feed = FeedLog(replica, self._feed_storage, directory.terminal_id, clock())

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
        clock: Callable[[], int] = wall_clock_ms,
        crypto: Crypto = SODIUM,
    ) -> Terminal:
        return cls.open_directory(
            TerminalDirectory.open(path), lock_wait_s=lock_wait_s, clock=clock, crypto=crypto
        )

    @classmethod
    def open_directory(
        cls,
        directory: TerminalDirectory,
        *,
        lock_wait_s: float = DEFAULT_LOCK_WAIT_S,
        clock: Callable[[], int] = wall_clock_ms,
        open_storage: Callable[[], ReplicaStorage] | None = None,
        crypto: Crypto = SODIUM,
        feed: bool = True,
    ) -> Terminal:
        """Open a replica whose identity is already loaded (the cloud's per-store replicas,
        which may keep their documents elsewhere than the directory's SQLite file).
        ``crypto``: the replica's (core.crypto; only the benchmark passes another). ``feed``:
        keep the change feed's log (a lane; not the cloud)."""
        lock = DirectoryLock(directory.lock_file)
        lock.acquire(lock_wait_s)
        try:
            storage: ReplicaStorage = (
                Storage(directory.database) if open_storage is None else open_storage()
            )
            try:
                loaded = storage.load()
                replica = Replica(directory.store, new_client_id(), directory.me, crypto=crypto)
                if isinstance(storage, SealingStorage):
                    replica.attach_archives(storage.read_archive)  # seal_due wraps it
                change = replica.restore(
                    loaded.stored,
                    loaded.verified,
                    clock(),
                    checkpoint=loaded.checkpoint,
                    tail=loaded.tail,
                    sealed=loaded.sealed,
                    amended=loaded.amended,
                )
                del loaded  # every byte read is in the documents now
                level = logging.WARNING if replica.checkpoint_refused else logging.INFO
                log.log(level, "%s: %s", directory.database, replica.restored_from)
                storage.commit([change])
                replica.persisted([change])
                storage.forget_requests(clock() - REQUEST_KEEP_MS)
            except BaseException:
                storage.close()
                raise
        except BaseException:
            lock.release()
            raise
        terminal = cls(directory, lock, storage, replica, clock, feed=feed)
        try:
            if terminal.feed is not None:
                terminal.feed.backfill()
            terminal.compact_if_due()
        except BaseException:
            terminal.close()  # the lock and the database, or a restart finds them held
            raise
        return terminal

    def close(self) -> None:
        try:
            if self._deferred and self._failed is None:
                self.commit([])
        except StorageError as exc:
            # Peers still hold what was deferred and send it again after the restart.
            log.error("%s: closing without the peers' last updates: %s", self.terminal_id, exc)
        finally:
            self.storage.close()
            self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- identity ---------------------------------------------------------------------------------

    @property
    def terminal_id(self) -> TerminalId:
        return self.directory.terminal_id

    @property
    def store_id(self) -> StoreId:
        return self.directory.store.store_id

    @property
    def role(self) -> Role:
        return self.directory.me.certificate.role

    def now_ms(self) -> int:
        return self._clock()

    @property
    def revoked(self) -> bool:
        """The store revoked this terminal (``Replica.revoked``): every write fails."""
        return self.replica.revoked()

    def _notice_revocation(self) -> None:
        if not self._revoked and self.replica.revoked():
            self._revoked = True
            if self.on_revoked is not None:
                self.on_revoked()

    # -- writing ----------------------------------------------------------------------------------

    @property
    def failure(self) -> StorageError | None:
        """The storage failure that stopped this terminal, if any."""
        return self._failed

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageError(f"terminal stopped after a storage failure: {self._failed}")

    def _storage_failed(self, exc: StorageError) -> None:
        if self._failed is None:
            self._failed = exc
            if self.on_failure is not None:
                self.on_failure(exc)

    def stage(self, build: BodyBuilder) -> tuple[Record, Change]:
        """Build, sign and apply one record in memory. NOT durable until ``commit``."""
        self._check_usable()
        self.replica.check_writable()  # before the body: a revoked lane says so, not "no SKU"
        body = build(self.replica.views)
        self.accepted(None, ready=False)  # merged elsewhere, not handed over yet
        try:
            staged = self.replica.append(body, self._clock())
        except ValueError as exc:  # the body breaks a record rule (raised before any change)
            raise UsageError(str(exc)) from exc
        self.accepted(Origin.LOCAL, ready=True)  # committed before anything else runs
        return staged

    def accepted(self, origin: Origin | None, *, ready: bool) -> None:
        """Tell the change feed what the views just accepted came from (None: local if signed
        here, else a peer); ``ready``: the next commit holds it (``shell.feedlog``)."""
        if self.feed is not None:
            self.feed.take(origin, ready=ready)

    def commit(self, changes: Sequence[Change], requests: Sequence[KeyedRequest] = ()) -> None:
        """Make staged changes durable in one transaction, after every deferred change (so the
        log keeps the order of memory), with the idempotency keys of the writes they hold. A
        failure stops the terminal: memory is then ahead of disk and only a reopen (which
        replays disk) is safe."""
        self._check_usable()
        batch = [*self._deferred, *changes]
        started = time.perf_counter() if self.observer is not None else 0.0
        events = []
        if self.feed is not None:
            # Whatever is left was merged by a path that commits right after (a bundle, a
            # publication, the reopen): this commit holds it.
            self.feed.take(None, ready=True)
            held = self.replica.unpersisted_updates == sum(len(c.updates) for c in batch)
            events = self.feed.rows_for_commit(held, self._clock())
        try:
            if events and self._feed_storage is not None:
                self._feed_storage.commit(batch, requests, events)
            else:
                self.storage.commit(batch, requests)
        except StorageError as exc:
            self._storage_failed(exc)
            raise
        if self.observer is not None:
            self.observer.stored(StorageCall.COMMIT, time.perf_counter() - started)
        self._deferred.clear()
        self.replica.persisted(batch)
        if self.feed is not None:
            self.feed.committed(events)
        self._notice_revocation()

    def find_request(self, key: str) -> KeyedRequest | None:
        """The write made with idempotency key ``key`` in the last ``REQUEST_KEEP_MS``."""
        return self.storage.find_request(key)

    def defer(self, changes: Sequence[Change]) -> None:
        """Hold changes merged from peers for the next ``commit``. Only for data durable at its
        origin already: a crash loses them here, and peers send them again."""
        self._deferred.extend(change for change in changes if change)
        if self.feed is not None:
            self.feed.take(None, ready=True)
            self.feed.mark_ready()  # every merge so far is in a change handed over by now
        self._notice_revocation()

    @property
    def deferred(self) -> int:
        """Changes merged from peers and not committed yet."""
        return len(self._deferred)

    def write(self, build: BodyBuilder) -> Record:
        """Stage and commit one record; returns it once durable (the acknowledgement)."""
        record, change = self.stage(build)
        self.commit([change])
        self.compact_if_due()
        return record

    def stage_close(self, until: str | None) -> tuple[list[Record], Change]:
        """Sign the day-ends of this terminal's open days up to ``until`` (default: today,
        store time) in memory (``Replica.close_days``). NOT durable until ``commit``."""
        self._check_usable()
        return self.replica.close_days(until, self._clock())

    def close_days(self, until: str | None) -> list[Record]:
        """Sign and commit the day-ends of this terminal's open days up to ``until``; returns
        them once durable (none when every day up to ``until`` was closed already)."""
        records, change = self.stage_close(until)
        if change:
            self.commit([change])
            self.compact_if_due()
        return records

    def seal_due(self, acknowledged: Callable[[str], bool]) -> list[str]:
        """Seal every day that is complete and ``acknowledged`` (``core.sealdays``), all in one
        transaction; returns the days sealed. Nothing while changes merged from peers
        wait to be committed: a sealed day's archive must hold only what is durable."""
        self._check_usable()
        if (
            self._deferred
            or self.replica.unpersisted_updates
            or not isinstance(self.storage, SealingStorage)
        ):
            return []
        days = self.sealable(acknowledged)
        if not days:
            return []
        storage = self.storage
        sealings: dict[str, bytes] = {}  # archives sealed in memory, not stored yet
        self.replica.attach_archives(lambda day: sealings.get(day) or storage.read_archive(day))
        try:
            done = []
            packs: dict[str, Pack] = {}
            for day in days:
                done.append(sealdays.seal_day(self.replica, day))
                sealings[day] = done[-1].archive
                pack = None if self.feed is None else self.feed.pack_day(day)
                if pack is not None:
                    packs[done[-1].sealed.doc] = pack
            storage.seal(done, self.replica, self.now_ms(), packs)
        except StorageError as exc:
            self._storage_failed(exc)
            raise
        finally:
            self.replica.attach_archives(storage.read_archive)
        for day in days:
            self._completeness.pop(day, None)  # sealed: no longer asked (one entry a day)
        return days

    def sealable(self, acknowledged: Callable[[str], bool]) -> list[str]:
        """The days ``seal_due`` would seal now, as far as the replica's content tells
        (``sealdays.sealable``), its completeness folded again only once the content changed."""
        return sealdays.sealable(self.replica, acknowledged, self._complete)

    def _complete(self, day: str) -> bool:
        """``sealdays.is_complete``, folded again once the content changed: at once when the
        day's own document or the config document did, else at most every
        ``COMPLETENESS_RECHECK_MS``. Whether a day is complete rests almost always on those
        two (its day-ends, revocations, certificates); the rest of the replica changes with
        every sale of the next day, and during a WAN outage the closed day waits unsealed:
        folding it again on each check (every second) cost ~0.2 s a fold of 2,500 sales."""
        digest = self.replica.digest()
        own = b"".join(
            self.replica.state_vector(name) if name in self.replica.doc_names() else b"-"
            for name in (ledger_doc(day), CONFIG_DOC)
        )
        now = self.now_ms()
        known = self._completeness.get(day)
        if known is None or (
            known.digest != digest
            and (known.own != own or now - known.at_ms >= COMPLETENESS_RECHECK_MS)
        ):
            complete = sealdays.is_complete(self.replica, day)
            known = self._completeness[day] = _Completeness(digest, own, now, complete)
        return known.complete

    def sealed_report(self, day: str) -> dict[str, Any] | None:
        """The Z-report stored when ``day`` was sealed (no fold), if it is sealed here."""
        if not isinstance(self.storage, Storage) or day not in self.replica.sealed_days():
            return None
        stored = self.storage.sealed_report(day)
        return None if stored is None else dict(json.loads(stored))

    def z_report(self, day: str) -> dict[str, Any]:
        """The store's Z-report of ``day``: the one stored when it was sealed, else folded from
        the records held (``core.zreport``)."""
        return self.sealed_report(day) or zreport.z_report(self.replica, day)

    def verify_day(self, day: str) -> dict[str, Any]:
        """``core.sealcheck.verify_day`` of ``day``, a sealed day checked from its stored row."""
        stored = None
        if isinstance(self.storage, Storage) and day in self.replica.sealed_days():
            stored = self.storage.stored_seal(day)
        return sealcheck.verify_day(self.replica, day, stored)

    def export_day(self, day: str, since: bytes | None = None) -> bytes:
        """A signed bundle of ``day``'s ledger document (from its archive when sealed), or of
        what the replica whose state file ``since`` holds lacks of it. ``NotFound`` when this
        replica holds no ledger of the day."""
        zreport.check_day(day)
        name = ledger_doc(day)
        if name not in self.replica.all_doc_names():
            raise sealcheck.not_held(day)
        if since is None:
            updates = {name: self.replica.full_state(name)}
        else:
            vectors = parse_state(since, self.directory.store).state_vectors
            updates = {n: u for n, u in self.replica.updates_since(vectors).items() if n == name}
        return encode_bundle(self.directory.me, self.store_id, updates, self._clock())

    def compact_if_due(self) -> None:
        """Compact what is due and keep the checkpoint of the views close to the log's end
        (each compaction writes one too). A checkpoint is written only while the replica holds
        nothing uncommitted (in a daemon, peers' updates wait a little for their commit).

        A failure rolls back and leaves memory and disk as they were, but a disk that cannot
        take a compaction cannot take the next sale either: it stops the terminal like a
        failed commit."""
        self._check_usable()
        if self.replica.unpersisted_updates:
            # Peers' updates merged but not committed yet (``defer``, or a merge whose change
            # the caller has not committed): a snapshot or checkpoint now would describe more
            # than the log holds, and compacting would have to drop the stored checkpoint. Both
            # wait for the next call.
            return
        try:
            for doc in self.storage.documents_to_compact():
                started = time.perf_counter() if self.observer is not None else 0.0
                self.storage.compact(self.replica, doc)
                if self.observer is not None:
                    self.observer.stored(StorageCall.COMPACT, time.perf_counter() - started)
            if self.storage.checkpoint_due():
                self.storage.write_checkpoint(self.replica)
        except StorageError as exc:
            self._storage_failed(exc)
            raise

    # -- exchanging state -------------------------------------------------------------------------

    def export_bundle(self, since: bytes | None = None) -> bytes:
        """A signed bundle of everything held, or of what the replica whose state file
        ``since`` holds lacks."""
        store = self.directory.store
        vectors = {} if since is None else parse_state(since, store).state_vectors
        updates = self.replica.updates_since(vectors)
        return encode_bundle(self.directory.me, store.store_id, updates, self._clock())

    def import_bundle(self, data: bytes) -> ImportResult:
        """Merge a bundle, all or nothing; BundleRejected / RemoteError leave state unchanged."""
        self._check_usable()
        bundle = parse_bundle(data, self.directory.store)
        before = self.replica.views.accepted_count()
        change = self.replica.merge(bundle.updates, self._clock())
        self.accepted(Origin.BUNDLE, ready=True)
        self.commit([change])
        self.compact_if_due()
        return ImportResult(
            len(bundle.updates), before, self.replica.views.accepted_count(), self.replica.digest()
        )

    def publish_revocation(self, revocation: Revocation) -> None:
        """Store a store-signed revocation; it spreads to every replica like any data."""
        self._check_usable()
        change = self.replica.publish_revocation(revocation, self._clock())
        if self.feed is not None:
            self.feed.merged_from = Origin.LOCAL  # its event's origin: published here
        self.commit([change])

    def succession(self) -> dict[str, Any] | None:
        """The chain this terminal continues (a re-key) or replaced (``enroll --replaces``),
        from its own certificate: receipt numbers stay traceable across a replacement."""
        cert = self.directory.me.certificate
        if cert.succeeds is None:
            return None
        return {
            "kind": "rekey" if cert.is_rekey else "replacement",
            "predecessor": cert.succeeds.terminal,
            "after_seq": cert.succeeds.seq,
        }

    def publish_fork_resolution(self, resolution: ForkResolution) -> None:
        """Store a store-signed fork resolution; it spreads to every replica like any data."""
        self._check_usable()
        self.commit([self.replica.publish_fork_resolution(resolution, self._clock())])

    def publish_certificate(self, cert: Certificate) -> None:
        """Store a certificate of the store (a replacement, a re-key, a renewal): it spreads to
        every replica like any data, so a chain it closes is closed everywhere at once."""
        self._check_usable()
        self.commit([self.replica.publish_certificate(cert, self._clock())])

    def state_file(self) -> bytes:
        vectors = self.replica.state_vectors(every_sealed=True)  # no echo comes back from a file
        return encode_state(self.store_id, self.terminal_id, vectors)

    # -- reading ----------------------------------------------------------------------------------

    def stock(self, item: Sku | None = None) -> dict[str, Any]:
        return reports.stock(self.replica, item)

    @property
    def journal(self) -> SalesJournal:
        """The sales in timestamp order, for listings; made on first use (it reads every
        sale held once: up to 2 s for 100k sales, the figures are in ``core.journal``), or
        finished here if ``journal_scan`` began it."""
        journal = self._started_journal()
        for _ in self._journal_slices:
            pass
        return journal

    def journal_scan(self) -> Iterator[None]:
        """The reading of the sales held, a slice at a time, for the daemon's API: it drives
        this between other work, so the first listing of a large lane does not stall the
        loop. Exhausted (and cheap) once the journal is read."""
        self._started_journal()
        return self._journal_slices

    def _started_journal(self) -> SalesJournal:
        if self._journal is None:
            self._journal = SalesJournal(self.replica, scan=False)
            self._journal_slices = self._journal.scan()
        return self._journal

    def integrity(self) -> dict[str, Any]:
        """``reports.integrity``, plus ``sealed_reports``: each sealed day whose stored Z-report
        is not the one it was sealed with (its hash or its content; what ``report --day``
        prints from). ``verify --day`` checks a sealed day's archive in full."""
        report = reports.integrity(self.replica)
        damaged = []
        if isinstance(self.storage, Storage):
            for day, sealed in sorted(self.replica.sealed_days().items()):
                stored = self.storage.sealed_report(day)
                if stored is None or not sealcheck.stored_report_matches(
                    stored, sealed.report_hash
                ):
                    damaged.append({"day": day, "report_hash": sealed.report_hash})
        report["sealed_reports"] = damaged
        report["ok"] = report["ok"] and not damaged
        return report

    def digest(self) -> str:
        return self.replica.digest()


def stored_sealed_report(
    path: Path, day: str, *, lock_wait_s: float = DEFAULT_LOCK_WAIT_S
) -> dict[str, Any] | None:
    """The Z-report stored when ``day`` was sealed in terminal directory ``path``, read under
    the directory's lock without opening the replica (issue #17: ``report --day`` of a sealed
    day in under 100 ms; opening a replica folds its checkpoint and open days). None when the
    day is not sealed there: the caller opens the terminal and folds it."""
    directory = TerminalDirectory.open(path)
    lock = DirectoryLock(directory.lock_file)
    lock.acquire(lock_wait_s)
    try:
        stored = read_sealed_report(directory.database, day)
    finally:
        lock.release()
    if stored is None:
        return None
    try:
        report = json.loads(stored)
    except ValueError:
        return None  # a damaged row: opening the terminal reports the database
    if not isinstance(report, dict) or report.get("store_id") != directory.store.store_id:
        return None
    return report if report.get("day") == day else None
