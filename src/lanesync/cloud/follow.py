"""How a cloud process on a shared PostgreSQL database hears of the other processes' commits.

Every commit of a store's documents, and every compaction (after which the others reload the
snapshot), sends a notification on ``COMMIT_CHANNEL`` carrying the store's id, inside its own
transaction (``cloud.pgstorage``): PostgreSQL delivers it when that transaction commits, and
only then. Each process listens on a connection of its own and refreshes the store named, if
it holds that store and is behind it (``StoreRuntime.refresh``: merge, relay to its leaders,
project, in a transaction of its own; its own commits project in theirs). A process is woken
only by commits, never by a timer per store.

Notifications are not a log: one sent while the listening connection was down is lost. So a
process also compares every store it holds with the database every ``FALLBACK_POLL_S`` (one
query for all), and while it cannot listen (the connection failed), it does so every
``FOLLOW_INTERVAL_S``, as every process did before it listened, until listening works again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from lanesync.cloud.pgstorage import COMMIT_CHANNEL, store_head, store_heads
from lanesync.errors import StorageError

if TYPE_CHECKING:
    import psycopg

    from lanesync.cloud.stores import Backend, StoreRuntime

log = logging.getLogger("lanesync.cloud")

# While a process cannot listen: how often it compares its stores with the database. It bounds
# how late a leader on this process hears of another process's commit (a split store's two
# leaders uploading to two processes); head-office tables never wait for it (cloud.stores).
FOLLOW_INTERVAL_S = 0.25
# While it listens: the safety net for a notification lost with a broken connection.
FALLBACK_POLL_S = 10.0
# After the listening connection failed: how long before trying to listen again.
RELISTEN_AFTER_S = 5.0


async def follow_database(
    backend: Backend,
    stores: Mapping[str, StoreRuntime],
    on_failure: Callable[[StorageError], None],
    listening: asyncio.Event | None = None,
) -> None:
    """On a shared database: merge and relay what other processes commit, as they commit it.
    ``listening`` is set once notifications are heard and what was committed before is merged
    (a test waits for it)."""
    if not backend.shared or backend.url is None:
        return
    follower = _Follower(backend, stores, listening)
    try:
        await follower.run()
    except StorageError as exc:
        on_failure(exc)
    finally:
        await follower.stop_listening()


class _Follower:
    def __init__(
        self,
        backend: Backend,
        stores: Mapping[str, StoreRuntime],
        listening: asyncio.Event | None,
    ) -> None:
        self._backend = backend
        self._stores = stores
        self._listening = listening
        self._connection: psycopg.AsyncConnection[object] | None = None
        self._listen_after = 0.0  # monotonic time of the next try to listen

    async def run(self) -> None:
        polled = -FALLBACK_POLL_S  # compare at once: commits made before we listened
        while True:
            await self._listen_if_due()
            if time.monotonic() - polled >= (
                FALLBACK_POLL_S if self._connection is not None else FOLLOW_INTERVAL_S
            ):
                await self._compare_every_store()
                polled = time.monotonic()
            if self._connection is not None and self._listening is not None:
                self._listening.set()  # listening, and caught up with what came before
            if self._connection is None:
                await asyncio.sleep(FOLLOW_INTERVAL_S)
                continue
            named = await self._next_notification(polled + FALLBACK_POLL_S - time.monotonic())
            if named is not None and named in self._stores:
                self._refresh_if_behind(named, store_head(self._backend.sql, named))

    async def _listen_if_due(self) -> None:
        if self._connection is not None or time.monotonic() < self._listen_after:
            return
        import psycopg  # the PostgreSQL extra: a shared backend was opened with it

        assert self._backend.url is not None
        try:
            connection = await psycopg.AsyncConnection.connect(self._backend.url, autocommit=True)
            await connection.execute(f"LISTEN {COMMIT_CHANNEL}")
        except psycopg.Error as exc:
            self._listen_after = time.monotonic() + RELISTEN_AFTER_S
            log.warning(
                "cloud.follow: cannot listen for commits (%s): comparing every store every "
                "%.2f s until it can",
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__,
                FOLLOW_INTERVAL_S,
            )
            return
        self._connection = connection
        log.info("cloud.follow: listening for other processes' commits")

    async def _next_notification(self, wait_s: float) -> str | None:
        """The store named by the next notification, or None after ``wait_s`` without one (or
        when the connection failed: then the next round compares every store)."""
        import psycopg

        assert self._connection is not None
        try:
            async for notify in self._connection.notifies(timeout=max(wait_s, 0), stop_after=1):
                return notify.payload
        except psycopg.Error as exc:
            log.warning("cloud.follow: the listening connection failed (%s)", exc)
            await self.stop_listening()
            self._listen_after = time.monotonic() + RELISTEN_AFTER_S
        return None

    async def _compare_every_store(self) -> None:
        heads = store_heads(self._backend.sql)
        for store_id in list(self._stores):  # stores may be opened or dropped meanwhile
            self._refresh_if_behind(store_id, heads.get(store_id))
            await asyncio.sleep(0)  # one store at a time: uplinks and the API go on

    def _refresh_if_behind(self, store_id: str, head: tuple[int, int] | None) -> None:
        runtime = self._stores.get(store_id)
        if runtime is not None and runtime.is_behind(head):
            runtime.refresh()

    async def stop_listening(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.close()
