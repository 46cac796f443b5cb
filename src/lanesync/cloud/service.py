"""The cloud peer of every store it serves (run by ``lanesync cloud serve``: cloud/serve.py).

One websocket endpoint for all stores: the first frame of a connection (the peer's hello) names
the store, and the connection is handed to that store's node. Each store has its own replica
(signing as the cloud, which may only set prices), storage, and mesh node, so a leader's uplink is
an ordinary peer connection: the cloud answers its state with exactly what it lacks, merges what
it sends, commits durably, and only then acknowledges. Two leaders of a split store may upload at
once; merges are idempotent, and the cloud relays between them like any peer.

A process holds only the stores in use: a store's replica is opened when a hello names it (or a
head-office request needs it: cloud/api.py), and evicted once nobody has used it for ``idle_s``,
or, least recently used first, to make room when ``max_resident`` stores are resident. Which
stores it serves, and each one's identity and certificate, it asks its ``StoreRegistry``
(cloud/registry.py: the directory, and on PostgreSQL the database every process shares).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.registry import open_registry
from lanesync.cloud.residency import DEFAULT_IDLE_S, DEFAULT_MAX_RESIDENT, MAX_IDLE_S
from lanesync.cloud.stores import Backend, StoreRuntime, open_store
from lanesync.cloud.verifier import AheadVerifier
from lanesync.core.link import CloseCode
from lanesync.core.wire import Hello, decode_frame
from lanesync.errors import Busy, LanesyncError, ProtocolViolation, StorageError, UsageError
from lanesync.shell.admission import TOO_MANY_HANDSHAKES, HandshakeGate
from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators
from lanesync.shell.terminal import COMPLETENESS_RECHECK_MS, wall_clock_ms
from lanesync.shell.turns import Turns

log = logging.getLogger("lanesync.cloud")
HELLO_TIMEOUT_S = 10.0
# How often a hello naming a store not known here may list the registry again (CLOUD_DIR/stores
# and, on PostgreSQL, one query; a flood of unknown ids gets one listing a second). The query
# for 5,000 registered stores took 4 ms (median of 20; 26 ms at most) on 2026-12-07, timing
# DatabaseStores.store_ids on the suite's throwaway PostgreSQL, 2-core machine at load 4.
RELIST_STORES_S = 1.0
# How soon after a commit the cloud checks whether a store's days may be sealed: a lane checks
# every second (shell.dayclosing.SEAL_CHECK_EVERY_S), and a second folds a leader's burst of
# uploads into one check.
SEAL_CHECK_AFTER_S = 1.0
# With a closed day still unsealed and nothing new committed: checked again this often, as long
# as a lane's completeness of a day may take to notice a change in another document
# (shell.terminal.COMPLETENESS_RECHECK_MS).
SEAL_RECHECK_S = COMPLETENESS_RECHECK_MS / 1000


class CloudService:
    def __init__(
        self,
        directory: CloudDirectory,
        db_url: str | None = None,
        collaborators: Collaborators = DEFAULT_COLLABORATORS,
        *,
        idle_s: float = DEFAULT_IDLE_S,
        max_resident: int = DEFAULT_MAX_RESIDENT,
    ) -> None:
        if not 0 < idle_s <= MAX_IDLE_S:  # nan included: the option's range lets it through
            raise UsageError(f"--idle-s must be above 0 and at most {MAX_IDLE_S:.0f} seconds")
        if max_resident < 1:
            raise UsageError("--max-resident must be at least 1")
        self.directory = directory
        self.collaborators = collaborators
        self.idle_s = idle_s
        self.max_resident = max_resident
        self.backend = Backend.open(directory, db_url)
        self.headoffice = HeadOffice(self.backend.sql)
        # Where the stores it serves are registered: CLOUD_DIR/stores, and on PostgreSQL the
        # database's table too, which every process reads (cloud/registry.py).
        self.registry = open_registry(directory, self.backend.sql if self.backend.shared else None)
        # The stores this process may serve: the registry as listed at start and again when a
        # hello or a head-office request names a store it does not know (``serves``).
        try:
            self.registered = frozenset(self.registry.store_ids())
        except BaseException:
            self.backend.close()
            raise
        self._listed_at = time.monotonic()
        # The resident stores: only these hold anything per store (but ``HeadOffice.released``).
        self.stores: dict[str, StoreRuntime] = {}
        self._users: dict[str, int] = {}  # connections and head-office requests in progress
        # Monotonic seconds when the store was opened or its last user left: idle since then.
        self._last_used: dict[str, float] = {}
        self._committers: dict[str, asyncio.Task[None]] = {}
        self._seal_checks: dict[str, asyncio.TimerHandle] = {}  # the next check of each store
        # Checks the records of large uploads on a worker thread, ahead of their merge.
        self.verifier = AheadVerifier()
        # The stores' flushes and timers take turns on the loop, the network read between them.
        self.turns = Turns()
        self._on_failure: Callable[[StorageError], None] = lambda exc: None
        # Connections not yet authenticated, for all stores together: the WAN port's budget.
        self.gate = HandshakeGate()
        self.listen = ""
        self.api = ""
        self.started_ms = wall_clock_ms()
        self.uploads_accepted = 0  # connections handed to a store's mesh (cloud/metrics.py)
        self.uplinks_refused = 0  # connections refused at the hello
        # Told each merge's duration (the API's /metrics sets it; nothing by default).
        self.observe_merge: Callable[[float], None] = lambda seconds: None

    def start(self, on_failure: Callable[[StorageError], None]) -> None:
        """Called once the event loop runs: ``on_failure`` is told when a resident store's
        storage fails (the process stops, as a lane does)."""
        self._on_failure = on_failure

    def resident(self, store_id: str, reason: str = "headoffice") -> StoreRuntime:
        """The replica of a registered store, opened now if it is not resident (``reason``, for
        the log: ``hello`` for a leader's connection, ``headoffice`` for the API; synchronously:
        a replica is bound to the thread that opened it, pycrdt documents and SQLite connections
        alike). Raises ``UsageError`` for a store this cloud does not serve, ``Busy`` when
        ``max_resident`` stores are resident and none is idle."""
        runtime = self.stores.get(store_id)
        if runtime is not None:
            return runtime
        if not self.serves(store_id):
            raise UsageError(f"this cloud does not serve store {store_id[:64]!r}")
        if len(self.stores) >= self.max_resident:
            idle = min(
                (s for s in self.stores if not self._users[s]),
                key=self._last_used.__getitem__,
                default=None,
            )
            if idle is None:
                raise Busy(
                    f"{len(self.stores)} stores resident, the most this process holds "
                    "(--max-resident), and none is idle"
                )
            self.evict(idle, "max_resident")
        return self._open(store_id, reason)

    def serves(self, store_id: str) -> bool:
        """Is ``store_id`` served here? A store ``cloud add-store`` added since the registry
        was last listed (by any process, on PostgreSQL) is served from its first connection,
        without a restart; see ``listed`` for how often the registry is read."""
        return store_id in self.registered or store_id in self.listed()

    def listed(self) -> frozenset[str]:
        """The stores served, the registry read again if it was last read ``RELIST_STORES_S``
        ago or more: hellos and requests naming unknown stores cannot make the process read it
        on each."""
        if time.monotonic() - self._listed_at >= RELIST_STORES_S:
            try:
                self.registered = frozenset(self.registry.store_ids())
            except StorageError as exc:
                self._on_failure(exc)  # the database failed: the process stops (74)
                raise
            self._listed_at = time.monotonic()
        return self.registered

    def _open(self, store_id: str, reason: str) -> StoreRuntime:
        started = time.perf_counter()
        try:
            runtime = open_store(
                self.registry.store_directory(store_id),
                self.backend,
                self.headoffice,
                self._on_failure,
                self.gate,
                self.collaborators,
                self.turns,
            )
        except StorageError as exc:
            self._on_failure(exc)  # the disk or the database failed: the process stops (74)
            raise
        try:
            runtime.mesh.on_merged = self._merged_by(runtime)
            runtime.on_projected = lambda: self._seal_soon(store_id, SEAL_CHECK_AFTER_S)
            runtime.refresh()
        except BaseException as exc:
            runtime.terminal.close()
            self.headoffice.forget_projection(store_id)
            if isinstance(exc, StorageError):
                self._on_failure(exc)
            raise
        self.stores[store_id] = runtime
        self._users[store_id] = 0
        self._last_used[store_id] = time.monotonic()
        self._committers[store_id] = asyncio.get_running_loop().create_task(
            runtime.committer.run(), name=f"committer-{store_id}"
        )
        log.info(
            "store.opened store=%s reason=%s records=%d seconds=%.3f resident=%d db=%s",
            store_id,
            reason,
            runtime.terminal.replica.views.accepted_count(),
            time.perf_counter() - started,
            len(self.stores),
            self.backend.description,
        )
        return runtime

    def evict(self, store_id: str, reason: str) -> None:
        """Close a resident store nobody uses and forget everything held for it."""
        if self._users[store_id]:
            raise UsageError(f"store {store_id!r} is in use: it cannot be evicted now")
        runtime = self.stores.pop(store_id)
        del self._users[store_id], self._last_used[store_id]
        self._committers.pop(store_id).cancel()
        check = self._seal_checks.pop(store_id, None)
        if check is not None:
            check.cancel()
        runtime.mesh.close_all()  # commits what a last flush merged; no link is left
        runtime.terminal.close()
        if self.backend.shared:
            # Other processes commit to it meanwhile: the database says at the next opening
            # whether its rows hold everything committed (``HeadOffice.projected``).
            self.headoffice.forget_projection(store_id)
        else:
            self.headoffice.released(store_id)  # nobody else writes it (the directory lock)
        log.info("store.evicted store=%s reason=%s resident=%d", store_id, reason, len(self.stores))

    @contextlib.contextmanager
    def using(self, store_id: str, reason: str = "headoffice") -> Iterator[StoreRuntime]:
        """A store kept resident for as long as the block runs (a connection, an API call)."""
        runtime = self.resident(store_id, reason)
        self._users[store_id] += 1
        try:
            yield runtime
        finally:
            if self.stores.get(store_id) is runtime:
                self._users[store_id] -= 1
                self._last_used[store_id] = time.monotonic()

    def in_use(self, store_id: str) -> bool:
        """Whether a resident store has a connection or a head-office request in progress."""
        return bool(self._users.get(store_id))

    def evict_idle(self, now: float) -> float:
        """Evict the stores idle for ``idle_s`` at ``now`` (monotonic seconds); returns when
        the next one may be due."""
        due = now + self.idle_s
        for store_id in list(self.stores):
            if self._users[store_id]:
                continue
            expires = self._last_used[store_id] + self.idle_s
            if expires <= now:
                self.evict(store_id, "idle")
            else:
                due = min(due, expires)
        return due

    async def evict_idle_forever(self) -> None:
        while True:
            due = self.evict_idle(time.monotonic())
            await asyncio.sleep(max(0.0, due - time.monotonic()))

    def _seal_soon(self, store_id: str, after_s: float) -> None:
        """Check ``after_s`` from now whether the store's days may be sealed (unless a check
        is due sooner). Called after every projection: a day becomes sealable only when
        something is committed, so an idle store costs no check."""
        loop = asyncio.get_running_loop()
        due = loop.time() + after_s
        pending = self._seal_checks.get(store_id)
        if pending is not None:
            if pending.when() <= due:
                return
            pending.cancel()
        self._seal_checks[store_id] = loop.call_at(due, self._seal_check, store_id)

    def _seal_check(self, store_id: str) -> None:
        self._seal_checks.pop(store_id, None)
        runtime = self.stores.get(store_id)
        if runtime is None:
            return  # evicted meanwhile: its days are checked when it is opened again
        try:
            runtime.seal_due()
        except StorageError as exc:
            self._on_failure(exc)  # the disk or the database failed: the process stops (74)
            return
        except LanesyncError as exc:  # a day that cannot be sealed now: checked again later
            log.error("store.seal store=%s failed: %s", store_id, exc)
        if runtime.may_seal_later():
            self._seal_soon(store_id, SEAL_RECHECK_S)

    def _merged_by(self, runtime: StoreRuntime) -> Callable[[float], None]:
        def merged(seconds: float) -> None:
            runtime.merged_upload(seconds, self.observe_merge)
            self.verifier.start(runtime.node)  # a large upload's first slice was merged

        return merged

    def close(self) -> None:
        self.verifier.close()
        for task in self._committers.values():
            task.cancel()
        for check in self._seal_checks.values():
            check.cancel()
        for runtime in self.stores.values():
            runtime.terminal.close()
        self.backend.close()

    async def route(self, ws: Connection) -> None:
        """Read the peer's hello, then hand the connection to its store's mesh."""

        def refuse() -> None:
            asyncio.get_running_loop().create_task(
                ws.close(CloseCode.POLICY_VIOLATION, TOO_MANY_HANDSHAKES)
            )

        if not self.gate.admit(ws, refuse):  # the store's mesh takes it over, or it ends below
            await ws.close(CloseCode.POLICY_VIOLATION, TOO_MANY_HANDSHAKES)
            return
        try:
            await self._route(ws)
        finally:
            self.gate.done(ws)

    async def _route(self, ws: Connection) -> None:
        try:
            first = await asyncio.wait_for(ws.recv(), HELLO_TIMEOUT_S)
        except (TimeoutError, ConnectionClosed):
            return
        reason = None
        hello = None
        if not isinstance(first, bytes):
            reason = "text frames are not part of the protocol"
        else:
            try:
                hello = decode_frame(first)
            except ProtocolViolation as exc:
                hello, reason = None, str(exc)
            if hello is not None and not isinstance(hello, Hello):
                reason = "expected a hello frame"
        if isinstance(hello, Hello) and isinstance(first, bytes):
            try:
                self.resident(hello.store_id, "hello")
            except (UsageError, Busy) as exc:  # not served here, or no room for it now
                reason = str(exc)
            except LanesyncError as exc:  # its replica did not open: the other stores go on
                reason = f"store {hello.store_id[:64]!r} is unavailable: {exc}"
                log.error("store.unavailable store=%s reason=%s", hello.store_id[:64], exc)
            else:
                with self.using(hello.store_id, "hello") as store:  # resident already: cannot fail
                    self.uploads_accepted += 1
                    await store.mesh.serve_connection(ws, first_frame=first)
                return
        self.uplinks_refused += 1
        log.warning("uplink.refused reason=%s: a lane's uplink was refused", reason)
        with contextlib.suppress(ConnectionClosed):
            await ws.close(CloseCode.POLICY_VIOLATION, (reason or "refused")[:120])
