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
from typing import Any

import pytest
from support import peer_connection
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from lanesync.core.connection import Closed, PeerConnection, Received
from lanesync.core.identity import Role
from lanesync.core.node import Node
from lanesync.shell import mesh as mesh_module
from lanesync.shell.directories import TerminalDirectory
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import Lanes

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
