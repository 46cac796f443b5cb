"""Turning what a cashier asks for into record bodies, checked against this replica's views.

Pure: the same checks serve the CLI, the local API and the simulator. Every refusal is a
``UsageError`` or ``PermissionDenied`` whose message is fit to show the cashier.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lanesync.core.identity import Role
from lanesync.core.ids import RecordId, Sku, sku
from lanesync.core.records import (
    MAX_LINES,
    MAX_QTY,
    MAX_REASON,
    MAX_TOTAL,
    MAX_UNIT_CENTS,
    Adjustment,
    PriceChange,
    Receipt,
    Sale,
    SaleLine,
    Void,
)
from lanesync.core.views import Views
from lanesync.errors import NotFound, PermissionDenied, UsageError

_LINE = re.compile(r"(?P<sku>[^:]+):(?P<qty>[0-9]{1,9})(?::(?P<price>[0-9]{1,15}))?")


@dataclass(frozen=True, slots=True)
class LineRequest:
    """A sale line as asked for; ``unit_cents`` None means "the catalog price"."""

    sku: Sku
    qty: int
    unit_cents: int | None = None


def parse_line(text: str) -> LineRequest:
    """``SKU:QTY`` or ``SKU:QTY:UNIT_CENTS`` (integers; money is in minor units)."""
    match = _LINE.fullmatch(text)
    if match is None:
        raise UsageError(
            f"bad sale line {text!r}: expected SKU:QTY or SKU:QTY:UNIT_CENTS, e.g. milk:2:149"
        )
    price = match["price"]
    return LineRequest(sku(match["sku"]), int(match["qty"]), None if price is None else int(price))


def _check_qty(qty: int, what: str = "quantity") -> None:
    if not 1 <= qty <= MAX_QTY:
        raise UsageError(f"{what} must be between 1 and {MAX_QTY}, got {qty}")


def _check_price(cents: int) -> None:
    if not 0 <= cents <= MAX_UNIT_CENTS:
        raise UsageError(f"unit price must be between 0 and {MAX_UNIT_CENTS} cents, got {cents}")


def build_sale(views: Views, requests: list[LineRequest]) -> Sale:
    if not requests:
        raise UsageError("a sale needs at least one line")
    if len(requests) > MAX_LINES:
        raise UsageError(f"a sale may have at most {MAX_LINES} lines")
    lines = []
    for request in requests:
        _check_qty(request.qty)
        unit = request.unit_cents
        if unit is None:
            price = views.price_of(request.sku)
            if price is None:
                raise UsageError(
                    f"no catalog price known for SKU {request.sku!r}: give one as "
                    f"{request.sku}:{request.qty}:UNIT_CENTS or set it with `lanesync price`"
                )
            unit = price.unit_cents
        _check_price(unit)
        lines.append(SaleLine(request.sku, request.qty, unit))
    sale = Sale.of(tuple(lines))
    if sale.total_cents > MAX_TOTAL:
        raise UsageError(f"the sale total exceeds {MAX_TOTAL} cents")
    return sale


def build_void(views: Views, sale_id: str) -> Void:
    rid = RecordId.parse(sale_id)
    if not views.is_sale(str(rid)):
        raise NotFound(f"no sale {rid} is known on this terminal")
    if views.is_voided(str(rid)):
        raise UsageError(f"sale {rid} is already voided")
    return Void(rid)


def build_receipt(item: str, qty: int) -> Receipt:
    _check_qty(qty)
    return Receipt(sku(item), qty)


def build_adjustment(item: str, delta: int, reason: str) -> Adjustment:
    if delta == 0 or abs(delta) > MAX_QTY:
        raise UsageError(f"an adjustment must be non-zero and at most {MAX_QTY} units, got {delta}")
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REASON:
        raise UsageError(f"an adjustment needs a reason of 1 to {MAX_REASON} characters")
    return Adjustment(sku(item), delta, reason)


def build_price_change(role: Role, item: str, unit_cents: int) -> PriceChange:
    if not role.may_set_prices:
        raise PermissionDenied(
            f"a {role.value} terminal may not set prices; use a terminal enrolled with "
            "--role manager"
        )
    _check_price(unit_cents)
    return PriceChange(sku(item), unit_cents)
