"""What the lane API's OpenAPI document shows beyond what FastAPI derives from the routes:
examples of the main routes, the ``Idempotency-Key`` header of writes, and the raw bodies
(bundles, signed objects) that routes read themselves.

The examples are one lane's real exchanges (a manager lane ``lane1``: price, receipt,
adjustment, sale, void, in that order, then the reads); tests/shell/test_apidoc.py checks that
each one fits the schema of its operation.
"""

from __future__ import annotations

from typing import Any

from lanesync.core.ids import DAY_PATTERN, NAME_PATTERN, RECORD_ID_PATTERN, SKU_PATTERN
from lanesync.core.journal import MAX_LIMIT
from lanesync.core.records import MAX_LINES, MAX_QTY, MAX_REASON, MAX_UNIT_CENTS, MAX_WALL_MS
from lanesync.shell.openapi import ApiDoc, Example, Examples

IDEMPOTENCY_HEADER = "Idempotency-Key"
MAX_IDEMPOTENCY_KEY = 255  # what common POS SDKs send (UUIDs, 36) fits many times over

# openapi_extra of a write that takes an Idempotency-Key (lanesync.shell.api documents its use).
IDEMPOTENT: dict[str, Any] = {
    "parameters": [
        {
            "name": IDEMPOTENCY_HEADER,
            "in": "header",
            "required": False,
            "description": "Unique per write (e.g. a UUID): a retry with the same key and "
            "request gets the first answer again (header Idempotent-Replayed: true) and writes "
            "nothing; the same key with another request is refused (422). Kept 7 days.",
            "schema": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_IDEMPOTENCY_KEY,
                "pattern": "^[!-~]+$",  # visible ASCII
            },
            "example": "9b2f6c1e-4d3a-4f7b-8a51-0c6e2d9f7a13",
        }
    ]
}


def raw_body(what: str, *, required: bool = True) -> dict[str, Any]:
    """openapi_extra of a route that reads its body as bytes (``what`` they are)."""
    return {
        "requestBody": {
            "required": required,
            "description": what,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    }


# The bounds lanesync.core.bodies checks, as JSON Schema keywords of the request fields.
SKU_FIELD: dict[str, Any] = {"pattern": SKU_PATTERN}
QTY_FIELD: dict[str, Any] = {"minimum": 1, "maximum": MAX_QTY}
DELTA_FIELD: dict[str, Any] = {"minimum": -MAX_QTY, "maximum": MAX_QTY}
CENTS_FIELD: dict[str, Any] = {"minimum": 0, "maximum": MAX_UNIT_CENTS}
# The core strips the reason (str.strip: Unicode whitespace, with \x1c-\x1f and \x85, which
# ECMA-262's \s leaves out), so one character must be left.
REASON_FIELD: dict[str, Any] = {
    "minLength": 1,
    "maxLength": MAX_REASON,
    "pattern": r"[^\s\x1c-\x1f\x85]",
}
LINES_FIELD: dict[str, Any] = {"maxItems": MAX_LINES}

SALE = {
    "id": "lane1:4",
    "terminal": "lane1",
    "seq": 4,
    "at_ms": 1796633564142,
    "day": "2026-12-07",
    "lines": [
        {"sku": "milk", "qty": 2, "unit_cents": 129},
        {"sku": "bread", "qty": 1, "unit_cents": 249},
    ],
    "total_cents": 507,
    "voided": True,
    "void_id": "lane1:5",
}
PRICE = {"sku": "milk", "unit_cents": 129, "set_by": "lane1", "at_ms": 1796633564048}

LANE_EXAMPLES: Examples = {
    ("POST", "/v1/sales"): Example(
        "Sell: each line at its catalog price, or at unit_price (cents) when given.",
        request={
            "lines": [{"sku": "milk", "qty": 2}, {"sku": "bread", "qty": 1, "unit_price": 249}]
        },
        response={"sale_id": "lane1:4", "total": 507},
    ),
    ("POST", "/v1/sales/{sale_id}/void"): Example(
        "Void a sale (its id as the sale answered it): its lines go back into stock.",
        parameters={"sale_id": "lane1:4"},
        response={"record_id": "lane1:5"},
    ),
    ("POST", "/v1/stock/receive"): Example(
        "Receive goods into stock.",
        request={"sku": "milk", "qty": 24},
        response={"record_id": "lane1:2"},
    ),
    ("POST", "/v1/stock/adjust"): Example(
        "Adjust stock by delta (negative: shrinkage), with the reason.",
        request={"sku": "milk", "delta": -1, "reason": "damaged"},
        response={"record_id": "lane1:3"},
    ),
    ("POST", "/v1/prices"): Example(
        "Set a catalog price in cents (a manager lane, or the cloud).",
        request={"sku": "milk", "unit_price": 129},
        response={"record_id": "lane1:1"},
    ),
    ("GET", "/v1/stock"): Example(
        "Stock on hand of every SKU.",
        response={"items": [{"sku": "bread", "on_hand": 0}, {"sku": "milk", "on_hand": 23}]},
    ),
    ("GET", "/v1/stock/{sku}"): Example(
        "Stock on hand of one SKU (0 for one never seen).",
        parameters={"sku": "milk"},
        response={"items": [{"sku": "milk", "on_hand": 23}]},
    ),
    ("GET", "/v1/sales"): Example(
        "Sales, oldest first, a page at a time.",
        parameters={"day": "2026-12-07", "terminal": "lane1", "limit": 1},
        response={"sales": [SALE], "next_cursor": None},
    ),
    ("GET", "/v1/sales/{sale_id}"): Example(
        "One sale, to reprint its receipt or to void it.",
        parameters={"sale_id": "lane1:4"},
        response=SALE,
    ),
    ("GET", "/v1/prices"): Example("The catalog.", response={"prices": [PRICE]}),
    ("GET", "/v1/prices/{sku}"): Example(
        "One SKU's price in force.", parameters={"sku": "milk"}, response=PRICE
    ),
    ("GET", "/v1/health"): Example("Token-free: the process answers.", response={"ok": True}),
    ("GET", "/v1/status"): Example(
        "This lane, its peers, its leader and its cloud link.",
        response={
            "terminal_id": "lane1",
            "store_id": "s1",
            "role": "manager",
            "digest": "56d8aa75d85aa3f5258789945f890c157ad83996c4ac0c294a66d82fde824420",
            "records": 5,
            "api": "http://127.0.0.1:8080",
            "listen": "ws://127.0.0.1:7300",
            "started_ms": 1796632146148,
            "version": "0.1.0",
            "leader": "lane1",
            "term": 1,
            "cloud": None,
            "peers": [],
            "connections": [],
            "revocations": {},
            "revoked": False,
            "isolated_since": None,
            "first_write_unheard_ms": None,
            "succeeds": None,
        },
    ),
}

LANE_DOC = ApiDoc(
    examples=LANE_EXAMPLES,
    parameters={
        "sku": SKU_FIELD,
        "terminal": {"pattern": NAME_PATTERN},
        "sale_id": {"pattern": RECORD_ID_PATTERN},
        "seq": {"minimum": 0},
        "day": {"pattern": DAY_PATTERN},  # and a real calendar day
        "limit": {"minimum": 1, "maximum": MAX_LIMIT},
        "since": {"minimum": 0, "maximum": MAX_WALL_MS},
    },
)
