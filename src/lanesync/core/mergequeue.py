"""Received updates waiting for their merge, handed to the node a bounded amount at a time.

A node merges what it received once per turn of the event loop (``Node.take_output``). Without
a bound, one turn merges everything that came: a catch-up of a whole day, 10 MB and ~15 s of
verifying, folding and projecting in the cloud, while every other store the process serves
waits (docs/how-to/cloud.md, "WAN outages"). With ``budget_bytes``, a turn takes updates up to
about that many bytes; a larger update is cut (``core.slices``) and its slices taken over the
following turns, and the node asks its shell to come back at once (``Node.next_deadline``).
Slices go in the order they came, per link and across links, so the replica sees what it would
have seen from several smaller frames.

Without a budget, every turn takes everything, as received: one batch, one fold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from lanesync.core.link import Link
from lanesync.core.relay import Frame
from lanesync.core.slices import update_slices
from lanesync.core.wire import Update


@dataclass(slots=True)
class _Waiting:
    """One received update, or what is left of it: its next slice and the ones after."""

    link: Link
    doc: str
    origin: str
    piece: bytes
    rest: Iterator[bytes]


class MergeQueue:
    def __init__(self, budget_bytes: int | None) -> None:
        if budget_bytes is not None and budget_bytes < 1:
            raise ValueError("a merge budget is at least one byte")
        self._budget = budget_bytes
        self._frames: list[Frame] = []  # no budget: taken whole, as received
        self._waiting: deque[_Waiting] = deque()
        # Updates cut into slices, not yet taken by take_large (dropped once all are merged:
        # a node whose shell does no work ahead of its merges keeps none of them).
        self._large: list[bytes] = []

    def __bool__(self) -> bool:
        return bool(self._frames or self._waiting)

    def add(self, link: Link, items: tuple[Update, ...]) -> None:
        if self._budget is None:
            self._frames.append((link, items))
            return
        for item in items:
            if len(item.update) > self._budget:
                self._large.append(item.update)
            slices = update_slices(item.update, self._budget)
            first = next(slices)  # every update has a slice: itself when small
            self._waiting.append(_Waiting(link, item.doc, item.origin, first, slices))

    def take_large(self) -> list[bytes]:
        """The updates added since the last call that are cut into slices (larger than the
        budget): the work a shell may start on ahead of their merge (``core.preverify``)."""
        large, self._large = self._large, []
        return large

    def links(self) -> list[Link]:
        """The links whose updates wait here, in no particular order, repeats included."""
        return [link for link, _ in self._frames] + [entry.link for entry in self._waiting]

    def take(self) -> list[Frame]:
        """What to merge now: everything without a budget; else slices in order up to
        ``budget_bytes`` (at least one, however large), grouped into frames per run of one
        link."""
        if self._budget is None:
            frames, self._frames = self._frames, []
            return frames
        taken: list[tuple[Link, list[Update]]] = []
        size = 0
        while self._waiting:
            entry = self._waiting[0]
            if taken and size + len(entry.piece) > self._budget:
                break
            if not taken or taken[-1][0] is not entry.link:
                taken.append((entry.link, []))
            taken[-1][1].append(Update(entry.doc, entry.piece, entry.origin))
            size += len(entry.piece)
            following = next(entry.rest, None)
            if following is None:
                self._waiting.popleft()
            else:
                entry.piece = following
        if not self._waiting:
            self._large = []  # all merged: nothing left to do ahead of a merge
        return [(link, tuple(items)) for link, items in taken]
