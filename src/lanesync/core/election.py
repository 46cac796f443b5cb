"""Leader election per connected part of the store: gossiped candidates, leases, terms.

Pure state machine (time passed in as ``now_ms``; ``next_deadline()`` / ``handle_timer(now)``).

Every terminal gossips, every ``GOSSIP_MS``, to its direct neighbours the candidates it knows:
itself and every candidate it heard of (directly or relayed) less than ``LEASE_MS`` ago, each
with its cloud reachability, configured priority, highest term seen, heartbeat, and how long ago
it was last heard of. So within a few gossip rounds every terminal of a connected component knows
the same live set, and they all rank it the same way:

    rank = (can reach the cloud, priority, -terminal id order)   -- highest wins

The best-ranked live candidate is the leader. A terminal claims leadership only after it has
been up for ``LEASE_MS`` (so it has heard of everyone alive) and only while it ranks first; a
candidate nobody heard of for ``LEASE_MS`` is dead, so a leader that dies, is cut off, or loses
its WAN link (its reachability drops its rank) is replaced within ``FAILOVER_BOUND_MS``.

Heartbeats: only news keeps a candidate alive. Each candidate advances its own ``beat`` once per
gossip round, and a terminal takes a report as a sign of life only when it carries a beat newer
than any it has seen of that candidate (the gossip failure detector of van Renesse, Minsky and
Hayden, 1998). A relayed age leaves out the transit time, so without beats the echo of a dead
candidate's last report, coming back round a cycle of relays, looked younger than the report
itself, and renewed the lease it came from: with 4 lanes and 120 ms transits a dead leader stayed
"alive" for 72 s (``test_echoes_of_a_dead_leader_do_not_renew_its_lease``). With beats a dead
candidate is last heard of when its last beat first arrived, later than its death by the transits
of one path at most, and a beat is remembered ``LEASE_MS`` past its lease
(``FORGET_MS``), so an echo cannot bring a candidate back either.

Terms: a terminal that becomes leader takes ``max(term seen) + 1``, and every terminal adopts
the highest term it hears of, so each leadership carries a term higher than any earlier one in
its part of the store: the fencing token the uplink presents. A split store may elect one
leader per side; the cloud merge is idempotent, so that is harmless.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

# Gossip every 500 ms: a handful of bytes per neighbour; detection needs several missed rounds.
GOSSIP_MS = 500
# A candidate unheard of for 3 s is dead (6 gossip rounds: robust to a lost frame or a GC pause).
LEASE_MS = 3_000
# Worst case from a leader's death to a new leader: its lease expires everywhere (LEASE_MS after
# it was last heard of), plus gossip hops for the news of the new best to spread (2 rounds).
FAILOVER_BOUND_MS = LEASE_MS + 2 * GOSSIP_MS
# A candidate's last beat is remembered this long after it was heard of: its lease, then one
# more (the failure detector's T_cleanup = 2 * T_fail, van Renesse, Minsky and Hayden, 1998). A
# relay holds a beat at most LEASE_MS after it first heard it, and heard it later than we did
# by the transits of one path at most, far under one lease, so any echo of a beat we already
# had arrives while we still remember it.
FORGET_MS = 2 * LEASE_MS
MAX_CANDIDATES = 256


@dataclass(frozen=True, slots=True)
class Candidate:
    terminal_id: str
    reachable: bool  # its last probe of the cloud succeeded
    priority: int  # configured; higher is preferred as the uplink
    term: int  # highest term it has seen
    age_ms: int  # how long ago the sender last heard of it (0 for the sender itself)
    leader: str = ""  # the leader it follows ("" while settling)
    leader_term: int = 0  # that leadership's term
    # Its heartbeat: only it advances it, once per gossip round (``Election.beat``); a report
    # counts as a sign of life only when its beat is newer than any seen of this candidate.
    beat: int = 0

    def rank(self) -> tuple[bool, int, _Reversed]:
        return (self.reachable, self.priority, _Reversed(self.terminal_id))


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class _Reversed:
    """Orders terminal ids backwards, so that among equals the smallest id ranks highest."""

    key: str

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, _Reversed):
            return NotImplemented
        return self.key > other.key


@dataclass(slots=True)
class _Heard:
    candidate: Candidate
    heard_ms: int  # our clock: when this candidate was (directly or indirectly) last alive


@dataclass(frozen=True, slots=True)
class _Beat:
    beat: int  # the newest beat seen of a candidate
    heard_ms: int  # when that candidate was last alive (as in ``_Heard``)


@dataclass(slots=True)
class Election:
    me: str
    priority: int = 0
    started_ms: int = 0
    term: int = 0
    reachable: bool = False
    _heard: dict[str, _Heard] = field(default_factory=dict)
    _beats: dict[str, _Beat] = field(default_factory=dict)  # kept FORGET_MS, past the lease
    _rounds: int = 0  # gossip rounds since start
    _next_gossip_ms: int = 0
    _leader: str | None = None
    _leader_term: int = 0
    _settled: bool = False  # LEASE_MS have passed since start: free to claim leadership

    # -- inputs ----------------------------------------------------------------------------------

    def set_reachable(self, reachable: bool, now_ms: int) -> None:
        """Result of the latest cloud probe."""
        self.reachable = reachable
        self._recompute(now_ms)

    def receive(self, candidates: list[Candidate], now_ms: int) -> None:
        """Gossip from a neighbour (the first candidate is the neighbour itself)."""
        self._forget(now_ms)
        for candidate in candidates[:MAX_CANDIDATES]:
            self.term = max(self.term, candidate.term)
            if candidate.terminal_id == self.me or candidate.age_ms >= LEASE_MS:
                continue
            seen = self._beats.get(candidate.terminal_id)
            if seen is not None and candidate.beat <= seen.beat:
                # Not news: what we had already, through another path (or back round a cycle),
                # looking younger only by the transits that ages leave out.
                continue
            heard_ms = now_ms - max(0, candidate.age_ms)
            if seen is not None:
                heard_ms = max(heard_ms, seen.heard_ms)
            self._beats[candidate.terminal_id] = _Beat(candidate.beat, heard_ms)
            self._heard[candidate.terminal_id] = _Heard(candidate, heard_ms)
        self._recompute(now_ms)

    def handle_timer(self, now_ms: int) -> bool:
        """Expire silent candidates; True when it is time to gossip (call ``gossip``)."""
        self._recompute(now_ms)
        self._forget(now_ms)
        if now_ms >= self._next_gossip_ms:
            self._next_gossip_ms = now_ms + GOSSIP_MS
            self._rounds += 1
            return True
        return False

    def next_deadline(self) -> int:
        """The next time ``handle_timer`` has something to do; never a time already handled."""
        deadlines = [self._next_gossip_ms]
        deadlines += [h.heard_ms + LEASE_MS for h in self._heard.values()]
        if not self._settled:
            deadlines.append(self.started_ms + LEASE_MS)  # the end of the settling period
        return min(deadlines)

    # -- outputs ---------------------------------------------------------------------------------

    def gossip(self, now_ms: int) -> list[Candidate]:
        """What to tell every neighbour now: ourselves first, then everyone still alive."""
        self._recompute(now_ms)
        mine = Candidate(
            self.me,
            self.reachable,
            self.priority,
            self.term,
            0,
            self._leader or "",
            self._leader_term,
            self.beat,
        )
        others = [
            Candidate(
                h.candidate.terminal_id,
                h.candidate.reachable,
                h.candidate.priority,
                h.candidate.term,
                now_ms - h.heard_ms,
                h.candidate.leader,
                h.candidate.leader_term,
                h.candidate.beat,
            )
            for h in sorted(self._heard.values(), key=lambda h: h.candidate.terminal_id)
        ]
        return [mine, *others][:MAX_CANDIDATES]

    @property
    def leader(self) -> str | None:
        """The leader this terminal believes in (None while it is still settling)."""
        return self._leader

    @property
    def beat(self) -> int:
        """This terminal's heartbeat: one more every gossip round. It starts from ``started_ms``
        so that a restarted terminal's beats are newer than its previous life's (the clock has
        moved on by more than one millisecond per 500 ms round); should the clock have stepped
        back further, its old beats are forgotten ``FORGET_MS`` after its previous life ended."""
        return max(0, self.started_ms) + self._rounds

    @property
    def is_leader(self) -> bool:
        return self._leader == self.me

    @property
    def leader_term(self) -> int:
        return self._leader_term

    def live(self, now_ms: int) -> list[str]:
        self._recompute(now_ms)
        return sorted([self.me, *self._heard])

    def _rival_leadership(self, term: int) -> bool:
        return any(
            h.candidate.leader not in ("", self.me) and h.candidate.leader_term >= term
            for h in self._heard.values()
        )

    def _forget(self, now_ms: int) -> None:
        for terminal in [t for t, b in self._beats.items() if now_ms - b.heard_ms >= FORGET_MS]:
            del self._beats[terminal]

    # -- the rule --------------------------------------------------------------------------------

    def _recompute(self, now_ms: int) -> None:
        for terminal in [t for t, h in self._heard.items() if now_ms - h.heard_ms >= LEASE_MS]:
            del self._heard[terminal]
        mine = Candidate(self.me, self.reachable, self.priority, self.term, 0)
        best = max([mine, *(h.candidate for h in self._heard.values())], key=Candidate.rank)
        self._settled = now_ms - self.started_ms >= LEASE_MS
        if best.terminal_id == self.me:
            if not self._settled:
                # Not yet heard of everyone alive: claim nothing, name nobody.
                self._leader = None
                return
            if (
                self._leader != self.me
                or self.term > self._leader_term
                or self._rival_leadership(self._leader_term)
            ):
                # A new leadership, or another leadership (a healed split) with a term as high
                # as ours: lead under a term above every one seen, so the fencing token grows.
                self.term += 1
                self._leader_term = self.term
            self._leader = self.me
            return
        claimed = best.leader == best.terminal_id and best.leader_term > 0
        if self._leader == self.me and not (claimed and best.leader_term > self._leader_term):
            # Outranked, but the better candidate does not lead under a higher term yet: keep
            # leading (it sees our claim as a rival and will take a higher term), so the store
            # is never without a leader and leadership only ever moves to a greater term.
            return
        if claimed:
            self._leader, self._leader_term = best.terminal_id, best.leader_term
        else:
            self._leader = None  # the best candidate has not claimed yet: nobody leads here
