"""Relay: which other peers an update merged from one peer goes on to.

Lanes need not all be connected to each other (a chain of lanes, a split store healing through
one bridge), so a node forwards what it merged. Two rules, one per kind of update:

* A live update has one origin, the terminal that wrote it. It is forwarded to every other
  peer, except peers that told us (in ``Peers``) they are connected to its origin: they hear it
  first hand. Only an update that changed our state travels on (one still waiting for a missing
  parent does not, nor does a duplicate), so relay cycles die out.
* A catch-up diff (an answer to ``State(reply=True)``) has no single origin. Each other peer is
  instead pushed what its last acknowledged state lacks, except peers that have it already:
  those that hear its writers, or every peer it came from, first hand. A peer that has not
  acknowledged anything yet is asked for its state instead.

What is forwarded is queued on the target ``Link`` (``pending``); the node packs and sends it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from lanesync.core.change import Merged
from lanesync.core.link import Link
from lanesync.core.output import diff_items
from lanesync.core.replica import Replica
from lanesync.core.updates import covered_by
from lanesync.core.wire import Update
from lanesync.errors import RemoteError

Frame = tuple[Link, tuple[Update, ...]]  # one received Updates message and its link


def forward(
    frames: Sequence[Frame],
    merged: Merged,
    links: Mapping[int, Link],
    replica: Replica,
    now_ms: int,
) -> None:
    """Queue for the other open links what merging ``frames`` (into ``merged``) brings them."""
    fresh = iter(merged.fresh)
    integrated: dict[str, bytes] = {}
    catch_up_from: dict[int, Link] = {}
    for link, items in frames:
        others = [
            other
            for other in links.values()
            if other is not link and other.is_open and other.peer is not None
        ]
        for item in items:
            if not next(fresh):
                continue  # a duplicate: it changes nothing, so it goes nowhere
            if not item.origin:
                # Pushing diffs after a catch-up that changed nothing is only wasted work;
                # one that changed something (perhaps with a sibling item) is worth it.
                if merged.change.entries > 0:
                    catch_up_from[link.conn_id] = link
                continue
            targets = [
                other
                for other in others
                if other.peer is not None
                and other.peer.terminal_id != item.origin
                and item.origin not in other.neighbors
            ]
            # Only what changed our state travels on (an update still waiting for its
            # parent does not), so relay cycles die out; in a full mesh nobody needs a
            # relay, and the check is skipped.
            if targets and _integrated(replica, item, integrated):
                for other in targets:
                    other.pending.append(item)
    if catch_up_from:
        _push_catch_up(catch_up_from, merged.writers, links, replica, now_ms)


def _push_catch_up(
    catch_up_from: Mapping[int, Link],
    writers: frozenset[str] | None,
    links: Mapping[int, Link],
    replica: Replica,
    now_ms: int,
) -> None:
    # A catch-up has no single origin to relay by: push each other peer exactly what
    # its last acknowledged state lacks (or ask for its state when we have none yet).
    sources = list(catch_up_from.values())
    for other in links.values():
        if not other.is_open or catch_up_from.keys() == {other.conn_id}:
            continue
        if _peer_of_every(other, sources):
            # It has what they hold: each of them sends every catch-up it gets to
            # its peers, and a peer connecting to it asks for everything. Without
            # this, a catch-up in one half of a healed split went from every lane of
            # that half to every other (a heal moved 2.2x the bytes it needs).
            continue
        if _hears_first_hand(other, writers):
            # The relay rule, applied to a catch-up: a peer connected to every
            # terminal whose records it brought gets them from those terminals. Without
            # this, in a full mesh under load each push (a diff against the peer's last
            # acknowledged state) often held an in-flight sale new to its receiver,
            # which pushed again to all its peers: a storm of ~10 KB per sale.
            continue
        if other.peer_state is None:
            other.anti_entropy_due_ms = now_ms
            continue
        try:
            diff = replica.updates_since(other.peer_state)
        except RemoteError:
            other.anti_entropy_due_ms = now_ms
            continue
        other.pending.extend(diff_items(diff))


def _peer_of_every(link: Link, sources: list[Link]) -> bool:
    """Did every source of a catch-up say (in ``Peers``) that ``link``'s peer is its peer?"""
    if link.peer is None:
        return False
    peer = link.peer.terminal_id
    return all(peer in source.neighbors for source in sources)


def _hears_first_hand(link: Link, writers: frozenset[str] | None) -> bool:
    if writers is None or link.peer is None:
        return False
    peer = link.peer.terminal_id
    return all(w == peer or w in link.neighbors for w in writers)


def _integrated(replica: Replica, item: Update, vectors: dict[str, bytes]) -> bool:
    """Is ``item`` now part of our state (not held back waiting for a missing parent)?
    ``vectors`` caches state vectors per document for one merged batch."""
    vector = vectors.get(item.doc)
    if vector is None:
        vector = vectors[item.doc] = replica.state_vectors().get(item.doc, b"")
    return covered_by(item.update, vector)
