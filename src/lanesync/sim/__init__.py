"""Deterministic simulation of a whole store through the real pure cores.

Pure like the core it drives: no sockets, no asyncio, no threads, no SQLite, no real time. All
randomness comes from ``random.Random`` seeded by the schedule's seed; time is a simulated
integer millisecond clock. ``lanesync sim`` is its command line; docs/reference/simulation.md
says what a schedule does and checks, docs/explanation/simulation.md why it is built this way.
"""

from lanesync.sim.model import (
    EventKind,
    FaultRates,
    Invariant,
    PlantedBug,
    SimConfig,
    Topology,
    TraceEvent,
    Violation,
)
from lanesync.sim.runner import KNOWN_FINDINGS, SeedResult, Summary, run_seed, run_seeds

__all__ = [
    "KNOWN_FINDINGS",
    "EventKind",
    "FaultRates",
    "Invariant",
    "PlantedBug",
    "SeedResult",
    "SimConfig",
    "Summary",
    "Topology",
    "TraceEvent",
    "Violation",
    "run_seed",
    "run_seeds",
]
