"""The simulated network at work: which hosts reach each other (partitions), sending with the raw
faults of the faulty phase (drop, duplicate, corrupt, reorder sealed frames), in-order delivery
into the receiving core, and the end of a connection (FIN, reset, keepalive timeout) with what
each end's core and dialers are told. The connections and pipes it moves frames through are in
``network.py``; ``Transport`` is a part of ``Simulator`` (see ``loop.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from lanesync.core.link import Close, CloseCode
from lanesync.core.redial import Attempt
from lanesync.sim.host import CLOUD, SIM_REASON, CrashMode, Dialer, Host, HostShell
from lanesync.sim.model import (
    EventKind,
    Invariant,
)
from lanesync.sim.network import SEALED_PREFIX, Conn, Fin, Item, Pipe


class Transport(HostShell):
    """The ``Simulator``'s network: reachability, sending, delivery, the end of connections."""

    if TYPE_CHECKING:  # defined by a part above this one (see loop.py)

        def _after_attempt(self, host: Host, dialer: Dialer, attempt: Attempt) -> None: ...

    # -- the network -------------------------------------------------------------------------------

    def reachable(self, a: str, b: str) -> bool:
        if self.now < max(self.by_name[a].isolated_until_ms, self.by_name[b].isolated_until_ms):
            return False  # a restored lane whose network is not back yet
        if CLOUD in (a, b):
            lane = b if a == CLOUD else a
            return lane not in self.wan_cut
        group = self.lan_group
        return group is None or group[a] == group[b]

    def _latency(self, conn: Conn) -> int:
        extra = conn.spike_ms if self.now < conn.spike_until_ms else 0
        return conn.latency_ms + self.rng.randint(0, conn.jitter_ms) + extra

    def _transmit(self, host: Host, conn_id: int, frames: Sequence[bytes]) -> None:
        conn = self.conns.get(conn_id)
        if conn is None or host.name not in conn.ends:
            return
        dst = conn.other(host.name)
        pipe = conn.pipes[dst]
        rates = self.config.faults
        for frame in frames:
            self.counts["frames"] += 1
            self.counts["bytes"] += len(frame)
            if self.faulty and frame.startswith(SEALED_PREFIX):
                roll = self.rng.random()
                if roll < rates.drop:
                    conn.tainted = True
                    self._note(EventKind.DROP, host.name, dst, f"conn={conn_id}")
                    continue
                roll -= rates.drop
                if roll < rates.dup:
                    conn.tainted = True
                    self._note(EventKind.DUP, host.name, dst, f"conn={conn_id}")
                    self._enqueue(conn, dst, frame)
                    self._enqueue(conn, dst, frame)
                    continue
                roll -= rates.dup
                if roll < rates.corrupt:
                    conn.tainted = True
                    at = self.rng.randrange(len(SEALED_PREFIX), len(frame))
                    bad = frame[:at] + bytes([frame[at] ^ (1 << self.rng.randrange(8))])
                    self._note(EventKind.CORRUPT, host.name, dst, f"conn={conn_id} byte={at}")
                    self._enqueue(conn, dst, bad + frame[at + 1 :])
                    continue
                roll -= rates.corrupt
                if roll < rates.reorder and pipe.items and isinstance(pipe.items[-1][1], bytes):
                    conn.tainted = True
                    self._note(EventKind.REORDER, host.name, dst, f"conn={conn_id}")
                    due, previous = pipe.items.pop()
                    pipe.items.append((due, frame))
                    self._enqueue(conn, dst, previous)
                    continue
            self._enqueue(conn, dst, frame)

    def _enqueue(self, conn: Conn, dst: str, item: Item) -> None:
        pipe = conn.pipes[dst]
        due = max(pipe.last_due, self.now + self._latency(conn))
        pipe.last_due = due
        pipe.items.append((due, item))
        if not pipe.armed and not conn.held:
            self._arm_pipe(conn, dst, pipe)

    def _arm_pipe(self, conn: Conn, dst: str, pipe: Pipe) -> None:
        pipe.armed = True
        self._at(pipe.items[0][0], self._deliver, conn, dst, pipe.gen)

    def _deliver(self, conn: Conn, dst: str, gen: int) -> None:
        pipe = conn.pipes[dst]
        if gen != pipe.gen:
            return
        pipe.armed = False
        if conn.held or not pipe.items:
            return
        _, item = pipe.items.popleft()
        host = self.by_name[dst]
        node = host.node
        if dst in conn.ends and node is not None:
            if isinstance(item, Fin):
                self._lose(host, conn, item.reason)
            else:
                local = self.local_ms(host)
                crash_now = host.pending_crash == CrashMode.MERGE
                if not self._call(
                    host, "data_received", lambda: node.data_received(conn.conn_id, item, local)
                ):
                    return
                if crash_now:
                    self._crash(host, "killed before committing a merge")
                    return
                self._pull_view(conn, host)
                self._flush(host)
        if pipe.items and not conn.held and not pipe.armed and pipe.gen == gen:
            self._arm_pipe(conn, dst, pipe)

    def _pull_view(self, conn: Conn, host: Host) -> None:
        sender = self.by_name[conn.other(host.name)]
        if host.view is not None and sender.view is not None:
            host.view.pull(sender.view)

    def _lose(self, host: Host, conn: Conn, reason: str) -> None:
        """The transport ended under ``host`` (FIN, reset or keepalive timeout)."""
        if host.name not in conn.ends:
            return
        conn.ends.remove(host.name)
        self._forget_if_done(conn)
        node = host.node
        if node is not None:
            local = self.local_ms(host)
            if self._call(
                host, "connection_lost", lambda: node.connection_lost(conn.conn_id, reason, local)
            ):
                self._flush(host)
        self._ended(host, conn)

    def _closed_locally(self, host: Host, conn_id: int, close: Close) -> None:
        """The node closed a connection: the rest of its output went first, then the FIN."""
        reason = close.reason
        conn = self.conns.get(conn_id)
        if conn is None or host.name not in conn.ends:
            return
        conn.ends.remove(host.name)
        other = conn.other(host.name)
        if other in conn.ends:
            self._enqueue(conn, other, Fin(reason))
        self._forget_if_done(conn)
        # A revoked lane is cut off by its peers: the simulator revoked it.
        benign = (
            close.code is not CloseCode.POLICY_VIOLATION
            or reason.startswith(("refused by peer: ", SIM_REASON))
            or host.name in self.revoked
            or other in self.revoked
        )
        if not benign and not conn.tainted:
            self.violate(
                Invariant.PROTOCOL,
                f"{host.name} closed conn {conn_id} with {other} though no fault touched it: "
                f"{reason}",
                (host.name, other),
            )
        self._ended(host, conn, reason)

    def _forget_if_done(self, conn: Conn) -> None:
        if not conn.ends:
            for pipe in conn.pipes.values():
                pipe.clear()
            self.conns.pop(conn.conn_id, None)

    def _ended(self, host: Host, conn: Conn, reason: str = "") -> None:
        self.last_change_ms = self.now
        self._note(EventKind.CLOSED, host.name, conn.other(host.name), reason[:60])
        for dialer in [*host.dialers.values(), host.uplink]:
            if dialer is not None and dialer.conn_id == conn.conn_id:
                dialer.conn_id = None
                self._after_attempt(host, dialer, Attempt.ENDED)

    def reset(self, conn: Conn, reason: str) -> None:
        """Both ends lose the connection now; whatever was in flight is gone."""
        self._note(EventKind.RESET, conn.dialer, conn.listener, f"conn={conn.conn_id} {reason}")
        conn.held = False
        for pipe in conn.pipes.values():
            pipe.clear()
        for name in list(conn.ends):
            self._lose(self.by_name[name], conn, SIM_REASON + reason)
