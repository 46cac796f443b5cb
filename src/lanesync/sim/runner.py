"""Running schedules and reporting them: one seed (``run_seed``) or many (``run_seeds``).

A failing seed is reported with its seed, every violated invariant, the command that replays
it, and a minimal trace: the events that involve the lanes and records the violations name (or
the last events when they name none), at most ``SimConfig.trace_limit`` lines.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lanesync.sim.checks import check
from lanesync.sim.model import EventKind, SimConfig, TraceEvent, Violation
from lanesync.sim.world import Simulator

# Core findings that are documented but not fixed yet: reported, failing only with --strict.
# None today. (A busy election timer was fixed in core/election.py, and a sealed day that a
# store decision recounted without opening it again, sealed-day-recounted, in core/replica.py;
# both are hard checks now.)
KNOWN_FINDINGS: dict[str, str] = {}

# Events of a terminal's lifecycle that only some schedules have: the summary says in how many
# seeds each happened at least once (``seeds_with``), to show a batch exercised them.
LIFECYCLE_EVENTS = (
    EventKind.RESTORE,
    EventKind.FORK_RESOLVED,
    EventKind.REPLACED,
    EventKind.REKEY,
    EventKind.REVOKE,
    EventKind.CLOSE,
    EventKind.SEAL,
    EventKind.UNSEAL,
)


@dataclass(frozen=True, slots=True)
class SeedResult:
    seed: int
    config: SimConfig
    violations: tuple[Violation, ...]
    counts: dict[str, int]
    checks: int
    sim_ms: int
    trace: tuple[TraceEvent, ...]

    def failures(self, *, strict: bool = False) -> list[Violation]:
        """Violations that fail the seed (known core findings only with ``strict``)."""
        return [v for v in self.violations if strict or not v.known]

    def render_trace(self, *, full: bool = False) -> list[str]:
        if full:
            return [event.render() for event in self.trace]
        subjects = frozenset(s for v in self.failures(strict=True) for s in v.subjects)
        relevant = [
            e
            for e in self.trace
            if e.kind in (EventKind.START, EventKind.QUIET, EventKind.SETTLED)
            or e.kind is EventKind.VIOLATION
            or (subjects and e.involves(subjects))
        ]
        if not subjects:
            relevant = list(self.trace)
        limit = self.config.trace_limit
        if len(relevant) > limit:
            # Keep the setup line, then the latest events (failures surface at the end).
            return [
                relevant[0].render(),
                f"    ... {len(relevant) - limit} earlier events omitted ...",
                *(e.render() for e in relevant[-(limit - 1) :]),
            ]
        return [e.render() for e in relevant]

    def render_failure(self, *, strict: bool = False) -> str:
        failures = self.failures(strict=strict)
        lines = [f"seed {self.seed}: {len(failures)} violation(s)"]
        lines += [f"  VIOLATION {v.render()}" for v in failures]
        strict_flag = " --strict" if strict and any(v.known for v in failures) else ""
        lines.append(f"  replay: {self.config.cli_args(self.seed)}{strict_flag}")
        subjects = sorted({s for v in failures for s in v.subjects})
        about = f"events involving {', '.join(subjects)}" if subjects else "last events"
        lines.append(f"  trace ({about}; t in simulated ms):")
        lines += [f"    {line}" for line in self.render_trace()]
        return "\n".join(lines)


def run_seed(seed: int, config: SimConfig) -> SeedResult:
    """Play one schedule and check every invariant at its end."""
    sim = Simulator(seed, config)
    sim.play()
    checks = check(sim)
    return SeedResult(
        seed,
        config,
        tuple(sim.violations),
        dict(sim.counts),
        checks,
        sim.now,
        tuple(sim.trace),
    )


@dataclass(slots=True)
class Summary:
    """Totals over many seeds (what ``lanesync sim --json`` prints)."""

    config: SimConfig
    seeds: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    checks: int = 0
    sim_ms: int = 0
    wall_s: float = 0.0
    failed: list[SeedResult] = field(default_factory=list)
    known: Counter[str] = field(default_factory=Counter)
    seeds_with: Counter[str] = field(default_factory=Counter)
    strict: bool = False

    def add(self, result: SeedResult) -> None:
        self.seeds.append(result.seed)
        self.counts.update(result.counts)
        self.seeds_with.update(e.value for e in LIFECYCLE_EVENTS if result.counts.get(e.value))
        self.checks += result.checks
        self.sim_ms += result.sim_ms
        self.known.update(v.known for v in result.violations if v.known)
        if result.failures(strict=self.strict):
            self.failed.append(result)

    def to_json(self) -> dict[str, Any]:
        per_s = len(self.seeds) / self.wall_s if self.wall_s else None
        return {
            "seeds_run": len(self.seeds),
            "first_seed": self.seeds[0] if self.seeds else None,
            "config": {
                "lanes": self.config.lanes,
                "topology": self.config.topology.value,
                "ops": self.config.ops,
                "fault_ms": self.config.fault_ms,
                "anti_entropy_ms": self.config.anti_entropy_ms,
                "plant": self.config.plant.value if self.config.plant else None,
            },
            "events": dict(sorted(self.counts.items())),
            "seeds_with": {e.value: self.seeds_with[e.value] for e in LIFECYCLE_EVENTS},
            "invariant_checks": self.checks,
            "simulated_s": round(self.sim_ms / 1000, 1),
            "wall_s": round(self.wall_s, 2),
            "seeds_per_s": None if per_s is None else round(per_s, 2),
            "violations": [
                {
                    "seed": r.seed,
                    "invariants": sorted(
                        {v.invariant.value for v in r.failures(strict=self.strict)}
                    ),
                    "messages": [v.render() for v in r.failures(strict=self.strict)],
                    "replay": r.config.cli_args(r.seed),
                }
                for r in self.failed
            ],
            "known_findings": {
                name: {"seeds": n, "diagnosis": KNOWN_FINDINGS.get(name, "")}
                for name, n in sorted(self.known.items())
            },
        }


def run_seeds(
    seeds: Iterable[int],
    config: SimConfig,
    *,
    strict: bool = False,
    stop_at_first: bool = False,
    on_result: Callable[[SeedResult], None] | None = None,
) -> Summary:
    summary = Summary(config, strict=strict)
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, config)
        summary.add(result)
        if on_result is not None:
            on_result(result)
        if stop_at_first and result.failures(strict=strict):
            break
    summary.wall_s = time.perf_counter() - started
    return summary
