"""The shell's pump (``shell/mesh.py``) in one process: a real lane ``Mesh`` serving a real
websocket on 127.0.0.1, and a peer driven by the pure core that completes the handshake.

What is checked here and nowhere else: the bound on what may wait for a peer. A peer that stops
reading while frames keep coming for it is cut off once ``MAX_QUEUED_BYTES`` wait for it, with
a warning that says why, and the backlog is freed (the lane's other work goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import pytest
from support import peer_connection
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from lanesync.core.connection import Closed, PeerConnection, Received
from lanesync.core.identity import Role
from lanesync.core.node import Node
from lanesync.shell import mesh as mesh_module
from lanesync.shell.directories import TerminalDirectory
from lanesync.shell.mesh import Mesh, MeshObserver
from lanesync.shell.terminal import StorageCall, Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import sale

# Small enough that a test queues past it at once, large enough for the handshake's frames.
TEST_QUEUE_BOUND = 256 * 1024
IO_TIMEOUT_S = 10.0


async def handshake(ws: ClientConnection, peer: PeerConnection) -> None:
    """Complete the lanesync handshake over a websockets client connection."""
    peer.start()
    for frame in peer.data_to_send():
        await ws.send(frame)
    while True:
        data = await asyncio.wait_for(ws.recv(), IO_TIMEOUT_S)
        assert isinstance(data, bytes)
        peer.receive_data(data, wall_clock_ms())
        for frame in peer.data_to_send():
            await ws.send(frame)
        events = peer.events_received()
        assert not [e for e in events if isinstance(e, Closed)], events
        if any(isinstance(e, Received) for e in events):
            return  # the lane is established too: it sent its first sealed message


@contextlib.asynccontextmanager
async def lane_and_peer(
    terminal: Terminal, peer: TerminalDirectory, **client_options: Any
) -> AsyncIterator[tuple[Mesh, ClientConnection, int]]:
    """A lane's Mesh serving 127.0.0.1, and ``peer`` connected to it and verified: yields the
    mesh, the peer's websocket and the lane's connection id for it. The mesh is closed after."""
    mesh = Mesh(Node(terminal.replica), terminal)
    mesh.start()
    try:
        async with serve(
            mesh.serve_connection, "127.0.0.1", 0, **mesh_module.websocket_options()
        ) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://127.0.0.1:{port}"
            async with connect(url, proxy=None, compression=None, **client_options) as ws:
                await handshake(ws, peer_connection(peer))
                (conn_id,) = mesh._sockets
                yield mesh, ws, conn_id
    finally:
        mesh.close_all()


def test_a_peer_that_stops_reading_is_cut_off_at_the_queue_bound(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mesh_module, "MAX_QUEUED_BYTES", TEST_QUEUE_BOUND)
    terminal: Terminal = lanes.new("lane", Role.MANAGER)
    stalled = TerminalDirectory.open(lanes.enroll("stalled"))
    caplog.set_level(logging.WARNING, "lanesync.mesh")

    async def scenario() -> None:
        # max_queue=1: once one message waits unread, the client stops reading the socket, so
        # the lane's writes back up as they would for a peer that hung.
        async with lane_and_peer(terminal, stalled, max_queue=1) as (mesh, ws, conn_id):
            # What the driver hands the shell for this peer: more than the bound at once.
            mesh.send(conn_id, [b"\0" * (64 * 1024)] * 8)
            try:
                async with asyncio.timeout(IO_TIMEOUT_S):
                    while True:
                        await ws.recv()  # drains what came before the cut, then ends
            except ConnectionClosed:
                pass
            async with asyncio.timeout(IO_TIMEOUT_S):
                while mesh._sockets:  # noqa: ASYNC110 - the pump signals no "forgotten"
                    await asyncio.sleep(0.01)

    asyncio.run(scenario())
    dropped = [r.getMessage() for r in caplog.records if "peer does not read" in r.getMessage()]
    assert len(dropped) == 1, [r.getMessage() for r in caplog.records]
    assert "bytes waiting for it" in dropped[0], dropped


def test_a_peer_that_reads_is_never_cut_off_below_the_bound(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The control: the same backlog, half the size of the bound, is delivered whole."""
    monkeypatch.setattr(mesh_module, "MAX_QUEUED_BYTES", TEST_QUEUE_BOUND)
    terminal: Terminal = lanes.new("lane", Role.MANAGER)
    reader = TerminalDirectory.open(lanes.enroll("reader"))
    caplog.set_level(logging.WARNING, "lanesync.mesh")

    async def scenario() -> int:
        async with lane_and_peer(terminal, reader) as (mesh, ws, conn_id):
            frames = [b"\1" * (16 * 1024)] * 8  # 128 KiB: half the bound
            mesh.send(conn_id, frames)
            got = 0
            async with asyncio.timeout(IO_TIMEOUT_S):
                while got < len(frames):
                    if await ws.recv() == frames[0]:
                        got += 1
            return got

    assert asyncio.run(scenario()) == 8
    assert not [r for r in caplog.records if "peer does not read" in r.getMessage()]


class Recorder(MeshObserver):
    """Notes each hook with the number of records the views had accepted then."""

    def __init__(self, terminal: Terminal) -> None:
        self._views = terminal.replica.views
        self.events: list[tuple[str, int]] = []
        self.seconds: list[float] = []

    def _note(self, what: str) -> None:
        self.events.append((what, self._views.accepted_count()))

    def wrote(self) -> None:
        self._note("wrote")

    def accepted(self) -> None:
        self._note("accepted")

    def flushed(self) -> None:
        self._note("flushed")

    def stored(self, call: StorageCall, seconds: float) -> None:
        self.seconds.append(seconds)
        self._note(call.value)

    def connection_opened(self, ws: Connection) -> None:
        self._note("connection_opened")


def test_an_observer_is_told_of_connections_merges_commits_and_writes(lanes: Lanes) -> None:
    """Two lanes' meshes over loopback, each watched: the sender is told its sale was
    committed then written; the receiver of the connection, then of the sale accepted in its
    views before the commit that made it durable here."""
    a: Terminal = lanes.new("lane-a")
    b: Terminal = lanes.new("lane-b")
    seen_a, seen_b = Recorder(a), Recorder(b)
    before = b.replica.views.accepted_count()

    async def scenario() -> None:
        mesh_a = Mesh(Node(a.replica), a, observer=seen_a)
        mesh_b = Mesh(Node(b.replica), b, observer=seen_b)
        mesh_a.start()
        mesh_b.start()
        try:
            async with serve(
                mesh_a.serve_connection, "127.0.0.1", 0, **mesh_module.websocket_options()
            ) as server:
                mesh_b.add_static(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
                async with asyncio.timeout(IO_TIMEOUT_S):
                    while not mesh_a.connected_to(b.terminal_id):  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
                _, change = a.stage(sale("milk:1:100"))
                mesh_a.write([change], partial(a.commit, [change]))
                async with asyncio.timeout(IO_TIMEOUT_S):
                    while ("commit", before + 1) not in seen_b.events:  # noqa: ASYNC110
                        await asyncio.sleep(0.01)
        finally:
            mesh_a.close_all()
            mesh_b.close_all()
            for entry in mesh_b.peers:
                if entry.task is not None:
                    entry.task.cancel()

    asyncio.run(scenario())
    assert seen_a.events.index(("commit", 1)) < seen_a.events.index(("wrote", 1))
    assert seen_b.events[0] == ("connection_opened", before)
    first_accepted = seen_b.events.index(("accepted", before + 1))
    assert ("commit", before) not in seen_b.events[first_accepted:]  # not durable yet there
    assert first_accepted < seen_b.events.index(("commit", before + 1))
    assert "connection_opened" in {what for what, _ in seen_a.events}
    assert all(s >= 0 for s in seen_a.seconds + seen_b.seconds)


def test_with_no_observer_the_terminal_is_watched_by_none(lanes: Lanes) -> None:
    terminal: Terminal = lanes.new("lane")
    Mesh(Node(terminal.replica), terminal)
    assert terminal.observer is None
    watched = Recorder(terminal)
    Mesh(Node(terminal.replica), terminal, observer=watched)
    assert terminal.observer is watched
