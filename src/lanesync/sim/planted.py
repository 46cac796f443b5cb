"""Known bugs, planted behind test-only switches, that the simulator must find.

Each one wraps or subclasses a real core class; nothing in ``lanesync.core`` is changed. They
exist to prove the simulator bites: ``tests/sim/test_planted.py`` asserts each is found within a
bounded number of seeds while the unmodified system passes the same seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from pycrdt import Doc, Map

from lanesync.core import sealdays, zreport
from lanesync.core.chains import Chains
from lanesync.core.change import Change
from lanesync.core.driver import Driver
from lanesync.core.election import Election
from lanesync.core.ids import Sku
from lanesync.core.link import Link
from lanesync.core.node import Node
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.core.wire import Update
from lanesync.errors import RemoteError


class NoRelayNode(Node):
    """PLANTED BUG "a relay that forgets to forward": merges and persists what a peer sends
    but never forwards it to its other peers (neither by origin nor as a catch-up push).

    Only anti-entropy or a reconnection's state exchange can then carry data past this node."""

    def _on_updates(self, link: Link, items: tuple[Update, ...], now_ms: int) -> None:
        source = link.peer.terminal_id if link.peer else ""
        for item in items:
            try:
                change = self.replica.merge([(item.doc, item.update)], now_ms)
            except RemoteError as exc:
                self._violation(link, f"bad update from {source}: {exc}", now_ms)
                return
            self._out.persist(change)
        if link.ack_due_ms is None:
            link.ack_due_ms = now_ms + self._ack_delay_ms
        self._close_revoked(now_ms)


class SendBeforeCommitDriver(Driver):
    """PLANTED BUG "send before commit": a shell that offers a local record to its peers (and
    lets the frames leave) before the record is durable. A crash in between leaves the record
    at the peers but not on disk; after the restart the lane signs another record at the same
    sequence number, a fork, and its acknowledged sales after it stop counting anywhere."""

    def write(self, changes: Sequence[Change], commit: Callable[[], None], now_ms: int) -> None:
        for change in changes:
            self.node.local_change(change, now_ms)
        self.flush()
        commit()


class StickyLeaseElection(Election):
    """PLANTED BUG "a lease that never expires": once a terminal leads, it never steps down,
    even when a better-ranked candidate is alive in its part of the store (a lease whose
    expiry check was forgotten). A healed split then has two leaders in one component."""

    def _recompute(self, now_ms: int) -> None:
        if self.leader == self.me:
            return
        super()._recompute(now_ms)


class RmwStockView:
    """PLANTED BUG "a stock counter updated by read-modify-write": on hand kept per SKU in a
    pycrdt shared number that each lane sets to ``read + delta`` (concurrent sets keep one
    writer's value, so decrements are lost: 5 of 12 in a probe with pycrdt 0.14). Replicated
    alongside the real sync."""

    def __init__(self, client_id: int) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id)
        self.map: Map[float] = self.doc.get("on_hand", type=Map)

    def move(self, sku: Sku, delta: int) -> None:
        with self.doc.transaction():
            self.map[sku] = float(self.map.get(sku, 0.0)) + delta

    def pull(self, other: RmwStockView) -> None:
        """Receive what ``other`` has and this view lacks (rides on a delivered frame)."""
        update = other.doc.get_update(self.doc.get_state())
        self.doc.apply_update(update)

    def on_hand(self) -> dict[str, int]:
        return {sku: int(value) for sku, value in sorted(self.map.items())}


class ForkTwiceChains(Chains):
    """PLANTED BUG "a resolved fork's longest branch counted twice": the sales listing takes
    the longest branch of a resolved fork for the chain's continuation and lists its sales
    there, on top of listing every branch, so that branch's sales are counted twice."""

    def sale_ids(self) -> Iterator[str]:
        yield from super().sale_ids()
        for terminal, chain in self._chains.items():
            if not chain.branches:
                continue
            longest = max(chain.branches, key=lambda b: (b.head_seq, b.first_hash))
            for index, counted in enumerate(longest.sales):
                if counted:
                    yield f"{terminal}:{longest.base_seq + index + 1}"


class ForkTwiceViews(Views):
    """The real views, judging chains with ``ForkTwiceChains``."""

    def _reset_views(self) -> None:
        super()._reset_views()
        self._chains = ForkTwiceChains(self._actions.resolutions, self._actions.closures)


class ForkTwiceReplica(Replica):
    """The real replica, whose views (built at its creation and again by ``restore``) are
    ``ForkTwiceViews``."""

    _planted_views: Views

    @property
    def views(self) -> Views:
        return self._planted_views

    @views.setter
    def views(self, views: Views) -> None:
        if type(views) is Views:
            views = ForkTwiceViews(
                self.store, self._tz, self._documents, self._accepted_subscribers
            )
        self._planted_views = views


def seal_day_unchecked(replica: Replica, day: str) -> sealdays.Sealing:
    """PLANTED BUG "seals an incomplete day": ``sealdays.seal_day`` without its refusal of a
    day whose report is not complete (the simulated host also takes every candidate, a day
    that any lane closed, for complete). A lane's day-end that arrives after the seal then
    opens the day again, and every replica sealed a report that misses a lane."""
    return sealdays.seal_as_is(replica, day, zreport.z_report(replica, day))
