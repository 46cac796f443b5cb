"""The asyncio pump between the pure ``Node`` and websockets. No business logic lives here.

For every transport event it calls the node, then, at the end of the current event-loop
iteration (so bursts share frames), it drains the node's output in the one safe order:
commit what must be durable, send frames (per connection, in order, through one writer task),
close what must close. It also runs the node's timers and dials static peers with jittered
exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State as WsState

from lanesync.core.node import Node
from lanesync.core.replica import Change
from lanesync.core.wire import MAX_FRAME_SIZE
from lanesync.errors import StorageError
from lanesync.shell.terminal import Terminal

log = logging.getLogger("lanesync.mesh")

# Keepalive: a silently dead peer (cable pulled) is noticed after about interval + timeout
# (FACTS.md: websockets' own defaults of 20 s + 20 s are far too slow for a store).
PING_INTERVAL_S = 2.0
PING_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 1.0
# Reconnect backoff: quick first retry, capped so a healed link is used within seconds.
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
CONNECTION_OPEN_TIMEOUT_S = 5.0
# websockets close codes (RFC 6455 section 7.4.1).
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
SHUTDOWN_REASON = "peer is shutting down"


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def websocket_options() -> dict[str, Any]:
    return {
        "compression": None,  # FACTS.md: deflate nearly doubles small-frame latency
        "max_size": MAX_FRAME_SIZE,
        "ping_interval": PING_INTERVAL_S,
        "ping_timeout": PING_TIMEOUT_S,
        "close_timeout": CLOSE_TIMEOUT_S,
    }


@dataclass(slots=True)
class _Socket:
    ws: Connection
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    close_reason: str | None = None


@dataclass(slots=True)
class StaticPeer:
    url: str
    terminal_id: str | None = None  # learned from the first successful handshake
    attempts: int = 0
    last_error: str | None = None
    connected: bool = False
    last_seen_ms: int | None = None


class Mesh:
    def __init__(
        self,
        node: Node,
        terminal: Terminal,
        *,
        clock: Callable[[], int] = wall_ms,
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.node = node
        self.terminal = terminal
        self._clock = clock
        self._on_fatal = on_fatal
        self._ids = itertools.count(1)
        self._sockets: dict[int, _Socket] = {}
        self._flush_scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self.static_peers: list[StaticPeer] = []
        self.frames_out = 0
        self.bytes_out = 0

    # -- connections -----------------------------------------------------------------------------

    async def serve_connection(self, ws: Connection) -> None:
        """websockets server handler for one inbound peer connection."""
        await self._run_connection(ws, dialer=False)

    async def _run_connection(
        self, ws: Connection, *, dialer: bool, peer: StaticPeer | None = None
    ) -> str:
        conn_id = next(self._ids)
        sock = _Socket(ws)
        self._sockets[conn_id] = sock
        writer = asyncio.create_task(self._writer(conn_id, sock), name=f"ws-writer-{conn_id}")
        reason = "connection closed"
        try:
            self.node.connection_made(conn_id, dialer=dialer, now_ms=self._clock())
            self._schedule_flush()
            async for message in ws:
                if isinstance(message, str):
                    reason = "text frames are not part of the protocol"
                    await ws.close(CLOSE_POLICY_VIOLATION, reason)
                    break
                self.node.data_received(conn_id, message, self._clock())
                self._schedule_flush()
                if peer is not None and peer.terminal_id is None:
                    link = self.node.links.get(conn_id)
                    if link is not None and link.peer is not None:
                        peer.terminal_id = link.peer.terminal_id
                        peer.connected = True
        except ConnectionClosed as exc:
            reason = f"transport closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            if sock.close_reason:
                reason = sock.close_reason
            self.node.connection_lost(conn_id, reason, self._clock())
            self._flush()
            await sock.queue.put(None)
            await writer
            del self._sockets[conn_id]
        return reason

    async def _writer(self, conn_id: int, sock: _Socket) -> None:
        while (frame := await sock.queue.get()) is not None:
            if sock.ws.state is not WsState.OPEN:
                continue
            try:
                await sock.ws.send(frame)
            except ConnectionClosed:
                continue
            self.frames_out += 1
            self.bytes_out += len(frame)

    async def dial_forever(self, peer: StaticPeer) -> None:
        """Keep one connection to a static peer: reconnect with jittered exponential backoff."""
        delay = BACKOFF_INITIAL_S
        while True:
            if peer.terminal_id is not None and self.connected_to(peer.terminal_id):
                # The pair already has a connection (the peer dialed us first): nothing to do.
                await asyncio.sleep(BACKOFF_MAX_S)
                continue
            peer.attempts += 1
            started = time.monotonic()
            try:
                async with connect(
                    peer.url,
                    open_timeout=CONNECTION_OPEN_TIMEOUT_S,
                    proxy=None,
                    **websocket_options(),
                ) as ws:
                    peer.last_error = None
                    reason = await self._run_connection(ws, dialer=True, peer=peer)
                    peer.last_error = reason
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                peer.last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started > 2 * BACKOFF_MAX_S:
                delay = BACKOFF_INITIAL_S  # it was up for a while: retry promptly
            # Full jitter (AWS architecture blog, "Exponential Backoff and Jitter"): lanes that
            # lost the same switch do not all reconnect in the same millisecond.
            await asyncio.sleep(random.uniform(0, delay))  # noqa: S311 - jitter, not crypto
            delay = min(BACKOFF_MAX_S, delay * 2)

    def connected_to(self, terminal_id: str) -> bool:
        return any(
            link.is_open and link.peer is not None and link.peer.terminal_id == terminal_id
            for link in self.node.links.values()
        )

    # -- local writes ----------------------------------------------------------------------------

    def committed(self, changes: list[Change]) -> None:
        """GroupCommitter callback: local records are durable, send them to the peers."""
        now = self._clock()
        for change in changes:
            self.node.local_change(change, now)
        self._schedule_flush()

    def bundle_imported(self) -> None:
        """State changed from outside the mesh (a bundle, a revocation): sync with everyone."""
        self.node.request_sync(self._clock())
        self._flush()

    # -- output ----------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        out = self.node.take_output()
        if out.persist:
            try:
                self.terminal.commit(out.persist)
            except StorageError as exc:
                log.critical("storage failed, stopping: %s", exc)
                if self._on_fatal is not None:
                    self._on_fatal(exc)
                return
        for conn_id, frames in out.frames.items():
            sock = self._sockets.get(conn_id)
            if sock is not None:
                for frame in frames:
                    sock.queue.put_nowait(frame)
        for conn_id, reason in out.closes.items():
            sock = self._sockets.get(conn_id)
            if sock is not None and sock.close_reason is None:
                sock.close_reason = reason
                sock.queue.put_nowait(None)
                asyncio.get_running_loop().create_task(self._close(sock, reason))
        for event, fields in out.log:
            log.info("%s %s", event, " ".join(f"{k}={v}" for k, v in fields.items()))
            self._note_static(event, fields)
        self._arm_timer()

    async def _close(self, sock: _Socket, reason: str) -> None:
        if reason == "duplicate connection":
            code = CLOSE_NORMAL
        elif reason == SHUTDOWN_REASON:
            code = CLOSE_GOING_AWAY
        else:
            code = CLOSE_POLICY_VIOLATION
        # Close reasons are limited to 123 bytes (RFC 6455 section 5.5.1).
        with contextlib.suppress(ConnectionClosed):
            await sock.ws.close(code, reason.encode()[:120].decode(errors="ignore"))

    def _note_static(self, event: str, fields: dict[str, Any]) -> None:
        peer_id = fields.get("peer")
        for peer in self.static_peers:
            if peer.terminal_id == peer_id:
                peer.connected = event == "peer.connected"
                peer.last_seen_ms = self._clock()

    def _arm_timer(self) -> None:
        deadline = self.node.next_deadline()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            delay = max(0.0, (deadline - self._clock()) / 1000)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.node.handle_timer(self._clock())
        self._flush()

    def close_all(self, reason: str) -> None:
        self.node.close_all(reason)
        self._flush()
