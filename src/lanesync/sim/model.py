"""Vocabulary of the simulator: configuration, trace events, invariants, violations.

Everything here is immutable data. A ``SimConfig`` plus a seed determines a schedule completely:
the same pair always produces the same trace, byte for byte.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from lanesync.core.node import ACK_DELAY_MS, ANTI_ENTROPY_MS

# -- timings the simulated shell shares with the real one ---------------------------------------
# Mirrors of lanesync.shell.mesh, .dialing and .uplink (which import asyncio, so the pure
# simulator cannot import them); tests/sim checks they stay equal. The redial schedule itself is
# the core's (core/redial.py), which both pump.
CONNECTION_OPEN_TIMEOUT_MS = 5_000  # shell.dialing.CONNECTION_OPEN_TIMEOUT_S
PING_INTERVAL_MS = 2_000  # shell.mesh.PING_INTERVAL_S
PING_TIMEOUT_MS = 2_000  # shell.mesh.PING_TIMEOUT_S
UPLINK_CHECK_MS = 250  # shell.uplink.CHECK_INTERVAL_S
UPLINK_PROBE_MS = 2_000  # shell.uplink.PROBE_INTERVAL_S
SEAL_CHECK_MS = 1_000  # shell.dayclosing.SEAL_CHECK_EVERY_S

# 2026-11-18 11:06:40 UTC (the core tests' NOW): far from midnight. Some schedules start just
# before a midnight instead, so that skewed lanes write into two business days.
BASE_MS = 1_795_000_000_000
DAY_MS = 86_400_000
SKUS = ("milk", "bread", "eggs")


class Topology(enum.Enum):
    """Which lane pairs dial each other. ``CHAIN``: lane i only with lane i+1, so everything
    the ends exchange must be relayed by the lanes in between."""

    FULL = "full"
    CHAIN = "chain"


class PlantedBug(enum.Enum):
    """Known bugs the simulator must find (test-only switches; see ``lanesync.sim.planted``)."""

    RMW_STOCK = "rmw-stock"  # on hand kept in a CRDT shared integer, read-modify-write
    NO_RELAY = "no-relay"  # a node that never forwards what it merged
    STICKY_LEASE = "sticky-lease"  # a leader whose lease never expires
    SEND_BEFORE_COMMIT = "send-before-commit"  # a local record sent before it is durable
    COUNT_FORK_TWICE = "count-fork-twice"  # a resolved fork's shared prefix counted per branch
    SEAL_INCOMPLETE = "seal-incomplete"  # a day sealed once any lane closed it, complete or not


class EventKind(enum.Enum):
    """Everything a schedule can do, as it appears in the trace and the summary counts."""

    START = "start"
    SALE = "sale"
    VOID = "void"
    RECEIPT = "receipt"
    ADJUSTMENT = "adjustment"
    PRICE = "price"
    CLOUD_PRICE = "cloud-price"
    CLOSE = "close"  # a lane closed its open business days (a day-end record each)
    STORE_CLOSE = "store-close"  # every lane's daemon closes the day, each by its own clock
    SEAL = "seal"  # a lane sealed a complete, acknowledged day (an archive replaces its log)
    UNSEAL = "unseal"  # a late record opened a sealed day again (committed: 'reopened')
    REFUSED = "refused"  # a write the views refused (a void of an unknown sale ...)
    LOST_WRITE = "lost-write"  # killed before the commit: never acknowledged
    DIAL = "dial"
    DIAL_FAILED = "dial-failed"
    CONNECTED = "connected"
    CLOSED = "closed"
    RESET = "reset"
    DROP = "drop"
    DUP = "dup"
    REORDER = "reorder"
    CORRUPT = "corrupt"
    DELAY = "delay"
    LAN_PARTITION = "lan-partition"
    LAN_HEAL = "lan-heal"
    WAN_PARTITION = "wan-partition"
    WAN_HEAL = "wan-heal"
    CRASH = "crash"
    RESTART = "restart"
    CLOCK_STEP = "clock-step"
    COMPACT = "compact"
    BACKUP = "backup"  # a copy of a lane's committed log, taken to be restored later
    RESTORE = "restore"  # a lane restarted from its last backup (may fork its chain)
    ISOLATED = "isolated"  # a restored lane back before its network: it sells alone
    FORK_RESOLVED = "fork-resolved"  # the store authority resolved a fork (resolve-fork)
    REPLACED = "replaced"  # a lane continues under a new terminal id (enroll --replaces)
    REKEY = "re-key"  # a lane's key replaced, its chain continued (enroll --replaces, same id)
    REVOKE = "revoke"  # the store revoked a lane, cutting its chain at a position
    BUNDLE = "bundle"  # a revoked lane's documents imported on another lane as it is replaced
    LEADER = "leader"
    UPLINK_START = "uplink-start"
    UPLINK_STOP = "uplink-stop"
    QUIET = "quiet"
    SETTLED = "settled"
    VIOLATION = "violation"


class Invariant(enum.Enum):
    """The truths of DESIGN.md, as the simulator checks them (plus liveness of the core)."""

    CONVERGENCE = "convergence"  # equal digests on every lane
    CLOUD = "cloud-equals-store"  # the cloud's replica has the store's digest
    STOCK = "exact-stock"  # on hand = receipts + adjustments - sold + voided back
    SALES = "acknowledged-sales"  # every acknowledged sale exactly once, nothing else
    JOURNAL = "journal-integrity"  # no problems, gap-free chains up to the acknowledged head
    PRICES = "catalog-prices"  # the last acknowledged price (HLC, terminal, hash) wins everywhere
    LEADER = "single-leader"  # at most one leader per connected component, one when settled
    DURABILITY = "durable-equals-memory"  # what restarts from the committed log = memory
    PROTOCOL = "no-spurious-close"  # only injected faults make a connection fail
    REPORT = "same-report"  # replicas with the same digest print the same Z-reports
    TIMERS = "timer-progress"  # after handle_timer(now), next_deadline() is in the future
    EXCEPTION = "no-exception"  # the core never raises out of a transport or timer call
    # A day is sealed only when its report is complete; replicas that sealed a day with the
    # same content sealed the same report; a day sealed again names its earlier report hashes.
    SEALING = "sealed-complete"


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One line of a schedule's trace. ``t_ms`` is simulated time since the schedule began."""

    t_ms: int
    kind: EventKind
    lane: str = ""
    peer: str = ""
    detail: str = ""

    def render(self) -> str:
        text = f"{self.t_ms:>7} {self.kind.value:<13} {self.lane:<6} {self.peer:<6} {self.detail}"
        return text.rstrip()

    def involves(self, names: frozenset[str]) -> bool:
        return (
            self.lane in names
            or self.peer in names
            or any(name in self.detail for name in names if ":" in name)
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """An invariant that did not hold. ``subjects``: lanes and record ids it is about."""

    invariant: Invariant
    message: str
    subjects: tuple[str, ...] = ()
    known: str = ""  # id of a documented core finding (see KNOWN_FINDINGS), "" otherwise

    def render(self) -> str:
        tag = f" [known: {self.known}]" if self.known else ""
        return f"{self.invariant.value}: {self.message}{tag}"


@dataclass(frozen=True, slots=True)
class FaultRates:
    """Fault intensities during the faulty phase (per second of simulated time, or per frame)."""

    resets_per_s: float = 0.25
    lan_partitions_per_s: float = 0.12
    wan_partitions_per_s: float = 0.1
    crashes_per_s: float = 0.12
    cloud_crashes_per_s: float = 0.02
    clock_steps_per_s: float = 0.05
    delay_spikes_per_s: float = 0.15
    compactions_per_s: float = 0.05
    # A lane's committed log copied (a backup), then a lane restarted from its last copy, as a
    # restore from an old backup does: at these rates about a third of the CI batch's seeds
    # (3 lanes, 6 s) fork a chain and resolve it (the counts are in the summary's seeds_with).
    backups_per_s: float = 0.3
    restores_per_s: float = 0.15
    rekeys_per_s: float = 0.02
    # The store revokes a lane (at most one per schedule): about one seed in six of the CI batch.
    revocations_per_s: float = 0.04
    # Raw faults inside an established (sealed) stream: each frame with this probability.
    drop: float = 0.002
    dup: float = 0.002
    reorder: float = 0.002
    corrupt: float = 0.001

    @classmethod
    def none(cls) -> FaultRates:
        return cls(**dict.fromkeys(cls.__dataclass_fields__, 0))


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One store and how hard to push it. Every field is part of a replay's identity."""

    lanes: int = 4
    topology: Topology = Topology.FULL
    ops: int = 30  # workload operations during the faulty phase (about)
    fault_ms: int = 10_000  # length of the faulty phase
    quiet_min_ms: int = 4_000  # the quiet phase lasts at least this ...
    quiet_max_ms: int = 40_000  # ... and checks are made at the latest after this
    anti_entropy_ms: int = ANTI_ENTROPY_MS
    ack_delay_ms: int = ACK_DELAY_MS
    max_skew_ms: int = 1_500
    faults: FaultRates = field(default_factory=FaultRates)
    plant: PlantedBug | None = None
    trace_limit: int = 60  # trace lines shown for a failure

    def __post_init__(self) -> None:
        if not 2 <= self.lanes <= 32:
            raise ValueError("a simulated store has 2 to 32 lanes")
        if self.quiet_min_ms > self.quiet_max_ms:
            raise ValueError("quiet_min_ms must not exceed quiet_max_ms")

    @classmethod
    def for_plant(cls, plant: PlantedBug | None, **overrides: object) -> SimConfig:
        """The configuration a planted bug is hunted with (and its unplanted control run).

        ``NO_RELAY`` needs a chain (only relays carry data end to end) and anti-entropy slower
        than the whole schedule (it would repair the missing relay)."""
        config = cls(plant=plant)
        if plant is PlantedBug.NO_RELAY:
            config = replace(config, topology=Topology.CHAIN, lanes=3, anti_entropy_ms=3_600_000)
        return replace(config, **overrides)  # type: ignore[arg-type]

    def control(self) -> SimConfig:
        """The same store and schedule shape with the planted bug removed."""
        return replace(self, plant=None)

    def cli_args(self, seed: int) -> str:
        """The command line that replays ``seed`` under this configuration."""
        args = [f"lanesync sim --seed {seed} --lanes {self.lanes}"]
        default = SimConfig.for_plant(self.plant, lanes=self.lanes)
        if self.plant is not None:
            args.append(f"--plant {self.plant.value}")
        if self.topology is not default.topology:
            args.append(f"--topology {self.topology.value}")
        if self.ops != default.ops:
            args.append(f"--ops {self.ops}")
        if self.fault_ms != default.fault_ms:
            args.append(f"--fault-ms {self.fault_ms}")
        if self.anti_entropy_ms != default.anti_entropy_ms:
            args.append(f"--anti-entropy-ms {self.anti_entropy_ms}")
        if self.faults == FaultRates.none():
            args.append("--no-faults")
        return " ".join(args)
