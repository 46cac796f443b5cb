"""Read-only reports over a replica: stock, oversold SKUs with their causes, integrity.

Plain dicts and lists of JSON-safe values, so the CLI, the local API and tests share one shape.
"""

from __future__ import annotations

from typing import Any

from lanesync.core import zreport
from lanesync.core.identity import key_fingerprint
from lanesync.core.ids import Sku, TerminalId
from lanesync.core.records import Adjustment, Receipt, Sale
from lanesync.core.replica import Replica
from lanesync.core.tally import Price
from lanesync.errors import NotFound


def stock(replica: Replica, item: Sku | None = None) -> dict[str, Any]:
    """Stock on hand of every SKU with a movement or a price, or of ``item``: 0 when it has
    none here (a SKU never received nor sold has none on hand; the POS asks before its first
    sale)."""
    if item is not None:
        return {"items": [{"sku": item, "on_hand": replica.views.on_hand_of(item) or 0}]}
    on_hand = replica.views.on_hand()
    return {"items": [{"sku": s, "on_hand": n} for s, n in sorted(on_hand.items())]}


def prices(replica: Replica) -> dict[str, Any]:
    """The catalog: every SKU's price in force (the last set: greatest HLC, then terminal),
    who set it (``set_by``, a terminal id) and when (``at_ms``, its HLC wall ms)."""
    return {
        "prices": [_price(item, found) for item, found in sorted(replica.views.prices().items())]
    }


def price(replica: Replica, item: Sku) -> dict[str, Any]:
    """One SKU's price in force; NotFound when no price was ever set for it here."""
    found = replica.views.price_of(item)
    if found is None:
        raise NotFound(f"SKU {item!r} has no price on this terminal")
    return _price(item, found)


def _price(item: Sku, found: Price) -> dict[str, Any]:
    return {
        "sku": item,
        "unit_cents": found.unit_cents,
        "set_by": found.terminal,
        "at_ms": found.hlc.wall_ms,
    }


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
    does not count (bad signatures, broken chains, gaps, unauthorized or misplaced records,
    records past a chain the store closed), and when a day-end's signed figures disagree with
    the records it covers or a terminal wrote into a day it had closed (``core.zreport``).
    Forks the store resolved are listed apart (``resolved_forks``): they are no problem, their
    branches count. ``successions`` names
    every re-key and replacement: which chain a terminal continues, after which seq."""
    problems = replica.views.problems()
    findings = zreport.day_findings(replica)
    ok = not any(problems.values()) and not any(findings.values())
    heads = [
        {"terminal": h.terminal, "seq": h.seq, "hash": h.hash.hex()} for h in replica.views.heads()
    ]
    return {
        "ok": ok,
        "digest": replica.digest(),
        "records": replica.views.accepted_count(),
        "chains": heads,
        **problems,
        **findings,
        "resolved_forks": replica.views.resolved_forks(),
        "successions": successions(replica),
        "oversold": oversold(replica),
        "revocations": revocations(replica),
    }


def revocations(replica: Replica) -> dict[str, dict[str, Any]]:
    """Every revocation this replica holds, per revoked terminal: the cut of its whole chain
    (``after_seq``, ``hash``: records up to that seq count, the one at it only with that hash
    when one is named), the cuts that apply to single keys of it (``keys``, by key fingerprint:
    the cloud's), and ``revoked_at_ms`` for a revocation of the first format (by record time)."""
    cuts, times = replica.views.revocations()
    report: dict[str, dict[str, Any]] = {}

    def entry(terminal: str) -> dict[str, Any]:
        empty: dict[str, Any] = {"after_seq": None, "hash": None, "revoked_at_ms": None, "keys": {}}
        return report.setdefault(terminal, empty)

    for (terminal, key), cut in sorted(cuts.items()):
        shown = {"after_seq": cut.after_seq, "hash": cut.after_hash.hex() or None}
        if key:
            entry(terminal)["keys"][key_fingerprint(key)] = shown
        else:
            entry(terminal).update(shown)
    for terminal, revoked_at_ms in sorted(times.items()):
        entry(terminal)["revoked_at_ms"] = revoked_at_ms
    return dict(sorted(report.items()))


def chain(replica: Replica, terminal: TerminalId, seq: int | None = None) -> dict[str, Any]:
    """What a revocation of ``terminal`` needs to know of it here: its accepted head (past a
    resolved fork, the furthest counted record of its branches), the hash of its accepted
    record at ``seq`` (None when not accepted here, or where two branches hold one), its
    certificates, and the revocation of it in force."""
    views = replica.views
    head = views.head(terminal)
    held = {"seq": head.seq, "hash": head.hash.hex() if head.seq else None}
    furthest = max(
        (
            int(b["counted_to_seq"])
            for fork in views.resolved_forks()
            if fork["terminal"] == terminal
            for b in fork["branches"]  # type: ignore[attr-defined]
        ),
        default=head.seq,
    )
    if furthest > head.seq:
        # Past a resolved fork the chain counts on in its branches: a cut at the head of the
        # chain proper would take them all away. No hash where two branches reach that seq.
        found = views.accepted_hash(terminal, furthest)
        held = {"seq": furthest, "hash": None if found is None else found.hex()}
    report: dict[str, Any] = {
        "terminal_id": terminal,
        "head": held,
        "certificates": [
            {
                "role": cert.role.value,
                "public_key": cert.public_key.hex(),
                "key_fingerprint": cert.key_fingerprint,
                "not_after_ms": cert.not_after_ms,
            }
            for cert in sorted(views.certificates(), key=lambda c: c.encoded)
            if cert.terminal_id == terminal
        ],
        "revocation": revocations(replica).get(terminal),
    }
    if seq is not None:
        found = views.accepted_hash(terminal, seq)
        report["record"] = {"seq": seq, "hash": None if found is None else found.hex()}
    return report


def successions(replica: Replica) -> list[dict[str, Any]]:
    """Every certificate that continues (re-key) or replaces (another id) a terminal's chain."""
    return [
        {
            "terminal": cert.terminal_id,
            "kind": "rekey" if cert.is_rekey else "replacement",
            "predecessor": cert.succeeds.terminal,
            "after_seq": cert.succeeds.seq,
            "after_hash": cert.succeeds.hash.hex(),
            "key_fingerprint": cert.key_fingerprint,
        }
        for cert in replica.views.successions()
        if cert.succeeds is not None
    ]
