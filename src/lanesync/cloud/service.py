"""The cloud peer of every store it serves (run by ``lanesync cloud serve``: cloud/serve.py).

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
from collections.abc import Callable

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.stores import Backend, StoreRuntime, open_store
from lanesync.core.link import CloseCode
from lanesync.core.wire import Hello, decode_frame
from lanesync.errors import ProtocolViolation, StorageError
from lanesync.shell.admission import TOO_MANY_HANDSHAKES, HandshakeGate
from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators
from lanesync.shell.terminal import wall_clock_ms

log = logging.getLogger("lanesync.cloud")
HELLO_TIMEOUT_S = 10.0


class CloudService:
    def __init__(
        self,
        directory: CloudDirectory,
        db_url: str | None = None,
        collaborators: Collaborators = DEFAULT_COLLABORATORS,
    ) -> None:
        self.directory = directory
        self.collaborators = collaborators
        self.backend = Backend.open(directory, db_url)
        self.headoffice = HeadOffice(self.backend.sql)
        self.stores: dict[str, StoreRuntime] = {}
        # Connections not yet authenticated, for all stores together: the WAN port's budget.
        self.gate = HandshakeGate()
        self.listen = ""
        self.api = ""
        self.started_ms = wall_clock_ms()
        self.uploads_accepted = 0  # connections handed to a store's mesh (cloud/metrics.py)
        self.uplinks_refused = 0  # connections refused at the hello
        # Told each merge's duration (the API's /metrics sets it; nothing by default).
        self.observe_merge: Callable[[float], None] = lambda seconds: None

    def open_stores(self, on_failure: Callable[[StorageError], None]) -> None:
        for store_id in self.directory.store_ids():
            runtime = open_store(
                self.directory,
                self.backend,
                self.headoffice,
                store_id,
                on_failure,
                self.gate,
                self.collaborators,
            )
            self.stores[store_id] = runtime
            runtime.mesh.on_merged = self._merged_by(runtime)
            runtime.refresh()
            log.info(
                "store.opened store=%s records=%d db=%s",
                store_id,
                runtime.terminal.replica.views.accepted_count(),
                self.backend.description,
            )

    def _merged_by(self, runtime: StoreRuntime) -> Callable[[float], None]:
        return lambda seconds: runtime.merged_upload(seconds, self.observe_merge)

    def close(self) -> None:
        for runtime in self.stores.values():
            runtime.terminal.close()
        self.backend.close()

    async def route(self, ws: Connection) -> None:
        """Read the peer's hello, then hand the connection to its store's mesh."""

        def refuse() -> None:
            asyncio.get_running_loop().create_task(
                ws.close(CloseCode.POLICY_VIOLATION, TOO_MANY_HANDSHAKES)
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
            self.uplinks_refused += 1
            log.warning("uplink.refused reason=%s: a lane's uplink was refused", reason)
            with contextlib.suppress(ConnectionClosed):
                await ws.close(CloseCode.POLICY_VIOLATION, (reason or "refused")[:120])
            return
        self.uploads_accepted += 1
        await store.mesh.serve_connection(ws, first_frame=first)
