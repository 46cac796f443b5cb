"""SQL tables for head office, materialised from each store's replica in the cloud.

The replica's views are exact (they are folded from verified, chained records), so the tables
are a projection of them, written with every merge's commit (cloud.stores: on PostgreSQL inside
the commit's own transaction, on SQLite right after it, as these tables are another file):

* ``sales`` and ``sale_lines``: one row per accepted sale, ``voided`` set once any valid void
  names it; inserted with the record id as primary key, so a record delivered twice, by two
  leaders, or again after a restart, counts once.
* ``stock_movements``: receipts, adjustments, sales (negative) and voids (positive, keyed by
  the voided sale, so two voids of one sale credit it once).
* ``stock_on_hand``, ``prices``, ``chain_heads``: the replica's current views, written for the
  SKUs and terminals of the records a refresh brings (the views change only as a record is
  counted, or in a rebuild: ``core.accepted``), so a live sale writes the rows of its own
  SKUs, not the store's whole catalog.
* ``day_ends``: each lane's signed day-end record per business day (its figures as signed; the
  Z-report itself is folded from the sales, ``lanesync report``).

When the replica rebuilds its views (a fork was found, or a revocation withdrew records), the
store's rows are replaced from scratch. Every projection runs inside a transaction the caller
opened, and is rolled back with it (then ``forget_projection``).

Example queries are in docs/reference/headoffice-tables.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lanesync.cloud.sql import Row, Sql
from lanesync.core.accepted import AcceptedRecords
from lanesync.core.ids import Sku
from lanesync.core.records import (
    Adjustment,
    DayEnd,
    PriceChange,
    Receipt,
    Record,
    Sale,
    Void,
)
from lanesync.core.replica import Replica

_STORE_TABLES = (
    "sales",
    "sale_lines",
    "stock_movements",
    "stock_on_hand",
    "prices",
    "chain_heads",
    "day_ends",
)


class _Rows:
    """The rows one projection writes, gathered so each table gets one batched statement."""

    def __init__(self, store_id: str) -> None:
        self.store_id = store_id
        self.sales: list[Row] = []
        self.lines: list[Row] = []
        self.movements: list[Row] = []
        self.voided: list[Row] = []
        self.day_ends: list[Row] = []
        # Whose current views the records gathered may have changed (``Tally.count``): the SKUs
        # they move or price (a price also lists its SKU in stock, at 0), their terminals' heads.
        self.stock_skus: set[Sku] = set()
        self.price_skus: set[Sku] = set()
        self.terminals: set[str] = set()
        self.every_sku = False

    def move(
        self, movement_id: str, deltas: Iterable[tuple[Sku, int]], kind: str, day: str
    ) -> None:
        merged: dict[Sku, int] = {}
        for sku, delta in deltas:
            merged[sku] = merged.get(sku, 0) + delta
        self.stock_skus.update(merged)
        self.movements += [
            (self.store_id, movement_id, sku, delta, kind, day) for sku, delta in merged.items()
        ]

    def credit_void(self, sale_id: str, lines: Iterable[Any], day: str) -> None:
        # Keyed by the voided sale: however many voids name it, it is credited once.
        self.move(f"void:{sale_id}", [(line.sku, line.qty) for line in lines], "void", day)


class HeadOffice:
    """Projects replicas into the head-office tables of ``sql``; the caller opens the
    transaction (on PostgreSQL it also holds the store's lock, see cloud.stores)."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql
        self._rebuilds: dict[str, int] = {}

    def project(self, store_id: str, replica: Replica, accepted: AcceptedRecords) -> None:
        """Write what changed in ``replica`` since the last projection (inside a transaction).
        ``accepted``: the replica's ``subscribe_accepted`` stream, drained by no one else."""
        views = replica.views
        full = self._rebuilds.get(store_id) != accepted.rebuilds
        records = accepted.drain()
        if full:
            for table in _STORE_TABLES:
                self._sql.execute(f"DELETE FROM {table} WHERE store_id = ?", (store_id,))  # noqa: S608 - fixed table names
            records = [r for _, _, r in replica.records() if views.is_accepted(r)]
        rows = self._gather(store_id, replica, records)
        sql = self._sql
        sql.executemany(
            "INSERT INTO sales (store_id, sale_id, terminal_id, seq, business_day, hlc_ms, "
            "total_cents, voided) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows.sales,
        )
        sql.executemany(
            "INSERT INTO sale_lines (store_id, sale_id, line_no, sku, qty, unit_cents) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows.lines,
        )
        sql.executemany(
            "UPDATE sales SET voided = 1 WHERE store_id = ? AND sale_id = ?", rows.voided
        )
        sql.executemany(
            "INSERT INTO stock_movements (store_id, movement_id, sku, delta, kind, business_day) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows.movements,
        )
        sql.executemany(
            "INSERT INTO day_ends (store_id, terminal_id, business_day, seq, first_seq, "
            "last_seq, sales, voids, gross_cents, voided_cents, net_cents) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows.day_ends,
        )
        # The current views, of what the records may have changed (all of them after a rebuild):
        # a row that did not change is left as it is (an update writes a new row version in
        # PostgreSQL). Every SKU at every refresh cost a live sale O(catalog): 6.8-7.0 ms of CPU at
        # 5,000 SKUs on SQLite (benchmarks/README.md, "The head-office projection").
        if full or rows.every_sku:
            stock = list(views.on_hand().items())
        else:
            stock = [
                (sku, n) for sku in rows.stock_skus if (n := views.on_hand_of(sku)) is not None
            ]
        if full:
            prices = [(sku, price.unit_cents) for sku, price in views.prices().items()]
        else:
            prices = [
                (sku, price.unit_cents)
                for sku in rows.price_skus
                if (price := views.price_of(sku)) is not None
            ]
        sql.executemany(
            "INSERT INTO stock_on_hand (store_id, sku, on_hand) VALUES (?, ?, ?) "
            "ON CONFLICT (store_id, sku) DO UPDATE SET on_hand = excluded.on_hand "
            "WHERE stock_on_hand.on_hand <> excluded.on_hand",
            [(store_id, sku, n) for sku, n in stock],
        )
        sql.executemany(
            "INSERT INTO prices (store_id, sku, unit_cents) VALUES (?, ?, ?) "
            "ON CONFLICT (store_id, sku) DO UPDATE SET unit_cents = excluded.unit_cents "
            "WHERE prices.unit_cents <> excluded.unit_cents",
            [(store_id, sku, cents) for sku, cents in prices],
        )
        sql.executemany(
            "INSERT INTO chain_heads (store_id, terminal_id, seq, hash) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (store_id, terminal_id) DO UPDATE "
            "SET seq = excluded.seq, hash = excluded.hash "
            "WHERE chain_heads.seq <> excluded.seq OR chain_heads.hash <> excluded.hash",
            [
                (store_id, h.terminal, h.seq, h.hash.hex())
                for h in views.heads()
                if full or h.terminal in rows.terminals
            ],
        )
        self._rebuilds[store_id] = accepted.rebuilds

    def released(self, store_id: str) -> None:
        """The store's replica was closed (evicted) and nobody else writes the store (SQLite:
        the directory lock). If its last projection committed, its rows are complete, and a
        replica of it opened again (subscribed once loaded, so its stream starts with no
        rebuild) projects only what it accepts from then on: the whole rewrite, about 3 s for a
        store of 50,000 sales, is left to a store's first projection in this process (it repairs
        rows a crash left behind) and to one after a rollback. This keeps one int per store once
        resident; nothing else of it."""
        if store_id in self._rebuilds:
            self._rebuilds[store_id] = AcceptedRecords().rebuilds

    def projected(self, store_id: str, accepted: AcceptedRecords) -> None:
        """The store's rows hold every record its replica was opened with (PostgreSQL knows:
        ``PostgresStoreStorage.projected_at_load``), ``accepted`` being the new replica's
        stream: its next projection writes only what that brings, not the whole store."""
        self._rebuilds[store_id] = accepted.rebuilds

    def forget_projection(self, store_id: str) -> None:
        """The next projection of ``store_id`` rewrites its rows from scratch (used when a
        transaction holding a projection rolled back)."""
        self._rebuilds.pop(store_id, None)

    @staticmethod
    def _gather(store_id: str, replica: Replica, records: Iterable[Record]) -> _Rows:
        rows = _Rows(store_id)
        tz_day = replica.business_day
        for record in records:
            day = tz_day(record)
            rows.terminals.add(record.terminal)
            # An id two branches of a resolved fork hold names two genuine sales: each gets a
            # row of its own under its record key, and no void names either.
            ambiguous = replica.views.is_ambiguous(record.id)
            rid = record.key if ambiguous else str(record.id)
            match record.body:
                case Sale(lines, total):
                    voided = int(not ambiguous and replica.views.is_voided(rid))
                    rows.sales.append(
                        (
                            store_id,
                            rid,
                            record.terminal,
                            record.seq,
                            day,
                            record.hlc.wall_ms,
                            total,
                            voided,
                        )
                    )
                    rows.lines += [
                        (store_id, rid, i, line.sku, line.qty, line.unit_cents)
                        for i, line in enumerate(lines, 1)
                    ]
                    rows.move(rid, [(line.sku, -line.qty) for line in lines], "sale", day)
                    if voided:
                        rows.credit_void(rid, lines, day)
                case Void(sale_id):
                    target = str(sale_id)
                    rows.voided.append((store_id, target))
                    sale = replica.find_record(sale_id)
                    if sale is not None and isinstance(sale.body, Sale):
                        rows.credit_void(target, sale.body.lines, day)
                    else:
                        # Its lines are not at hand here (the views may still credit them, or
                        # rebuild): this refresh writes every SKU's stock.
                        rows.every_sku = True
                case Receipt(sku, qty):
                    rows.move(rid, [(sku, qty)], "receipt", day)
                case Adjustment(sku, delta):
                    rows.move(rid, [(sku, delta)], "adjustment", day)
                case PriceChange(sku):
                    # The prices table holds the winning price per SKU, whoever signed it.
                    rows.price_skus.add(sku)
                    rows.stock_skus.add(sku)
                case DayEnd():
                    rows.day_ends.append(
                        (
                            store_id,
                            record.terminal,
                            record.body.day,
                            record.seq,
                            record.body.first_seq,
                            record.body.last_seq,
                            record.body.sales,
                            record.body.voids,
                            record.body.gross_cents,
                            record.body.voided_cents,
                            record.body.net_cents,
                        )
                    )
        return rows

    # -- queries (the read API) ----------------------------------------------------------------

    def stores(self) -> list[dict[str, Any]]:
        rows = self._sql.execute(
            "SELECT store_id, COUNT(*), "
            "CAST(COALESCE(SUM(CASE WHEN voided = 0 THEN total_cents END), 0) AS BIGINT) "
            "FROM sales GROUP BY store_id ORDER BY store_id"
        )
        return [{"store_id": s, "sales_recorded": n, "total": t} for s, n, t in rows]

    def stock(self, store_id: str) -> dict[str, Any]:
        rows = self._sql.execute(
            "SELECT sku, on_hand FROM stock_on_hand WHERE store_id = ? ORDER BY sku", (store_id,)
        )
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
        rows = self._sql.execute(query + " ORDER BY hlc_ms, sale_id", args)
        sales = [
            {"sale_id": s, "terminal_id": t, "business_day": d, "hlc_ms": ms, "total": total}
            for s, t, d, ms, total in rows
        ]
        return {"count": len(sales), "total": sum(s["total"] for s in sales), "sales": sales}
