"""The scenario registry: every ``lanesync bench`` scenario by name, and the systems it fits.

The scenarios live by idea: ``steady`` (steady, scale), ``partitions`` (split-heal, outage) and
``membership`` (join, churn); what they share (settings, ``Outcome``, the final check) is in
``outcome``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lanesync.bench.cluster import PYCRDT
from lanesync.bench.membership import churn, join
from lanesync.bench.outcome import LADDER, Context, Outcome, Settings
from lanesync.bench.partitions import CLOUD_SYSTEMS, outage, split_heal
from lanesync.bench.steady import scale, steady

SCENARIOS = ("steady", "split-heal", "outage", "join", "churn", "scale")

RUNNERS: dict[str, Callable[[Context, str, Outcome], Awaitable[None]]] = {
    "steady": steady,
    "split-heal": split_heal,
    "outage": outage,
    "join": join,
    "churn": churn,
    "scale": scale,
}


def applies(scenario: str, system: str) -> bool:
    return scenario != "outage" or system in CLOUD_SYSTEMS


__all__ = ["LADDER", "PYCRDT", "RUNNERS", "SCENARIOS", "Context", "Outcome", "Settings", "applies"]
