"""Records the views hold but do not count, and why: what ``verify`` lists as ``rejected``,
``unverified``, ``revoked`` and ``unauthorized``.

* rejected: the entry does not decode, or is stored under a key or in a document not its own;
* unverified: no certificate of the store verifies it yet (a certificate that arrives later
  releases it to be judged again, ``take_unverified``); listed as ``revoked`` when what refuses
  it is a revocation;
* unauthorized: verified, in its chain, but signed by a role that may not make it.

Records held behind a gap or past a closed chain are ``core.chains``'s to report. Kept apart
from ``core.views`` (which decides) because this is what it reports and what a checkpoint
carries of it: records are named by document and key, their bytes are in the documents.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from lanesync.core.ids import TerminalId
from lanesync.core.records import Record
from lanesync.core.trust import Trust

Entry = tuple[str, str]  # a document and a key in it


class Uncounted:
    """The entries held but not counted, by why."""

    __slots__ = ("rejected", "unauthorized", "unverified")

    def __init__(self) -> None:
        self.unverified: dict[TerminalId, dict[Entry, Record]] = defaultdict(dict)
        self.rejected: dict[Entry, str] = {}
        self.unauthorized: dict[Entry, str] = {}

    def reject(self, doc: str, key: str, reason: str) -> None:
        self.rejected[(doc, key)] = reason

    def refuse(self, doc: str, key: str, reason: str) -> None:
        """The record at ``doc``, ``key`` is in its chain but its signer's role may not make it."""
        self.unauthorized[(doc, key)] = reason

    def take_unverified(self, terminal: TerminalId) -> dict[Entry, Record]:
        """Stop holding ``terminal``'s unverified records and return them, to judge again."""
        return self.unverified.pop(terminal, {})

    def verified(self, doc: str, key: str, terminal: TerminalId) -> None:
        """The record of ``terminal`` at ``doc``, ``key`` verified: it is held elsewhere now."""
        self.rejected.pop((doc, key), None)
        self.unverified[terminal].pop((doc, key), None)

    def counts(self) -> dict[str, int]:
        """How many entries are held but not counted, by why (cheap: for metrics, per scrape)."""
        return {
            "rejected": len(self.rejected),
            "unverified": sum(len(records) for records in self.unverified.values()),
            "unauthorized": len(self.unauthorized),
        }

    def export(self) -> list[Any]:
        """Unverified, rejected and unauthorized entries as plain msgpack-able values."""
        return [
            sorted([d, k] for records in self.unverified.values() for d, k in records),
            sorted([d, k, r] for (d, k), r in self.rejected.items()),
            sorted([d, k, r] for (d, k), r in self.unauthorized.items()),
        ]

    def load(self, unverified: Any, rejected: Any, unauthorized: Any) -> list[Entry]:
        """Take what ``export`` gave into an empty ``Uncounted``; returns the unverified
        entries, for the owner to judge again from the documents. Raises ``ValueError`` (or
        ``TypeError``) when it does not decode."""
        held = [(str(d), str(k)) for d, k in unverified]
        self.rejected = {(str(d), str(k)): str(r) for d, k, r in rejected}
        self.unauthorized = {(str(d), str(k)): str(r) for d, k, r in unauthorized}
        return held

    def problems(self, trust: Trust) -> dict[str, list[dict[str, object]]]:
        """Every entry held but not counted, by kind, sorted (for ``Views.problems``)."""
        rejected: list[dict[str, object]] = [
            {"doc": d, "key": k, "reason": r} for (d, k), r in sorted(self.rejected.items())
        ]
        unverified: list[dict[str, object]] = []
        revoked: list[dict[str, object]] = []
        for records in self.unverified.values():
            for (d, k), record in records.items():
                refusal = trust.revocation_refusal(record)
                if refusal is None:
                    reason = "no certificate of this store verifies it"
                    unverified.append({"doc": d, "key": k, "reason": reason})
                else:
                    revoked.append({"doc": d, "key": k, "reason": refusal})
        unverified.sort(key=lambda p: (str(p["doc"]), str(p["key"])))
        revoked.sort(key=lambda p: (str(p["doc"]), str(p["key"])))
        unauthorized: list[dict[str, object]] = [
            {"doc": d, "key": k, "reason": r} for (d, k), r in sorted(self.unauthorized.items())
        ]
        return {
            "rejected": rejected,
            "unverified": unverified,
            "revoked": revoked,
            "unauthorized": unauthorized,
        }
