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
"""

from __future__ import annotations

import enum
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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

    def __init__(self) -> None:
        self._chains: dict[TerminalId, Chain] = defaultdict(Chain)

    # -- acceptance -----------------------------------------------------------------------------

    def offer(self, doc: str, key: str, record: Record, cert: Certificate) -> Offered:
        """Hold a validly signed record as a candidate for its seq (``advance`` judges it)."""
        chain = self._chains[record.terminal]
        seq = record.seq
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
        while (candidates := chain.waiting.get(chain.head_seq + 1)) is not None:
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
            h for chain in self._chains.values() for c in chain.waiting.values() for h in c
        )
        return known

    # -- reading --------------------------------------------------------------------------------

    def is_counted_sale(self, record_id: RecordId) -> bool:
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
        """The map key of the accepted record with this id, if any."""
        chain = self._chains.get(record_id.terminal)
        if chain is None or not 1 <= record_id.seq <= chain.head_seq:
            return None
        return record_key(record_id, chain.hash_at(record_id.seq))

    def accepted_hash(self, terminal: TerminalId, seq: int) -> bytes | None:
        chain = self._chains.get(terminal)
        if chain is None or not 1 <= seq <= chain.head_seq:
            return None
        return chain.hash_at(seq)

    def is_accepted(self, record: Record) -> bool:
        chain = self._chains.get(record.terminal)
        return (
            chain is not None
            and record.seq <= chain.head_seq
            and chain.hash_at(record.seq) == record.hash
        )

    def problems(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """Broken chains and gaps (sorted by terminal), for ``Views.problems``."""
        broken: list[dict[str, object]] = [
            {"terminal": t, "from_seq": c.broken_at, "reason": c.broken_reason}
            for t, c in sorted(self._chains.items())
            if c.broken_at is not None
        ]
        gaps: list[dict[str, object]] = [
            {"terminal": t, "missing_seq": c.head_seq + 1, "waiting": len(c.waiting)}
            for t, c in sorted(self._chains.items())
            if c.waiting and c.broken_at is None
        ]
        return broken, gaps

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
            ]
            for terminal, c in sorted(self._chains.items())
        ]

    def load(self, chains: Any) -> list[tuple[str, str]]:
        """Take the chains ``export`` gave into empty ``Chains``; returns the (document, key) of
        every record that was waiting, for the owner to offer again. Raises ``ValueError`` (or
        ``TypeError``, ``KeyError``) when they do not decode."""
        held: list[tuple[str, str]] = []
        for terminal, hashes, sales, wall, counter, broken_at, reason, by, waiting in chains:
            if len(hashes) != HASH_SIZE * len(sales) or not set(sales) <= {0, 1}:
                raise ValueError("a chain of the checkpoint is malformed")
            chain = self._chains[TerminalId(sys.intern(terminal))]
            chain.hashes, chain.sales = bytearray(hashes), bytearray(sales)
            chain.last_hlc = Hlc(int(wall), int(counter))
            chain.broken_at = None if broken_at is None else int(broken_at)
            chain.broken_reason, chain.broken_by = str(reason), bytes(by)
            held.extend((str(d), str(k)) for d, k in waiting)
        return held
