"""Record builders and small readers shared by the shell tests."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

from lanesync.core import bodies
from lanesync.core.change import Change
from lanesync.core.identity import Role
from lanesync.core.ids import Sku, sku
from lanesync.core.records import Body, Record
from lanesync.shell.storage import Storage
from lanesync.shell.terminal import BodyBuilder, Terminal


def sale(*lines: str) -> BodyBuilder:
    """A builder for a sale of ``SKU:QTY[:UNIT_CENTS]`` lines, checked against the views."""
    requests = [bodies.parse_line(line) for line in lines]
    return lambda views: bodies.build_sale(views, requests)


def receipt(item: str, qty: int) -> BodyBuilder:
    body: Body = bodies.build_receipt(item, qty)
    return lambda _views: body


def price(item: str, unit_cents: int, role: Role = Role.MANAGER) -> BodyBuilder:
    """A price change as a terminal of ``role`` asks for it (a cashier is refused at build)."""
    return lambda _views: bodies.build_price_change(role, item, unit_cents)


def void(sale_id: str) -> BodyBuilder:
    return lambda views: bodies.build_void(views, sale_id)


def write_together(terminal: Terminal, builders: Iterable[BodyBuilder]) -> list[Record]:
    """Stage a record per builder, then make them all durable in one ``Terminal.commit`` (one
    SQLite transaction), and compact when due: what the daemon's group commit does for
    concurrent writers, in one call. A refused builder raises; the records staged before it
    are committed first, so the next write never chains onto a record that is not on disk."""
    records: list[Record] = []
    changes: list[Change] = []
    try:
        for build in builders:
            record, change = terminal.stage(build)
            records.append(record)
            changes.append(change)
    finally:
        terminal.commit(changes)
    terminal.compact_if_due()
    return records


def on_hand(terminal: Terminal, item: str) -> int | None:
    return terminal.replica.views.on_hand_of(Sku(sku(item)))


def head_seq(terminal: Terminal, of: Terminal | None = None) -> int:
    """Sequence number of the last accepted record of ``of`` (default: ``terminal`` itself)."""
    return terminal.replica.views.head((of or terminal).terminal_id).seq


def observable(terminal: Terminal) -> dict[str, object]:
    """Everything a reopen must reproduce exactly."""
    return {
        "digest": terminal.digest(),
        "stock": terminal.stock(),
        "heads": terminal.replica.views.heads(),
        "verify": terminal.integrity(),
        "sales": sorted(terminal.replica.views.sale_ids()),
        "prices": terminal.replica.views.prices(),
    }


def database_files(terminal: Terminal) -> dict[str, bytes]:
    """Bytes of the SQLite database and its write-ahead log (to prove nothing was written)."""
    db = terminal.directory.database
    files = [db, db.with_name(db.name + "-wal")]
    return {p.name: p.read_bytes() for p in files if p.exists()}


def file_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on a database through a connection of its own (closed at once)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute(sql).fetchall()


def query_open(terminal: Terminal, sql: str) -> list[tuple[object, ...]]:
    """Run ``sql`` on an open terminal's database through the terminal's own connection: it
    holds the database exclusively (no second connection can read it while it is open)."""
    assert isinstance(terminal.storage, Storage)
    rows: list[tuple[object, ...]] = terminal.storage._db.execute(sql).fetchall()
    return rows


def count_rows(terminal: Terminal, table: str) -> int:
    ((n,),) = query_open(terminal, f"SELECT count(*) FROM {table}")  # noqa: S608
    assert isinstance(n, int)
    return n
