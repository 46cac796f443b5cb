"""The peer table and dialling: the peers a lane knows how to reach (``--peer``, mDNS, the cloud
uplink), one task per peer that keeps one connection to it (the jittered schedule of
``core/redial.py``, woken early by an mDNS announcement of the peer), the check that a dialled
peer is who its entry says, and the report of them all.

``PeerTable`` is the pump's (``shell/mesh.py``) dialling half. Its interface to the pump is what
``Mesh`` hands it: the node (read, and told to close links that fail the identity check), the
clock, ``run_connection`` (the pump runs a dialled connection until it ends and says why), and
``schedule_flush`` / ``flush`` (the node has output to drain). The pump calls
``check_identity`` on each frame of a dialled connection until it returns True.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from lanesync.core.identity import Role
from lanesync.core.node import Node
from lanesync.core.redial import (
    BACKOFF_INITIAL_MS,
    BACKOFF_MAX_MS,
    UNREACHED_MAX_MS,
    Attempt,
    Redial,
)
from lanesync.shell.discovery import Announcement

log = logging.getLogger("lanesync.mesh")

# The redial schedule's windows (core/redial.py says why), in the seconds asyncio takes.
BACKOFF_INITIAL_S = BACKOFF_INITIAL_MS / 1000
BACKOFF_MAX_S = BACKOFF_MAX_MS / 1000
UNREACHED_MAX_S = UNREACHED_MAX_MS / 1000
CONNECTION_OPEN_TIMEOUT_S = 5.0


def _monotonic_ms() -> int:
    # The schedule measures how long a connection was up: a wall clock set back must not count.
    return time.monotonic_ns() // 1_000_000


def _ws_url(address: str, port: int) -> str:
    host = address if ":" not in address else f"[{address}]"
    return f"ws://{host}:{port}"


@dataclass(slots=True)
class PeerEntry:
    """A peer we know how to reach, from ``--peer`` (static) and/or mDNS discovery."""

    urls: list[str]
    found_by: set[str]
    terminal_id: str | None = None  # from mDNS, or learned from the first handshake
    key_fingerprint: str | None = None  # announced by mDNS; checked against the handshake
    attempts: int = 0
    last_error: str | None = None
    gone: bool = False  # mDNS said goodbye and no static address remains: stop redialling
    role: Role | None = None  # required role (the cloud endpoint must present a cloud cert)
    task: asyncio.Task[None] | None = None
    redial: Redial = field(default_factory=Redial)
    wake: asyncio.Event = field(default_factory=asyncio.Event)  # ends the dialler's wait
    # The dialler's wait: when it ends (event-loop time; None while it dials or runs a
    # connection), and how many waits a sign of life ended early (the status shows neither).
    wait_ends: float | None = None
    woken: int = 0

    def report(self) -> dict[str, Any]:
        return {
            "terminal_id": self.terminal_id,
            "found_by": sorted(self.found_by),
            "addresses": list(self.urls),
            "attempts": self.attempts,
            "last_error": self.last_error,
        }


# A discovered peer with the larger terminal id waits this long before dialling, so that usually
# only the smaller one dials and no duplicate connection has to be torn down.
DISCOVERED_DIAL_GRACE_S = 2.0


class PeerTable:
    """The peers we dial and their dialling tasks (see the module docstring for the interface)."""

    def __init__(
        self,
        node: Node,
        *,
        clock: Callable[[], int],
        run_connection: Callable[[ClientConnection, PeerEntry], Awaitable[str]],
        schedule_flush: Callable[[], None],
        flush: Callable[[], None],
        ws_options: Callable[[], dict[str, Any]],
    ) -> None:
        """``ws_options``: a peer connection's websockets options (``mesh.websocket_options``)."""
        self.node = node
        self._clock = clock
        self._run_connection = run_connection
        self._schedule_flush = schedule_flush
        self._flush = flush
        self._ws_options = ws_options
        self.peers: list[PeerEntry] = []

    def check_identity(self, conn_id: int, peer: PeerEntry) -> bool:
        """Once the handshake is done: is the peer who its entry says? True when settled."""
        link = self.node.links.get(conn_id)
        if link is None or link.peer is None:
            return False
        cert = link.peer
        if peer.role is not None and cert.role is not peer.role:
            self.node.close_link(
                conn_id,
                f"expected a {peer.role.value} certificate, got {cert.role.value}",
                self._clock(),
            )
            self._schedule_flush()
            return True
        if peer.terminal_id is None:
            peer.terminal_id = cert.terminal_id
        elif peer.terminal_id != cert.terminal_id:
            self.node.close_link(
                conn_id, f"answered as {cert.terminal_id}, not {peer.terminal_id}", self._clock()
            )
            self._schedule_flush()
        elif peer.key_fingerprint is not None and peer.key_fingerprint != cert.key_fingerprint:
            self.node.close_link(
                conn_id, "key fingerprint does not match its mDNS announcement", self._clock()
            )
            self._schedule_flush()
        else:
            peer.last_error = None  # a verified session: the last failure is history
        return True

    def add_static(self, url: str) -> PeerEntry:
        entry = PeerEntry([url], {"static"})
        self.peers.append(entry)
        entry.task = self._start_dialler(entry)
        return entry

    def discovered(self, found: Announcement) -> None:
        """An mDNS announcement of a peer of our store: dial it (it must still pass the
        handshake), unless a certificate we hold for that terminal contradicts its key."""
        known = [
            c.key_fingerprint
            for c in self.node.replica.views.certificates()
            if c.terminal_id == found.terminal_id
        ]
        if known and found.key_fingerprint not in known:
            log.debug("mdns.ignored terminal=%s reason=unknown key fingerprint", found.terminal_id)
            return
        urls = [_ws_url(address, found.port) for address in found.addresses]
        entry = next((p for p in self.peers if p.terminal_id == found.terminal_id), None)
        if entry is None:
            entry = PeerEntry([], set(), terminal_id=found.terminal_id)
            self.peers.append(entry)
        static = [u for u in entry.urls if "static" in entry.found_by and u not in urls]
        entry.urls = urls + static if "mdns" in entry.found_by or not static else static + urls
        entry.found_by.add("mdns")
        entry.key_fingerprint = found.key_fingerprint
        entry.gone = False
        if entry.task is None or entry.task.done():
            entry.task = self._start_dialler(entry)
        elif entry.redial.sign_of_life():
            # It announced itself (again, or at new addresses): the backoff it grew while it
            # could not be reached says nothing now.
            entry.wake.set()

    def add_uplink(self, url: str, terminal_id: str, role: Role) -> PeerEntry:
        """Dial the cloud (the leader only); the endpoint must present a ``role`` certificate."""
        entry = PeerEntry(
            [url], {"cloud"}, terminal_id=terminal_id, role=role, redial=Redial.uplink()
        )
        self.peers.append(entry)
        entry.task = self._start_dialler(entry)
        return entry

    def remove_uplink(self, entry: PeerEntry) -> None:
        """Stop dialling the cloud and close the link (leadership moved elsewhere)."""
        entry.gone = True
        if entry.task is not None:
            entry.task.cancel()
        if entry in self.peers:
            self.peers.remove(entry)
        self.node.close_cloud_links(self._clock())
        self._flush()

    def lost(self, terminal_id: str) -> None:
        """mDNS goodbye: stop redialling (an open connection lives until it closes)."""
        for entry in self.peers:
            if entry.terminal_id == terminal_id:
                entry.found_by.discard("mdns")
                entry.gone = not entry.found_by

    def _start_dialler(self, peer: PeerEntry) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._dial_forever(peer))
        task.add_done_callback(partial(_dialler_ended, peer))
        return task

    async def _dial_forever(self, peer: PeerEntry) -> None:
        """Keep one connection to a peer: redial on ``peer.redial``'s schedule, with full
        jitter, until a sign of life (``discovered``) ends the wait."""
        if (
            peer.found_by == {"mdns"}
            and peer.terminal_id is not None
            and peer.terminal_id < self.node.terminal_id
        ):
            await asyncio.sleep(DISCOVERED_DIAL_GRACE_S)
        while not peer.gone:
            if peer.terminal_id is not None and self.connected_to(peer.terminal_id):
                # The pair already has a connection (the peer dialed us): nothing to do.
                await self._wait(peer, BACKOFF_MAX_S)
                continue
            peer.redial.started(_monotonic_ms())
            attempt = Attempt.UNREACHED
            for url in list(peer.urls):  # most preferred address first; keep what answers
                peer.attempts += 1
                try:
                    async with connect(
                        url,
                        open_timeout=CONNECTION_OPEN_TIMEOUT_S,
                        proxy=None,
                        **self._ws_options(),
                    ) as ws:
                        attempt = Attempt.ENDED
                        # ``last_error`` stays until the peer is verified (check_identity): a
                        # transport that opens and is then refused must not read as healthy.
                        if url in peer.urls and peer.urls[0] != url:
                            peer.urls.remove(url)
                            peer.urls.insert(0, url)
                        peer.last_error = await self._run_connection(ws, peer)
                    break
                # ConnectionClosed: the peer's end reset the connection before websockets sent
                # its opening handshake (a fault proxy refusing a link, a peer going down). On
                # uvloop this is common; the stdlib loop usually reports it as an invalid
                # handshake. Uncaught, it ended this dialler for good, silently: the link never
                # came back (lanesync bench mesh's split with --loop uvloop, 2026-12-07).
                except (
                    OSError,
                    InvalidHandshake,
                    InvalidURI,
                    TimeoutError,
                    ConnectionClosed,
                ) as exc:
                    peer.last_error = f"{url}: {type(exc).__name__}: {exc}"
            window_ms = peer.redial.ended(attempt, _monotonic_ms())
            await self._wait(peer, random.uniform(0, window_ms / 1000))  # noqa: S311 - jitter

    async def _wait(self, peer: PeerEntry, seconds: float) -> None:
        """Sleep ``seconds``, or less if a sign of life of the peer wakes its dialler."""
        peer.wake.clear()
        peer.wait_ends = asyncio.get_running_loop().time() + seconds
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(peer.wait_ends):
                    await peer.wake.wait()
                    peer.woken += 1
        finally:
            peer.wait_ends = None

    def peers_report(self) -> list[dict[str, Any]]:
        """Every peer known from --peer, mDNS or an inbound connection, one row per terminal."""
        status = {str(p["terminal_id"]): p for p in self.node.peer_status()}
        rows: dict[str, dict[str, Any]] = {}
        for entry in self.peers:
            row = entry.report()
            key = entry.terminal_id or entry.urls[0]
            live = status.get(key)
            row["connected"] = live is not None
            row["last_seen_ms"] = live["last_seen_ms"] if live else None
            row["unacked_bytes"] = live["unacked_bytes"] if live else None
            rows[key] = row
        for terminal, live in status.items():
            if terminal not in rows:
                rows[terminal] = {
                    "terminal_id": terminal,
                    "found_by": ["inbound"],
                    "addresses": [],
                    "attempts": 0,
                    "last_error": None,
                    "connected": True,
                    "last_seen_ms": live["last_seen_ms"],
                    "unacked_bytes": live["unacked_bytes"],
                }
        return [rows[k] for k in sorted(rows)]

    def connected_to(self, terminal_id: str) -> bool:
        return any(
            link.is_open and link.peer is not None and link.peer.terminal_id == terminal_id
            for link in self.node.links.values()
        )


def _dialler_ended(peer: PeerEntry, task: asyncio.Task[None]) -> None:
    """A dialler ends when its peer is gone or it is cancelled; one that raised is a bug that
    would leave the peer undialled for good without a word (one did, with uvloop): say so."""
    if task.cancelled() or task.exception() is None:
        return
    exc = task.exception()
    peer.last_error = f"dialler stopped: {type(exc).__name__}: {exc}"
    log.error(
        "dial.stopped peer=%s urls=%s: the dialler of this peer stopped (%s: %s); restart the "
        "daemon to dial it again",
        peer.terminal_id,
        ",".join(peer.urls),
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
