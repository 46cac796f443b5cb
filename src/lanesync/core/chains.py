"""Chain acceptance: which of a terminal's validly signed records are in its accepted chain.

A terminal's accepted chain is the longest prefix ``1..k`` in which every seq holds exactly one
distinct validly signed record, linked to its predecessor by hash, with a later HLC. Two
distinct records at one seq (a fork) or a record that does not link stops the chain there for
good; a missing seq (a gap) only pauses it until the record arrives.

``Chains`` is told of records whose signature ``core.trust`` already believed (``offer``) and
says which of them join a chain (``advance`` yields each, in seq order, as it joins); what an
accepted record counts for is ``core.views``'s business. A fork discovered below an accepted
head cannot be folded in incrementally: ``offer`` answers ``BELOW_HEAD_FORK`` and the owner
rebuilds.

The store can act on a chain (a fork resolution, a closure: ``core.branches`` says what each
changes); the owner passes what it signed, and rebuilds when it changes. Each terminal's chain
is held as ``core.chain`` records it, which is also the form a checkpoint takes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from lanesync.core import branches
from lanesync.core.chain import (
    BAD_LINK,
    FORK,
    BranchChain,
    Candidate,
    Chain,
    Offered,
    export_chain,
    load_chain,
)
from lanesync.core.forks import ForkResolution
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Certificate
from lanesync.core.ids import RecordId, TerminalId
from lanesync.core.records import HASH_SIZE, Record, record_key


@dataclass(frozen=True, slots=True)
class ChainHead:
    terminal: TerminalId
    seq: int
    hash: bytes
    hlc: Hlc


class Chains:
    """Every terminal's chain: accepted records (by hash), candidates waiting, breaks."""

    def __init__(
        self,
        resolutions: Mapping[TerminalId, ForkResolution] | None = None,
        closures: Mapping[TerminalId, int] | None = None,
        sealed_hash: Callable[[TerminalId, int], bytes | None] | None = None,
    ) -> None:
        """``resolutions``: the fork resolution in force per terminal; ``closures``: the last
        seq the store accepts per terminal. Read as they are when a chain is judged: the owner
        judges everything again when either changes for a terminal ``knows``. ``sealed_hash``:
        the hash of a terminal's accepted record at a seq, read back from the sealed days, or
        None when no single one is found there (``compact``)."""
        self._sealed_hash = sealed_hash
        self._chains: dict[TerminalId, Chain] = defaultdict(Chain)
        self._resolutions: Mapping[TerminalId, ForkResolution] = (
            {} if resolutions is None else resolutions
        )
        self._closures: Mapping[TerminalId, int] = {} if closures is None else closures

    def knows(self, terminal: TerminalId) -> bool:
        """Does any record of ``terminal`` sit in (or wait for) its chain?"""
        return terminal in self._chains

    def _main_limit(self, terminal: TerminalId) -> int | None:
        """The highest seq the chain proper accepts (past a resolved fork: its branches)."""
        if not (self._resolutions or self._closures):
            return None  # the common case: the store never acted on a chain
        return branches.main_limit(self._resolutions.get(terminal), self._closures.get(terminal))

    # -- acceptance -----------------------------------------------------------------------------

    def offer(self, doc: str, key: str, record: Record, cert: Certificate) -> Offered:
        """Hold a validly signed record as a candidate for its seq (``advance`` judges it)."""
        chain = self._chains[record.terminal]
        seq = record.seq
        resolution = self._resolutions.get(record.terminal) if self._resolutions else None
        if resolution is not None and seq >= resolution.fork_seq:
            return branches.offer_to_branches(chain, (doc, key, record, cert))
        limit = self._main_limit(record.terminal)
        if limit is not None and seq > limit:
            # Past where the store closed the chain: never accepted, held to be reported.
            chain.waiting.setdefault(seq, {})[record.hash] = (doc, key, record, cert)
            return Offered.HELD
        if chain.broken_at is not None and seq >= chain.broken_at:
            if seq == chain.broken_at and chain.broken_by and record.hash != chain.broken_by:
                # A second record at the seq where one failed to link: a fold that saw both at
                # once calls it a fork, and the views must not depend on arrival order.
                chain.broken_reason, chain.broken_by = FORK, b""
            return Offered.IGNORED  # reported through the chain's broken state
        if seq <= chain.head_seq:
            if chain.hash_at(seq) != record.hash:
                # A fork below the head: what was counted must be judged again as a whole.
                return Offered.BELOW_HEAD_FORK
            return Offered.IGNORED
        chain.waiting.setdefault(seq, {})[record.hash] = (doc, key, record, cert)
        return Offered.HELD

    def advance(self, terminal: TerminalId) -> Iterator[Candidate]:
        """Accept what can be accepted of ``terminal``'s waiting records, in seq order, yielding
        each once it is in the chain (before the next is judged, so the caller may count it)."""
        chain = self._chains[terminal]
        limit = self._main_limit(terminal)
        while (limit is None or chain.head_seq < limit) and (
            candidates := chain.waiting.get(chain.head_seq + 1)
        ) is not None:
            seq = chain.head_seq + 1
            if len(candidates) > 1:
                self._break(terminal, seq, FORK)
                return
            ((doc, key, record, signer),) = candidates.values()
            if record.prev_hash != chain.head_hash or record.hlc <= chain.last_hlc:
                self._break(terminal, seq, BAD_LINK, record.hash)
                return
            del chain.waiting[seq]
            chain.hashes += record.hash
            chain.sales.append(0)  # mark_sale marks it once it counts as a sale
            chain.last_hlc = record.hlc
            yield doc, key, record, signer
        resolution = self._resolutions.get(terminal) if self._resolutions else None
        if resolution is not None:
            yield from branches.advance_branches(chain, resolution, self._closures.get(terminal))

    def _branch_of(self, terminal: TerminalId, seq: int, hash_: bytes | None) -> BranchChain | None:
        """The branch of a resolved fork that holds ``seq`` (with that hash, if given)."""
        chain = self._chains.get(terminal)
        if chain is None or not chain.branches:
            return None
        for branch in chain.branches:
            if branch.holds(seq) and (hash_ is None or branch.hash_at(seq) == hash_):
                return branch
        return None

    def _in_branches(self, terminal: TerminalId, seq: int) -> bool:
        if not self._resolutions:
            return False  # the common case, on every record's way in
        resolution = self._resolutions.get(terminal)
        return resolution is not None and seq >= resolution.fork_seq

    def is_ambiguous(self, record_id: RecordId) -> bool:
        """Does this id name records of two branches of a resolved fork (so no single sale)?"""
        resolution = self._resolutions.get(record_id.terminal)
        return resolution is not None and record_id.seq in resolution.ambiguous_seqs()

    def advance_all(self) -> Iterator[Candidate]:
        """``advance`` for every terminal (after a rebuild or a checkpoint load)."""
        for terminal in list(self._chains):
            yield from self.advance(terminal)

    def _break(self, terminal: TerminalId, seq: int, reason: str, by: bytes = b"") -> None:
        chain = self._chains[terminal]
        if chain.broken_at is None or seq < chain.broken_at:
            chain.broken_at, chain.broken_reason, chain.broken_by = seq, reason, by
        for stale in [s for s in chain.waiting if s >= seq]:
            del chain.waiting[stale]

    def mark_sale(self, record: Record) -> None:
        """The accepted ``record`` counts as a sale."""
        if self._in_branches(record.terminal, record.seq):
            for branch in self._chains[record.terminal].branches or ():
                if branch.holds(record.seq) and branch.hash_at(record.seq) == record.hash:
                    branch.sales[record.seq - branch.base_seq - 1] = 1
            return
        self._chains[record.terminal].sales[record.seq - 1] = 1

    def forget(self, doc: str, key: str, record: Record) -> bool:
        """``record`` left the documents: stop holding it. True when the chains must be judged
        again (it may have been what broke its chain, which changes the verdict on what
        follows)."""
        chain = self._chains.get(record.terminal)
        if chain is None:
            return False
        candidates = chain.waiting.get(record.seq, {})
        held = candidates.get(record.hash)
        if held is not None and held[:2] == (doc, key):
            del candidates[record.hash]
            if not candidates:
                del chain.waiting[record.seq]
        return chain.broken_at is not None and record.seq >= chain.broken_at - 1

    def known_hashes(self) -> set[bytes]:
        """Every record accepted or waiting (their signatures verified)."""
        known = {h for chain in self._chains.values() for h in chain.all_hashes()}
        known.update(
            bytes(b.hashes[i : i + HASH_SIZE])
            for chain in self._chains.values()
            for b in chain.branches or ()
            for i in range(0, len(b.hashes), HASH_SIZE)
        )
        known.update(
            h for chain in self._chains.values() for c in chain.waiting.values() for h in c
        )
        return known

    # -- reading --------------------------------------------------------------------------------

    def is_counted_sale(self, record_id: RecordId) -> bool:
        if self._in_branches(record_id.terminal, record_id.seq):
            if self.is_ambiguous(record_id):
                return False
            branch = self._branch_of(record_id.terminal, record_id.seq, None)
            return branch is not None and bool(branch.sales[record_id.seq - branch.base_seq - 1])
        chain = self._chains.get(record_id.terminal)
        return (
            chain is not None
            and 1 <= record_id.seq <= chain.head_seq
            and bool(chain.sales[record_id.seq - 1])
        )

    def sale_ids(self) -> Iterator[str]:
        for terminal, chain in self._chains.items():
            for index, counted in enumerate(chain.sales):
                if counted:
                    yield f"{terminal}:{index + 1}"
            # Branches of a resolved fork: an id two branches hold is yielded once per branch.
            for branch in chain.branches or ():
                for index, counted in enumerate(branch.sales):
                    if counted:
                        yield f"{terminal}:{branch.base_seq + index + 1}"

    def head(self, terminal: TerminalId) -> ChainHead:
        chain = self._chains.get(terminal) or Chain()
        return ChainHead(terminal, chain.head_seq, chain.head_hash, chain.last_hlc)

    def heads(self) -> list[ChainHead]:
        return [self.head(t) for t in sorted(self._chains) if self._chains[t].head_seq]

    def is_broken(self, terminal: TerminalId) -> tuple[int, str] | None:
        chain = self._chains.get(terminal)
        if chain is None or chain.broken_at is None:
            return None
        return chain.broken_at, chain.broken_reason

    def compact(self, sealed_prefixes: Mapping[TerminalId, int]) -> None:
        """Drop the hashes of each terminal's seqs 1..prefix (all in sealed days, the caller
        says), keeping the head's: ``Chain.hash_at`` reads them back through ``sealed_hash``.
        Chains the store acted on (a fork resolution, branches) or that broke keep theirs:
        their judging reads hashes below the head, and they are rare."""
        if self._sealed_hash is None:
            return
        for terminal, prefix in sealed_prefixes.items():
            chain = self._chains.get(terminal)
            if (
                chain is None
                or chain.branches is not None
                or chain.broken_at is not None
                or terminal in self._resolutions
            ):
                continue
            base = min(prefix, chain.head_seq - 1)
            if base <= chain.base:
                continue
            del chain.hashes[: HASH_SIZE * (base - chain.base)]
            chain.base = base
            chain.resolve = partial(self._sealed_hash, terminal)

    def accepted_key(self, record_id: RecordId) -> str | None:
        """The map key of the accepted record with this id, if any (one only: none for an id
        two branches of a resolved fork hold)."""
        if self._in_branches(record_id.terminal, record_id.seq):
            branch = self._branch_of(record_id.terminal, record_id.seq, None)
            if branch is None or self.is_ambiguous(record_id):
                return None
            return record_key(record_id, branch.hash_at(record_id.seq))
        chain = self._chains.get(record_id.terminal)
        if chain is None or not 1 <= record_id.seq <= chain.head_seq:
            return None
        found = chain.hash_at(record_id.seq)
        return record_key(record_id, found) if found else None

    def accepted_hash(self, terminal: TerminalId, seq: int) -> bytes | None:
        """The hash of the one accepted record of ``terminal`` at ``seq``, if there is one. Past
        a resolved fork, only while a single branch of the resolution reaches ``seq``: where two
        branches may both hold a record at it, no single record is named (a revocation cut there
        then admits each branch up to ``seq``)."""
        if self._in_branches(terminal, seq):
            resolution = self._resolutions[terminal]
            if sum(b.head_seq >= seq for b in resolution.branches) != 1:
                return None
            branch = self._branch_of(terminal, seq, None)
            return None if branch is None else branch.hash_at(seq)
        chain = self._chains.get(terminal)
        if chain is None or not 1 <= seq <= chain.head_seq:
            return None
        return chain.hash_at(seq) or None

    def is_accepted(self, record: Record) -> bool:
        if self._in_branches(record.terminal, record.seq):
            return self._branch_of(record.terminal, record.seq, record.hash) is not None
        chain = self._chains.get(record.terminal)
        return (
            chain is not None
            and record.seq <= chain.head_seq
            and chain.hash_at(record.seq) == record.hash
        )

    def problems(self) -> dict[str, list[dict[str, object]]]:
        """Broken chains, gaps and records past a closed chain (sorted by terminal), for
        ``Views.problems``."""
        broken: list[dict[str, object]] = []
        gaps: list[dict[str, object]] = []
        closed: list[dict[str, object]] = []
        for t, c in sorted(self._chains.items()):
            if c.broken_at is not None:
                broken.append({"terminal": t, "from_seq": c.broken_at, "reason": c.broken_reason})
            broken.extend(
                {
                    "terminal": t,
                    "from_seq": b.broken_at,
                    "reason": b.broken_reason,
                    "branch": b.first_hash.hex(),
                }
                for b in c.branches or ()
                if b.broken_at is not None
            )
            resolution = self._resolutions.get(t)
            if resolution is not None:
                more_gaps, more_closed = branches.resolved_problems(t, c)
                gaps.extend(more_gaps)
                closed.extend(more_closed)
                continue
            limit = self._main_limit(t)
            below = sum(len(h) for s, h in c.waiting.items() if limit is None or s <= limit)
            if below and c.broken_at is None:
                gaps.append({"terminal": t, "missing_seq": c.head_seq + 1, "waiting": below})
            past = sum(len(h) for s, h in c.waiting.items() if limit is not None and s > limit)
            if past and limit is not None:
                closed.append({"terminal": t, "closed_at": limit, "refused": past})
        return {"broken_chains": broken, "gaps": gaps, "closed_chains": closed}

    def resolved(self, resolution: ForkResolution) -> list[dict[str, object]]:
        """How far each branch of a resolved fork is counted (for ``verify``)."""
        return branches.resolved(self._chains.get(resolution.terminal), resolution)

    # -- checkpoints ----------------------------------------------------------------------------

    def export(self) -> list[Any]:
        """Every chain as plain msgpack-able values (``load`` reverses it)."""
        return [export_chain(terminal, c) for terminal, c in sorted(self._chains.items())]

    def load(self, chains: Any) -> list[tuple[str, str]]:
        """Take the chains ``export`` gave into empty ``Chains``; returns the (document, key) of
        every record that was waiting, for the owner to offer again. Raises ``ValueError`` (or
        ``TypeError``, ``KeyError``) when they do not decode."""
        held: list[tuple[str, str]] = []
        for fields in chains:
            held.extend(load_chain(fields, self._chains))
        for terminal, chain in self._chains.items():
            if chain.base:
                if self._sealed_hash is None:
                    raise ValueError("a compacted chain with nowhere to read its hashes")
                chain.resolve = partial(self._sealed_hash, terminal)
        return held
