"""One terminal's chain as data: its accepted records, the candidates held for it, where it broke,
and, past a fork the store resolved, its branches; with the plain-value form of all of it that a
checkpoint holds.

``core.chains`` decides what joins a chain (``Chains``) and ``core.branches`` what the store's
actions on a chain change; both read and write the records here. They are kept apart from those
rules because every rule reads them, and a checkpoint must reproduce them exactly.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from lanesync.core.hlc import ZERO, Hlc
from lanesync.core.identity import Certificate
from lanesync.core.ids import TerminalId
from lanesync.core.records import GENESIS_HASH, HASH_SIZE, Record

# Why a chain (or a branch of a resolved fork) stops for good, as ``problems`` reports it.
FORK = "two different records with one sequence number"
BAD_LINK = "record does not link to its predecessor"

# A record waiting to join its chain: the document and key it is stored under, the record, and
# the certificate that signed it.
Candidate = tuple[str, str, Record, Certificate]


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
    # Seqs 1..base hold no hash here (``hashes`` starts at base + 1): their records are all in
    # sealed days, and ``resolve`` reads a hash back from there (``Chains.compact``). A sealed
    # year is ~913k records, whose hashes were 29 MB of every lane's memory and checkpoint.
    base: int = 0
    resolve: Callable[[int], bytes | None] | None = None

    @property
    def head_seq(self) -> int:
        return len(self.sales)

    @property
    def head_hash(self) -> bytes:
        return self.hash_at(len(self.sales)) if self.sales else GENESIS_HASH

    def hash_at(self, seq: int) -> bytes:
        """The hash of the accepted record at ``seq`` (1..head_seq); below ``base``, as read
        back from the sealed days, or ``b""`` (no record's hash) when that finds no single one:
        a caller comparing it to a record sees a mismatch, which a fork below the head is."""
        if seq <= self.base:
            found = self.resolve(seq) if self.resolve is not None else None
            return b"" if found is None else found
        start = HASH_SIZE * (seq - self.base - 1)
        return bytes(self.hashes[start : start + HASH_SIZE])

    def all_hashes(self) -> Iterator[bytes]:
        for start in range(0, len(self.hashes), HASH_SIZE):
            yield bytes(self.hashes[start : start + HASH_SIZE])


def export_chain(terminal: TerminalId, c: Chain) -> list[Any]:
    """``terminal``'s chain as plain msgpack-able values (``load_chain`` reverses it). Waiting
    records are named by document and key only: their bytes are in the documents."""
    return [
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
        c.base,
    ]


def load_chain(fields: Any, chains: MutableMapping[TerminalId, Chain]) -> list[tuple[str, str]]:
    """Take one chain ``export_chain`` gave into ``chains`` (whose missing entries start empty);
    returns the (document, key) of every record that was waiting, for the owner to offer again.
    Raises ``ValueError`` (or ``TypeError``, ``KeyError``) when it does not decode."""
    terminal, hashes, sales, wall, counter, broken_at, reason, by, waiting, branches, base = fields
    if type(base) is not int or not 0 <= base < max(len(sales), 1):
        raise ValueError("a chain of the checkpoint has a malformed base")
    _check_counted(hashes, sales, base)
    chain = chains[TerminalId(sys.intern(terminal))]
    chain.hashes, chain.sales, chain.base = bytearray(hashes), bytearray(sales), base
    chain.last_hlc = Hlc(int(wall), int(counter))
    chain.broken_at = None if broken_at is None else int(broken_at)
    chain.broken_reason, chain.broken_by = str(reason), bytes(by)
    if branches is not None:
        chain.branches = [_load_branch(b) for b in branches]
    return [(str(d), str(k)) for d, k in waiting]


def _load_branch(fields: Any) -> BranchChain:
    first, base_seq, base, limit_seq, limit_hash, wall, counter, hashes, sales, at, why = fields
    _check_counted(hashes, sales, 0)
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


def _check_counted(hashes: bytes, sales: bytes, base: int) -> None:
    """One sale flag per accepted record and one hash per record past ``base``, or the
    checkpoint is unusable."""
    if len(hashes) != HASH_SIZE * (len(sales) - base) or not set(sales) <= {0, 1}:
        raise ValueError("a chain of the checkpoint is malformed")
