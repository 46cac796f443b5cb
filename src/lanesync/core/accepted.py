"""A subscription to the records a replica's views accept, for materialised views kept beside
the replica (the cloud's head-office tables).

The views tell each subscriber of every record as it joins its chain and of every rebuild; this
module holds what a subscriber sees and what it may rely on, apart from how the views decide.
"""

from __future__ import annotations

from typing import Protocol

from lanesync.core.records import Record


class AcceptedSubscriber(Protocol):
    """What the views tell of what they accept (``Replica.subscribe``): each record as it joins
    its chain (before the views count it: its signer may still lack the role for it), and each
    rebuild, after which every record that still counts is told again."""

    def record_accepted(self, record: Record) -> None: ...

    def views_rebuilt(self) -> None: ...


class AcceptedRecords:
    """A subscription to the records a replica's views accept (``Replica.subscribe_accepted``),
    for materialised views such as the cloud's head-office tables.

    Guarantees: every record that joins an accepted chain after the subscription is in exactly
    one ``drain()``, in the order it was accepted, unless a rebuild comes first. A rebuild
    (after a fork below a head, a revocation, a removed entry, or a reopen that could not use
    its checkpoint) may withdraw records already drained: it adds one to ``rebuilds`` and drops
    what was not drained yet; what the rebuilt views accept then follows as usual. So a
    subscriber that sees ``rebuilds`` change must read the views whole again.
    """

    __slots__ = ("_log", "rebuilds")

    def __init__(self) -> None:
        self._log: list[Record] = []
        self.rebuilds = 0

    def drain(self) -> list[Record]:
        """Records accepted since the last call (or the subscription, or the last rebuild)."""
        log, self._log = self._log, []
        return log

    def record_accepted(self, record: Record) -> None:
        """Called by the views as ``record`` joins its chain."""
        self._log.append(record)

    def views_rebuilt(self) -> None:
        """Called by the views as they start a rebuild."""
        self.rebuilds += 1
        self._log = []
