"""The fault schedule of the faulty phase: each kind of fault is a Poisson process at its
configured rate (``FaultRates``): resets, delay spikes, silent or loud LAN and WAN partitions and
their heals, crashes (also pending ones that strike inside a commit or a merge), clock steps and
log compaction. Every choice comes from the ``Simulator``'s seeded ``rng``. ``Faults`` is a part
of ``Simulator`` (see ``loop.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lanesync.sim.dialing import Dialing
from lanesync.sim.host import CrashMode, Host
from lanesync.sim.model import (
    PING_INTERVAL_MS,
    PING_TIMEOUT_MS,
    EventKind,
)
from lanesync.sim.network import Conn


class Faults(Dialing):
    """The ``Simulator``'s faults: scheduling them, applying them, healing partitions."""

    if TYPE_CHECKING:  # defined by a part above this one (see loop.py)

        def _fault_backup(self) -> None: ...

        def _fault_restore(self) -> None: ...

        def _fault_rekey(self) -> None: ...

        def _fault_revoke(self) -> None: ...

    # -- faults ------------------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        rates = self.config.faults
        for rate, action in (
            (rates.resets_per_s, self._fault_reset),
            (rates.lan_partitions_per_s, self._fault_lan_partition),
            (rates.wan_partitions_per_s, self._fault_wan_partition),
            (rates.crashes_per_s, self._fault_crash),
            (rates.cloud_crashes_per_s, self._fault_cloud_crash),
            (rates.clock_steps_per_s, self._fault_clock_step),
            (rates.delay_spikes_per_s, self._fault_delay_spike),
            (rates.compactions_per_s, self._fault_compact),
            (rates.backups_per_s, self._fault_backup),
            (rates.restores_per_s, self._fault_restore),
            (rates.rekeys_per_s, self._fault_rekey),
            (rates.revocations_per_s, self._fault_revoke),
        ):
            if rate > 0:
                self._at(self._next_fault(rate), self._fault, action, rate)

    def _next_fault(self, rate: float) -> int:
        return self.now + max(1, int(self.rng.expovariate(rate) * 1000))

    def _fault(self, action: Callable[[], None], rate: float) -> None:
        if not self.faulty:
            return
        action()
        self._at(self._next_fault(rate), self._fault, action, rate)

    def _fault_reset(self) -> None:
        live = [c for c in self.conns.values() if len(c.ends) == 2]
        if live:
            self.reset(self.rng.choice(live), "connection reset")

    def _fault_delay_spike(self) -> None:
        live = [c for c in self.conns.values() if len(c.ends) == 2]
        if live:
            conn = self.rng.choice(live)
            conn.spike_ms = self.rng.randint(50, 400)
            conn.spike_until_ms = self.now + self.rng.randint(200, 2_000)
            self._note(
                EventKind.DELAY,
                conn.dialer,
                conn.listener,
                f"+{conn.spike_ms}ms conn={conn.conn_id}",
            )

    def _partition_conns(self, silent: bool) -> None:
        """Apply the current partitions to open connections that now cross one."""
        for conn in list(self.conns.values()):
            if conn.held or self.reachable(conn.dialer, conn.listener):
                continue
            if silent:
                conn.held = True
                wait = self.rng.randint(PING_INTERVAL_MS, PING_INTERVAL_MS + PING_TIMEOUT_MS)
                self._at(self.now + wait, self._keepalive_timeout, conn)
            else:
                self.reset(conn, "partition: connection reset")

    def _keepalive_timeout(self, conn: Conn) -> None:
        if conn.held and conn.ends:
            self.reset(conn, "keepalive timeout")

    def _heal_conns(self) -> None:
        for conn in list(self.conns.values()):
            if conn.held and self.reachable(conn.dialer, conn.listener):
                conn.held = False  # TCP retransmits: everything held arrives, in order
                for dst, pipe in conn.pipes.items():
                    if pipe.items and not pipe.armed:
                        pipe.items[0] = (self.now + self._latency(conn), pipe.items[0][1])
                        self._arm_pipe(conn, dst, pipe)

    def _fault_lan_partition(self) -> None:
        if self.lan_group is not None:
            return
        names = [h.name for h in self.lanes]
        self.rng.shuffle(names)
        cut = self.rng.randint(1, len(names) - 1)
        self.lan_group = {n: int(i >= cut) for i, n in enumerate(names)}
        self.lan_silent = self.rng.random() < 0.5
        sides = " | ".join(
            ",".join(sorted(n for n, g in self.lan_group.items() if g == side)) for side in (0, 1)
        )
        how = "silent" if self.lan_silent else "loud"
        self._note(EventKind.LAN_PARTITION, detail=f"{how} {sides}")
        self.last_change_ms = self.now
        self._partition_conns(self.lan_silent)
        self._at(self.now + self.rng.randint(500, 6_000), self._heal_lan)

    def _heal_lan(self) -> None:
        if self.lan_group is None:
            return
        self.lan_group = None
        self._note(EventKind.LAN_HEAL)
        self.last_change_ms = self.now
        self._heal_conns()

    def _fault_wan_partition(self) -> None:
        if self.wan_cut:
            return
        names = [h.name for h in self.lanes]
        if self.rng.random() < 0.6:
            cut = names
        else:
            cut = sorted(self.rng.sample(names, self.rng.randint(1, len(names))))
        self.wan_cut = frozenset(cut)
        self.wan_silent = self.rng.random() < 0.5
        how = "silent" if self.wan_silent else "loud"
        self._note(EventKind.WAN_PARTITION, detail=f"{how} {','.join(cut)}")
        self.last_change_ms = self.now
        self._partition_conns(self.wan_silent)
        self._at(self.now + self.rng.randint(1_000, 8_000), self._heal_wan)

    def _heal_wan(self) -> None:
        if not self.wan_cut:
            return
        self.wan_cut = frozenset()
        self._note(EventKind.WAN_HEAL)
        self.last_change_ms = self.now
        self._heal_conns()

    def _fault_crash(self) -> None:
        alive = [h for h in self.lanes if h.alive and h.pending_crash is None]
        if not alive:
            return
        host = self.rng.choice(alive)
        roll = self.rng.random()
        if roll < 0.6:
            self._crash(host, "killed")
            return
        host.pending_crash = CrashMode.WRITE if roll < 0.8 else CrashMode.MERGE
        # If nothing triggers it soon, it is an ordinary kill.
        self._at(self.now + 1_500, self._pending_crash_due, host, host.sessions)

    def _pending_crash_due(self, host: Host, session: int) -> None:
        if self._valid(host, session) and host.pending_crash is not None:
            self._crash(host, "killed")

    def _fault_cloud_crash(self) -> None:
        if self.cloud.alive:
            self._crash(self.cloud, "killed")

    def _fault_clock_step(self) -> None:
        alive = [h for h in self.lanes if h.alive]
        if not alive:
            return
        host = self.rng.choice(alive)
        step = self.rng.choice((-1, 1)) * self.rng.randint(100, 1_000)
        host.offset_ms += step
        self._note(
            EventKind.CLOCK_STEP, host.name, detail=f"{step:+d}ms -> skew {host.offset_ms:+d}"
        )
        host.armed_ms = None
        host.timer_gen += 1
        if host.node is not None:
            self._arm(host, host.node.next_deadline())

    def _fault_compact(self) -> None:
        """``Storage.compact``: a document's log becomes the replica's full state, keeping only
        the rows the document has not integrated yet."""
        alive = [h for h in self.hosts.values() if h.alive]
        if not alive:
            return
        host = self.rng.choice(alive)
        replica = host.replica
        if replica is None or not host.durable:
            return
        doc = self.rng.choice(sorted(host.durable))
        rows = host.durable[doc]
        kept = [u for u, flag in zip(rows, replica.covered(doc, rows), strict=True) if not flag]
        host.durable[doc] = [replica.full_state(doc), *kept]
        self._note(EventKind.COMPACT, host.name, detail=f"{doc} kept {len(kept)} rows")
