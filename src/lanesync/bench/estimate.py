"""How long a ``lanesync bench`` plan will take, told before it runs.

A plan runs, for every repeat, scenario and system, one store: start its processes, ring the
load steps of the scenario, check the result, stop the processes. The estimate adds up what
the options fix (seconds of load per step, how many steps, how many processes) and measured
costs of the rest (start-up, the drain after a step, the final check, the stop). The ladder's
length depends on how far a system keeps up, which only the run tells: the estimate climbs to
the rate each system kept up when the constants below were measured, plus one rung that fails.

Every constant was measured on 2026-12-07 on this project's machine kind (2 vCPUs shared with
other sessions, 1-minute load average 1-2.5) at git 3c835d3. The phase costs: ``Cluster.start``,
one ``measure`` step of 1 s at 20 sales/s, ``final_check``, a closed-loop ``fill`` of 400 sales
and ``Cluster.close``, timed one by one for every system at 2 and 4 lanes, twice, by
``benchmarks/bench_phases.py`` (its defaults); the constants are the middle of its figures,
which grow with the machine's load (at a load of 5, lanesync's start at 2 lanes took 5.2 s).
The ladder: ``lanesync bench steady --lanes 3 --rate 50 --duration 5`` at 3c835d3, where every
system and the ladder were the default (today add ``--systems all --ladder``): 237 s wall, and
its results.json's "highest rate kept up" and step details. results.json keeps the estimate
beside the measured ``seconds`` and ``wall_seconds``, so a drifting constant shows there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lanesync.bench.cluster import LANESYNC, NAIVE, PYCRDT, UNSIGNED, BenchError
from lanesync.bench.outcome import LADDER, WARMUP_S, Settings
from lanesync.bench.partitions import split_sizes
from lanesync.bench.scenarios import applies
from lanesync.bench.steady import scale_sizes

# The command beyond its store runs: starting the interpreter and importing the CLI, reading
# the machine and git, drawing the plots (`time` against results.json's `seconds`: 237.2 s
# against 234.6 s for the ladder run named above; 10.7 against 9.3 s and 17.9 against 14.6 s
# for the same command without the ladder and the baselines).
RUN_FIXED_S = 2.0
# Starting a store until every link is up: a fixed part (the proxy host, the store directory)
# and a part per process started (an interpreter importing the lane, or the lighter baseline,
# binding and dialling; two cores start them two at a time). lanesync: 1.6-1.9 s at 2 lanes,
# 3.1-5.8 s at 4; pycrdt-websocket (lanes and the server) 0.5-0.6 s at 2, 1.0 s at 4;
# naive-broadcast 0.5-0.7 s at 2, 1.2-2.0 s at 4.
START_FIXED_S = 0.3
START_PER_PROCESS_S = {LANESYNC: 1.0, UNSIGNED: 1.0, PYCRDT: 0.2, NAIVE: 0.3}
# Stopping a store (SIGTERM, every process exits) and the final check before it: lanesync
# 0.5-1.3 s, the baselines 0.2-0.4 s; the final check took at most 0.02 s.
STOP_S = {LANESYNC: 0.9, UNSIGNED: 0.9, PYCRDT: 0.3, NAIVE: 0.3}
# Per load step beyond its seconds of load: the drain, the 0.3 s pause for delayed
# acknowledgements (measure.ACK_SETTLE_S), reading the counters (a 1 s step took 1.51-1.57 s).
STEP_OVERHEAD_S = 0.55
# A ladder rung not kept up is tried twice; each try converged 0.3-2.9 s after its last sale
# in the ladder run named above (a try that never converges waits the full settle time).
FAILED_DRAIN_S = 2.0
# join: a day of sales rung closed-loop, store-wide sales/s (400 sales took lanesync 0.3-1.4 s,
# the baselines 0.1-0.4 s).
FILL_RATE = {LANESYNC: 400.0, UNSIGNED: 400.0, PYCRDT: 2000.0, NAIVE: 2000.0}
# split-heal and outage: from the heal to converged (a redial after its backoff, then the
# catch-up), the 0.3-2.6 s of the split-heal results under "Latest results" in
# docs/reference/benchmarks.md.
HEAL_S = 1.5
# The highest rate each system kept up (sales/s) in the ladder run named above (3 lanes).
LADDER_TOP = {LANESYNC: 1000.0, UNSIGNED: 1000.0, PYCRDT: 2000.0, NAIVE: 200.0}


@dataclass(frozen=True, slots=True)
class Estimate:
    """The planned work and its estimated wall time."""

    seconds: float
    stores: int  # store runs: repeats x scenarios x systems that apply
    steps: int  # load steps (warm-up included), ladder rungs as estimated
    ladder: bool
    ladder_applies: bool  # a steady or scale scenario is planned

    def line(self) -> str:
        parts = [
            f"{self.stores} store run{'s' if self.stores != 1 else ''}",
            f"{self.steps} load steps",
        ]
        if self.ladder_applies:
            parts.append("with the throughput ladder" if self.ladder else "no ladder (--ladder)")
        return f"estimated wall time: about {human_seconds(self.seconds)} ({', '.join(parts)})"


def human_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 90:
        return f"{minutes:.1f} min"
    return f"{minutes / 60:.1f} h"


@dataclass(frozen=True, slots=True)
class _Cost:
    seconds: float
    steps: int

    def __add__(self, other: _Cost) -> _Cost:
        return _Cost(self.seconds + other.seconds, self.steps + other.steps)


def _store(system: str, processes: int) -> _Cost:
    per = START_PER_PROCESS_S[system]
    return _Cost(START_FIXED_S + per * processes + STOP_S[system], 0)


def _step(seconds: float) -> _Cost:
    return _Cost(seconds + STEP_OVERHEAD_S, 1)


def _failing_step(s: Settings) -> _Cost:
    # tried twice (steady.ladder retries a rung that converged too slowly)
    return _step(s.duration_s + FAILED_DRAIN_S) + _step(s.duration_s + FAILED_DRAIN_S)


def ladder_cost(s: Settings, system: str) -> _Cost:
    """The ladder after the steady step: up from --rate while rungs are kept up, or down from it
    when even --rate is not (``steady.ladder``)."""
    top = LADDER_TOP[system]
    cost = _Cost(0.0, 0)
    if s.rate <= top:
        rungs = [r for r in LADDER if s.rate < r <= s.max_rate]
        for rate in rungs:
            if rate > top:
                return cost + _failing_step(s)
            cost += _step(s.duration_s)
        return cost
    for rate in sorted((r for r in LADDER if r < s.rate), reverse=True):
        if rate <= top:
            return cost + _step(s.duration_s)
        cost += _failing_step(s)
    return cost


def _steady(s: Settings, system: str, lanes: int) -> _Cost:
    processes = lanes + (1 if system == PYCRDT else 0)  # the star's server
    cost = _store(system, processes) + _step(WARMUP_S)
    # the step at --rate: once, slower when the system cannot keep that rate up
    late = 0.0 if s.rate <= LADDER_TOP[system] else FAILED_DRAIN_S
    cost += _step(s.duration_s + late)
    return cost + ladder_cost(s, system) if s.ladder else cost


def scenario_cost(s: Settings, scenario: str, system: str) -> _Cost:
    lanes = max(2, s.lanes)
    hub = 1 if system == PYCRDT else 0
    day = s.rate * s.duration_s
    if scenario == "steady":
        return _steady(s, system, s.lanes)
    if scenario == "scale":
        cost = _Cost(0.0, 0)
        for n in scale_sizes(s.scale_lanes):
            cost += _steady(s, system, n)
        return cost
    if scenario == "split-heal":
        cost = _store(system, lanes + hub) + _step(WARMUP_S)
        for size in split_sizes(s):
            cost += _step(size / s.rate + HEAL_S)
        return cost
    if scenario == "outage":
        cost = _store(system, lanes + 1) + _step(WARMUP_S)  # and the cloud
        return cost + _step(s.duration_s) + _step(HEAL_S)
    if scenario == "join":
        fill = day / FILL_RATE[system]
        cost = _store(system, lanes + hub) + _step(fill)
        return cost + _step(START_PER_PROCESS_S[system] + fill)  # the newcomer catches up
    if scenario == "churn":
        cost = _store(system, lanes + hub) + _step(WARMUP_S)
        # restarts overlap the load; the last one may end after it
        return cost + _step(s.duration_s + START_PER_PROCESS_S[system])
    raise BenchError(f"no estimate for scenario {scenario!r}")


def estimate(scenarios: Sequence[str], systems: Sequence[str], settings: Settings) -> Estimate:
    total = _Cost(0.0, 0)
    stores = 0
    for scenario in scenarios:
        for system in systems:
            if not applies(scenario, system):
                continue
            stores += 1
            total += scenario_cost(settings, scenario, system)
    return Estimate(
        seconds=round(RUN_FIXED_S + total.seconds * settings.repeat, 1),
        stores=stores * settings.repeat,
        steps=total.steps * settings.repeat,
        ladder=settings.ladder,
        ladder_applies=bool({"steady", "scale"} & set(scenarios)),
    )
