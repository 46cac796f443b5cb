"""What a call into the replica hands back to its owner to persist.

Every write into a ``Replica`` (``append``, ``merge``, ``restore``, a day close, a published
certificate) returns a ``Change``: the CRDT updates the shell must commit, in order, before it
acknowledges anything, and the verdict keys (``records.verdict_key``) of records whose
signatures were verified. ``Merged``
adds what the relay needs of a merge. Apart from ``replica.py`` because every layer above the
core (the node, the driver, storage, the simulator) passes these around without the replica.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Change:
    """What the shell must make durable after a call: CRDT updates (in order) and the hashes of
    records whose signatures were verified (so a restart need not verify them again)."""

    updates: list[tuple[str, bytes]] = field(default_factory=list)
    verdicts: list[bytes] = field(default_factory=list)
    entries: int = 0  # map entries added or changed in memory (0: the update was a duplicate)
    # Sealed days this change opened again (a late record, or a store decision that changed
    # what they count): each one's archive comes before any other row of its day in ``updates``.
    unsealed: list[str] = field(default_factory=list)

    def extend(self, other: Change) -> None:
        self.updates.extend(other.updates)
        self.verdicts.extend(other.verdicts)
        self.entries += other.entries
        self.unsealed.extend(other.unsealed)

    def __bool__(self) -> bool:
        return bool(self.updates or self.verdicts)


@dataclass(frozen=True, slots=True)
class Merged:
    """What ``Replica.merge_batch`` did: the change to persist and, per update given, whether
    it was new here (not already integrated, not a repeat within the batch)."""

    change: Change
    fresh: tuple[bool, ...]
    # The terminals whose records were new here, or None if anything else was new too.
    writers: frozenset[str] | None = None
