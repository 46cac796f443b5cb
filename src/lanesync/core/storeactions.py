"""What the store signed about chains, beyond certificates and revocations: the fork resolution
in force per terminal and the closures (a replacement's certificate names the last seq of its
predecessor's chain).

``StoreActions`` keeps them for ``core.views``: ``core.chains`` reads the two mappings as they
are when it judges a chain, and the views rebuild when either changes for a terminal whose
records they hold. Like certificates, they are kept across a rebuild, and a checkpoint fits
only views judged under the same ones (``export``).
"""

from __future__ import annotations

from typing import Any

from lanesync.core.chains import Chains
from lanesync.core.forks import ForkResolution
from lanesync.core.identity import Certificate
from lanesync.core.ids import TerminalId
from lanesync.core.trust import Trust


class StoreActions:
    """The fork resolutions and closures in force, by terminal."""

    __slots__ = ("closures", "resolutions")

    def __init__(self) -> None:
        self.resolutions: dict[TerminalId, ForkResolution] = {}
        self.closures: dict[TerminalId, int] = {}

    def add_succession(self, cert: Certificate) -> None:
        """A certificate that replaces a terminal closes its predecessor's chain after the seq it
        names (the earliest such seq, if two replacements name different ones). A re-key
        closes nothing: it moves the seqs after it to the new key (``core.trust``)."""
        if cert.succeeds is None or cert.is_rekey:
            return
        predecessor = cert.succeeds.terminal
        current = self.closures.get(predecessor)
        if current is None or cert.succeeds.seq < current:
            self.closures[predecessor] = cert.succeeds.seq

    def add_resolution(self, resolution: ForkResolution) -> bool:
        """Keep ``resolution`` if it is the one in force for its terminal now: with two
        resolutions of one terminal (two people resolved it from replicas that held different
        heads), every replica keeps the same one: the one counting the most records, then the
        greatest bytes. True when it replaced what was in force."""
        current = self.resolutions.get(resolution.terminal)
        if current is not None and _resolution_rank(current) >= _resolution_rank(resolution):
            return False
        self.resolutions[resolution.terminal] = resolution
        return True

    def closed_reason(self, cert: Certificate, trust: Trust) -> str | None:
        """Why ``cert``'s key may sign no more records of its terminal, or None if it may."""
        terminal = cert.terminal_id
        resolution = self.resolutions.get(terminal)
        if resolution is not None:
            return (
                f"the store resolved its fork at seq {resolution.fork_seq} and closed its chain "
                f"at seq {resolution.closed_at}"
            )
        closure = self.closures.get(terminal)
        if closure is not None:
            successor = sorted(
                c.terminal_id
                for c in trust.certificates()
                if c.succeeds is not None and not c.is_rekey and c.succeeds.terminal == terminal
            )
            return f"{', '.join(successor)} replaces it after seq {closure}"
        takeover = trust.next_takeover(cert)
        if takeover is not None:
            return f"it was re-keyed: another key signs its records from seq {takeover}"
        return None

    def export(self) -> list[Any]:
        """Fork resolutions and closures in force: a checkpoint fits only views judged under
        the same ones."""
        return [
            sorted(r.encoded for r in self.resolutions.values()),
            sorted([t, seq] for t, seq in self.closures.items()),
        ]

    def resolved_forks(self, chains: Chains) -> list[dict[str, object]]:
        """Every fork the store resolved, with how far each branch counts (for ``verify``)."""
        return [
            {
                "terminal": t,
                "fork_seq": r.fork_seq,
                "closed_at": r.closed_at,
                "branches": chains.resolved(r),
            }
            for t, r in sorted(self.resolutions.items())
        ]


def _resolution_rank(resolution: ForkResolution) -> tuple[int, bytes]:
    return sum(b.head_seq for b in resolution.branches), resolution.encoded
