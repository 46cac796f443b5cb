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

The store can act on a chain (the owner passes what it signed, and rebuilds when it changes):

* a fork resolution (``core.forks``): the chain is accepted up to the record both branches link
  to, then each named branch on its own, up to its named head; nothing else past the fork.
* a closure (a replacement terminal's certificate names this chain's last seq): nothing past
  that seq is accepted.

Records held past either are kept, to be reported (``problems``: ``closed_chains``).
"""

from __future__ import annotations

import enum
import sys
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lanesync.core.forks import ForkResolution
from lanesync.core.hlc import ZERO, Hlc
from lanesync.core.identity import Certificate
from lanesync.core.ids import RecordId, TerminalId
from lanesync.core.records import GENESIS_HASH, HASH_SIZE, Record, record_key

FORK = "two different records with one sequence number"
BAD_LINK = "record does not link to its predecessor"

# A record waiting to join its chain: the document and key it is stored under, the record, and
# the certificate that signed it.
Candidate = tuple[str, str, Record, Certificate]


@dataclass(frozen=True, slots=True)
class ChainHead:
    terminal: TerminalId
    seq: int
    hash: bytes
    hlc: Hlc


class Offered(enum.Enum):
    """What ``Chains.offer`` did with a record."""

    HELD = "held"  # waiting for its turn (``advance`` may accept it)
    IGNORED = "ignored"  # already in the chain, or at or past where the chain broke
    BELOW_HEAD_FORK = "below head fork"  # differs from the accepted record at its seq


@dataclass(slots=True)
class BranchChain:
    """One branch of a resolved fork, accepted from ``base_seq + 1`` up to ``limit_seq``."""

    first_hash: bytes
    base_seq: int
    base_hash: bytes
    limit_seq: int
    limit_hash: bytes | None  # the branch's named head, unless a closure cuts it shorter
    last_hlc: Hlc
    hashes: bytearray = field(default_factory=bytearray)
    sales: bytearray = field(default_factory=bytearray)
    broken_at: int | None = None
    broken_reason: str = ""

    @property
    def head_seq(self) -> int:
        return self.base_seq + len(self.sales)

    @property
    def head_hash(self) -> bytes:
        return self.hash_at(self.head_seq)

    @property
    def complete(self) -> bool:
        return self.broken_at is not None or self.head_seq >= self.limit_seq

    def hash_at(self, seq: int) -> bytes:
        if seq == self.base_seq:
            return self.base_hash
        index = seq - self.base_seq
        return bytes(self.hashes[HASH_SIZE * (index - 1) : HASH_SIZE * index])

    def holds(self, seq: int) -> bool:
        return self.base_seq < seq <= self.head_seq

    def eligible(self, record: Record) -> bool:
        """May ``record`` be this branch's next record (it links to the branch's head)?"""
        seq = record.seq
        return (
            seq == self.head_seq + 1
            and seq <= self.limit_seq
            and record.prev_hash == self.head_hash
            and (seq != self.base_seq + 1 or record.hash == self.first_hash)
            and (seq != self.limit_seq or self.limit_hash in (None, record.hash))
        )


@dataclass(slots=True)
class Chain:
    # The hashes of the accepted records, concatenated (seq i at [32 * (i - 1), 32 * i)): one
    # buffer instead of one bytes object per record (65 B of header each, 100k per busy day).
    hashes: bytearray = field(default_factory=bytearray)
    # sales[i] is 1 when seq i+1 is a counted sale (accepted and authorised): its lines are
    # read back from the document when a void needs them, so no per-sale object stays around.
    sales: bytearray = field(default_factory=bytearray)
    last_hlc: Hlc = ZERO
    broken_at: int | None = None  # seq from which nothing more is ever accepted
    broken_reason: str = ""
    broken_by: bytes = b""  # hash of the record that broke it by not linking (else empty)
    waiting: dict[int, dict[bytes, Candidate]] = field(default_factory=dict)
    # The branches of a resolved fork, once the chain reaches the record they link to.
    branches: list[BranchChain] | None = None

    @property
    def head_seq(self) -> int:
        return len(self.sales)

    @property
    def head_hash(self) -> bytes:
        return self.hash_at(len(self.sales)) if self.sales else GENESIS_HASH

    def hash_at(self, seq: int) -> bytes:
        return bytes(self.hashes[HASH_SIZE * (seq - 1) : HASH_SIZE * seq])

    def all_hashes(self) -> Iterator[bytes]:
        for start in range(0, len(self.hashes), HASH_SIZE):
            yield bytes(self.hashes[start : start + HASH_SIZE])


class Chains:
    """Every terminal's chain: accepted records (by hash), candidates waiting, breaks."""

    def __init__(
        self,
        resolutions: Mapping[TerminalId, ForkResolution] | None = None,
        closures: Mapping[TerminalId, int] | None = None,
    ) -> None:
        """``resolutions``: the fork resolution in force per terminal; ``closures``: the last
        seq the store accepts per terminal. Read as they are when a chain is judged: the owner
        judges everything again when either changes for a terminal ``knows``."""
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
        limits = []
        resolution = self._resolutions.get(terminal)
        if resolution is not None:
            limits.append(resolution.fork_seq - 1)
        closure = self._closures.get(terminal)
        if closure is not None:
            limits.append(closure)
        return min(limits) if limits else None

    # -- acceptance -----------------------------------------------------------------------------

    def offer(self, doc: str, key: str, record: Record, cert: Certificate) -> Offered:
        """Hold a validly signed record as a candidate for its seq (``advance`` judges it)."""
        chain = self._chains[record.terminal]
        seq = record.seq
        resolution = self._resolutions.get(record.terminal) if self._resolutions else None
        if resolution is not None and seq >= resolution.fork_seq:
            return self._offer_to_branches(chain, (doc, key, record, cert))
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

    def _offer_to_branches(self, chain: Chain, candidate: Candidate) -> Offered:
        record = candidate[2]
        seq = record.seq
        for branch in chain.branches or ():
            if branch.holds(seq):
                if branch.hash_at(seq) == record.hash:
                    return Offered.IGNORED
                pinned = seq == branch.limit_seq and branch.limit_hash not in (None, record.hash)
                if branch.hash_at(seq - 1) == record.prev_hash and not pinned:
                    return Offered.BELOW_HEAD_FORK  # a branch forks again under its head
            elif branch.broken_at == seq and branch.eligible(record):
                # As in ``offer``: whatever arrives first, a second linking record is a fork.
                branch.broken_reason = FORK
        # Held even if no branch will take it: ``problems`` reports what never joins one.
        chain.waiting.setdefault(seq, {})[record.hash] = candidate
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
            yield from self._advance_branches(terminal, chain, resolution)

    def _advance_branches(
        self, terminal: TerminalId, chain: Chain, resolution: ForkResolution
    ) -> Iterator[Candidate]:
        base_seq = resolution.fork_seq - 1
        if chain.branches is None:
            if (
                chain.broken_at is not None
                or chain.head_seq != base_seq
                or chain.head_hash != resolution.base_hash
            ):
                return  # the chain has not reached the record the branches link to
            closure = self._closures.get(terminal)
            chain.branches = [
                BranchChain(
                    b.first_hash,
                    base_seq,
                    resolution.base_hash,
                    b.head_seq if closure is None else min(b.head_seq, closure),
                    b.head_hash if closure is None or closure >= b.head_seq else None,
                    chain.last_hlc,
                )
                for b in resolution.branches
            ]
        for branch in chain.branches:
            while not branch.complete:
                seq = branch.head_seq + 1
                held = chain.waiting.get(seq, {})
                linking = [c for c in held.values() if branch.eligible(c[2])]
                if not linking:
                    break
                if len(linking) > 1:
                    branch.broken_at, branch.broken_reason = seq, FORK
                    break
                ((doc, key, record, signer),) = linking
                if record.hlc <= branch.last_hlc:
                    branch.broken_at, branch.broken_reason = seq, BAD_LINK
                    break
                del held[record.hash]
                if not held:
                    del chain.waiting[seq]
                branch.hashes += record.hash
                branch.sales.append(0)
                branch.last_hlc = record.hlc
                yield doc, key, record, signer

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
        return record_key(record_id, chain.hash_at(record_id.seq))

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
        return chain.hash_at(seq)

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
            limit = self._main_limit(t)
            resolution = self._resolutions.get(t)
            if resolution is not None and c.branches is None:
                # The chain has not reached the fork yet: everything held waits for it.
                if c.waiting and c.broken_at is None:
                    waiting = sum(len(h) for h in c.waiting.values())
                    gaps.append({"terminal": t, "missing_seq": c.head_seq + 1, "waiting": waiting})
                continue
            if resolution is not None and c.branches is not None:
                # Past the fork: a branch still short of its head may be waiting for a record;
                # what no branch can take any more (or is past every head) never counts.
                open_branches = [b for b in c.branches if not b.complete]
                last = max(b.limit_seq for b in c.branches)
                waiting = sum(len(h) for s, h in c.waiting.items() if s <= last)
                if open_branches and waiting:
                    missing = min(b.head_seq + 1 for b in open_branches)
                    gaps.append({"terminal": t, "missing_seq": missing, "waiting": waiting})
                refused = sum(len(h) for s, h in c.waiting.items() if s > last or not open_branches)
                if refused:
                    closed.append({"terminal": t, "closed_at": last, "refused": refused})
                continue
            below = sum(len(h) for s, h in c.waiting.items() if limit is None or s <= limit)
            if below and c.broken_at is None:
                gaps.append({"terminal": t, "missing_seq": c.head_seq + 1, "waiting": below})
            past = sum(len(h) for s, h in c.waiting.items() if limit is not None and s > limit)
            if past and limit is not None:
                closed.append({"terminal": t, "closed_at": limit, "refused": past})
        return {"broken_chains": broken, "gaps": gaps, "closed_chains": closed}

    def resolved(self, resolution: ForkResolution) -> list[dict[str, object]]:
        """How far each branch of a resolved fork is counted (for ``verify``)."""
        chain = self._chains.get(resolution.terminal)
        branches = [] if chain is None or chain.branches is None else chain.branches
        counted = {b.first_hash: b.head_seq for b in branches}
        return [
            {
                "first_hash": b.first_hash.hex(),
                "head_seq": b.head_seq,
                "head_hash": b.head_hash.hex(),
                "counted_to_seq": counted.get(b.first_hash, resolution.fork_seq - 1),
            }
            for b in resolution.branches
        ]

    # -- checkpoints ----------------------------------------------------------------------------

    def export(self) -> list[Any]:
        """Every chain as plain msgpack-able values (``load`` reverses it). Waiting records are
        named by document and key only: their bytes are in the documents."""
        return [
            [
                terminal,
                bytes(c.hashes),
                bytes(c.sales),
                c.last_hlc.wall_ms,
                c.last_hlc.counter,
                c.broken_at,
                c.broken_reason,
                c.broken_by,
                sorted([d, k] for held in c.waiting.values() for d, k, _, _ in held.values()),
                None
                if c.branches is None
                else [
                    [
                        b.first_hash,
                        b.base_seq,
                        b.base_hash,
                        b.limit_seq,
                        b.limit_hash,
                        b.last_hlc.wall_ms,
                        b.last_hlc.counter,
                        bytes(b.hashes),
                        bytes(b.sales),
                        b.broken_at,
                        b.broken_reason,
                    ]
                    for b in c.branches
                ],
            ]
            for terminal, c in sorted(self._chains.items())
        ]

    def load(self, chains: Any) -> list[tuple[str, str]]:
        """Take the chains ``export`` gave into empty ``Chains``; returns the (document, key) of
        every record that was waiting, for the owner to offer again. Raises ``ValueError`` (or
        ``TypeError``, ``KeyError``) when they do not decode."""
        held: list[tuple[str, str]] = []
        for (
            terminal,
            hashes,
            sales,
            wall,
            counter,
            broken_at,
            reason,
            by,
            waiting,
            branches,
        ) in chains:
            _check_counted(hashes, sales)
            chain = self._chains[TerminalId(sys.intern(terminal))]
            chain.hashes, chain.sales = bytearray(hashes), bytearray(sales)
            chain.last_hlc = Hlc(int(wall), int(counter))
            chain.broken_at = None if broken_at is None else int(broken_at)
            chain.broken_reason, chain.broken_by = str(reason), bytes(by)
            if branches is not None:
                chain.branches = [_load_branch(b) for b in branches]
            held.extend((str(d), str(k)) for d, k in waiting)
        return held


def _load_branch(fields: Any) -> BranchChain:
    first, base_seq, base, limit_seq, limit_hash, wall, counter, hashes, sales, at, why = fields
    _check_counted(hashes, sales)
    return BranchChain(
        bytes(first),
        int(base_seq),
        bytes(base),
        int(limit_seq),
        None if limit_hash is None else bytes(limit_hash),
        Hlc(int(wall), int(counter)),
        bytearray(hashes),
        bytearray(sales),
        None if at is None else int(at),
        str(why),
    )


def _check_counted(hashes: bytes, sales: bytes) -> None:
    """One hash and one sale flag per accepted record, or the checkpoint is unusable."""
    if len(hashes) != HASH_SIZE * len(sales) or not set(sales) <= {0, 1}:
        raise ValueError("a chain of the checkpoint is malformed")
