"""The workload: seeded operations (sales, voids, receipts, adjustments, lane and head-office
price changes) written on the lanes and the cloud as the group committer does, the acknowledged
records the checks hold the store to, and the planted read-modify-write stock view. Its choices
come from the ``Simulator``'s ``work`` generator only, so faults do not shift them. ``Workload``
is a part of ``Simulator`` (see ``loop.py``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial

from lanesync.core import bodies
from lanesync.core.change import Change
from lanesync.core.identity import (
    Role,
)
from lanesync.core.ids import Sku, sku
from lanesync.core.records import (
    Adjustment,
    Body,
    DayEnd,
    PriceChange,
    Receipt,
    Record,
    Sale,
    Void,
)
from lanesync.core.replica import Replica
from lanesync.errors import LanesyncError
from lanesync.sim.dialing import Dialing
from lanesync.sim.host import CrashMode, Host, Killed
from lanesync.sim.model import (
    SKUS,
    EventKind,
)

# Closes per schedule (0 to this many, on random lanes): a close moves the lane's clock to the
# next day, so more than a few would put most of a schedule's sales on later days.
MAX_CLOSES = 2
# The store's day end (every lane closes): in this share of schedules; the lanes' daemons close
# within this spread of each other (their clocks' skew and their checks' phases).
STORE_CLOSE_SHARE = 0.6
STORE_CLOSE_SPREAD_MS = 1_500
DAEMON_RETRY_MS = 500


class Workload(Dialing):
    """The ``Simulator``'s workload: scheduling operations, building and writing records."""

    # -- the workload ------------------------------------------------------------------------------

    def _schedule_workload(self) -> None:
        cfg = self.config
        for _ in range(cfg.ops):
            self._at(self.work.randint(300, max(301, cfg.fault_ms - 1)), self._operation)
        # Closes draw from a generator of their own: adding them left every other choice of a
        # seed's schedule as it was.
        closes = random.Random(f"lanesync-sim-close:{self.seed}")  # noqa: S311 - a schedule
        for _ in range(closes.randint(0, MAX_CLOSES)):
            lane = closes.choice(self.lanes)
            self._at(closes.randint(300, max(301, cfg.fault_ms - 1)), self._close, lane)
        # The store's day ends: every lane's daemon closes it, each by its own clock, in most
        # schedules; the lanes then seal the day once it is complete and acknowledged.
        ends = random.Random(f"lanesync-sim-store-close:{self.seed}")  # noqa: S311 - a schedule
        if cfg.fault_ms >= 2 * STORE_CLOSE_SPREAD_MS and ends.random() < STORE_CLOSE_SHARE:
            at = ends.randint(STORE_CLOSE_SPREAD_MS, cfg.fault_ms - STORE_CLOSE_SPREAD_MS)
            self._at(at, self._note, EventKind.STORE_CLOSE)
            for lane in self.lanes:
                self._at(at + ends.randint(0, STORE_CLOSE_SPREAD_MS), self._daemon_close, lane)

    def _operation(self) -> None:
        if not self.faulty:
            return
        work = self.work
        kind = work.choices(
            (
                EventKind.SALE,
                EventKind.VOID,
                EventKind.RECEIPT,
                EventKind.ADJUSTMENT,
                EventKind.PRICE,
                EventKind.CLOUD_PRICE,
            ),
            weights=(50, 10, 14, 8, 8, 6),
        )[0]
        item = sku(work.choice(SKUS))
        if kind is EventKind.CLOUD_PRICE:
            host = self.cloud
        elif kind is EventKind.PRICE:
            host = self.lanes[0]  # the manager lane
        else:
            host = work.choice(self.lanes)
        replica = host.replica
        if replica is None:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: terminal is down")
            return
        try:
            body = self._build(kind, replica, item)
        except LanesyncError as exc:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: {exc}"[:80])
            return
        self._write(host, kind, body)

    def _build(self, kind: EventKind, replica: Replica, item: Sku) -> Body:
        work = self.work
        ledger = replica.views
        match kind:
            case EventKind.SALE:
                lines = []
                for _ in range(work.choice((1, 1, 2))):
                    price = None if work.random() < 0.5 else work.randint(50, 999)
                    line = bodies.LineRequest(sku(work.choice(SKUS)), work.randint(1, 3), price)
                    if price is None and ledger.price_of(line.sku) is None:
                        line = bodies.LineRequest(line.sku, line.qty, work.randint(50, 999))
                    lines.append(line)
                return bodies.build_sale(ledger, lines)
            case EventKind.VOID:
                open_sales = sorted(s for s in ledger.sale_ids() if not ledger.is_voided(s))
                if not open_sales:
                    return bodies.build_void(ledger, "nosale:1")  # refused: no such sale
                return bodies.build_void(ledger, work.choice(open_sales))
            case EventKind.RECEIPT:
                return bodies.build_receipt(item, work.randint(1, 20))
            case EventKind.ADJUSTMENT:
                delta = work.choice((-3, -2, -1, 1, 2, 5))
                return bodies.build_adjustment(item, delta, "count")
            case _:
                role = Role.CLOUD if kind is EventKind.CLOUD_PRICE else Role.MANAGER
                return bodies.build_price_change(role, item, work.randint(50, 999))

    def _write(self, host: Host, kind: EventKind, body: Body) -> None:
        """The group committer: append (sign), then the driver commits and offers the record
        to peers (in that order, unless a planted bug swaps them); then acknowledge."""
        replica = host.replica
        if replica is None:
            return

        def sign(now_ms: int) -> tuple[list[Record], Change]:
            # A lane that holds its own revocation refuses here (TerminalRevoked), as the
            # daemon answers its POS 403: the POS is told, nothing is acknowledged.
            record, change = replica.append(body, now_ms)
            return [record], change

        self._sign_and_commit(host, kind, sign)

    def _close(self, host: Host) -> None:
        """A lane closes its open days up to today (``lanesync close``), through the same
        commit path as a sale."""
        if not self.faulty:
            return
        replica = host.replica
        if replica is None:
            self._note(EventKind.REFUSED, host.name, detail="close: terminal is down")
            return
        self._sign_and_commit(host, EventKind.CLOSE, partial(replica.close_days, None))

    def _daemon_close(self, host: Host) -> None:
        """The daemon closes the day (``close_days_on_schedule``); one that is down then
        closes it as it starts again (``DAEMON_RETRY_MS`` models that), until faults stop."""
        if not self.faulty or host.retired:
            return
        if host.replica is None:
            self._at(self.now + DAEMON_RETRY_MS, self._daemon_close, host)
            return
        self._close(host)

    def _sign_and_commit(
        self,
        host: Host,
        kind: EventKind,
        sign: Callable[[int], tuple[list[Record], Change]],
    ) -> None:
        driver = host.driver
        if driver is None:
            return
        local = self.local_ms(host)
        try:
            records, change = sign(local)
        except LanesyncError as exc:
            self._note(EventKind.REFUSED, host.name, detail=f"{kind.value}: {exc}"[:80])
            return
        if not records:
            self._note(kind, host.name, detail="nothing to sign")
            return
        committed = False

        def commit() -> None:
            nonlocal committed
            if host.pending_crash == CrashMode.WRITE:
                self._note(
                    EventKind.LOST_WRITE, host.name, detail=f"{records[0].id} never committed"
                )
                self._crash(host, "killed before the commit")
                raise Killed
            self._commit_deferred(host)  # the log keeps the order of memory (Terminal.commit)
            self._commit(host, change)
            committed = True

        try:
            wrote = self._call(host, "local_change", lambda: driver.write([change], commit, local))
        except Killed:
            return
        if committed:
            for record in records:
                self.acked.append(record)
                self._note(kind, host.name, detail=f"{record.id} {describe(record.body)}")
                if host.view is not None:
                    self._move_view(host, record.body)
        if wrote:
            self._flush(host)

    def _move_view(self, host: Host, body: Body) -> None:
        view = host.view
        replica = host.replica
        if view is None or replica is None:
            return
        match body:
            case Sale(lines):
                for line in lines:
                    view.move(line.sku, -line.qty)
            case Void(sale_id):
                sale = replica.find_record(sale_id)
                if sale is not None and isinstance(sale.body, Sale):
                    for line in sale.body.lines:
                        view.move(line.sku, line.qty)
            case Receipt(item, qty):
                view.move(item, qty)
            case Adjustment(item, delta):
                view.move(item, delta)
            case PriceChange() | DayEnd():
                pass


def describe(body: Body) -> str:
    match body:
        case Sale(lines, total):
            items = ",".join(f"{line.sku}x{line.qty}@{line.unit_cents}" for line in lines)
            return f"{items} total={total}"
        case Void(sale_id):
            return f"of {sale_id}"
        case Receipt(item, qty):
            return f"{item}+{qty}"
        case Adjustment(item, delta, _):
            return f"{item}{delta:+d}"
        case PriceChange(item, cents):
            return f"{item}={cents}"
        case DayEnd(day, first, last):
            return f"close {day} seqs {first}-{last}"
