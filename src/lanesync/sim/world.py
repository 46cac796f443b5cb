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
  clock skew and steps, log compaction. Faults stop at the end of the faulty phase; the quiet
  phase heals everything, restarts every crashed host and lets the store settle.
"""

from __future__ import annotations

import heapq
import itertools
import random
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from lanesync.core import bodies
from lanesync.core.driver import Driver, UplinkStep, steer_uplink
from lanesync.core.election import GOSSIP_MS, LEASE_MS, Election
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Role,
    StoreIdentity,
    issue_certificate,
    public_key_of,
)
from lanesync.core.ids import CLOUD_TERMINAL_ID, Sku, StoreId, TerminalId, sku
from lanesync.core.node import NOT_LEADER, Close, CloseCode, Node
from lanesync.core.records import Adjustment, Body, PriceChange, Receipt, Record, Sale, Void
from lanesync.core.replica import Change, Replica
from lanesync.errors import LanesyncError
from lanesync.sim.model import (
    BACKOFF_INITIAL_MS,
    BACKOFF_MAX_MS,
    BASE_MS,
    CONNECTION_OPEN_TIMEOUT_MS,
    DAY_MS,
    PING_INTERVAL_MS,
    PING_TIMEOUT_MS,
    SKUS,
    UPLINK_CHECK_MS,
    UPLINK_PROBE_MS,
    EventKind,
    Invariant,
    PlantedBug,
    SimConfig,
    Topology,
    TraceEvent,
    Violation,
)
from lanesync.sim.network import SEALED_PREFIX, Conn, Fin, Item, Pipe
from lanesync.sim.planted import (
    NoRelayNode,
    RmwStockView,
    SendBeforeCommitDriver,
    StickyLeaseElection,
)

CLOUD = str(CLOUD_TERMINAL_ID)
STORE_ID = StoreId("simstore")
CLIENT_ID_BITS = 31  # shell.directories.CLIENT_ID_BITS
CERT_NOT_AFTER_MS = BASE_MS + 10 * 365 * DAY_MS
SIM_REASON = "sim: "  # transport reasons the simulator gives (resets, timeouts, kills)
SETTLE_POLL_MS = 500
# Known core findings: reported, counted, but not failures unless --strict (see docs).


class CrashMode:
    """How a pending crash strikes: at the next local write before its commit, or right after
    the next merge of received data, before that merge is committed."""

    WRITE = "during-commit"
    MERGE = "during-merge"


@dataclass(eq=False)
class Dialer:
    """The daemon's ``_dial_forever`` for one peer: one attempt at a time, jittered backoff."""

    target: str
    delay_ms: int = BACKOFF_INITIAL_MS
    conn_id: int | None = None  # the connection it dialed, while our end holds it
    started_ms: int = 0
    gen: int = 0  # bumped to cancel scheduled attempts
    stopped: bool = False


@dataclass(eq=False)
class Host:
    """A terminal process (a lane or the cloud) and what survives its crashes (``durable``)."""

    name: str
    role: Role
    key: SigningKey
    cert: Certificate
    rng: random.Random
    priority: int = 0
    offset_ms: int = 0
    durable: dict[str, list[bytes]] = field(default_factory=dict)
    verified: set[bytes] = field(default_factory=set)
    deferred: list[Change] = field(default_factory=list)  # peers' updates not committed yet
    replica: Replica | None = None
    node: Node | None = None
    driver: Driver | None = None
    election: Election | None = None
    sessions: int = 0
    timer_gen: int = 0
    armed_ms: int | None = None
    timer_ran_at: int | None = None
    dialers: dict[str, Dialer] = field(default_factory=dict)
    uplink: Dialer | None = None
    pending_crash: str | None = None
    view: RmwStockView | None = None
    last_leader: str | None = None

    @property
    def alive(self) -> bool:
        return self.node is not None

    @property
    def is_cloud(self) -> bool:
        return self.role is Role.CLOUD


Event = tuple[int, int, Callable[..., None], tuple[Any, ...]]


class _Killed(BaseException):
    """The simulated process died inside a commit: nothing after it runs."""


class _HostEffects:
    """What the simulated shell does for one host's ``Driver`` (core.driver.Effects): the same
    calls the real shell (``shell/mesh.py``) makes, on the simulated storage and network."""

    def __init__(self, world: Simulator, host: Host) -> None:
        self._world = world
        self._host = host
        self._session = host.sessions

    def defer(self, changes: Sequence[Change]) -> None:
        self._host.deferred.extend(change for change in changes if change)

    def has_deferred(self) -> bool:
        return bool(self._host.deferred)

    def commit_deferred(self) -> bool:
        self._world._commit_deferred(self._host)
        return True

    def commit_after(self, delay_ms: int) -> None:
        world = self._world
        world._at(world.now + delay_ms, world._commit_due, self._host, self._session)

    def send(self, conn_id: int, frames: Sequence[bytes]) -> None:
        self._world._transmit(self._host, conn_id, frames)

    def close(self, conn_id: int, close: Close) -> None:
        self._world._closed_locally(self._host, conn_id, close)

    def note(self, event: str, fields: dict[str, Any]) -> None:
        if event == "peer.connected":
            world = self._world
            world.last_change_ms = world.now
            world._note(EventKind.CONNECTED, self._host.name, str(fields.get("peer", "")))

    def wake_at(self, deadline_ms: int | None) -> None:
        self._world._arm(self._host, deadline_ms)


class Simulator:
    """One seeded schedule of one store. ``run()`` once; then read ``violations`` / ``trace``."""

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
        authority = SigningKey(keys.randbytes(32))
        self.store = StoreIdentity(STORE_ID, public_key_of(authority), "UTC")
        self.trace: list[TraceEvent] = []
        self.counts: Counter[str] = Counter()
        self.violations: list[Violation] = []
        self.acked: list[Record] = []
        self.faulty = True
        self.done = False
        self.last_change_ms = 0
        self.busy_timer_reported = False
        self.lan_group: dict[str, int] | None = None
        self.lan_silent = False
        self.wan_cut: frozenset[str] = frozenset()
        self.wan_silent = False
        self.conns: dict[int, Conn] = {}
        self._next_conn = 1
        self._queue: list[Event] = []
        self._seq = 0
        self.hosts: dict[str, Host] = {}
        plant = config.plant
        self._node_cls: type[Node] = NoRelayNode if plant is PlantedBug.NO_RELAY else Node
        self._election_cls: type[Election] = (
            StickyLeaseElection if plant is PlantedBug.STICKY_LEASE else Election
        )
        self._driver_cls: type[Driver] = (
            SendBeforeCommitDriver if plant is PlantedBug.SEND_BEFORE_COMMIT else Driver
        )
        for i in range(1, config.lanes + 1):
            name = f"lane{i}"
            role = Role.MANAGER if i == 1 else Role.CASHIER
            self.hosts[name] = self._make_host(authority, keys, name, role)
        self.hosts[CLOUD] = self._make_host(authority, keys, CLOUD, Role.CLOUD)
        self.lanes = [h for h in self.hosts.values() if not h.is_cloud]
        self.cloud = self.hosts[CLOUD]
        names = [h.name for h in self.lanes]
        if config.topology is Topology.CHAIN:
            self.pairs = list(itertools.pairwise(names))
        else:
            self.pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        self.neighbors: dict[str, list[str]] = {n: [] for n in names}
        for a, b in self.pairs:
            self.neighbors[a].append(b)
            self.neighbors[b].append(a)
        for host in self.lanes:
            host.priority = rng.choice((0, 0, 0, 1, 2))
            host.offset_ms = rng.randint(-config.max_skew_ms, config.max_skew_ms)
            if plant is PlantedBug.RMW_STOCK:
                host.view = RmwStockView(1 + host.rng.randrange(2**CLIENT_ID_BITS - 1))

    def _make_host(self, authority: SigningKey, keys: random.Random, name: str, role: Role) -> Host:
        key = SigningKey(keys.randbytes(32))
        cert = issue_certificate(
            authority,
            STORE_ID,
            TerminalId(name),
            public_key_of(key),
            role,
            0,
            CERT_NOT_AFTER_MS,
        )
        rng = random.Random(f"lanesync-sim-{name}:{self.seed}")  # noqa: S311 - simulated nonces
        return Host(name, role, key, cert, rng)

    # -- the event loop ----------------------------------------------------------------------------

    def _at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(t, self.now), self._seq, fn, args))

    def run(self) -> None:
        """Play the schedule: setup, faulty phase, quiet phase until settled (or the bound)."""
        cfg = self.config
        self._note(EventKind.START, detail=self._describe_setup())
        for host in self.hosts.values():
            self._start(host)
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

    # -- trace -------------------------------------------------------------------------------------

    def _note(self, kind: EventKind, lane: str = "", peer: str = "", detail: str = "") -> None:
        self.counts[kind.value] += 1
        self.trace.append(TraceEvent(self.now, kind, lane, peer, detail))

    def violate(
        self, invariant: Invariant, message: str, subjects: tuple[str, ...] = (), known: str = ""
    ) -> None:
        violation = Violation(invariant, message, subjects, known)
        self.violations.append(violation)
        self._note(EventKind.VIOLATION, detail=violation.render())

    # -- hosts -------------------------------------------------------------------------------------

    def local_ms(self, host: Host) -> int:
        return self.base + self.now + host.offset_ms

    def _start(self, host: Host) -> None:
        host.sessions += 1
        local = self.local_ms(host)
        replica = Replica(
            self.store,
            1 + host.rng.randrange(2**CLIENT_ID_BITS - 1),
            LocalIdentity(host.cert, host.key),
        )
        self._commit(host, replica.restore(host.durable, host.verified, local))
        election = None
        if not host.is_cloud:
            election = self._election_cls(host.name, priority=host.priority, started_ms=local)
        host.replica = replica
        host.election = election
        node = host.node = self._node_cls(
            replica,
            random_bytes=host.rng.randbytes,
            anti_entropy_ms=self.config.anti_entropy_ms,
            ack_delay_ms=self.config.ack_delay_ms,
            election=election,
        )
        # The cloud commits every merge at once (its head-office tables follow each commit).
        delay = 0 if host.is_cloud else self.config.ack_delay_ms
        host.driver = self._driver_cls(node, _HostEffects(self, host), commit_delay_ms=delay)
        host.armed_ms = None
        host.timer_gen += 1
        host.pending_crash = None
        host.last_leader = None
        self.last_change_ms = self.now
        if not host.is_cloud:
            session = host.sessions
            for peer in self.neighbors[host.name]:
                dialer = Dialer(peer)
                host.dialers[peer] = dialer
                self._at(self.now, self._dial, host, dialer, dialer.gen, session)
            self._at(self.now, self._probe, host, session)
            self._at(self.now + UPLINK_CHECK_MS, self._steer, host, session)
        self._flush(host)

    def _valid(self, host: Host, session: int) -> bool:
        return host.alive and host.sessions == session

    def _commit_deferred(self, host: Host) -> None:
        deferred, host.deferred = host.deferred, []
        for change in deferred:
            self._commit(host, change)

    def _commit_due(self, host: Host, session: int) -> None:
        if self._valid(host, session) and host.driver is not None:
            host.driver.commit_due()

    def _commit(self, host: Host, change: Change) -> None:
        for doc, update in change.updates:
            host.durable.setdefault(doc, []).append(update)
        host.verified.update(change.verdicts)

    def _call(self, host: Host, what: str, fn: Callable[[], object]) -> bool:
        """Call into a host's core; an exception out of it is a finding (and kills the host,
        as an unhandled exception would kill the daemon's task)."""
        if what != "handle_timer":
            # Work that arrives after the timer ran may legitimately be due at once (a closed
            # link schedules anti-entropy now): only a deadline left in the past by
            # handle_timer itself is a busy loop.
            host.timer_ran_at = None
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - the simulator reports core exceptions
            self._core_raised(host, what, exc)
            return False
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":  # pyo3's, from pycrdt
                raise
            self._core_raised(host, what, exc)
            return False
        return True

    def _core_raised(self, host: Host, what: str, exc: BaseException) -> None:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        self.violate(
            Invariant.EXCEPTION,
            f"{host.name} {what}: {type(exc).__name__}: {exc} "
            f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno})",
            (host.name,),
        )
        self._crash(host, "core raised")

    def _flush(self, host: Host) -> None:
        """Handle a node's output as the real shell does: through the same core Driver."""
        if host.driver is None:
            return
        host.driver.flush()
        self._watch_leader(host)

    def _watch_leader(self, host: Host) -> None:
        election = host.election
        if election is None or election.leader == host.last_leader:
            return
        host.last_leader = election.leader
        self.last_change_ms = self.now
        self._note(
            EventKind.LEADER,
            host.name,
            election.leader or "",
            f"term={election.leader_term} reachable={election.reachable}",
        )

    # -- timers ------------------------------------------------------------------------------------

    def _arm(self, host: Host, deadline: int | None) -> None:
        if host.node is None:
            return
        local = self.local_ms(host)
        if deadline is not None and deadline <= local and host.timer_ran_at == local:
            # handle_timer(now) just ran and still asks to be woken in the past: the real
            # daemon would spin (call_later(0) forever). Report it, then wake at the next
            # deadline that is really ahead, which is when the spinning daemon would act.
            if not self.busy_timer_reported:  # once per schedule: it is one finding
                self.busy_timer_reported = True
                self.violate(
                    Invariant.TIMERS,
                    f"{host.name}: next_deadline() = {deadline} <= now {local} right after "
                    "handle_timer(now): the shell's timer would fire in a busy loop",
                    (host.name,),
                )
            deadline = self._future_deadline(host, local)
        if deadline == host.armed_ms:
            return
        host.armed_ms = deadline
        host.timer_gen += 1
        if deadline is not None:
            self._at(deadline - self.base - host.offset_ms, self._timer, host, host.timer_gen)

    @staticmethod
    def _future_deadline(host: Host, local: int) -> int | None:
        node = host.node
        candidates: list[int] = []
        if node is not None:
            for link in node.links.values():
                if link.is_open:
                    candidates += [
                        d for d in (link.ack_due_ms, link.anti_entropy_due_ms) if d is not None
                    ]
        election = host.election
        if election is not None:
            candidates.append(election._next_gossip_ms)
            candidates.append(election.started_ms + LEASE_MS)
            candidates += [h.heard_ms + LEASE_MS for h in election._heard.values()]
        return min((c for c in candidates if c > local), default=None)

    def _timer(self, host: Host, gen: int) -> None:
        node = host.node
        if node is None or gen != host.timer_gen:
            return
        host.armed_ms = None
        local = self.local_ms(host)
        host.timer_ran_at = local
        if self._call(host, "handle_timer", lambda: node.handle_timer(local)):
            self._flush(host)

    # -- the network -------------------------------------------------------------------------------

    def reachable(self, a: str, b: str) -> bool:
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
        host = self.hosts[dst]
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
        sender = self.hosts[conn.other(host.name)]
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
        benign = close.code is not CloseCode.POLICY_VIOLATION or reason.startswith(
            ("refused by peer: ", SIM_REASON)
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
                self._after_attempt(host, dialer)

    def reset(self, conn: Conn, reason: str) -> None:
        """Both ends lose the connection now; whatever was in flight is gone."""
        self._note(EventKind.RESET, conn.dialer, conn.listener, f"conn={conn.conn_id} {reason}")
        conn.held = False
        for pipe in conn.pipes.values():
            pipe.clear()
        for name in list(conn.ends):
            self._lose(self.hosts[name], conn, SIM_REASON + reason)

    # -- dialling ----------------------------------------------------------------------------------

    def _after_attempt(self, host: Host, dialer: Dialer) -> None:
        """The daemon's backoff after an attempt or a connection ended (full jitter)."""
        if dialer.stopped or not host.alive:
            return
        if self.now - dialer.started_ms > 2 * BACKOFF_MAX_MS:
            dialer.delay_ms = BACKOFF_INITIAL_MS
        wait = self.rng.randint(0, dialer.delay_ms)
        dialer.delay_ms = min(BACKOFF_MAX_MS, dialer.delay_ms * 2)
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
        dialer.started_ms = self.now
        target = self.hosts[dialer.target]
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
        self._after_attempt(host, dialer)

    def _open(self, host: Host, dialer: Dialer, conn: Conn, session: int) -> None:
        if dialer.conn_id != conn.conn_id:
            return
        target = self.hosts[conn.listener]
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
            host.uplink = Dialer(CLOUD)
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

    # -- crashes -----------------------------------------------------------------------------------

    def _crash(self, host: Host, why: str) -> None:
        """SIGKILL: memory is gone, ``durable`` stays; peers see the kernel close the sockets."""
        if not host.alive:
            return
        self._note(EventKind.CRASH, host.name, detail=why)
        self.last_change_ms = self.now
        host.node = None
        host.replica = None
        host.election = None
        host.pending_crash = None
        host.deferred = []
        host.driver = None
        host.timer_gen += 1
        host.armed_ms = None
        for dialer in [*host.dialers.values(), host.uplink]:
            if dialer is not None:
                dialer.stopped = True
                dialer.gen += 1
        host.dialers = {}
        host.uplink = None
        for conn in list(self.conns.values()):
            if host.name not in conn.ends:
                continue
            conn.ends.remove(host.name)
            conn.pipes[host.name].clear()
            other = conn.other(host.name)
            if other in conn.ends:
                self._enqueue(conn, other, Fin(SIM_REASON + "peer process killed"))
            self._forget_if_done(conn)
        delay = self.rng.randint(300, 4_000) if self.faulty else 1_000
        self._at(self.now + delay, self._restart, host, host.sessions)

    def _restart(self, host: Host, session: int) -> None:
        if host.alive or host.sessions != session:
            return
        if not host.is_cloud and self.rng.random() < 0.5:  # a reboot may come back skewed
            skew = self.config.max_skew_ms
            host.offset_ms = self.rng.randint(-skew, skew)
        self._note(EventKind.RESTART, host.name, detail=f"skew={host.offset_ms:+d}")
        self._start(host)

    # -- the workload ------------------------------------------------------------------------------

    def _schedule_workload(self) -> None:
        cfg = self.config
        for _ in range(cfg.ops):
            self._at(self.work.randint(300, max(301, cfg.fault_ms - 1)), self._operation)

    def _operation(self) -> None:
        if not self.faulty:
            return
        work = self.work
        kind = work.choices(
            (
                EventKind.SALE,
                EventKind.VOID,
                EventKind.RECEIPT,
                EventKind.ADJUSTMENT,
                EventKind.PRICE,
                EventKind.CLOUD_PRICE,
            ),
            weights=(50, 10, 14, 8, 8, 6),
        )[0]
        item = sku(work.choice(SKUS))
        if kind is EventKind.CLOUD_PRICE:
            host = self.cloud
        elif kind is EventKind.PRICE:
            host = self.lanes[0]  # the manager lane
        else:
            host = work.choice(self.lanes)
        replica = host.replica
        if replica is None:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: terminal is down")
            return
        try:
            body = self._build(kind, replica, item)
        except LanesyncError as exc:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: {exc}"[:80])
            return
        self._write(host, kind, body)

    def _build(self, kind: EventKind, replica: Replica, item: Sku) -> Body:
        work = self.work
        ledger = replica.views
        match kind:
            case EventKind.SALE:
                lines = []
                for _ in range(work.choice((1, 1, 2))):
                    price = None if work.random() < 0.5 else work.randint(50, 999)
                    line = bodies.LineRequest(sku(work.choice(SKUS)), work.randint(1, 3), price)
                    if price is None and ledger.price_of(line.sku) is None:
                        line = bodies.LineRequest(line.sku, line.qty, work.randint(50, 999))
                    lines.append(line)
                return bodies.build_sale(ledger, lines)
            case EventKind.VOID:
                open_sales = sorted(s for s in ledger.sale_ids() if not ledger.is_voided(s))
                if not open_sales:
                    return bodies.build_void(ledger, "nosale:1")  # refused: no such sale
                return bodies.build_void(ledger, work.choice(open_sales))
            case EventKind.RECEIPT:
                return bodies.build_receipt(item, work.randint(1, 20))
            case EventKind.ADJUSTMENT:
                delta = work.choice((-3, -2, -1, 1, 2, 5))
                return bodies.build_adjustment(item, delta, "count")
            case _:
                role = Role.CLOUD if kind is EventKind.CLOUD_PRICE else Role.MANAGER
                return bodies.build_price_change(role, item, work.randint(50, 999))

    def _write(self, host: Host, kind: EventKind, body: Body) -> None:
        """The group committer: append (sign), then the driver commits and offers the record
        to peers (in that order, unless a planted bug swaps them); then acknowledge."""
        replica, driver = host.replica, host.driver
        if replica is None or driver is None:
            return
        local = self.local_ms(host)
        try:
            record, change = replica.append(body, local)
        except LanesyncError as exc:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: {exc}"[:80])
            return
        committed = False

        def commit() -> None:
            nonlocal committed
            if host.pending_crash == CrashMode.WRITE:
                self._note(EventKind.LOST_WRITE, host.name, detail=f"{record.id} never committed")
                self._crash(host, "killed before the commit")
                raise _Killed
            self._commit_deferred(host)  # the log keeps the order of memory (Terminal.commit)
            self._commit(host, change)
            committed = True

        try:
            wrote = self._call(host, "local_change", lambda: driver.write([change], commit, local))
        except _Killed:
            return
        if committed:
            self.acked.append(record)
            self._note(kind, host.name, detail=f"{record.id} {describe(body)}")
            if host.view is not None:
                self._move_view(host, body)
        if wrote:
            self._flush(host)

    def _move_view(self, host: Host, body: Body) -> None:
        view = host.view
        replica = host.replica
        if view is None or replica is None:
            return
        match body:
            case Sale(lines):
                for line in lines:
                    view.move(line.sku, -line.qty)
            case Void(sale_id):
                sale = replica.find_record(sale_id)
                if sale is not None and isinstance(sale.body, Sale):
                    for line in sale.body.lines:
                        view.move(line.sku, line.qty)
            case Receipt(item, qty):
                view.move(item, qty)
            case Adjustment(item, delta):
                view.move(item, delta)
            case PriceChange():
                pass

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
            if not host.alive:
                self._note(EventKind.RESTART, host.name, detail=f"skew={host.offset_ms:+d}")
                self._start(host)
        self.last_change_ms = self.now
        self._at(self.now + self.config.quiet_min_ms, self._settle_poll)

    def _settle_poll(self) -> None:
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
        a partition, every replica (the cloud's too) at one digest."""
        if not all(h.alive for h in self.hosts.values()):
            return False
        if self.now - self.last_change_ms < LEASE_MS + 2 * GOSSIP_MS:
            return False
        if any(conn.held for conn in self.conns.values()):
            return False
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
        digests = {h.replica.digest() for h in self.hosts.values() if h.replica is not None}
        return len(digests) == 1


def describe(body: Body) -> str:
    match body:
        case Sale(lines, total):
            items = ",".join(f"{line.sku}x{line.qty}@{line.unit_cents}" for line in lines)
            return f"{items} total={total}"
        case Void(sale_id):
            return f"of {sale_id}"
        case Receipt(item, qty):
            return f"{item}+{qty}"
        case Adjustment(item, delta, _):
            return f"{item}{delta:+d}"
        case PriceChange(item, cents):
            return f"{item}={cents}"
