"""The simulated shell of one host (a lane or the cloud): what survives its crashes, the effects
its core ``Driver`` has (``_HostEffects``), start, commit, calls into the core, timers, crash and
restart.

A ``Host`` is the process; ``HostShell`` is the part of ``Simulator`` that runs it. It does what
``shell/mesh.py``, ``shell/terminal.py`` and ``shell/daemon.py`` do for a real lane, on simulated
storage (the ``durable`` rows) and the simulated network (``transport.py``). Dialling and the
uplink are in ``dialing.py``.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from nacl.signing import SigningKey

from lanesync.core import sealdays, sealing, zreport
from lanesync.core.change import Change
from lanesync.core.driver import Driver
from lanesync.core.election import LEASE_MS, Election
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Role,
)
from lanesync.core.ids import CLOUD_TERMINAL_ID, LEDGER_PREFIX, StoreId
from lanesync.core.link import Close
from lanesync.core.node import Node
from lanesync.core.redial import Redial
from lanesync.core.replica import Replica
from lanesync.core.sealdays import Sealing
from lanesync.errors import LanesyncError
from lanesync.sim.loop import EventLoop
from lanesync.sim.model import (
    BASE_MS,
    DAY_MS,
    SEAL_CHECK_MS,
    UPLINK_CHECK_MS,
    EventKind,
    Invariant,
    PlantedBug,
)
from lanesync.sim.network import Conn, Fin, Item
from lanesync.sim.planted import (
    RmwStockView,
    seal_day_unchecked,
)

CLOUD = str(CLOUD_TERMINAL_ID)
STORE_ID = StoreId("simstore")
CLIENT_ID_BITS = 31  # shell.directories.CLIENT_ID_BITS
CERT_NOT_AFTER_MS = BASE_MS + 10 * 365 * DAY_MS
# The cloud's nodes merge a bounded amount a turn (64 KiB in cloud/stores.py); a simulated
# store's catch-ups are a few KB, so the simulated cloud is given a budget that cuts them into
# slices too, and merges under faults over several turns as the real one does with a day.
CLOUD_MERGE_BUDGET_BYTES = 2_048
SIM_REASON = "sim: "  # transport reasons the simulator gives (resets, timeouts, kills)


class CrashMode:
    """How a pending crash strikes: at the next local write before its commit, or right after
    the next merge of received data, before that merge is committed."""

    WRITE = "during-commit"
    MERGE = "during-merge"


@dataclass(eq=False)
class Dialer:
    """The daemon's ``_dial_forever`` for one peer: one attempt at a time, on the core's
    redial schedule (the cloud uplink's: ``Redial.uplink()``)."""

    target: str
    redial: Redial = field(default_factory=Redial)
    conn_id: int | None = None  # the connection it dialed, while our end holds it
    gen: int = 0  # bumped to cancel scheduled attempts
    stopped: bool = False


@dataclass(frozen=True, slots=True)
class Archive:
    """A row of storage's ``sealed_days`` table (``shell/storage.py``): a sealed day's
    description, archive and sealed Z-report; ``reopened`` once a late record, or a store
    decision that changed what the day counts, opened it again (its log rows hold it then; the
    row keeps the earlier report hash)."""

    meta: bytes
    archive: bytes
    report: bytes
    sealed_ms: int  # simulated time of the seal (``sealed_at_ms``)
    reopened: bool = False


@dataclass(frozen=True, slots=True)
class Backup:
    """A copy of a host's committed state (``durable``, its sealed days and its signature
    verdicts), and how many records of its own chain it held then."""

    durable: dict[str, tuple[bytes, ...]]
    verified: frozenset[bytes]
    own_seq: int
    taken_ms: int
    archives: dict[str, Archive] = field(default_factory=dict)


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
    archives: dict[str, Archive] = field(default_factory=dict)  # sealed days, by day (durable)
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
    backup: Backup | None = None  # its last backup (restore.py)
    restored: bool = False  # restarted from a backup once: not restored or re-keyed again
    retired: bool = False  # replaced by another terminal: never restarts
    isolated_until_ms: int = 0  # restored with its network down: reaches nobody until then
    # (day, replica digest) -> is the day complete (``Terminal._complete``'s memo)
    completeness: dict[tuple[str, str], bool] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.node is not None

    @property
    def is_cloud(self) -> bool:
        return self.role is Role.CLOUD


class Killed(BaseException):
    """The simulated process died inside a commit: nothing after it runs."""


class _HostEffects:
    """What the simulated shell does for one host's ``Driver`` (core.driver.Effects): the same
    calls the real shell (``shell/mesh.py``) makes, on the simulated storage and network."""

    def __init__(self, world: HostShell, host: Host) -> None:
        self._world = world
        self._host = host
        self._session = host.sessions

    def defer(self, changes: Sequence[Change]) -> None:
        merged = [change for change in changes if change]
        if merged:
            # The flush merged (a merge budget's next slice, after the timer): progress, and
            # what it schedules (a state request to a peer the relay cannot push to yet) may
            # be due at once without the timer spinning.
            self._host.timer_ran_at = None
        self._host.deferred.extend(merged)

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


class HostShell(EventLoop):
    """The ``Simulator``'s hosts: start, commit, calls into the core, timers, crash, restart."""

    if TYPE_CHECKING:  # defined by a part above this one (see loop.py)

        def _enqueue(self, conn: Conn, dst: str, item: Item) -> None: ...

        def _forget_if_done(self, conn: Conn) -> None: ...

        def _transmit(self, host: Host, conn_id: int, frames: Sequence[bytes]) -> None: ...

        def _closed_locally(self, host: Host, conn_id: int, close: Close) -> None: ...

        def _dial(self, host: Host, dialer: Dialer, gen: int, session: int) -> None: ...

        def _probe(self, host: Host, session: int) -> None: ...

        def _steer(self, host: Host, session: int) -> None: ...

    # -- hosts -------------------------------------------------------------------------------------

    def local_ms(self, host: Host) -> int:
        return self.base + self.now + host.offset_ms

    def _start(self, host: Host) -> None:
        host.sessions += 1
        local = self.local_ms(host)
        replica = self._replica_cls(
            self.store,
            1 + host.rng.randrange(2**CLIENT_ID_BITS - 1),
            LocalIdentity(host.cert, host.key),
        )
        change = restore_replica(replica, host, local)
        self._commit(host, change)
        replica.persisted([change])
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
            merge_budget_bytes=CLOUD_MERGE_BUDGET_BYTES if host.is_cloud else None,
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
            # The daemon's seal_days_when_due (shell/dayclosing.py); the cloud seals nothing.
            self._at(self.now + SEAL_CHECK_MS, self._seal_tick, host, session)
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
        """``Storage.commit``: one transaction (the simulated process cannot die inside it)."""
        for doc, update in change.updates:
            host.durable.setdefault(doc, []).append(update)
        host.verified.update(change.verdicts)
        for doc in change.unsealed:
            day = doc.removeprefix(LEDGER_PREFIX)
            archive = host.archives[day]
            host.archives[day] = replace(archive, reopened=True)
            self.last_change_ms = self.now
            self._note(EventKind.UNSEAL, host.name, detail=f"{day}: opened again")
        if host.replica is not None:
            host.replica.persisted([change])

    # -- sealing -----------------------------------------------------------------------------------

    def _seal_tick(self, host: Host, session: int) -> None:
        if not self._valid(host, session):
            return
        self._seal_due(host)
        self._at(self.now + SEAL_CHECK_MS, self._seal_tick, host, session)

    def _seal_due(self, host: Host) -> None:
        """``Terminal.seal_due``: seal every complete day the connected peers acknowledged, and
        store the archives and drop the days' log rows in the same step (``Storage.seal``, one
        transaction: the simulated process cannot die between the seal and the store). Nothing
        while changes merged from peers wait for their commit."""
        replica, node = host.replica, host.node
        if replica is None or node is None or host.deferred or replica.unpersisted_updates:
            return
        planted = self.config.plant is PlantedBug.SEAL_INCOMPLETE

        def acknowledged(day: str) -> bool:
            return sealdays.acknowledged(replica, day, node.peer_states())

        def complete(day: str) -> bool:
            # Asked before ``acknowledged``: that one is cheap and the fold is not (the
            # simulator's only shortcut; the verdict is sealable's either way).
            if not acknowledged(day):
                return False
            # PLANTED BUG: every candidate (a day some lane closed) passes as complete.
            return planted or self._complete(host, replica, day)

        try:
            days = sealdays.sealable(replica, acknowledged, complete)
        except LanesyncError as exc:
            self._core_raised(host, "sealable", exc)
            return
        if not days:
            return
        done: list[Sealing] = []
        pending: dict[str, bytes] = {}  # archives sealed in memory, not stored yet
        replica.attach_archives(lambda day: pending.get(day) or host.archives[day].archive)
        for day in days:
            # The simulator's own look at the day just before it is sealed (the same fold the
            # seal makes): what the SEALING invariant is checked against.
            report = zreport.z_report(replica, day)
            seal = seal_day_unchecked if planted else sealdays.seal_day
            try:
                sealed = seal(replica, day)
            except LanesyncError as exc:
                self._core_raised(host, "seal_day", exc)
                return
            done.append(sealed)
            pending[day] = sealed.archive
            self._check_seal(host, sealed, report)
        for sealed in done:
            day = sealed.sealed.day
            host.archives[day] = Archive(sealed.meta, sealed.archive, sealed.report, self.now)
            host.durable.pop(sealed.sealed.doc, None)
        replica.attach_archives(archive_reader(host))
        self.last_change_ms = self.now

    def _complete(self, host: Host, replica: Replica, day: str) -> bool:
        """``sealdays.is_complete``, folded again only when the content changed."""
        key = (day, replica.digest())
        known = host.completeness.get(key)
        if known is None:
            if len(host.completeness) > 64:
                host.completeness.clear()
            known = host.completeness[key] = sealdays.is_complete(replica, day)
        return known

    def _check_seal(self, host: Host, sealed: Sealing, report: dict[str, Any]) -> None:
        """A day is sealed only when its report is complete, and a day sealed again after a
        late record names every earlier seal's report hash."""
        day = sealed.sealed.day
        amended = sealed.sealed.amended_from
        detail = f"{day} report {sealed.sealed.report_hash[:12]} records {sealed.sealed.records}"
        if amended:
            detail += f" amended from {','.join(h[:12] for h in amended)}"
        self._note(EventKind.SEAL, host.name, detail=detail)
        if not report["complete"] or not report["terminals"]:
            missing = ",".join(report["missing_terminals"]) or "no terminal"
            self.violate(
                Invariant.SEALING,
                f"{host.name} sealed {day} while its report is not complete (missing {missing})",
                (host.name, *report["missing_terminals"]),
            )
        if report["report_hash"] != sealed.sealed.report_hash:
            self.violate(
                Invariant.SEALING,
                f"{host.name} sealed {day} with report hash {sealed.sealed.report_hash[:12]}, "
                f"its report was {str(report['report_hash'])[:12]}",
                (host.name,),
            )
        earlier = host.archives.get(day)
        if earlier is not None:
            before = sealing.decode_meta(earlier.meta)
            history = (*before.amended_from, before.report_hash)
            if history[-1] == sealed.sealed.report_hash:
                history = history[:-1]  # sealed again with the same report: not amended by it
            if amended != history:
                self.violate(
                    Invariant.SEALING,
                    f"{host.name} sealed {day} again naming earlier seals {list(amended)}, "
                    f"not {[*before.amended_from, before.report_hash]}",
                    (host.name,),
                )

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
        busy = host.timer_ran_at == local and not host.node.merging  # merging: progress
        if deadline is not None and deadline <= local and busy:
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
        if host.alive or host.sessions != session or host.retired:
            return
        if not host.is_cloud and self.rng.random() < 0.5:  # a reboot may come back skewed
            skew = self.config.max_skew_ms
            host.offset_ms = self.rng.randint(-skew, skew)
        self._note(EventKind.RESTART, host.name, detail=f"skew={host.offset_ms:+d}")
        self._start(host)


def archive_reader(host: Host) -> Callable[[str], bytes]:
    """``Storage.read_archive`` on a host's durable sealed days."""
    return lambda day: host.archives[day].archive


def restore_replica(replica: Replica, host: Host, now_ms: int) -> Change:
    """``Terminal.open``: a fresh replica restored from exactly what ``host`` committed, its
    sealed days read through the archives (``Storage.load``'s ``sealed`` and ``amended``)."""
    sealed = []
    amended: dict[str, tuple[str, ...]] = {}
    for _, stored in sorted(host.archives.items()):
        meta = sealing.decode_meta(stored.meta)
        if stored.reopened:
            amended[meta.doc] = (*meta.amended_from, meta.report_hash)
        else:
            sealed.append(meta)
    replica.attach_archives(archive_reader(host))
    return replica.restore(host.durable, host.verified, now_ms, sealed=sealed, amended=amended)
