"""The store's actions on a chain: a fork resolution and a closure, and what they change in how a
chain is judged.

* A fork resolution (``core.forks``): the chain is accepted up to the record both branches link
  to, then each named branch on its own, up to its named head; nothing else past the fork.
* A closure (a replacement terminal's certificate names this chain's last seq): nothing past
  that seq is accepted.

Records held past either are kept, to be reported (``closed_chains``). ``core.chains`` applies
these rules to a terminal's chain only when the store acted on it; they live here, apart from
the acceptance of an ordinary chain, which every record of every terminal goes through.
"""

from __future__ import annotations

from collections.abc import Iterator

from lanesync.core.chain import BAD_LINK, FORK, BranchChain, Candidate, Chain, Offered
from lanesync.core.forks import ForkResolution
from lanesync.core.ids import TerminalId


def main_limit(resolution: ForkResolution | None, closure: int | None) -> int | None:
    """The highest seq the chain proper accepts (past a resolved fork: its branches)."""
    limits = []
    if resolution is not None:
        limits.append(resolution.fork_seq - 1)
    if closure is not None:
        limits.append(closure)
    return min(limits) if limits else None


def offer_to_branches(chain: Chain, candidate: Candidate) -> Offered:
    """``Chains.offer`` for a record at or past a resolved fork."""
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


def advance_branches(
    chain: Chain, resolution: ForkResolution, closure: int | None
) -> Iterator[Candidate]:
    """``Chains.advance`` past a resolved fork: open the branches once the chain reaches the
    record they link to (cut short by ``closure``, if any), then accept what each can take."""
    base_seq = resolution.fork_seq - 1
    if chain.branches is None:
        if (
            chain.broken_at is not None
            or chain.head_seq != base_seq
            or chain.head_hash != resolution.base_hash
        ):
            return  # the chain has not reached the record the branches link to
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


def resolved_problems(
    t: TerminalId, c: Chain
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """The gaps and the records no branch counts of a chain whose fork the store resolved."""
    gaps: list[dict[str, object]] = []
    closed: list[dict[str, object]] = []
    if c.branches is None:
        # The chain has not reached the fork yet: everything held waits for it.
        if c.waiting and c.broken_at is None:
            waiting = sum(len(h) for h in c.waiting.values())
            gaps.append({"terminal": t, "missing_seq": c.head_seq + 1, "waiting": waiting})
        return gaps, closed
    # Past the fork: a branch still short of its head may be waiting for a record; what no
    # branch can take any more (or is past every head) never counts.
    open_branches = [b for b in c.branches if not b.complete]
    last = max(b.limit_seq for b in c.branches)
    waiting = sum(len(h) for s, h in c.waiting.items() if s <= last)
    if open_branches and waiting:
        missing = min(b.head_seq + 1 for b in open_branches)
        gaps.append({"terminal": t, "missing_seq": missing, "waiting": waiting})
    refused = sum(len(h) for s, h in c.waiting.items() if s > last or not open_branches)
    if refused:
        closed.append({"terminal": t, "closed_at": last, "refused": refused})
    return gaps, closed


def resolved(chain: Chain | None, resolution: ForkResolution) -> list[dict[str, object]]:
    """How far each branch of a resolved fork is counted (for ``verify``)."""
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
