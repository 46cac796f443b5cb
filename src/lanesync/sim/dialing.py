"""Dialling in the simulated shell: each lane's dialers to its neighbours (the daemon's: one
attempt at a time, on the core's redial schedule, ``core/redial.py``) and the uplink to the cloud
that only the leader holds (``shell/uplink.py``'s steering, through the core's
``steer_uplink``). ``Dialing`` is a part of ``Simulator`` (see ``loop.py``).
"""

from __future__ import annotations

from lanesync.core.driver import UplinkStep, steer_uplink
from lanesync.core.link import NOT_LEADER, CloseCode
from lanesync.core.redial import BACKOFF_MAX_MS, Attempt, Redial
from lanesync.sim.host import CLOUD, Dialer, Host
from lanesync.sim.model import (
    CONNECTION_OPEN_TIMEOUT_MS,
    UPLINK_CHECK_MS,
    UPLINK_PROBE_MS,
    EventKind,
)
from lanesync.sim.network import Conn
from lanesync.sim.transport import Transport


class Dialing(Transport):
    """The ``Simulator``'s dialling: connection attempts, backoff and the uplink."""

    # -- dialling ----------------------------------------------------------------------------------

    def _after_attempt(self, host: Host, dialer: Dialer, attempt: Attempt) -> None:
        """The daemon's wait after an attempt or a connection ended (full jitter)."""
        if dialer.stopped or not host.alive:
            return
        wait = self.rng.randint(0, dialer.redial.ended(attempt, self.now))
        dialer.gen += 1
        self._at(self.now + wait, self._dial, host, dialer, dialer.gen, host.sessions)

    def _connected(self, host: Host, peer: str) -> bool:
        node = host.node
        return node is not None and any(
            link.is_open and link.peer is not None and link.peer.terminal_id == peer
            for link in node.links.values()
        )

    def _dial(self, host: Host, dialer: Dialer, gen: int, session: int) -> None:
        if not self._valid(host, session) or dialer.gen != gen or dialer.stopped:
            return
        if dialer.conn_id is not None:
            return
        if self._connected(host, dialer.target):
            dialer.gen += 1  # the pair has a connection (the peer dialed us): look again later
            self._at(self.now + BACKOFF_MAX_MS, self._dial, host, dialer, dialer.gen, session)
            return
        dialer.redial.started(self.now)
        target = self.by_name[dialer.target]
        wan = CLOUD in (host.name, target.name)
        conn = Conn(
            self._next_conn,
            host.name,
            target.name,
            latency_ms=self.rng.randint(15, 60) if wan else self.rng.randint(1, 3),
            jitter_ms=10 if wan else 1,
            opened_ms=self.now,
        )
        self._next_conn += 1
        dialer.conn_id = conn.conn_id
        self._note(EventKind.DIAL, host.name, target.name, f"conn={conn.conn_id}")
        if not self.reachable(host.name, target.name):
            silent = self.wan_silent if wan else self.lan_silent
            delay = CONNECTION_OPEN_TIMEOUT_MS if silent else 1
            self._at(self.now + delay, self._dial_failed, host, dialer, conn, "unreachable")
        elif not target.alive:
            self._at(self.now + 2 * conn.latency_ms, self._dial_failed, host, dialer, conn, "down")
        else:
            # TCP handshake plus the websocket upgrade: about two round trips.
            self._at(self.now + 4 * conn.latency_ms, self._open, host, dialer, conn, session)

    def _dial_failed(self, host: Host, dialer: Dialer, conn: Conn, why: str) -> None:
        if dialer.conn_id != conn.conn_id:
            return
        dialer.conn_id = None
        self._note(EventKind.DIAL_FAILED, host.name, conn.listener, why)
        self._after_attempt(host, dialer, Attempt.UNREACHED)

    def _open(self, host: Host, dialer: Dialer, conn: Conn, session: int) -> None:
        if dialer.conn_id != conn.conn_id:
            return
        target = self.by_name[conn.listener]
        if not self._valid(host, session) or dialer.stopped:
            dialer.conn_id = None
            return
        if not target.alive or not self.reachable(host.name, target.name):
            self._dial_failed(host, dialer, conn, "refused")
            return
        self.conns[conn.conn_id] = conn
        conn.ends = [host.name, target.name]
        for end, is_dialer in ((host, True), (target, False)):
            node = end.node
            if node is None or end.name not in conn.ends:
                continue
            local = self.local_ms(end)
            if self._call(
                end,
                "connection_made",
                lambda n=node, d=is_dialer, t=local: n.connection_made(  # type: ignore[misc]
                    conn.conn_id, dialer=d, now_ms=t
                ),
            ):
                self._flush(end)

    # -- the uplink --------------------------------------------------------------------------------

    def _probe(self, host: Host, session: int) -> None:
        election = host.election
        if not self._valid(host, session) or election is None:
            return
        ok = self.cloud.alive and self.reachable(host.name, CLOUD)
        if ok != election.reachable:
            self.last_change_ms = self.now
        election.set_reachable(ok, self.local_ms(host))
        self._flush(host)
        self._at(self.now + UPLINK_PROBE_MS, self._probe, host, session)

    def _steer(self, host: Host, session: int) -> None:
        """``shell/uplink.py``: only the leader dials the cloud; a lane that stops leading
        closes its cloud link."""
        election = host.election
        node = host.node
        if not self._valid(host, session) or election is None or node is None:
            return
        step = steer_uplink(election.is_leader, host.uplink is not None)
        if step is UplinkStep.START:
            host.uplink = Dialer(CLOUD, Redial.uplink())
            self._note(EventKind.UPLINK_START, host.name, CLOUD, f"term={election.leader_term}")
            self._at(self.now, self._dial, host, host.uplink, host.uplink.gen, session)
        elif step is UplinkStep.STOP and host.uplink is not None:
            uplink, host.uplink = host.uplink, None
            uplink.stopped = True
            uplink.gen += 1
            self._note(EventKind.UPLINK_STOP, host.name, CLOUD, f"leader={election.leader}")
            local = self.local_ms(host)
            host.timer_ran_at = None  # new work after the timer (see _call)
            node.close_cloud_links(local)
            if uplink.conn_id in node.links:
                # Still in the handshake: the shell cancels its dialling task, which ends it.
                node.close_link(uplink.conn_id, NOT_LEADER, local, CloseCode.GOING_AWAY)
            if uplink.conn_id is not None and uplink.conn_id not in node.links:
                uplink.conn_id = None  # still connecting: the cancelled task never opens it
            self._flush(host)
        self._at(self.now + UPLINK_CHECK_MS, self._steer, host, session)
