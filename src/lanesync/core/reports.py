"""Read-only reports over a replica: stock, oversold SKUs with their causes, integrity.

Plain dicts and lists of JSON-safe values, so the CLI, the local API and tests share one shape.
"""

from __future__ import annotations

from typing import Any

from lanesync.core.ids import Sku
from lanesync.core.records import Adjustment, Receipt, Sale
from lanesync.core.replica import Replica
from lanesync.errors import UsageError


def stock(replica: Replica, item: Sku | None = None) -> dict[str, Any]:
    on_hand = replica.views.on_hand()
    if item is not None:
        if item not in on_hand:
            raise UsageError(f"SKU {item!r} has no stock movement or price on this terminal")
        return {"items": [{"sku": item, "on_hand": on_hand[item]}]}
    return {"items": [{"sku": s, "on_hand": n} for s, n in sorted(on_hand.items())]}


def oversold(replica: Replica) -> list[dict[str, Any]]:
    """SKUs whose on hand is negative, with the sales that took the balance below zero when all
    movements are replayed in timestamp order (HLC, then record id)."""
    negative = {s for s, n in replica.views.on_hand().items() if n < 0}
    if not negative:
        return []
    moves: dict[Sku, list[tuple[tuple[int, int, str, int], int, str | None]]] = {
        s: [] for s in negative
    }
    views = replica.views
    for _, _, record in replica.records():
        if not views.is_accepted(record):
            continue
        order = (record.hlc.wall_ms, record.hlc.counter, record.terminal, record.seq)
        body = record.body
        if isinstance(body, Receipt | Adjustment) and body.sku in moves:
            moves[body.sku].append(
                (order, body.qty if isinstance(body, Receipt) else body.delta, None)
            )
        elif isinstance(body, Sale) and not views.is_voided(str(record.id)):
            for line in body.lines:
                if line.sku in moves:
                    moves[line.sku].append((order, -line.qty, str(record.id)))
    report = []
    for item in sorted(negative):
        balance, causes = 0, []
        for _, delta, sale_id in sorted(moves[item]):
            balance += delta
            if sale_id is not None and balance < 0:
                causes.append(sale_id)
        report.append({"sku": item, "on_hand": views.on_hand_of(item), "sales": causes})
    return report


def integrity(replica: Replica) -> dict[str, Any]:
    """Chain heads and every integrity problem; ``ok`` is False when anything is held that
    does not count (bad signatures, broken chains, gaps, unauthorized or misplaced records)."""
    problems = replica.views.problems()
    ok = not any(problems.values())
    heads = [
        {"terminal": h.terminal, "seq": h.seq, "hash": h.hash.hex()} for h in replica.views.heads()
    ]
    return {
        "ok": ok,
        "digest": replica.digest(),
        "records": replica.views.accepted_count(),
        "chains": heads,
        **problems,
        "oversold": oversold(replica),
    }
