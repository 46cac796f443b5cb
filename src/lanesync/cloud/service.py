"""``lanesync cloud serve``: the cloud peer of every store it serves.

One websocket endpoint for all stores: the first frame of a connection (the peer's hello) names
the store, and the connection is handed to that store's node. Each store has its own replica
(signing as the cloud, which may only set prices), storage, and mesh node, so a leader's uplink is
an ordinary peer connection: the cloud answers its state with exactly what it lacks, merges what
it sends, commits durably, and only then acknowledges. Two leaders of a split store may upload at
once; merges are idempotent, and the cloud relays between them like any peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.stores import Backend, StoreRuntime, follow_database, open_store
from lanesync.core.wire import Hello, ProtocolViolation, decode_frame
from lanesync.errors import StorageError
from lanesync.shell.admission import TOO_MANY_HANDSHAKES, HandshakeGate
from lanesync.shell.directories import LOCK
from lanesync.shell.lock import DirectoryLock
from lanesync.shell.mesh import (
    CLOSE_POLICY_VIOLATION,
    SHUTDOWN_REASON,
    wall_ms,
    websocket_options,
)
from lanesync.shell.runtime import load_or_create_token, remove_runtime, write_runtime
from lanesync.shell.server import (
    ApiServer,
    Shutdown,
    bind_socket,
    configure_logging,
    socket_url,
    stop_api,
)

log = logging.getLogger("lanesync.cloud")
HELLO_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class CloudConfig:
    directory: Path
    listen: tuple[str, int] = ("127.0.0.1", 0)
    api: tuple[str, int] = ("127.0.0.1", 0)
    db_url: str | None = None  # None: SQLite in the directory; else a shared PostgreSQL


class CloudService:
    def __init__(self, directory: CloudDirectory, db_url: str | None = None) -> None:
        self.directory = directory
        self.backend = Backend.open(directory, db_url)
        self.headoffice = HeadOffice(self.backend.sql)
        self.stores: dict[str, StoreRuntime] = {}
        # Connections not yet authenticated, for all stores together: the WAN port's budget.
        self.gate = HandshakeGate()
        self.listen = ""
        self.api = ""
        self.started_ms = wall_ms()

    def open_stores(self, on_failure: Callable[[StorageError], None]) -> None:
        for store_id in self.directory.store_ids():
            runtime = open_store(
                self.directory, self.backend, self.headoffice, store_id, on_failure, self.gate
            )
            self.stores[store_id] = runtime
            runtime.refresh()
            log.info(
                "store.opened store=%s records=%d db=%s",
                store_id,
                runtime.terminal.replica.views.accepted_count(),
                self.backend.description,
            )

    def close(self) -> None:
        for runtime in self.stores.values():
            runtime.terminal.close()
        self.backend.close()

    async def route(self, ws: Connection) -> None:
        """Read the peer's hello, then hand the connection to its store's mesh."""

        def refuse() -> None:
            asyncio.get_running_loop().create_task(
                ws.close(CLOSE_POLICY_VIOLATION, TOO_MANY_HANDSHAKES)
            )

        self.gate.admit(ws, refuse)  # the store's mesh takes it over, or it ends below
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
        store = None
        if not isinstance(first, bytes):
            reason = "text frames are not part of the protocol"
        else:
            try:
                hello = decode_frame(first)
            except ProtocolViolation as exc:
                hello, reason = None, str(exc)
            if hello is not None and not isinstance(hello, Hello):
                reason = "expected a hello frame"
            elif isinstance(hello, Hello):
                store = self.stores.get(hello.store_id)
                if store is None:
                    reason = f"this cloud does not serve store {hello.store_id[:64]!r}"
        if store is None or not isinstance(first, bytes):
            log.info("uplink.refused reason=%s", reason)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CLOSE_POLICY_VIOLATION, (reason or "refused")[:120])
            return
        await store.mesh.serve_connection(ws, first_frame=first)


async def run_cloud(config: CloudConfig) -> None:
    """Serve until SIGTERM/SIGINT (returns) or a storage failure (raises ``StorageError`` once
    everything is closed)."""
    directory = CloudDirectory.open(config.directory)
    lock = DirectoryLock(config.directory / LOCK)
    lock.acquire(0)  # one serve per cloud directory
    try:
        service = CloudService(directory, config.db_url)
    except BaseException:
        lock.release()
        raise
    shutdown = Shutdown()
    try:
        service.open_stores(shutdown.storage_failed)
        await _serve(config, service, shutdown)
    finally:
        remove_runtime(config.directory)
        service.close()
        lock.release()
        log.info("cloud.stopped")
    shutdown.raise_failure()


async def _serve(config: CloudConfig, service: CloudService, shutdown: Shutdown) -> None:
    from lanesync.cloud.api import create_cloud_app

    shutdown.install_signals()
    peer_sock = bind_socket(*config.listen)
    try:
        api_sock = bind_socket(*config.api)
    except BaseException:
        peer_sock.close()
        raise
    service.listen = socket_url("ws", peer_sock)
    service.api = socket_url("http", api_sock)
    token = load_or_create_token(config.directory)
    api = ApiServer(create_cloud_app(service, token))
    async with (
        serve(service.route, sock=peer_sock, **websocket_options()) as server,
        asyncio.TaskGroup() as group,
    ):
        serving_api = group.create_task(api.serve(sockets=[api_sock]), name="api")
        tasks = [group.create_task(s.committer.run()) for s in service.stores.values()]
        tasks.append(
            group.create_task(
                follow_database(service.backend, service.stores, shutdown.storage_failed),
                name="follow",
            )
        )
        try:
            write_runtime(
                config.directory,
                {
                    "pid": os.getpid(),
                    "listen": service.listen,
                    "api": service.api,
                    "started_ms": service.started_ms,
                },
            )
        except StorageError as exc:
            shutdown.storage_failed(exc)
        else:
            log.info(
                "cloud.started listen=%s api=%s stores=%d db=%s",
                service.listen,
                service.api,
                len(service.stores),
                service.backend.description,
            )
        await shutdown.wait()
        remove_runtime(config.directory)
        for runtime in service.stores.values():
            runtime.mesh.close_all(SHUTDOWN_REASON)
        server.close()
        await stop_api(api, serving_api)
        for task in tasks:
            task.cancel()


def run(config: CloudConfig) -> None:
    configure_logging()
    asyncio.run(run_cloud(config))
