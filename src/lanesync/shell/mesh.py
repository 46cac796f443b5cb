"""The asyncio pump between the pure ``Node`` and websockets. No business logic lives here.

For every transport event it calls the node, then, at the end of the current event-loop
iteration (so bursts share frames), it drains the node's output in the one safe order:
commit what must be durable, send frames (per connection, in order, through one writer task),
close what must close. Peers' updates are committed with the next acknowledgement, the next
local write, or after ``commit_delay_s`` (whichever comes first), not once per received frame:
an fsync per frame was most of a receiving lane's time on the event loop. It also runs the
node's timers. Dialling peers (the peer table, backoff, identity checks) is ``dialing.py``'s
``PeerTable``; ``Mesh`` runs the connections it dials and keeps its methods as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as WsState

from lanesync.core.change import Change
from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.driver import Driver
from lanesync.core.feed import Origin
from lanesync.core.identity import Role
from lanesync.core.isolation import Isolation
from lanesync.core.link import Close, CloseCode
from lanesync.core.node import ACK_DELAY_MS, Node
from lanesync.core.wire import MAX_FRAME_SIZE
from lanesync.errors import StorageError
from lanesync.shell.admission import (
    MAX_UNAUTHENTICATED_MESSAGE,
    TOO_MANY_HANDSHAKES,
    HandshakeGate,
)
from lanesync.shell.dialing import PeerEntry, PeerTable
from lanesync.shell.logs import node_event
from lanesync.shell.terminal import StorageObserver, Terminal, wall_clock_ms
from lanesync.shell.turns import Turn, Turns

log = logging.getLogger("lanesync.mesh")

# Keepalive: a silently dead peer (cable pulled) is noticed after about interval + timeout;
# with websockets' own defaults (20 s + 20 s) that is some 40 s, far too slow for a store.
PING_INTERVAL_S = 2.0
PING_TIMEOUT_S = 2.0
CLOSE_TIMEOUT_S = 1.0
# An unauthenticated connection may not linger: a peer proves itself in two frames each way.
HANDSHAKE_TIMEOUT_S = 10.0
# A peer that does not read is cut off once this much waits for it. The largest legitimate
# backlog is one catch-up answer (a node answers one at a time: core.catchup) plus live traffic;
# an answer is a document diff, and a frame no peer accepts above MAX_FRAME_SIZE, so this is
# the bound that never cuts off a peer that reads.
MAX_QUEUED_BYTES = MAX_FRAME_SIZE
# Peers' updates wait at most this long for a commit: as long as an acknowledgement may wait
# (node.ACK_DELAY_MS), which commits them anyway whenever they came over a link still open.
PEER_DATA_COMMIT_DELAY_S = ACK_DELAY_MS / 1000


class MeshObserver(StorageObserver, Protocol):
    """Watches one mesh, and its terminal's storage (``StorageObserver``), from outside (the
    benchmark's lanes). Observation only: it reads the terminal's views and never changes
    state, so a mesh behaves the same with or without. Every hook does nothing unless a class
    that names ``MeshObserver`` as its base overrides it; with no observer, no hook is called."""

    def wrote(self) -> None:
        """Local records were just made durable by ``Mesh.write`` (before any reply is sent)."""
        return

    def accepted(self) -> None:
        """The node just merged what peers sent: records it accepted (verified, chained) are in
        the views now, and wait for a commit to be durable here (``stored``)."""
        return

    def flushed(self) -> None:
        """``Mesh`` drained the node's output: merged peers' records (and committed them unless
        their commit may wait: ``PEER_DATA_COMMIT_DELAY_S``)."""
        return

    def connection_opened(self, ws: Connection) -> None:
        """A peer connection's websocket handshake is done and ``Mesh`` starts running it."""
        return


@dataclass(frozen=True, slots=True)
class Collaborators:
    """What a serving process (``run``, ``cloud serve``) may be handed instead of its defaults.
    The product never does; the benchmark's lane driver (cli.bench_lane) does, to log events
    and for the ``lanesync-unsigned`` baseline."""

    crypto: Crypto = SODIUM
    # Called with each terminal a process serves, when its Mesh is built.
    observe: Callable[[Terminal], MeshObserver] | None = None

    def observer(self, terminal: Terminal) -> MeshObserver | None:
        return None if self.observe is None else self.observe(terminal)


DEFAULT_COLLABORATORS: Final = Collaborators()


def _closed_reason(exc: ConnectionClosed) -> str:
    """Why a transport ended, as precisely as websockets knows it: the peer's close code, or
    ours when we failed it (1011 "keepalive ping timeout": a peer that stopped reading or
    answering; websockets sends its ping through flow control, so a peer whose window is full
    is also caught by it)."""
    if exc.rcvd is not None:
        return f"transport closed ({exc.rcvd.code})"
    if exc.sent is not None and exc.sent.reason:
        return f"transport closed by us ({exc.sent.code} {exc.sent.reason})"
    return "transport closed (no close frame)"


def websocket_options() -> dict[str, Any]:
    """For both ends of a peer connection. The message size limit starts at the handshake's
    (lanesync.shell.admission) and is raised to ``MAX_FRAME_SIZE`` once the peer is verified."""
    return {
        # Deflate nearly doubled small-frame latency on loopback (75 against 132 us median
        # round trip, 64 B, measured 2026-11-26 with websockets 17).
        "compression": None,
        "max_size": MAX_UNAUTHENTICATED_MESSAGE,
        "ping_interval": PING_INTERVAL_S,
        "ping_timeout": PING_TIMEOUT_S,
        "close_timeout": CLOSE_TIMEOUT_S,
    }


@dataclass(slots=True)
class _Socket:
    ws: Connection
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    queued_bytes: int = 0  # frames in ``queue`` not yet handed to the transport
    close_reason: str | None = None
    authenticated: bool = False


class Mesh:
    def __init__(
        self,
        node: Node,
        terminal: Terminal,
        *,
        clock: Callable[[], int] = wall_clock_ms,
        on_persisted: Callable[[], None] | None = None,
        commit_delay_s: float = PEER_DATA_COMMIT_DELAY_S,
        gate: HandshakeGate | None = None,
        observer: MeshObserver | None = None,
        isolation: Isolation | None = None,
        on_caught_up: Callable[[], None] | None = None,
        turns: Turns | None = None,
    ) -> None:
        """``commit_delay_s``: how long peers' updates may wait for a commit (0: commit them in
        the event-loop iteration that merged them, as the cloud does, whose head-office tables
        follow every commit through ``on_persisted``). ``gate``: the process's connections in
        the handshake (the cloud shares one among its stores' meshes). ``observer``: told what
        happens here and in the terminal's storage (see ``MeshObserver``). ``isolation``: told of
        every connection verified and ended (a lane's status reads it; the cloud has none).
        ``on_caught_up``: called after each flush once a peer's answer to our catch-up is merged
        (a lane's first write waits for it: ``core.headcheck``). ``turns``: the loop's work
        shared with other meshes (the cloud's stores: ``shell.turns``); flushes and timers
        take their turn there instead of running as callbacks of their own."""
        self.node = node
        self._observer = observer
        if observer is not None:
            terminal.observer = observer
        self.terminal = terminal
        self._clock = clock
        self._on_persisted = on_persisted
        self.driver = Driver(node, self, commit_delay_ms=round(commit_delay_s * 1000))
        self._ids = itertools.count(1)
        self._sockets: dict[int, _Socket] = {}
        self._flush_scheduled = False
        self._turns = turns
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: int | None = None  # the node deadline ``_timer`` is armed for
        self.peer_table = PeerTable(
            node,
            clock=clock,
            run_connection=self._run_dialed,
            schedule_flush=self._schedule_flush,
            flush=self._flush,
            ws_options=websocket_options,
        )
        # The peer table's, under the names callers use (daemon, uplink, api, cloud, bench).
        self.peers = self.peer_table.peers
        self.add_static = self.peer_table.add_static
        self.discovered = self.peer_table.discovered
        self.add_uplink = self.peer_table.add_uplink
        self.remove_uplink = self.peer_table.remove_uplink
        self.lost = self.peer_table.lost
        self.peers_report = self.peer_table.peers_report
        self.connected_to = self.peer_table.connected_to
        self.frames_out = 0
        self.bytes_out = 0
        self.bytes_in = 0
        # Told how long each flush that merged peers' records took, merge to commit (the cloud's
        # /metrics); ``merges`` counts the batches merged.
        self.on_merged: Callable[[float], None] | None = None
        self.merges = 0
        self.gate = HandshakeGate() if gate is None else gate
        self.isolation = isolation
        self._on_caught_up = on_caught_up
        self._merging_from = Origin.PEER  # where the records of the flush under way came from

    # -- connections -----------------------------------------------------------------------------

    async def serve_connection(self, ws: Connection, first_frame: bytes | None = None) -> None:
        """websockets server handler for one inbound peer connection. ``first_frame``: a frame
        already read from ``ws`` (the cloud reads the hello to pick the store)."""
        await self._run_connection(ws, dialer=False, first_frame=first_frame)

    async def _run_dialed(self, ws: ClientConnection, peer: PeerEntry) -> str:
        """Run a connection the peer table dialled to ``peer``; returns why it ended."""
        return await self._run_connection(ws, dialer=True, peer=peer)

    async def _run_connection(
        self,
        ws: Connection,
        *,
        dialer: bool,
        peer: PeerEntry | None = None,
        first_frame: bytes | None = None,
    ) -> str:
        conn_id = next(self._ids)
        if not self.gate.admit(ws, lambda: self._refuse(conn_id, TOO_MANY_HANDSHAKES)):
            await ws.close(CloseCode.POLICY_VIOLATION, TOO_MANY_HANDSHAKES)
            return TOO_MANY_HANDSHAKES
        if self._observer is not None:
            self._observer.connection_opened(ws)
        sock = _Socket(ws)
        self._sockets[conn_id] = sock
        writer = asyncio.create_task(self._writer(conn_id, sock), name=f"ws-writer-{conn_id}")
        reason = "connection closed"
        checked = False
        try:
            self.node.connection_made(conn_id, dialer=dialer, now_ms=self._clock())
            asyncio.get_running_loop().call_later(
                HANDSHAKE_TIMEOUT_S, self._handshake_deadline, conn_id
            )
            if first_frame is not None:
                self.bytes_in += len(first_frame)
                self.node.data_received(conn_id, first_frame, self._clock())
            self._schedule_flush()
            async for message in ws:
                if isinstance(message, str):
                    reason = "text frames are not part of the protocol"
                    await ws.close(CloseCode.POLICY_VIOLATION, reason)
                    break
                self.bytes_in += len(message)
                self.node.data_received(conn_id, message, self._clock())
                self._schedule_flush()
                if not sock.authenticated:
                    self._check_authenticated(conn_id, sock)
                if peer is not None and not checked:
                    checked = self.peer_table.check_identity(conn_id, peer)
        except ConnectionClosed as exc:
            reason = _closed_reason(exc)
        finally:
            self.gate.done(ws)
            if sock.close_reason:
                reason = sock.close_reason
            self.node.connection_lost(conn_id, reason, self._clock())
            self._flush()
            await sock.queue.put(None)
            await writer
            del self._sockets[conn_id]
            # The node's reason, when it closed first (a peer's refusal): the flush above
            # has handed it over even when the refusal and the transport's end came at once.
            ended = sock.close_reason or reason
            if self.isolation is not None and self.isolation.closed(conn_id, ended, self._clock()):
                log.error(
                    "terminal.refused_as_revoked terminal=%s: a peer refused this terminal as "
                    "revoked by the store; its sales no longer reach the store",
                    self.node.terminal_id,
                )
        return reason

    def _check_authenticated(self, conn_id: int, sock: _Socket) -> None:
        """Once the node has verified the peer: full-size messages, and out of the gate."""
        link = self.node.links.get(conn_id)
        if link is not None and link.is_open:
            sock.authenticated = True
            if self.isolation is not None:
                self.isolation.opened(conn_id, self._clock())
            sock.ws.protocol.max_message_size = MAX_FRAME_SIZE
            self.gate.done(sock.ws)

    def _refuse(self, conn_id: int, reason: str) -> None:
        self.node.close_link(conn_id, reason, self._clock())
        self._schedule_flush()

    def _handshake_deadline(self, conn_id: int) -> None:
        link = self.node.links.get(conn_id)
        if link is not None and not link.is_open:
            self.node.close_link(conn_id, "handshake not completed in time", self._clock())
            self._flush()

    async def _writer(self, conn_id: int, sock: _Socket) -> None:
        while (frame := await sock.queue.get()) is not None:
            sock.queued_bytes -= len(frame)
            if sock.ws.state is not WsState.OPEN:
                continue
            try:
                await sock.ws.send(frame)  # waits while the peer's TCP window is full
            except ConnectionClosed:
                continue
            self.frames_out += 1
            self.bytes_out += len(frame)

    def cloud_link_status(self) -> dict[str, Any] | None:
        return next((p for p in self.node.peer_status() if p["role"] == Role.CLOUD.value), None)

    def now_ms(self) -> int:
        return self._clock()

    def kick(self) -> None:
        """Something outside the node changed its timers (the election): re-arm them."""
        self._schedule_flush()

    # -- local writes ----------------------------------------------------------------------------

    def write(self, changes: list[Change], commit: Callable[[], None]) -> None:
        """GroupCommitter's publisher: ``commit`` makes local records durable (or raises), then
        they go to the peers (core.driver: never the other way round)."""
        self.driver.write(changes, commit, self._clock())
        if self._on_persisted is not None:
            self._on_persisted()
        self._schedule_flush()
        if self._observer is not None:
            self._observer.wrote()

    def days_sealed(self) -> None:
        """Days were sealed here: peers hear of it now (``Node.announce_state``)."""
        self.node.announce_state()
        self._schedule_flush()

    def bundle_imported(self) -> None:
        """State changed from outside the mesh (a bundle, a revocation): sync with everyone."""
        self.node.request_sync(self._clock())
        self._flush()

    # -- output ----------------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            if self._turns is None:
                asyncio.get_running_loop().call_soon(self._flush)
            else:
                self._turns.soon(self._flush, Turn.MERGE if self.node.merging else Turn.QUICK)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # The flush merges what every link sent since the last one, in one batch: from the
        # cloud when only the cloud sent updates (a batch with lanes' updates counts as a peer's).
        self._merging_from = (
            Origin.CLOUD if self.node.inbox_roles() == {Role.CLOUD} else Origin.PEER
        )
        started, merges = time.perf_counter(), self.merges
        self.driver.flush()
        if self.merges != merges and self.on_merged is not None:
            self.on_merged(time.perf_counter() - started)
        if self._on_caught_up is not None and self.node.caught_up:
            self._on_caught_up()
        if self._observer is not None:
            self._observer.flushed()

    # -- the driver's effects (core.driver.Effects) -----------------------------------------------

    def defer(self, changes: Sequence[Change]) -> None:
        # The driver hands over what the flush merged: its records are ready for the change
        # feed with the next commit (shell.feedlog).
        self.terminal.accepted(self._merging_from, ready=True)
        self.terminal.defer(changes)
        self.merges += bool(changes)  # every flush hands over its output, often none
        if self._observer is not None:
            self._observer.accepted()

    def has_deferred(self) -> bool:
        return self.terminal.deferred > 0

    def commit_deferred(self) -> bool:
        """Commit peers' updates merged so far; False if storage failed (the daemon stops)."""
        if not self.terminal.deferred:
            return True
        try:
            self.terminal.commit([])
            if self._on_persisted is not None:
                self._on_persisted()
            # A lane that mostly receives never reaches the committer's compaction: keep its
            # log compacted and its checkpoint of the views current here too.
            self.terminal.compact_if_due()
        except StorageError:
            return False  # the terminal told its owner (``Terminal.on_failure``): it stops
        return True

    def commit_after(self, delay_ms: int) -> None:
        asyncio.get_running_loop().call_later(delay_ms / 1000, self.driver.commit_due)

    def send(self, conn_id: int, frames: Sequence[bytes]) -> None:
        sock = self._sockets.get(conn_id)
        if sock is None or sock.close_reason is not None:
            return
        for frame in frames:
            sock.queue.put_nowait(frame)
            sock.queued_bytes += len(frame)
        if sock.queued_bytes > MAX_QUEUED_BYTES:
            # Only the transport is cut here: the node hears of it as the connection ends
            # (``connection_lost``), like any other dropped link.
            reason = f"peer does not read: {sock.queued_bytes} bytes waiting for it"
            log.warning("peer.dropped conn=%d reason=%s", conn_id, reason)
            self._drop_socket(sock, reason)

    def close(self, conn_id: int, close: Close) -> None:
        """Send what is queued (a Refuse frame saying why, often), then close."""
        sock = self._sockets.get(conn_id)
        if sock is None or sock.close_reason is not None:
            return
        sock.close_reason = close.reason
        sock.queue.put_nowait(None)
        asyncio.get_running_loop().create_task(self._close(sock, close))

    def note(self, event: str, fields: dict[str, Any]) -> None:
        level, message = node_event(event, fields)
        log.log(level, "%s", message)

    def wake_at(self, deadline_ms: int | None) -> None:
        if self._timer is not None and deadline_ms == self._timer_deadline:
            return  # armed for it already: most flushes leave the deadlines as they were
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_deadline = deadline_ms
        if deadline_ms is not None:
            delay = max(0.0, (deadline_ms - self._clock()) / 1000)
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _drop_socket(self, sock: _Socket, reason: str) -> None:
        """Free the backlog and abort the transport: a peer that does not read would also
        leave a close frame unsent, and its queued frames in memory, for ever."""
        sock.close_reason = reason
        while not sock.queue.empty():
            sock.queue.get_nowait()
        sock.queued_bytes = 0
        sock.queue.put_nowait(None)
        sock.ws.transport.abort()

    async def _close(self, sock: _Socket, close: Close) -> None:
        # Close reasons are limited to 123 bytes (RFC 6455 section 5.5.1).
        reason = close.reason.encode()[:120].decode(errors="ignore")
        with contextlib.suppress(ConnectionClosed):
            await sock.ws.close(close.code, reason)

    def _on_timer(self) -> None:
        self._timer = None
        if self._turns is None:
            self._timer_turn()
        else:
            # A timer while merging is the next slice of a large upload (Node.next_deadline).
            self._turns.soon(self._timer_turn, Turn.CATCH_UP if self.node.merging else Turn.QUICK)

    def _timer_turn(self) -> None:
        self.node.handle_timer(self._clock())
        self._flush()

    def start(self) -> None:
        """Arm the node's timers (election gossip, anti-entropy) before any traffic."""
        self.wake_at(self.node.next_deadline())

    def close_all(self) -> None:
        """We are shutting down: tell every peer, and commit what peers sent now (not on a
        timer that may outlive the terminal)."""
        self.node.close_all()
        self._flush()
        self.commit_deferred()
