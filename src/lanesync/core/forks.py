"""Fork resolutions: the store declares every branch of a forked chain genuine, and closes it.

A fork is two validly signed records of one terminal at one seq (a lane restored from an old
backup signs seqs it already used). Until the store acts, the chain stops at the fork and
nothing past it counts (``core.chains``). A ``ForkResolution`` is signed by the store authority
and names, for one terminal:

* ``fork_seq``, the first seq that holds two records, and ``base_hash``, the hash of the record
  both branches link to (seq ``fork_seq - 1``; the genesis hash when the fork is at seq 1);
* every branch: the hash of its record at ``fork_seq`` and its head (seq and hash) as the
  resolving replica held it.

Every record of a branch counts once it links, from ``fork_seq`` up to that branch's head, and
at the head's seq only the named record counts. The chain is then closed: nothing the terminal
signs past a branch's head counts, on any branch (the resolution commits to the heads by hash, so
no record written after it can join). Records of a branch up to its head that arrive later (a lane
that was offline) still count. The lane goes on under a new terminal id (``enroll --replaces``).
Only the store can take in more: a second resolution of the same fork naming longer branches (of
two, every replica keeps the one whose heads sum higher).

Wire format (stored in the config document, spread like data)::

    payload    = msgpack [1, store_id, terminal, fork_seq, base_hash,
                          [[first_hash, head_seq, head_hash], ...]]   -- sorted by first_hash
    resolution = payload || Ed25519 signature of the store over (DOMAIN || payload)

A sale id (``lane3:7``) names one sale only where just one branch reaches that seq; a void of an
id two branches share credits nothing back (``ambiguous_seqs``): stock stays exact whatever
order the void and the branches arrive in, and the store corrects it with an adjustment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgpack
from nacl.signing import SigningKey

from lanesync.core.chain import FORK
from lanesync.core.identity import (
    StoreIdentity,
    open_store_signed,
    sign,
    unpack_payload,
)
from lanesync.core.ids import StoreId, TerminalId, is_valid_name
from lanesync.core.records import GENESIS_HASH, HASH_SIZE, Record
from lanesync.errors import RemoteError, UsageError

if TYPE_CHECKING:  # the views hold fork resolutions: at run time they are passed in
    from lanesync.core.views import Views

DOMAIN_FORK_RESOLUTION = b"lanesync/fork-resolution/v1\x00"
FORK_RESOLUTION_FORMAT = 1
# A restore from a backup makes two branches; each further restore of the same lane from an
# older copy one more. Eight is far above any real case and keeps the object small.
MAX_BRANCHES = 8
MAX_RESOLUTION_SIZE = 1024  # 8 branches of ~75 bytes, plus the header and the signature


@dataclass(frozen=True, slots=True)
class Branch:
    """One branch of a fork: its record at the fork's seq and its head when resolved."""

    first_hash: bytes
    head_seq: int
    head_hash: bytes


@dataclass(frozen=True, slots=True)
class ForkResolution:
    store_id: StoreId
    terminal: TerminalId
    fork_seq: int
    base_hash: bytes
    branches: tuple[Branch, ...]  # sorted by first_hash
    encoded: bytes

    @property
    def closed_at(self) -> int:
        """The highest seq any branch may hold."""
        return max(b.head_seq for b in self.branches)

    def ambiguous_seqs(self) -> range:
        """The seqs that at least two branches hold: their ids name no single sale."""
        heads = sorted((b.head_seq for b in self.branches), reverse=True)
        return range(self.fork_seq, heads[1] + 1)


def issue_fork_resolution(
    authority: SigningKey,
    store_id: StoreId,
    terminal: TerminalId,
    fork_seq: int,
    base_hash: bytes,
    branches: Iterable[Branch],
) -> ForkResolution:
    ordered = tuple(sorted(branches, key=lambda b: b.first_hash))
    payload = msgpack.packb(
        [
            FORK_RESOLUTION_FORMAT,
            store_id,
            terminal,
            fork_seq,
            base_hash,
            [[b.first_hash, b.head_seq, b.head_hash] for b in ordered],
        ],
        use_bin_type=True,
    )
    encoded = payload + sign(authority, DOMAIN_FORK_RESOLUTION, payload)
    # Parse what was issued: the issuer gets the same checks as every receiver.
    return _decode(payload, encoded, store_id)


def parse_fork_resolution(encoded: object, store: StoreIdentity) -> ForkResolution:
    """Decode a fork resolution and check the store authority signed it; RemoteError otherwise."""
    encoded, payload = open_store_signed(
        encoded, store, DOMAIN_FORK_RESOLUTION, "fork resolution", MAX_RESOLUTION_SIZE
    )
    return _decode(payload, encoded, store.store_id)


def _decode(payload: bytes, encoded: bytes, store_id: StoreId) -> ForkResolution:
    fields = unpack_payload(payload, "fork resolution")
    match fields:
        case [1, str(sid), str(terminal), int(fork_seq), bytes(base), list(raw)] if (
            sid == store_id
            and is_valid_name(terminal)
            and fork_seq >= 1
            and len(base) == HASH_SIZE
            and (fork_seq > 1 or base == GENESIS_HASH)
            and 2 <= len(raw) <= MAX_BRANCHES
        ):
            branches = tuple(_branch(item, fork_seq) for item in raw)
            firsts = [b.first_hash for b in branches]
            if firsts != sorted(set(firsts)):
                raise RemoteError("fork resolution names a branch twice or out of order")
            return ForkResolution(store_id, TerminalId(terminal), fork_seq, base, branches, encoded)
    raise RemoteError("fork resolution is malformed or for another store")


def _branch(item: object, fork_seq: int) -> Branch:
    match item:
        case [bytes(first), int(head_seq), bytes(head)] if (
            len(first) == len(head) == HASH_SIZE
            and head_seq >= fork_seq
            and (head_seq > fork_seq or head == first)
        ):
            return Branch(first, head_seq, head)
    raise RemoteError("fork resolution names a malformed branch")


@dataclass(frozen=True, slots=True)
class Fork:
    """A fork as found in the records a replica holds: what a resolution of it would name."""

    terminal: TerminalId
    fork_seq: int
    base_hash: bytes
    branches: tuple[Branch, ...]


def find_fork(
    terminal: TerminalId,
    fork_seq: int,
    base_hash: bytes,
    records: Iterable[Record],
    verifies: Callable[[Record], bool],
) -> Fork:
    """The branches of ``terminal``'s fork at ``fork_seq`` among ``records`` (any order, any
    terminal): each branch is followed from its record at ``fork_seq`` (linked to ``base_hash``)
    along the records that link to it, as far as they reach. Only records ``verifies`` accepts
    (a signature of the terminal's certificate) are followed.

    Raises ``UsageError`` when there are fewer than two branches, more than ``MAX_BRANCHES``, or
    a branch forks again (one resolution names whole branches; resolve none rather than guess).
    """
    children: dict[bytes, list[Record]] = defaultdict(list)
    for record in records:
        if record.terminal == terminal and record.seq >= fork_seq and verifies(record):
            children[record.prev_hash].append(record)
    firsts = sorted(
        {r.hash: r for r in children.get(base_hash, []) if r.seq == fork_seq}.values(),
        key=lambda r: r.hash,
    )
    if len(firsts) < 2:
        raise UsageError(f"{terminal} has no fork at seq {fork_seq} on this terminal")
    if len(firsts) > MAX_BRANCHES:
        raise UsageError(f"{terminal} has {len(firsts)} branches at seq {fork_seq}: too many")
    branches = []
    for first in firsts:
        head = first
        while True:
            nexts = {r.hash: r for r in children.get(head.hash, []) if r.seq == head.seq + 1}
            if not nexts:
                break
            if len(nexts) > 1:
                raise UsageError(
                    f"a branch of {terminal}'s fork at seq {fork_seq} forks again at seq "
                    f"{head.seq + 1}; one resolution cannot name it"
                )
            (head,) = nexts.values()
        branches.append(Branch(first.hash, head.seq, head.hash))
    return Fork(terminal, fork_seq, base_hash, tuple(branches))


def open_fork(terminal: TerminalId, views: Views, records: Iterable[Record]) -> Fork:
    """What ``Replica.open_fork`` answers (its docstring states the question), from the
    ``records`` the replica holds and its ``views``."""
    resolved = views.fork_resolution(terminal)
    if resolved is not None:
        fork = find_fork(terminal, resolved.fork_seq, resolved.base_hash, records, views.verifies)
        if sum(b.head_seq for b in fork.branches) > sum(b.head_seq for b in resolved.branches):
            return fork  # it counts more than the resolution in force
    else:
        broken = views.is_broken(terminal)
        if broken is not None and broken[1] == FORK:
            base = views.head(terminal)
            return find_fork(terminal, broken[0], base.hash, records, views.verifies)
    raise UsageError(f"{terminal} has no open fork on this terminal")
