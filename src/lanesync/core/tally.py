"""The business views: stock on hand per SKU, voids per sale, the price in force per SKU, and how
many records count; what each counted record does to them (``count``), and their plain-value
form for checkpoints.

``core.views`` decides which records count (signatures, storage, chains) and hands each here as
its chain accepts it; a record's signer may still lack the role for it (``Effect``).

* Stock on hand of a SKU = receipts + adjustments - units sold + units of voided sales.
* A sale is credited back once however many voids name it (two lanes may void it during a
  split): ``void`` says whether a void is the first.
* A price is the last one set: the greatest (HLC, terminal, record hash). A terminal's chain
  never repeats an HLC, so the hash decides only between two branches of a forked chain (a lane
  restored from a backup may write its next seq again at the same HLC): a total order, so every
  replica keeps the same price whatever order it counted the two in.
* The days each terminal closed (its counted day-ends): what ``core.dayclose`` skips and the
  clock is moved past.
"""

from __future__ import annotations

import enum
import sys
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lanesync.core.chains import Chains
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Certificate
from lanesync.core.ids import Sku, TerminalId
from lanesync.core.records import (
    Adjustment,
    DayEnd,
    PriceChange,
    Receipt,
    Record,
    Sale,
    Void,
)


@dataclass(frozen=True, slots=True)
class Price:
    unit_cents: int
    hlc: Hlc
    terminal: TerminalId
    record_hash: bytes  # of the price record: the last tie-break (see the module docstring)

    @property
    def rank(self) -> tuple[Hlc, TerminalId, bytes]:
        return self.hlc, self.terminal, self.record_hash


class Effect(enum.Enum):
    """What ``Tally.count`` did with a record: counted it, refused it for its signer's role (the
    value is the reason ``verify`` lists under ``unauthorized``), or found that the sale a void
    credits back is gone from the documents (the owner must judge everything again)."""

    COUNTED = "counted"
    CLOUD_NOT_PRICE = "a cloud certificate may only set prices"
    CASHIER_PRICE = "a cashier certificate may not set prices"
    SALE_GONE = "the voided sale is gone from the documents"


class Tally:
    """Stock on hand, voids, prices and the count of records counted."""

    __slots__ = ("accepted", "closed", "on_hand", "prices", "voids")

    def __init__(self) -> None:
        self.on_hand: dict[Sku, int] = {}
        self.voids: dict[str, int] = defaultdict(int)  # sale id -> voids naming it
        self.prices: dict[Sku, Price] = {}
        self.accepted = 0
        # terminal -> day -> seq of its day-end (the least, should a chain hold two).
        self.closed: dict[TerminalId, dict[str, int]] = {}

    def count(
        self,
        record: Record,
        signer: Certificate,
        chains: Chains,
        sale_at: Callable[[str], Sale | None],
    ) -> Effect:
        """Apply ``record``, just accepted into its chain in ``chains`` and signed by ``signer``.
        ``sale_at`` reads a sale back from the documents by its map key (a void credits back
        the lines of the sale it names)."""
        body = record.body
        if not signer.role.may_sell and not isinstance(body, PriceChange):
            # A cloud certificate signs catalog records for its store and nothing else.
            return Effect.CLOUD_NOT_PRICE
        match body:
            case Sale(lines):
                chains.mark_sale(record)
                # Voided before it counted: its SKUs still appear in the stock view, at +-0. An
                # id two branches of a resolved fork hold names no single sale: never voided.
                voided = self.voids.get(str(record.id)) and not chains.is_ambiguous(record.id)
                sign = 0 if voided else -1
                for line in lines:
                    self._move(line.sku, sign * line.qty)
            case Void(sale_id):
                if self._void(str(sale_id)) and chains.is_counted_sale(sale_id):
                    sale_key = chains.accepted_key(sale_id)
                    sale = sale_at(sale_key) if sale_key is not None else None
                    if sale is None:
                        # The counted sale's entry is gone from the documents (deleted by a
                        # misbehaving peer, written back after this fold): judge it all again.
                        return Effect.SALE_GONE
                    for line in sale.lines:
                        self._move(line.sku, line.qty)
            case Receipt(sku, qty):
                self._move(sku, qty)
            case Adjustment(sku, delta):
                self._move(sku, delta)
            case PriceChange(sku, unit_cents):
                if not signer.role.may_set_prices:
                    return Effect.CASHIER_PRICE
                self._set_price(sku, Price(unit_cents, record.hlc, record.terminal, record.hash))
            case DayEnd(day):
                days = self.closed.setdefault(record.terminal, {})
                days[day] = min(days.get(day, record.seq), record.seq)
        return Effect.COUNTED

    def _move(self, sku: Sku, delta: int) -> None:
        self.on_hand[sku] = self.on_hand.get(sku, 0) + delta

    def _void(self, sale_id: str) -> bool:
        """Count a void of ``sale_id``; True when it is the first (the one that credits)."""
        self.voids[sale_id] += 1
        return self.voids[sale_id] == 1

    def is_voided(self, sale_id: str) -> bool:
        return self.voids.get(sale_id, 0) > 0

    def _set_price(self, sku: Sku, candidate: Price) -> None:
        current = self.prices.get(sku)
        if current is None or candidate.rank > current.rank:
            self.prices[sku] = candidate
        self.on_hand.setdefault(sku, 0)

    def export(self) -> list[Any]:
        """Stock on hand, voids, prices and the count, as plain msgpack-able values (``load``
        reverses them)."""
        return [
            sorted([sku, n] for sku, n in self.on_hand.items()),
            sorted([rid, n] for rid, n in self.voids.items() if n),
            sorted(
                [sku, p.unit_cents, p.hlc.wall_ms, p.hlc.counter, p.terminal, p.record_hash]
                for sku, p in self.prices.items()
            ),
            self.accepted,
            sorted(
                [t, sorted([d, seq] for d, seq in days.items())] for t, days in self.closed.items()
            ),
        ]

    def load(self, on_hand: Any, voids: Any, prices: Any, accepted: Any, closed: Any) -> None:
        """Take what ``export`` gave into an empty tally. Raises ``ValueError`` (or
        ``TypeError``) when it does not decode."""
        self.on_hand = {Sku(sys.intern(sku)): int(n) for sku, n in on_hand}
        self.voids.update((str(rid), int(n)) for rid, n in voids)
        self.prices = {
            Sku(sys.intern(sku)): Price(
                int(cents), Hlc(int(wall), int(counter)), TerminalId(t), bytes(record_hash)
            )
            for sku, cents, wall, counter, t, record_hash in prices
        }
        self.accepted = int(accepted)
        self.closed = {
            TerminalId(str(t)): {str(d): int(seq) for d, seq in days} for t, days in closed
        }
