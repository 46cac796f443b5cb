"""The leader's link to the cloud, and the reachability probe the election ranks by.

Every terminal given ``--cloud`` probes the cloud's TCP port every ``PROBE_INTERVAL_S``; the
result feeds its election candidacy, so terminals that can reach the cloud are preferred. Only
the elected leader dials the cloud, as an ordinary peer connection that must present the store's
certificate for its cloud (role ``cloud``): a man in the middle on the WAN, or a cloud certified
by another store, fails the handshake and learns nothing. A terminal that loses leadership closes
its cloud link. No outbox: on (re)connect the cloud's state vector says what it lacks and exactly
that is sent; the cloud acknowledges only what it has durably committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

from lanesync.core.driver import UplinkStep, steer_uplink
from lanesync.core.election import Election
from lanesync.core.identity import Role
from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.shell.dialing import PeerEntry
from lanesync.shell.mesh import Mesh

log = logging.getLogger("lanesync.uplink")

PROBE_INTERVAL_S = 2.0
PROBE_TIMEOUT_S = 1.0
CHECK_INTERVAL_S = 0.25  # how soon leadership changes act on the cloud link


class Uplink:
    def __init__(self, mesh: Mesh, election: Election, url: str) -> None:
        self._mesh = mesh
        self._election = election
        self.url = url
        parts = urlsplit(url)
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if parts.scheme == "wss" else 80)
        self._entry: PeerEntry | None = None
        self.last_probe_ok: bool | None = None
        # Kept across outages: what the cloud last acknowledged, so `status` can say how far
        # behind it is while the link is down (the live link's figures vanish with it).
        self._last_ack_ms: int | None = None
        self._cloud_state: dict[str, bytes] | None = None
        self._started_term: int | None = None  # the leadership term the uplink last started in

    async def run(self) -> None:
        probe = asyncio.get_running_loop().create_task(self._probe_forever())
        try:
            while True:
                self._steer()
                await asyncio.sleep(CHECK_INTERVAL_S)
        finally:
            probe.cancel()
            self._stop_link()

    async def _probe_forever(self) -> None:
        while True:
            ok = await self._probe()
            if ok and self.last_probe_ok is False:
                log.info("uplink.probe reachable=True url=%s: the cloud answers again", self.url)
            elif not ok and self.last_probe_ok is not False:
                log.warning(
                    "uplink.probe reachable=False url=%s: the cloud does not answer; this lane "
                    "does not stand for the uplink until it does",
                    self.url,
                )
            self.last_probe_ok = ok
            self._election.set_reachable(ok, self._mesh.now_ms())
            self._mesh.kick()
            await asyncio.sleep(PROBE_INTERVAL_S)

    async def _probe(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(self._host, self._port), PROBE_TIMEOUT_S
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

    def _remember_ack(self) -> None:
        for link in self._mesh.node.links.values():
            if link.is_open and link.peer is not None and link.peer.role is Role.CLOUD:
                if link.peer_acked_ms is not None:
                    self._last_ack_ms = link.peer_acked_ms
                if link.peer_state is not None:
                    self._cloud_state = dict(link.peer_state)

    def _steer(self) -> None:
        self._remember_ack()
        dialling = (
            self._entry is not None and self._entry.task is not None and not self._entry.task.done()
        )
        match steer_uplink(self._election.is_leader, dialling):
            case UplinkStep.START:
                term = self._election.leader_term
                # Once per leadership; a dial that ended on its own is redialled quietly.
                level = logging.DEBUG if term == self._started_term else logging.INFO
                log.log(level, "uplink.start term=%d url=%s", term, self.url)
                self._started_term = term
                self._stop_link()  # a dialler that ended on its own, if any
                self._entry = self._mesh.add_uplink(self.url, CLOUD_TERMINAL_ID, Role.CLOUD)
            case UplinkStep.STOP:
                log.info("uplink.stop leader=%s", self._election.leader)
                self._started_term = None
                self._stop_link()
            case UplinkStep.KEEP:
                pass

    def _stop_link(self) -> None:
        if self._entry is not None:
            self._mesh.remove_uplink(self._entry)
            self._entry = None

    def status(self) -> dict[str, Any]:
        self._remember_ack()
        link = self._mesh.cloud_link_status()
        pending = link["unacked_bytes"] if link else None
        if pending is None and self._cloud_state is not None:
            replica = self._mesh.node.replica
            pending = sum(len(u) for u in replica.updates_since(self._cloud_state).values())
        return {
            "url": self.url,
            "reachable": self.last_probe_ok,
            "connected": link is not None,
            "last_ack_ms": self._last_ack_ms,
            "pending_bytes": pending,
        }
