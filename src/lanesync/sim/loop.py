"""What every part of the ``Simulator`` shares: its state, the event queue and the trace.

``Simulator`` (``world.py``) is assembled from parts, one module per idea, each a class in one
chain of bases: ``EventLoop`` (here) < ``HostShell`` (``host.py``: one host's simulated shell) <
``Transport`` (``transport.py``: the simulated network) < ``Dialing`` (``dialing.py``: dialers and
the uplink) < ``Workload`` (``workload.py``) and ``Faults`` (``faults.py``: the fault schedule) <
``Lifecycle`` (``lifecycle.py``: backups, restores, re-keys and the store's fork repair).
Their methods run on the one ``Simulator`` and share the state declared here, which
``Simulator.__init__`` sets. A part that calls a method of a part above it in the chain declares
it for the type checker only (``if TYPE_CHECKING``), so nothing is defined twice.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lanesync.core.driver import Driver
from lanesync.core.election import Election
from lanesync.core.identity import StoreIdentity
from lanesync.core.node import Node
from lanesync.core.records import Record
from lanesync.core.replica import Replica
from lanesync.sim.model import EventKind, Invariant, SimConfig, TraceEvent, Violation
from lanesync.sim.network import Conn

if TYPE_CHECKING:
    from lanesync.sim.host import Host

Event = tuple[int, int, Callable[..., None], tuple[Any, ...]]


class EventLoop:
    """The shared state of one schedule, the event queue (``_at``) and the trace."""

    seed: int
    config: SimConfig
    rng: random.Random  # faults and network
    work: random.Random  # the workload
    now: int  # simulated milliseconds since the start
    base: int  # the wall clock at the start (each host adds its skew)
    store: StoreIdentity
    trace: list[TraceEvent]
    counts: Counter[str]
    violations: list[Violation]
    acked: list[Record]
    revoked: dict[str, int]  # revoked terminal -> the last seq of its chain the store accepts
    revoked_via: set[str]  # the lanes the store published a revocation through
    faulty: bool
    done: bool
    last_change_ms: int
    busy_timer_reported: bool
    lan_group: dict[str, int] | None
    lan_silent: bool
    wan_cut: frozenset[str]
    wan_silent: bool
    conns: dict[int, Conn]
    _next_conn: int
    _queue: list[Event]
    _seq: int
    hosts: dict[str, Host]  # the hosts of the store now
    by_name: dict[str, Host]  # every host there ever was (frames to a replaced one may fly)
    lanes: list[Host]
    cloud: Host
    pairs: list[tuple[str, str]]
    neighbors: dict[str, list[str]]
    _node_cls: type[Node]
    _election_cls: type[Election]
    _driver_cls: type[Driver]
    _replica_cls: type[Replica]

    # -- the event loop ----------------------------------------------------------------------------

    def _at(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (max(t, self.now), self._seq, fn, args))

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
