"""SQL tables for head office, materialised from each store's replica in the cloud.

The replica's views are exact (they are folded from verified, chained records), so the tables
are a projection of them, refreshed after every durable merge:

* ``sales`` and ``sale_lines``: one row per accepted sale, ``voided`` set once any valid void
  names it; inserted with the record id as primary key, so a record delivered twice, by two
  leaders, or again after a restart, counts once.
* ``stock_movements``: receipts, adjustments, sales (negative) and voids (positive, keyed by
  the voided sale, so two voids of one sale credit it once).
* ``stock_on_hand``, ``prices``, ``chain_heads``: the replica's current views.

When the replica rebuilds its views (a fork was found, or a revocation withdrew records), the
store's rows are replaced from scratch. Every refresh is one transaction.

Example queries are in docs/cloud.md.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lanesync.core.records import Adjustment, PriceChange, Receipt, Record, Sale, Void
from lanesync.core.replica import Replica
from lanesync.errors import StorageError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS sales (
    store_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    business_day TEXT NOT NULL,
    hlc_ms INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    voided INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (store_id, sale_id)
);
CREATE INDEX IF NOT EXISTS sales_by_day ON sales (store_id, business_day);
CREATE TABLE IF NOT EXISTS sale_lines (
    store_id TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    sku TEXT NOT NULL,
    qty INTEGER NOT NULL,
    unit_cents INTEGER NOT NULL,
    PRIMARY KEY (store_id, sale_id, line_no)
);
CREATE TABLE IF NOT EXISTS stock_movements (
    store_id TEXT NOT NULL,
    movement_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    delta INTEGER NOT NULL,
    kind TEXT NOT NULL,
    business_day TEXT NOT NULL,
    PRIMARY KEY (store_id, movement_id, sku)
);
CREATE TABLE IF NOT EXISTS stock_on_hand (
    store_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    on_hand INTEGER NOT NULL,
    PRIMARY KEY (store_id, sku)
);
CREATE TABLE IF NOT EXISTS prices (
    store_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    unit_cents INTEGER NOT NULL,
    PRIMARY KEY (store_id, sku)
);
CREATE TABLE IF NOT EXISTS chain_heads (
    store_id TEXT NOT NULL,
    terminal_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (store_id, terminal_id)
);
"""

_STORE_TABLES = (
    "sales",
    "sale_lines",
    "stock_movements",
    "stock_on_hand",
    "prices",
    "chain_heads",
)


class HeadOffice:
    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open head-office database {path}: {exc}") from exc
        self._rebuilds: dict[str, int] = {}

    def close(self) -> None:
        self._db.close()

    def refresh(self, store_id: str, replica: Replica) -> None:
        """Project what changed in ``replica`` since the last refresh; one transaction."""
        ledger = replica.ledger
        full = self._rebuilds.get(store_id) != ledger.rebuilds
        records = ledger.drain_accepted()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            if full:
                for table in _STORE_TABLES:
                    self._db.execute(f"DELETE FROM {table} WHERE store_id = ?", (store_id,))  # noqa: S608 - fixed table names
                records = [r for _, _, r in replica.records() if ledger.is_accepted(r)]
            self._insert(store_id, replica, records)
            self._db.executemany(
                "INSERT INTO stock_on_hand (store_id, sku, on_hand) VALUES (?, ?, ?) "
                "ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = excluded.on_hand",
                [(store_id, sku, n) for sku, n in ledger.on_hand().items()],
            )
            self._db.executemany(
                "INSERT INTO prices (store_id, sku, unit_cents) VALUES (?, ?, ?) "
                "ON CONFLICT (store_id, sku) DO UPDATE SET unit_cents = excluded.unit_cents",
                [(store_id, sku, p.unit_cents) for sku, p in ledger.prices().items()],
            )
            self._db.executemany(
                "INSERT INTO chain_heads (store_id, terminal_id, seq, hash) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (store_id, terminal_id) DO UPDATE "
                "SET seq = excluded.seq, hash = excluded.hash",
                [(store_id, h.terminal, h.seq, h.hash.hex()) for h in ledger.heads()],
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise StorageError(f"head-office refresh of {store_id} failed: {exc}") from exc
        self._rebuilds[store_id] = ledger.rebuilds

    def _insert(self, store_id: str, replica: Replica, records: Iterable[Record]) -> None:
        tz_day = replica.business_day
        for record in records:
            rid, day = str(record.id), tz_day(record)
            match record.body:
                case Sale(lines, total):
                    voided = int(replica.ledger.is_voided(rid))
                    self._db.execute(
                        "INSERT OR IGNORE INTO sales (store_id, sale_id, terminal_id, seq, "
                        "business_day, hlc_ms, total_cents, voided) VALUES (?,?,?,?,?,?,?,?)",
                        (
                            store_id,
                            rid,
                            record.terminal,
                            record.seq,
                            day,
                            record.hlc.wall_ms,
                            total,
                            voided,
                        ),
                    )
                    self._db.executemany(
                        "INSERT OR IGNORE INTO sale_lines VALUES (?, ?, ?, ?, ?, ?)",
                        [
                            (store_id, rid, i, line.sku, line.qty, line.unit_cents)
                            for i, line in enumerate(lines, 1)
                        ],
                    )
                    self._movements(
                        store_id, rid, [(line.sku, -line.qty) for line in lines], "sale", day
                    )
                    if voided:
                        self._credit_void(store_id, rid, lines, day)
                case Void(sale_id):
                    target = str(sale_id)
                    self._db.execute(
                        "UPDATE sales SET voided = 1 WHERE store_id = ? AND sale_id = ?",
                        (store_id, target),
                    )
                    sale = replica.find_record(sale_id)
                    if sale is not None and isinstance(sale.body, Sale):
                        self._credit_void(store_id, target, sale.body.lines, day)
                case Receipt(sku, qty):
                    self._movements(store_id, rid, [(sku, qty)], "receipt", day)
                case Adjustment(sku, delta):
                    self._movements(store_id, rid, [(sku, delta)], "adjustment", day)
                case PriceChange():
                    pass  # the prices table holds the winning price per SKU

    def _credit_void(self, store_id: str, sale_id: str, lines: Iterable[Any], day: str) -> None:
        # Keyed by the voided sale: however many voids name it, it is credited once.
        self._movements(
            store_id, f"void:{sale_id}", [(line.sku, line.qty) for line in lines], "void", day
        )

    def _movements(
        self, store_id: str, movement_id: str, deltas: list[tuple[str, int]], kind: str, day: str
    ) -> None:
        merged: dict[str, int] = {}
        for sku, delta in deltas:
            merged[sku] = merged.get(sku, 0) + delta
        self._db.executemany(
            "INSERT OR IGNORE INTO stock_movements VALUES (?, ?, ?, ?, ?, ?)",
            [(store_id, movement_id, sku, delta, kind, day) for sku, delta in merged.items()],
        )

    # -- queries (the read API) ----------------------------------------------------------------

    def stores(self) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT store_id, COUNT(*), "
            "COALESCE(SUM(CASE WHEN voided = 0 THEN total_cents END), 0) "
            "FROM sales GROUP BY store_id ORDER BY store_id"
        ).fetchall()
        return [{"store_id": s, "sales_recorded": n, "total": t} for s, n, t in rows]

    def stock(self, store_id: str) -> dict[str, Any]:
        rows = self._db.execute(
            "SELECT sku, on_hand FROM stock_on_hand WHERE store_id = ? ORDER BY sku", (store_id,)
        ).fetchall()
        return {"items": [{"sku": sku, "on_hand": n} for sku, n in rows]}

    def sales(self, store_id: str, day: str | None) -> dict[str, Any]:
        """Sales of a store (one business day, or all), voided sales left out of everything."""
        query = (
            "SELECT sale_id, terminal_id, business_day, hlc_ms, total_cents FROM sales "
            "WHERE store_id = ? AND voided = 0"
        )
        args: tuple[str, ...] = (store_id,)
        if day is not None:
            query += " AND business_day = ?"
            args = (store_id, day)
        rows = self._db.execute(query + " ORDER BY hlc_ms, sale_id", args).fetchall()
        sales = [
            {"sale_id": s, "terminal_id": t, "business_day": d, "hlc_ms": ms, "total": total}
            for s, t, d, ms, total in rows
        ]
        return {"count": len(sales), "total": sum(s["total"] for s in sales), "sales": sales}
