"""The election's property harness: many pure ``Election`` objects on a simulated clock.

Not a second system simulator: ``lanesync.sim`` runs whole lanes (the election included) on its
simulated network; this drives the election alone, so its timing properties (lease bounds,
agreement after heal) can be checked over hundreds of seeds in a second, as h11 tests its state
machine with ``ConnectionPair``.

Several ``lanesync.core.election.Election`` objects, one per terminal, are driven by a simulated
millisecond clock. Gossip travels only along the edges of the current connectivity graph, each
message with its own delay, and may be lost. Terminals die (their ``Election`` is dropped) and
restart (a new ``Election`` with ``started_ms=now``, its cloud probe result set at once, as the
daemon's uplink does at start); cloud reachability flips; the graph changes (partitions form and
heal, single links go up and down).

Timers: a terminal's timer fires at ``next_deadline()``. Should that not lie in the future (it
must, see ``test_next_deadline_moves_past_the_claim_window``; an earlier version kept the
passed claim deadline ``started_ms + LEASE_MS`` in its minimum, and the daemon spun on a
zero-delay timer), the simulator fires at the deadline a copy whose ``started_ms`` lies far in
the future gives (the next gossip round or lease expiry), and polls every ``POLL_MS`` as a last
resort, so a broken deadline cannot stall the simulation.

Delivery model: a message sent at ``t`` arrives at ``t + delay`` (``delay`` uniform in
``[0, max_delay_ms]``), unless the edge went down, or either end died or restarted, in between
(a TCP connection does not survive those). Each message is lost with probability ``loss``, but
never more than ``max_loss_streak`` in a row on one directed link: the lease is documented as
tolerating lost frames, not a link that is silently dead.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from lanesync.core.election import GOSSIP_MS, LEASE_MS, Candidate, Election

POLL_MS = 20
FAR_FUTURE = 2**62
INF = float("inf")


def rank_key(terminal: str, reachable: bool, priority: int) -> tuple[int, int, str]:
    """The documented rule, written independently of the implementation: cloud reachability
    first, then priority, then the smallest terminal id. The smallest key wins."""
    return (0 if reachable else 1, -priority, terminal)


@dataclass(order=True)
class _Message:
    at: int
    seq: int
    src: str = field(compare=False)
    dst: str = field(compare=False)
    src_life: int = field(compare=False)
    dst_life: int = field(compare=False)
    candidates: list[Candidate] = field(compare=False)


@dataclass
class _Terminal:
    terminal_id: str
    priority: int
    reachable: bool
    election: Election | None = None
    life: int = 0  # incarnation number: bumped by every restart
    last_fired: int = -1


class ElectionHarness:
    def __init__(
        self,
        priorities: dict[str, int],
        reachable: dict[str, bool],
        *,
        seed: int,
        max_delay_ms: int = 0,
        loss: float = 0.0,
        max_loss_streak: int = 0,
    ) -> None:
        self.now = 0
        self.rng = random.Random(seed)
        self.max_delay_ms = max_delay_ms
        self.loss = loss
        self.max_loss_streak = max_loss_streak
        self.terminals = {
            tid: _Terminal(tid, priorities[tid], reachable[tid]) for tid in sorted(priorities)
        }
        ids = sorted(priorities)
        self.edges: set[frozenset[str]] = {frozenset(p) for p in itertools.combinations(ids, 2)}
        self._queue: list[_Message] = []
        self._seq = itertools.count()
        self._streak: dict[tuple[str, str], int] = {}
        self.messages_sent = 0
        self.messages_lost = 0
        self.on_step: list[Callable[[ElectionHarness], None]] = []
        self._adjacency: dict[str, list[str]] | None = None
        for tid in ids:
            self.start(tid)

    # -- changes -------------------------------------------------------------------------------

    def start(self, tid: str) -> None:
        terminal = self.terminals[tid]
        terminal.life += 1
        terminal.election = Election(tid, priority=terminal.priority, started_ms=self.now)
        terminal.election.set_reachable(terminal.reachable, self.now)
        terminal.last_fired = self.now - 1
        self._adjacency = None

    def kill(self, tid: str) -> None:
        self.terminals[tid].election = None
        self._adjacency = None

    def set_reachable(self, tid: str, reachable: bool) -> None:
        terminal = self.terminals[tid]
        terminal.reachable = reachable
        if terminal.election is not None:
            terminal.election.set_reachable(reachable, self.now)

    def set_groups(self, groups: Iterable[Iterable[str]], bridges: Iterable[tuple[str, str]] = ()):
        """Every group is fully connected (one switch); bridges join single pairs."""
        edges: set[frozenset[str]] = set()
        for group in groups:
            edges |= {frozenset(p) for p in itertools.combinations(sorted(group), 2)}
        edges |= {frozenset(b) for b in bridges if b[0] != b[1]}
        self.edges = edges
        self._adjacency = None

    # -- views -----------------------------------------------------------------------------------

    def alive(self) -> list[str]:
        return [t for t, term in self.terminals.items() if term.election is not None]

    def election(self, tid: str) -> Election:
        election = self.terminals[tid].election
        assert election is not None, f"{tid} is dead"
        return election

    def neighbours(self, tid: str) -> list[str]:
        if self._adjacency is None:
            alive = set(self.alive())
            adjacency: dict[str, list[str]] = {t: [] for t in alive}
            for edge in self.edges:
                a, b = sorted(edge)
                if a in alive and b in alive:
                    adjacency[a].append(b)
                    adjacency[b].append(a)
            self._adjacency = {t: sorted(ns) for t, ns in adjacency.items()}
        return self._adjacency.get(tid, [])

    def components(self) -> list[list[str]]:
        seen: set[str] = set()
        parts = []
        for start in self.alive():
            if start in seen:
                continue
            part, todo = [], [start]
            seen.add(start)
            while todo:
                tid = todo.pop()
                part.append(tid)
                for other in self.neighbours(tid):
                    if other not in seen:
                        seen.add(other)
                        todo.append(other)
            parts.append(sorted(part))
        return parts

    def diameter(self, component: list[str]) -> int:
        worst = 0
        for start in component:
            dist = {start: 0}
            frontier = [start]
            while frontier:
                nxt = []
                for tid in frontier:
                    for other in self.neighbours(tid):
                        if other not in dist:
                            dist[other] = dist[tid] + 1
                            nxt.append(other)
                frontier = nxt
            worst = max(worst, *dist.values())
        return worst

    def best(self, component: list[str]) -> str:
        return min(
            component,
            key=lambda t: rank_key(t, self.terminals[t].reachable, self.terminals[t].priority),
        )

    # -- running ---------------------------------------------------------------------------------

    def _wake(self, terminal: _Terminal) -> int:
        election = terminal.election
        assert election is not None
        deadline = election.next_deadline()
        if deadline <= terminal.last_fired:
            # Stale: the claim deadline (started_ms + LEASE_MS) stays in the minimum after it
            # passed. What remains once it is left out: the next gossip round and lease expiry.
            deadline = replace(election, started_ms=FAR_FUTURE).next_deadline()
        if deadline <= terminal.last_fired:
            deadline = terminal.last_fired + POLL_MS
        return max(deadline, self.now)

    def _send(self, src: str, dst: str, candidates: list[Candidate]) -> None:
        self.messages_sent += 1
        link = (src, dst)
        if (
            self.loss
            and self._streak.get(link, 0) < self.max_loss_streak
            and self.rng.random() < self.loss
        ):
            self._streak[link] = self._streak.get(link, 0) + 1
            self.messages_lost += 1
            return
        self._streak[link] = 0
        delay = self.rng.randint(0, self.max_delay_ms) if self.max_delay_ms else 0
        heapq.heappush(
            self._queue,
            _Message(
                self.now + delay,
                next(self._seq),
                src,
                dst,
                self.terminals[src].life,
                self.terminals[dst].life,
                candidates,
            ),
        )

    def run_until(self, end_ms: int) -> None:
        while True:
            t_msg = self._queue[0].at if self._queue else INF
            wakes = [(self._wake(t), t.terminal_id) for t in self.terminals.values() if t.election]
            t_node, tid = min(wakes) if wakes else (INF, "")
            t_next = min(t_msg, t_node)
            if t_next > end_ms:
                self.now = end_ms
                return
            self.now = int(t_next)
            if t_msg <= t_node:
                self._deliver(heapq.heappop(self._queue))
            else:
                self._fire(tid)
            for hook in self.on_step:
                hook(self)

    def _deliver(self, message: _Message) -> None:
        src, dst = self.terminals[message.src], self.terminals[message.dst]
        if (
            dst.election is None
            or src.life != message.src_life
            or dst.life != message.dst_life
            or frozenset((message.src, message.dst)) not in self.edges
        ):
            return
        dst.election.receive(list(message.candidates), self.now)

    def _fire(self, tid: str) -> None:
        terminal = self.terminals[tid]
        election = terminal.election
        assert election is not None
        terminal.last_fired = self.now
        if election.handle_timer(self.now):
            gossip = election.gossip(self.now)
            for other in self.neighbours(tid):
                self._send(tid, other, gossip)


def lease_tolerates(diameter: int, max_loss_streak: int, max_delay_ms: int) -> bool:
    """Whether news of a live candidate always arrives before its lease runs out.

    Through ``d`` relays a candidate's age grows by up to one gossip period per hop (a relay
    repeats what it heard at its own next round) and one more period per lost frame; a direct
    neighbour's news can also be late by the transit delay. So a live candidate can only be
    mistaken for dead when ``d * ((streak + 1) * GOSSIP_MS + max_delay)`` reaches LEASE_MS; we
    keep one gossip period of margin. (Transit time is never added to a relayed age, which
    errs the other way: a dead candidate outlives its lease by the transit times of the relay
    chain that first brought its last heartbeat; echoes of that beat are not news, so no longer
    chain can renew the lease.)
    """
    per_hop = (max_loss_streak + 1) * GOSSIP_MS + max_delay_ms
    return diameter * per_hop < LEASE_MS - GOSSIP_MS
