"""Leader election (``lanesync.core.election``): examples, then properties over simulated stores.

The simulator (``election_harness``) drives one ``Election`` per terminal with a simulated clock and
a simulated LAN. What is asserted, precisely:

* Ranking oracle, written independently of the implementation: in every connected component
  the leader must be the live member that can reach the cloud, then has the highest priority,
  then the smallest terminal id (``election_harness.rank_key``).
* Settled agreement: once ``settle_ms`` has passed since the last change (a terminal died or
  restarted, cloud reachability flipped, the graph changed), at EVERY later step until the next
  change, in every component: every member names the oracle's leader and exactly that member
  claims leadership (``is_leader``); so never two leaders in one component.
  ``settle_ms = FAILOVER_BOUND_MS + D * ((S + 1) * GOSSIP_MS + max_delay)`` for components of
  diameter ``D``, at most ``S`` consecutive lost frames per link and one-way delays up to
  ``max_delay``: the documented bound plus, per relay hop, one gossip round per lost frame and
  the transit delay. Only windows inside the lease's stated tolerance are checked
  (``election_harness.lease_tolerates``: beyond it a live terminal is legitimately declared dead).
  A dead terminal is last heard of when its last heartbeat first arrived: after its death by the
  transits of one path at most, 5 hops of 150 ms here, within the two gossip rounds of
  ``FAILOVER_BOUND_MS`` (echoes of that beat are not news, so they cannot renew its lease).
* Failover bound on a store LAN (every component fully connected, no loss, delays <= 5 ms):
  from ``FAILOVER_BOUND_MS`` after the last change on, the agreement above holds. No slack.
* Terms, once settled: every member reports the leader's own term (``leader_term``); it is at
  least every term a member has named since it (re)started, and a member whose settled leader
  changed sees a strictly greater term (a new leadership outranks every earlier one it saw).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, event, example, given, settings
from hypothesis import strategies as st

from lanesync.core.election import (
    FAILOVER_BOUND_MS,
    GOSSIP_MS,
    LEASE_MS,
    MAX_CANDIDATES,
    Candidate,
    Election,
)

from .election_harness import ElectionHarness, lease_tolerates

NAMES = ("lane1", "lane2", "lane3", "lane4", "lane5", "lane6")


# -- helpers ----------------------------------------------------------------------------------


def agreement_problems(sim: ElectionHarness) -> list[str]:
    """Why the store is not (yet) in the settled state; empty when it is."""
    problems = []
    for component in sim.components():
        best = sim.best(component)
        for tid in component:
            named = sim.election(tid).leader
            if named != best:
                problems.append(f"{tid} names {named}, expected {best} in {component}")
        claiming = [t for t in component if sim.election(t).is_leader]
        if claiming != [best]:
            problems.append(f"{claiming} claim leadership in {component}, expected [{best}]")
    return problems


def settle_ms(sim: ElectionHarness) -> tuple[int, bool]:
    """(settling time, within the lease's tolerance) for the current topology."""
    diameter = max((sim.diameter(c) for c in sim.components()), default=0)
    per_hop = (sim.max_loss_streak + 1) * GOSSIP_MS + sim.max_delay_ms
    tolerated = lease_tolerates(diameter, sim.max_loss_streak, sim.max_delay_ms)
    return FAILOVER_BOUND_MS + diameter * per_hop, tolerated


@dataclass
class AgreementChecker:
    """Asserts settled agreement at every step of the simulation (see the module docstring)."""

    fixed_settle_ms: int | None = None  # the LAN bound test: exactly FAILOVER_BOUND_MS
    last_change: int = 0
    settle: int = 0
    tolerated: bool = True
    last_problem_ms: int = 0
    latencies: list[int] = field(default_factory=list)  # per settled window

    def reset(self, sim: ElectionHarness) -> None:
        if sim.now - self.last_change >= self.settle and self.tolerated:
            self.latencies.append(self.last_problem_ms - self.last_change)
        self.last_change = self.last_problem_ms = sim.now
        self.settle, self.tolerated = settle_ms(sim)
        if self.fixed_settle_ms is not None:
            self.settle = self.fixed_settle_ms

    def step(self, sim: ElectionHarness) -> None:
        problems = agreement_problems(sim)
        if problems:
            self.last_problem_ms = sim.now
            if self.tolerated and sim.now - self.last_change >= self.settle:
                raise AssertionError(
                    f"at {sim.now} ms, {sim.now - self.last_change} ms after the last change "
                    f"(settle {self.settle} ms): {problems}"
                )


@dataclass
class TermChecker:
    """Asserts the term properties once settled (see the module docstring)."""

    agreement: AgreementChecker
    named_max: dict[tuple[str, int], int] = field(default_factory=dict)
    settled: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)

    def step(self, sim: ElectionHarness) -> None:
        for tid in sim.alive():
            election, life = sim.election(tid), sim.terminals[tid].life
            if election.leader is not None:
                key = (tid, life)
                self.named_max[key] = max(self.named_max.get(key, 0), election.leader_term)
        a = self.agreement
        if not (a.tolerated and sim.now - a.last_change >= a.settle):
            return
        for component in sim.components():
            leader = sim.best(component)
            term = sim.election(leader).leader_term
            for tid in component:
                key = (tid, sim.terminals[tid].life)
                reported = sim.election(tid).leader_term
                assert reported == term, (
                    f"at {sim.now} ms {tid} reports term {reported} for leader {leader}, "
                    f"whose own term is {term}"
                )
                assert term >= self.named_max.get(key, 0), (
                    f"at {sim.now} ms leader {leader} holds term {term}, but {tid} named a "
                    f"leader with term {self.named_max[key]} before"
                )
                previous = self.settled.get(key)
                if previous is not None and previous[0] != leader:
                    assert term > previous[1], (
                        f"at {sim.now} ms {tid}'s leadership moved from {previous} to "
                        f"{(leader, term)}: the new term is not greater"
                    )
                self.settled[key] = (leader, term)


@st.composite
def changes(draw: st.DrawFn, n: int, *, cliques_only: bool) -> tuple[int, tuple[object, ...]]:
    gap = draw(st.sampled_from([0, 50, 400, 1_500, 3_000, 6_000, 15_000]))
    kind = draw(st.sampled_from(["kill", "restart", "reach", "split", "heal"]))
    if kind in ("kill", "restart", "reach"):
        return gap, (kind, draw(st.integers(0, n - 1)))
    if kind == "heal":
        return gap, ("heal",)
    groups = tuple(draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)))
    bridges: tuple[tuple[int, int], ...] = ()
    if not cliques_only:
        pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1))
        bridges = tuple(draw(st.lists(pairs, max_size=2)))
    return gap, ("split", groups, bridges)


@dataclass(frozen=True)
class Scenario:
    priorities: dict[str, int]
    reachable: dict[str, bool]
    max_delay_ms: int
    loss: float
    max_loss_streak: int
    steps: list[tuple[int, tuple[object, ...]]]
    seed: int


@st.composite
def scenarios(draw: st.DrawFn, *, lan: bool) -> Scenario:
    n = draw(st.integers(2, 6))
    ids = NAMES[:n]
    priorities = {t: draw(st.sampled_from([0, 0, 1, 5])) for t in ids}
    reachable = {t: draw(st.booleans()) for t in ids}
    if lan:
        max_delay, streak, loss = draw(st.sampled_from([0, 1, 5])), 0, 0.0
    else:
        max_delay = draw(st.sampled_from([0, 5, 50, 150]))
        streak = draw(st.sampled_from([0, 1, 2]))
        loss = draw(st.sampled_from([0.05, 0.3])) if streak else 0.0
    steps = draw(st.lists(changes(n, cliques_only=lan), max_size=10))
    seed = draw(st.integers(0, 2**32 - 1))
    return Scenario(priorities, reachable, max_delay, loss, streak, steps, seed)


def apply_change(sim: ElectionHarness, change: tuple[object, ...]) -> None:
    ids = sorted(sim.terminals)
    match change:
        case ("kill", int(i)):
            if ids[i] in sim.alive():
                sim.kill(ids[i])
        case ("restart", int(i)):
            if ids[i] not in sim.alive():
                sim.start(ids[i])
        case ("reach", int(i)):
            sim.set_reachable(ids[i], not sim.terminals[ids[i]].reachable)
        case ("split", tuple(groups), tuple(bridges)):
            parts = [[t for t, g in zip(ids, groups, strict=True) if g == k] for k in range(3)]
            sim.set_groups(parts, [(ids[a], ids[b]) for a, b in bridges])  # type: ignore[misc]
        case ("heal",):
            sim.set_groups([ids])


def run_scenario(scenario: Scenario, *, lan: bool, check_terms: bool = False) -> AgreementChecker:
    sim = ElectionHarness(
        scenario.priorities,
        scenario.reachable,
        seed=scenario.seed,
        max_delay_ms=scenario.max_delay_ms,
        loss=scenario.loss,
        max_loss_streak=scenario.max_loss_streak,
    )
    agreement = AgreementChecker(fixed_settle_ms=FAILOVER_BOUND_MS if lan else None)
    agreement.reset(sim)
    sim.on_step.append(agreement.step)
    if check_terms:
        sim.on_step.append(TermChecker(agreement).step)
    for gap, change in scenario.steps:
        sim.run_until(sim.now + gap)
        apply_change(sim, change)
        agreement.reset(sim)
    settle, tolerated = settle_ms(sim)
    sim.run_until(sim.now + settle + 4 * GOSSIP_MS)
    if tolerated:
        assert agreement_problems(sim) == []
        agreement.reset(sim)  # closes the final window
        event(f"final diameter {max((sim.diameter(c) for c in sim.components()), default=0)}")
    else:
        event("final topology beyond the lease's tolerance (not checked)")
    return agreement


def clique(
    priorities: dict[str, int], reachable: dict[str, bool] | None = None, **options: int
) -> ElectionHarness:
    return ElectionHarness(
        priorities, reachable or dict.fromkeys(priorities, True), seed=1, **options
    )


def settled_leaders(sim: ElectionHarness) -> dict[str, str | None]:
    return {t: sim.election(t).leader for t in sim.alive()}


# -- the rule, by example -----------------------------------------------------------------------


def test_reachable_terminals_are_preferred_over_priority() -> None:
    sim = clique(
        {"lane1": 5, "lane2": 0, "lane3": 9},
        {"lane1": False, "lane2": True, "lane3": False},
    )
    sim.run_until(FAILOVER_BOUND_MS + 2 * GOSSIP_MS)
    assert settled_leaders(sim) == dict.fromkeys(["lane1", "lane2", "lane3"], "lane2")
    assert [t for t in sim.alive() if sim.election(t).is_leader] == ["lane2"]


def test_priority_wins_among_reachable_terminals() -> None:
    sim = clique({"lane1": 0, "lane2": 3, "lane3": 7})
    sim.run_until(FAILOVER_BOUND_MS + 2 * GOSSIP_MS)
    assert set(settled_leaders(sim).values()) == {"lane3"}


def test_ties_go_to_the_smallest_terminal_id() -> None:
    # String order, as documented: "lane10" < "lane2".
    sim = clique({"lane2": 1, "lane10": 1, "lane3": 1, "lane0": 0})
    sim.run_until(FAILOVER_BOUND_MS + 2 * GOSSIP_MS)
    assert set(settled_leaders(sim).values()) == {"lane10"}


def test_nobody_is_leader_when_no_terminal_reaches_the_cloud_but_one_is_still_elected() -> None:
    # Reachability ranks first but is not required: with no cloud anywhere, the best of the
    # rest leads (it keeps probing; the uplink just fails until the WAN returns).
    sim = clique({"lane1": 0, "lane2": 2}, {"lane1": False, "lane2": False})
    sim.run_until(FAILOVER_BOUND_MS + 2 * GOSSIP_MS)
    assert set(settled_leaders(sim).values()) == {"lane2"}


def test_a_new_terminal_claims_only_after_one_lease() -> None:
    election = Election("lane1", started_ms=1_000)
    election.set_reachable(True, 1_000)
    assert election.handle_timer(1_000) is True  # gossips at once
    assert election.leader is None
    election.handle_timer(1_000 + LEASE_MS - 1)
    assert election.leader is None
    assert not election.is_leader
    election.handle_timer(1_000 + LEASE_MS)
    assert election.is_leader
    assert election.leader_term == 1


def test_a_new_terminal_names_a_better_one_once_it_claims_without_claiming_itself() -> None:
    election = Election("lane2", started_ms=0)
    election.receive([Candidate("lane1", True, 0, 4, 0, beat=1)], now_ms=5)
    assert election.leader is None  # lane1 is better but has not claimed: nobody is named
    election.receive([Candidate("lane1", True, 0, 4, 0, "lane1", 4, beat=2)], now_ms=10)
    assert election.leader == "lane1"
    assert election.leader_term == 4
    assert election.term == 4  # adopts the highest term it hears of
    assert not election.is_leader


def test_an_outranked_leader_leads_until_the_better_one_claims_a_higher_term() -> None:
    """Leadership moves only to a greater term, and the store is never left without one."""
    sim = clique({"lane1": 0, "lane2": 0})
    sim.kill("lane1")
    sim.run_until(10_000)
    assert sim.election("lane2").is_leader
    term = sim.election("lane2").leader_term
    sim.start("lane1")  # lane1 outranks lane2 (smaller id) but must first wait out its lease
    restarted = sim.now
    claimed: list[tuple[int, list[str]]] = []

    def watch(s: ElectionHarness) -> None:
        claimed.append((s.now, [t for t in s.alive() if s.election(t).is_leader]))

    sim.on_step.append(watch)
    sim.run_until(restarted + LEASE_MS + 2 * GOSSIP_MS)
    assert all(leaders for _, leaders in claimed), "a moment with no leader at all"
    assert all(leaders == ["lane2"] for at, leaders in claimed if at < restarted + LEASE_MS)
    assert claimed[-1][1] == ["lane1"]
    assert sim.election("lane1").leader_term > term
    assert sim.election("lane2").leader_term == sim.election("lane1").leader_term


def test_gossip_lists_itself_first_then_live_candidates_with_ages() -> None:
    election = Election("lane2", priority=3, started_ms=0)
    election.set_reachable(True, 0)
    election.receive([Candidate("lane1", False, 1, 2, 0), Candidate("lane3", True, 0, 1, 700)], 100)
    gossip = election.gossip(600)
    assert gossip == [
        Candidate("lane2", True, 3, 2, 0),
        Candidate("lane1", False, 1, 2, 500),
        Candidate("lane3", True, 0, 1, 1_200),
    ]


def test_stale_and_excess_candidates_are_ignored() -> None:
    election = Election("lane1", started_ms=0)
    election.receive([Candidate("lane9", True, 9, 0, LEASE_MS)], now_ms=100)
    assert election.live(100) == ["lane1"]
    many = [Candidate(f"t{i:04d}", True, 0, 0, 0) for i in range(MAX_CANDIDATES + 50)]
    election.receive(many, now_ms=200)
    assert len(election.live(200)) == MAX_CANDIDATES + 1  # itself, plus the first 256


def test_a_silent_candidate_expires_after_one_lease() -> None:
    election = Election("lane2", started_ms=0)
    election.receive([Candidate("lane1", True, 0, 1, 0)], now_ms=5_000)
    assert election.live(5_000 + LEASE_MS - 1) == ["lane1", "lane2"]
    assert election.live(5_000 + LEASE_MS) == ["lane2"]
    election.handle_timer(5_000 + LEASE_MS)
    assert election.is_leader
    assert election.leader_term == 2


def test_next_deadline_moves_past_the_claim_window() -> None:
    """``next_deadline()`` must lie in the future after ``handle_timer(now)``: the shell arms
    its timer with it (``Mesh._arm_timer``), so a deadline in the past re-fires at once, for
    ever. It includes ``started_ms + LEASE_MS`` even long after that passed."""
    election = Election("lane1", started_ms=0)
    election.set_reachable(True, 0)
    now = LEASE_MS + 5 * GOSSIP_MS + 123
    election.handle_timer(now)
    assert election.next_deadline() > now, (
        f"next_deadline() = {election.next_deadline()} at now = {now}: a timer armed with it "
        "fires immediately and forever (the daemon spins a CPU core while idle)"
    )


def test_an_echo_is_not_news() -> None:
    """A report of a beat already seen, through another path, does not renew the lease, however
    young its age says it is (relays leave transit time out of the age); a newer beat does."""
    election = Election("lane2", started_ms=0)
    election.receive([Candidate("lane1", True, 0, 1, 0, beat=7)], now_ms=1_000)
    election.receive(
        [Candidate("lane3", True, 0, 1, 0), Candidate("lane1", True, 0, 1, 0, beat=7)], 2_000
    )
    assert election.live(1_000 + LEASE_MS) == ["lane2", "lane3"]
    # Nor does it bring lane1 back once its lease ran out.
    election.receive(
        [Candidate("lane3", True, 0, 1, 0), Candidate("lane1", True, 0, 1, 900, beat=7)], 4_100
    )
    assert election.live(4_100) == ["lane2", "lane3"]
    election.receive([Candidate("lane1", True, 0, 1, 0, beat=8)], now_ms=4_200)
    assert election.live(4_200) == ["lane1", "lane2", "lane3"]


def test_echoes_of_a_dead_leader_do_not_renew_its_lease() -> None:
    """lane1 led and died; its last gossip reached lane2 at 0 ms. lane2..lane5 gossip a quarter
    of a round apart and every frame takes 120 ms, so each relays what it heard 5 ms after it
    arrived. Before heartbeats the relayed ages left the transits out, lane1's report came back
    round the cycle younger each time, and lane1 stayed leader for 72 s. Now every terminal
    forgets it LEASE_MS after the report first reached it: at most three 120 ms hops after lane2."""
    transit, lanes = 120, ["lane2", "lane3", "lane4", "lane5"]
    phase = {t: i * GOSSIP_MS // 4 for i, t in enumerate(lanes)}
    elections = {t: Election(t, started_ms=-LEASE_MS) for t in lanes}
    elections["lane2"].receive([Candidate("lane1", True, 5, 1, 0, "lane1", 1)], now_ms=0)
    in_flight: list[tuple[int, int, str, list[Candidate]]] = []
    seq = 0
    believed: list[int] = []  # times at which some terminal still names lane1
    for now in range(0, 4 * LEASE_MS, 5):
        while in_flight and in_flight[0][0] <= now:
            _, _, dst, candidates = heapq.heappop(in_flight)
            elections[dst].receive(candidates, now)
        for tid in lanes:
            if now % GOSSIP_MS == phase[tid] and elections[tid].handle_timer(now):
                gossip = elections[tid].gossip(now)
                for other in lanes:
                    if other != tid:
                        seq += 1
                        heapq.heappush(in_flight, (now + transit, seq, other, gossip))
        if any("lane1" in e.live(now) or e.leader == "lane1" for e in elections.values()):
            believed.append(now)
    assert believed[-1] < LEASE_MS + 3 * transit, f"lane1 was still named at {believed[-1]} ms"


# -- failover and terms, by example ---------------------------------------------------------------


def test_leader_killed_is_replaced_within_the_failover_bound() -> None:
    sim = clique({"lane1": 2, "lane2": 1, "lane3": 0}, max_delay_ms=2)
    sim.run_until(10_000)
    assert set(settled_leaders(sim).values()) == {"lane1"}
    old_term = sim.election("lane2").leader_term
    sim.kill("lane1")
    killed_at = sim.now
    replaced: list[int] = []

    def watch(s: ElectionHarness) -> None:
        if not replaced and not agreement_problems(s):
            replaced.append(s.now)

    sim.on_step.append(watch)
    sim.run_until(killed_at + 2 * FAILOVER_BOUND_MS)
    assert replaced, agreement_problems(sim)
    assert replaced[0] - killed_at <= FAILOVER_BOUND_MS
    assert sim.election("lane2").is_leader
    assert sim.election("lane2").leader_term > old_term
    assert sim.election("lane3").leader_term == sim.election("lane2").leader_term


def test_losing_the_cloud_hands_leadership_to_a_terminal_that_reaches_it() -> None:
    sim = clique({"lane1": 5, "lane2": 0})
    sim.run_until(10_000)
    assert sim.election("lane1").is_leader
    sim.set_reachable("lane1", False)
    flipped = sim.now
    sim.run_until(flipped + 2 * GOSSIP_MS)
    assert sim.election("lane2").is_leader
    assert not sim.election("lane1").is_leader
    sim.set_reachable("lane1", True)
    sim.run_until(sim.now + 2 * GOSSIP_MS)
    assert sim.election("lane1").is_leader
    assert not sim.election("lane2").is_leader
    # Three leaderships so far (lane1, lane2, lane1 again): each a higher term.
    assert sim.election("lane1").leader_term == 3


def test_a_restarted_best_terminal_takes_over_with_a_higher_term() -> None:
    sim = clique({"lane1": 0, "lane2": 0, "lane3": 0})
    sim.run_until(10_000)
    sim.kill("lane1")
    sim.run_until(sim.now + 2 * FAILOVER_BOUND_MS)
    assert sim.election("lane2").is_leader
    term = sim.election("lane2").leader_term
    sim.start("lane1")
    restarted = sim.now
    sim.run_until(restarted + LEASE_MS - 1)
    assert not sim.election("lane1").is_leader  # still within its first lease
    sim.run_until(restarted + LEASE_MS + GOSSIP_MS)
    assert sim.election("lane1").is_leader
    assert sim.election("lane1").leader_term > term
    assert {sim.election(t).leader_term for t in sim.alive()} == {term + 1}


def test_a_split_store_elects_one_leader_per_side_and_one_after_healing() -> None:
    sim = clique({"lane1": 2, "lane2": 1, "lane3": 0, "lane4": 0})
    sim.run_until(10_000)
    sim.set_groups([["lane1", "lane3"], ["lane2", "lane4"]])
    sim.run_until(sim.now + FAILOVER_BOUND_MS + GOSSIP_MS)
    assert settled_leaders(sim) == {
        "lane1": "lane1",
        "lane2": "lane2",
        "lane3": "lane1",
        "lane4": "lane2",
    }
    assert sorted(t for t in sim.alive() if sim.election(t).is_leader) == ["lane1", "lane2"]
    sim.set_groups([["lane1", "lane2", "lane3", "lane4"]])
    sim.run_until(sim.now + 2 * GOSSIP_MS)
    assert set(settled_leaders(sim).values()) == {"lane1"}
    assert [t for t in sim.alive() if sim.election(t).is_leader] == ["lane1"]


def test_after_a_heal_the_leadership_term_exceeds_every_term_seen_in_the_store() -> None:
    """lane1 keeps leading its side of a split with term 1 while the other side elects lane2
    with term 2. After the heal lane1 leads everyone: its leadership is new to lane2..lane4,
    so its term must exceed 2, and all four must report the same term. (The fencing token
    the uplink presents, and ``lanesync status`` shows, is this term.)"""
    sim = clique({"lane1": 2, "lane2": 1, "lane3": 0, "lane4": 0})
    sim.run_until(10_000)
    assert sim.election("lane1").leader_term == 1
    sim.set_groups([["lane1"], ["lane2", "lane3", "lane4"]])
    sim.run_until(sim.now + 2 * FAILOVER_BOUND_MS)
    assert sim.election("lane2").is_leader
    assert sim.election("lane3").leader_term == 2
    sim.set_groups([["lane1", "lane2", "lane3", "lane4"]])
    sim.run_until(sim.now + 2 * FAILOVER_BOUND_MS)
    assert set(settled_leaders(sim).values()) == {"lane1"}
    terms = {t: sim.election(t).leader_term for t in sim.alive()}
    assert len(set(terms.values())) == 1, f"the store disagrees on the leader's term: {terms}"
    assert terms["lane1"] > 2, f"lane1's new leadership kept an old term: {terms}"


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(lan=False))
def test_settled_components_agree_on_the_best_leader(scenario: Scenario) -> None:
    checker = run_scenario(scenario, lan=False)
    for latency in checker.latencies:
        event(f"agreement {latency // 1000} s after the last change")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(lan=True))
def test_store_lan_elects_a_leader_within_the_failover_bound(scenario: Scenario) -> None:
    checker = run_scenario(scenario, lan=True)
    assert all(latency <= FAILOVER_BOUND_MS for latency in checker.latencies)


# Without the shrink phase: a counterexample is reported as found (shrinking a simulation of
# minutes takes longer than the whole suite may).
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
@given(scenarios(lan=False))
# Found by hypothesis: lane1, the leader, dies at 19,700 ms right after a heal; echoes of its last
# gossip, going round lane2/lane4/lane5/lane6 with up to 150 ms transits, kept it alive until
# about 24,600 ms instead of 23,000 at most (a lease after its last gossip, plus the transits),
# so lane4 claimed too late for the others to name it within the bound (see
# ``test_echoes_of_a_dead_leader_do_not_renew_its_lease``).
@example(
    Scenario(
        priorities={"lane1": 5, "lane2": 0, "lane3": 0, "lane4": 0, "lane5": 0, "lane6": 0},
        reachable={
            "lane1": True,
            "lane2": False,
            "lane3": True,
            "lane4": True,
            "lane5": True,
            "lane6": False,
        },
        max_delay_ms=150,
        loss=0.05,
        max_loss_streak=1,
        steps=[
            (15_000, ("kill", 2)),
            (50, ("kill", 1)),
            (3_000, ("split", (2, 0, 0, 2, 1, 1), ())),
            (0, ("heal",)),
            (50, ("split", (1, 1, 1, 1, 0, 0), ((0, 3),))),
            (50, ("restart", 1)),
            (1_500, ("reach", 0)),
            (0, ("heal",)),
            (50, ("kill", 0)),
            (0, ("kill", 0)),
        ],
        seed=415_347,
    )
)
def test_settled_terms_are_agreed_and_increase_with_every_new_leadership(
    scenario: Scenario,
) -> None:
    run_scenario(scenario, lan=False, check_terms=True)


@pytest.mark.parametrize("seed", range(3))
def test_simulation_is_deterministic(seed: int) -> None:
    def trace() -> list[tuple[int, str | None, int]]:
        sim = ElectionHarness(
            dict.fromkeys(NAMES[:4], 0),
            dict.fromkeys(NAMES[:4], True),
            seed=seed,
            max_delay_ms=50,
            loss=0.2,
            max_loss_streak=1,
        )
        out: list[tuple[int, str | None, int]] = []
        sim.on_step.append(
            lambda s: out.append((s.now, s.election("lane2").leader, s.messages_lost))
        )
        sim.run_until(5_000)
        sim.kill("lane1")
        sim.run_until(12_000)
        return out

    assert trace() == trace()
