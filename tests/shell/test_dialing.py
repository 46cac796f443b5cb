"""The dialler over loopback (shell/dialing.py on core/redial.py's schedule): real lanes' meshes,
real websockets, a ``faultproxy.FaultLink`` to cut and heal a link. A link cut for longer than
the old backoff took to reach its 5 s cap is redialled on the short schedule of a peer that is
not reached; an mDNS announcement of a peer ends its dialler's wait at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from websockets.asyncio.server import serve

from lanesync.core.node import Node
from lanesync.core.redial import BACKOFF_INITIAL_MS, UNREACHED_MAX_MS
from lanesync.shell import dialing
from lanesync.shell import mesh as mesh_module
from lanesync.shell.dialing import BACKOFF_MAX_S, PeerEntry
from lanesync.shell.discovery import Announcement
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal
from lanesync.tools.faultproxy import FaultLink

from .conftest import Lanes

IO_TIMEOUT_S = 10.0
# Failed attempts after which a doubling backoff from 0.2 s would wait up to its 5 s cap
# (0.2 s doubled five times is 6.4 s): the link has been down longer than the backoff took.
ATTEMPTS_TO_THE_OLD_CAP = 6


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(IO_TIMEOUT_S):
        while not condition():  # noqa: ASYNC110 - the meshes run in this loop
            await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def serving(terminal: Terminal) -> AsyncIterator[tuple[Mesh, int]]:
    """A lane's mesh serving 127.0.0.1: yields the mesh and its port; closed after, with the
    dialler tasks it started."""
    mesh = Mesh(Node(terminal.replica), terminal)
    mesh.start()
    try:
        async with serve(
            mesh.serve_connection, "127.0.0.1", 0, **mesh_module.websocket_options()
        ) as server:
            yield mesh, server.sockets[0].getsockname()[1]
    finally:
        for entry in mesh.peers:
            if entry.task is not None:
                entry.task.cancel()
        await asyncio.gather(*(e.task for e in mesh.peers if e.task), return_exceptions=True)
        mesh.close_all()


def connected(one: Mesh, other: Mesh) -> bool:
    return one.connected_to(other.node.terminal_id) and other.connected_to(one.node.terminal_id)


def test_a_link_cut_for_longer_than_the_backoff_grew_is_redialled_promptly(lanes: Lanes) -> None:
    a, b = lanes.new("lane-a"), lanes.new("lane-b")

    async def scenario() -> float:
        async with serving(a) as (mesh_a, port_a), serving(b) as (mesh_b, _):
            link = FaultLink("127.0.0.1", port_a)
            await link.start()
            try:
                entry = mesh_b.add_static(f"ws://127.0.0.1:{link.port}")
                await until(lambda: connected(mesh_a, mesh_b))
                link.partition()  # resets the connection, and refuses the redials
                cut = entry.attempts
                await until(lambda: entry.attempts >= cut + ATTEMPTS_TO_THE_OLD_CAP)
                await until(lambda: entry.wait_ends is not None)
                # Waiting on the short window of a peer that is not reached, however long:
                assert entry.redial.window_ms == UNREACHED_MAX_MS
                assert entry.last_error is not None
                loop = asyncio.get_running_loop()
                link.heal()
                healed = loop.time()
                await until(lambda: connected(mesh_a, mesh_b))
                return loop.time() - healed
            finally:
                await link.stop()

    # At most the short window's rest (0.5 s) and a handshake; the old backoff drew up to 5 s.
    assert asyncio.run(scenario()) < BACKOFF_MAX_S


def test_an_announcement_of_the_peer_ends_its_dialers_wait_at_once(lanes: Lanes) -> None:
    """lane-b's old address now answers as lane-c (a DHCP lease handed on), so lane-a's dialler
    backs off towards 5 s; lane-b announces its new address and lane-a dials it at once."""
    a, b, c = lanes.new("lane-a"), lanes.new("lane-b"), lanes.new("lane-c")

    def announcement(port: int) -> Announcement:
        fingerprint = b.directory.me.certificate.key_fingerprint
        return Announcement("s1-lane-b", "s1", "lane-b", fingerprint, ("127.0.0.1",), port)

    async def scenario() -> tuple[PeerEntry, float, float]:
        async with (
            serving(a) as (mesh_a, _),
            serving(b) as (mesh_b, port_b),
            serving(c) as (_, port_c),
        ):
            mesh_a.discovered(announcement(port_c))
            (entry,) = mesh_a.peers
            loop = asyncio.get_running_loop()

            def waiting_long() -> bool:
                ends = entry.wait_ends
                return entry.redial.window_ms >= 8 * BACKOFF_INITIAL_MS and (
                    ends is not None and ends - loop.time() > 0.5
                )

            await until(waiting_long)
            assert entry.woken == 0
            assert "answered as lane-c" in str(entry.last_error)
            would_end = entry.wait_ends
            assert would_end is not None
            mesh_a.discovered(announcement(port_b))
            await until(lambda: connected(mesh_a, mesh_b))
            return entry, would_end, loop.time()

    entry, would_end, connected_at = asyncio.run(scenario())
    assert entry.woken == 1
    assert connected_at < would_end  # dialled before the wait it was in would have ended


def test_a_dialler_that_stops_on_an_unexpected_error_says_so(
    lanes: Lanes, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception no dial attempt expects ends the dialler: the peer would never be dialled
    again; the log and the peer's status say it (uvloop once raised one, 2026-12-07)."""
    a = lanes.new("lane-a")

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("the websocket client failed in a new way")

    monkeypatch.setattr(dialing, "connect", broken)

    async def scenario() -> PeerEntry:
        async with serving(a) as (mesh_a, _):
            entry = mesh_a.add_static("ws://127.0.0.1:9")
            await until(lambda: entry.task is not None and entry.task.done())
            await asyncio.sleep(0)  # the task's done callbacks run on the next iteration
            return entry

    with caplog.at_level("ERROR", logger="lanesync.mesh"):
        entry = asyncio.run(scenario())
    assert "dial.stopped" in caplog.text
    assert entry.last_error is not None
    assert entry.last_error.startswith("dialler stopped: RuntimeError")
