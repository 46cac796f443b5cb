"""A whole store in one process: K lanes, their election and uplink, and a cloud, driven through
the real pure cores (``Node``, ``Replica``, ``Election``, ``PeerConnection``) by a simulated
network and a simulated clock.

Guarantees:

* Deterministic: every choice comes from ``random.Random`` instances seeded from the schedule's
  seed (nonces, ephemeral keys, signing keys, CRDT client ids included); time is an integer
  millisecond clock; events at the same time run in the order they were scheduled. The same
  seed and configuration always give the same trace.
* The simulated shell runs the real one's rules as the same code: after every call into a
  node its output goes through ``core.driver.Driver`` (the one ``shell/mesh.py`` runs), with
  simulated storage and network as its effects; local writes go through ``Driver.write``
  (committed before the node hears of them); a restart rebuilds the replica with
  ``Replica.restore`` from exactly what was committed, as ``shell/terminal.py`` does, so
  anything not committed is lost.
* Faults: connection resets, raw drop / duplication / reordering / corruption of sealed frames,
  delay spikes, LAN and WAN partitions (silent: frames held until heal or keepalive timeout; or
  loud: reset at once), SIGKILL-like crashes (also in the middle of a commit or of a merge),
  clock skew and steps, log compaction, a lane restored from an old backup (its chain may
  fork), a re-key. Faults stop at the end of the faulty phase; the quiet phase heals
  everything, restarts every crashed host and lets the store settle; once every replica holds
  the same records, the store authority resolves every open fork and replaces the forked lane.

``Simulator`` is the entry point; this module sets a schedule up, runs its event loop and the
quiet phase and says when the store has settled. The rest is in one module per idea, each a
part of ``Simulator`` (``loop.py`` draws the chain): ``host.py`` (one host's simulated shell),
``transport.py`` (the simulated network; its connections and pipes are in ``network.py``),
``dialing.py`` (dialers and the uplink), ``workload.py``, ``faults.py`` (the fault schedule) and
``lifecycle.py`` (backups, restores, re-keys, the store's fork repair).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter

from nacl.signing import SigningKey

from lanesync.core.driver import Driver
from lanesync.core.election import GOSSIP_MS, LEASE_MS, Election
from lanesync.core.identity import (
    Role,
    StoreIdentity,
    public_key_of,
)
from lanesync.core.node import Node
from lanesync.core.replica import Replica
from lanesync.sim.host import CLIENT_ID_BITS, CLOUD, STORE_ID
from lanesync.sim.lifecycle import Lifecycle
from lanesync.sim.model import (
    BASE_MS,
    DAY_MS,
    EventKind,
    PlantedBug,
    SimConfig,
    Topology,
)
from lanesync.sim.planted import (
    ForkTwiceReplica,
    NoRelayNode,
    RmwStockView,
    SendBeforeCommitDriver,
    StickyLeaseElection,
)
from lanesync.sim.workload import Workload

SETTLE_POLL_MS = 500


class Simulator(Workload, Lifecycle):
    """One seeded schedule of one store. ``play()`` once; then read ``violations`` / ``trace``."""

    def __init__(self, seed: int, config: SimConfig) -> None:
        self.seed = seed
        self.config = config
        # Seeded on purpose (replayable schedules): every nonce and key here is simulated.
        rng = random.Random(f"lanesync-sim:{seed}")  # noqa: S311
        self.rng = rng  # faults and network
        self.work = random.Random(f"lanesync-sim-work:{seed}")  # noqa: S311 - the workload
        keys = random.Random(f"lanesync-sim-keys:{seed}")  # noqa: S311 - simulated keys
        self.now = 0
        self.base = BASE_MS
        if rng.random() < 0.25:  # straddle a midnight: records of one run in two days' documents
            self.base = (BASE_MS // DAY_MS + 1) * DAY_MS - rng.randint(500, config.fault_ms)
        self.authority = SigningKey(keys.randbytes(32))
        self.store = StoreIdentity(STORE_ID, public_key_of(self.authority), "UTC")
        self.trace = []
        self.counts = Counter()
        self.violations = []
        self.acked = []
        self.faulty = True
        self.done = False
        self.last_change_ms = 0
        self.busy_timer_reported = False
        self.lan_group = None
        self.lan_silent = False
        self.wan_cut = frozenset()
        self.wan_silent = False
        self.conns = {}
        self._next_conn = 1
        self._queue = []
        self._seq = 0
        self.hosts = {}
        self.retired = []
        self.revoked = {}
        self.revoked_via = set()
        plant = config.plant
        self._node_cls = NoRelayNode if plant is PlantedBug.NO_RELAY else Node
        self._election_cls = StickyLeaseElection if plant is PlantedBug.STICKY_LEASE else Election
        self._driver_cls = (
            SendBeforeCommitDriver if plant is PlantedBug.SEND_BEFORE_COMMIT else Driver
        )
        self._replica_cls = ForkTwiceReplica if plant is PlantedBug.COUNT_FORK_TWICE else Replica
        for i in range(1, config.lanes + 1):
            name = f"lane{i}"
            role = Role.MANAGER if i == 1 else Role.CASHIER
            self.hosts[name] = self._make_host(keys, name, role)
        self.hosts[CLOUD] = self._make_host(keys, CLOUD, Role.CLOUD)
        self.by_name = dict(self.hosts)
        self.lanes = [h for h in self.hosts.values() if not h.is_cloud]
        self.cloud = self.hosts[CLOUD]
        names = [h.name for h in self.lanes]
        if config.topology is Topology.CHAIN:
            self.pairs = list(itertools.pairwise(names))
        else:
            self.pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        self.neighbors = {n: [] for n in names}
        for a, b in self.pairs:
            self.neighbors[a].append(b)
            self.neighbors[b].append(a)
        for host in self.lanes:
            host.priority = rng.choice((0, 0, 0, 1, 2))
            host.offset_ms = rng.randint(-config.max_skew_ms, config.max_skew_ms)
            if plant is PlantedBug.RMW_STOCK:
                host.view = RmwStockView(1 + host.rng.randrange(2**CLIENT_ID_BITS - 1))

    def play(self) -> None:
        """Play the schedule: setup, faulty phase, quiet phase until settled (or the bound)."""
        cfg = self.config
        self._note(EventKind.START, detail=self._describe_setup())
        for host in self.hosts.values():
            self._start(host)
        self._first_backups()
        self._schedule_workload()
        self._schedule_faults()
        self._at(cfg.fault_ms, self._begin_quiet)
        end = cfg.fault_ms + cfg.quiet_max_ms
        while self._queue and not self.done:
            t, _, fn, args = heapq.heappop(self._queue)
            if t > end:
                break
            self.now = t
            fn(*args)
        self.now = min(max(self.now, cfg.fault_ms), end)

    def _describe_setup(self) -> str:
        lanes = " ".join(f"{h.name}(prio={h.priority},skew={h.offset_ms:+d})" for h in self.lanes)
        pairs = ",".join(f"{a}-{b}" for a, b in self.pairs)
        return f"base={self.base} {lanes} links={pairs}"

    # -- the quiet phase ---------------------------------------------------------------------------

    def _begin_quiet(self) -> None:
        self.faulty = False
        self._note(EventKind.QUIET)
        self.lan_group = None
        self.wan_cut = frozenset()
        self._heal_conns()
        for conn in self.conns.values():
            conn.spike_until_ms = 0
        for host in self.hosts.values():
            host.pending_crash = None
            host.isolated_until_ms = 0
            if not host.alive:
                self._note(EventKind.RESTART, host.name, detail=f"skew={host.offset_ms:+d}")
                self._start(host)
        self._decommission()
        self.last_change_ms = self.now
        self._at(self.now + self.config.quiet_min_ms, self._settle_poll)

    def _settle_poll(self) -> None:
        if self.converged() and self._store_acts():
            # The store repaired a fork (from any replica: they all hold every record): settle
            # again after it.
            self.last_change_ms = self.now
            self._at(self.now + SETTLE_POLL_MS, self._settle_poll)
            return
        if self.settled():
            self._note(EventKind.SETTLED)
            self.done = True
            return
        self._at(self.now + SETTLE_POLL_MS, self._settle_poll)

    def established(self, a: str, b: str) -> bool:
        """An open link between ``a`` and ``b`` on both ends."""
        return self._connected(self.hosts[a], b) and self._connected(self.hosts[b], a)

    def settled(self) -> bool:
        """Everything a correct store reaches once faults stop: all up and connected as the
        topology says, leases settled on one leader that holds the uplink, nothing held back by
        a partition or waiting for its commit, every replica (the cloud's too) at one
        digest."""
        if not all(h.alive for h in self.hosts.values()):
            return False
        if self.now - self.last_change_ms < LEASE_MS + 2 * GOSSIP_MS:
            return False
        if any(conn.held for conn in self.conns.values()):
            return False
        if any(h.deferred for h in self.hosts.values()):
            return False  # merged, not committed yet (a lane commits peers' updates late)
        if not all(self.established(a, b) for a, b in self.pairs):
            return False
        leaders = [h for h in self.lanes if h.election is not None and h.election.is_leader]
        if len(leaders) != 1:
            return False
        leader = leaders[0].name
        if any(h.election is None or h.election.leader != leader for h in self.lanes):
            return False
        if not self.established(leader, CLOUD):
            return False
        return self.converged()

    def converged(self) -> bool:
        """Every host up, nothing held back by a partition, every replica at one digest."""
        if not all(h.alive for h in self.hosts.values()):
            return False
        if any(conn.held for conn in self.conns.values()):
            return False
        digests = {h.replica.digest() for h in self.hosts.values() if h.replica is not None}
        return len(digests) == 1
