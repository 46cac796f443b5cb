"""``lanesync bench foundation``, the baseline's side: raw pycrdt doing the same document writes
as lanesync, with no signatures, no durability and no views.

One ``Doc``, a Map ``sales``, each sale a nested Map ``{"terminal", "seq", "lines": Array of Maps
{sku, qty, unit}, "total"}`` written in its own transaction, update bytes captured with
``doc.observe``.
"""

from __future__ import annotations

import gc
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pycrdt import Array, Doc, Map, TransactionEvent

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.common import Elapsed, nearest_rank, stopwatch
from lanesync.bench.studies.workload import TERMINAL, SaleLines

MERGE_BATCH = 100  # updates per transaction in the batched apply (lanesync: per merge call)
IDLE_SALES = 1_000  # single sales timed on an idle doc (and terminal); at most N
IDLE_GAP_S = 0.002
WARMUP_SALES = 20  # written before a timed run, not counted


def raw_doc() -> tuple[Doc[Any], Map[Any]]:
    doc: Doc[Any] = Doc()
    sales: Map[Any] = doc.get("sales", type=Map)
    return doc, sales


def raw_write(doc: Doc[Any], sales: Map[Any], seq: int, lines: SaleLines) -> None:
    """One sale as a nested Map, in its own transaction."""
    with doc.transaction():
        sales[f"{TERMINAL}:{seq}"] = Map(
            {
                "terminal": TERMINAL,
                "seq": seq,
                "lines": Array([Map({"sku": s, "qty": q, "unit": u}) for s, q, u in lines]),
                "total": sum(q * u for _, q, u in lines),
            }
        )


def raw_fill(workload: Sequence[SaleLines]) -> tuple[Doc[Any], Map[Any]]:
    doc, sales = raw_doc()
    for seq, lines in enumerate(workload, 1):
        raw_write(doc, sales, seq, lines)
    return doc, sales


def store_blob(path: Path, blob: bytes) -> None:
    """Store a full state durably the way lanesync stores anything (WAL, synchronous=FULL)."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS state (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR REPLACE INTO state (id, data) VALUES (1, ?)", (blob,))
        db.execute("COMMIT")
    finally:
        db.close()


def load_blob(path: Path) -> bytes:
    db = sqlite3.connect(path)
    try:
        (data,) = db.execute("SELECT data FROM state WHERE id = 1").fetchone()
    finally:
        db.close()
    return bytes(data)


@dataclass
class RawResults:
    sales_per_s: float = 0.0
    bytes_per_sale: float = 0.0
    applied_per_s: float = 0.0
    applied_per_s_batched: float = 0.0
    applied_per_s_cpu: float = 0.0  # per CPU second: less sensitive to a busy machine
    applied_per_s_batched_cpu: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    full_state_bytes: int = 0
    store_full_state_s: float = 0.0
    sqlite_file_bytes: int = 0


def measure_raw(workload: Sequence[SaleLines], workdir: Path) -> RawResults:
    out = RawResults()
    doc, sales = raw_doc()
    updates: list[bytes] = []

    def capture(event: TransactionEvent) -> None:
        updates.append(bytes(event.update))

    subscription = doc.observe(capture)
    with stopwatch() as t:
        for seq, lines in enumerate(workload, 1):
            raw_write(doc, sales, seq, lines)
    doc.unobserve(subscription)
    out.sales_per_s = len(workload) / t.wall
    out.bytes_per_sale = statistics.fmean(len(u) for u in updates)

    full_state = bytes(doc.get_update())
    out.full_state_bytes = len(full_state)
    del doc, sales
    db_path = workdir / "raw-state.db"
    with stopwatch() as t:
        store_blob(db_path, full_state)
    out.store_full_state_s = t.wall
    out.sqlite_file_bytes = db_path.stat().st_size
    del full_state

    one, batched = apply_raw_updates(updates, batch=1), apply_raw_updates(updates, MERGE_BATCH)
    out.applied_per_s, out.applied_per_s_cpu = len(updates) / one.wall, len(updates) / one.cpu
    out.applied_per_s_batched = len(updates) / batched.wall
    out.applied_per_s_batched_cpu = len(updates) / batched.cpu
    updates.clear()
    gc.collect()

    latencies = raw_idle_latencies(workload)
    out.latency_p50_ms = nearest_rank(latencies, 50) * 1e3
    out.latency_p99_ms = nearest_rank(latencies, 99) * 1e3
    return out


def apply_raw_updates(updates: Sequence[bytes], batch: int) -> Elapsed:
    """Time to apply ``updates`` to a fresh doc, ``batch`` per transaction."""
    doc, sales = raw_doc()
    with stopwatch() as t:
        for start in range(0, len(updates), batch):
            with doc.transaction():
                for update in updates[start : start + batch]:
                    doc.apply_update(update)
    if len(sales) != len(updates):
        raise BenchError(f"raw replica holds {len(sales)} sales, expected {len(updates)}")
    return t


def idle_count(sales: int) -> int:
    """How many single sales the idle latencies time: IDLE_SALES, or N on a smaller run."""
    return min(IDLE_SALES, sales)


def raw_idle_latencies(workload: Sequence[SaleLines]) -> list[float]:
    doc, sales = raw_doc()
    latencies: list[float] = []
    for seq in range(1, WARMUP_SALES + idle_count(len(workload)) + 1):
        start = time.perf_counter()
        raw_write(doc, sales, seq, workload[seq % len(workload)])
        if seq > WARMUP_SALES:
            latencies.append(time.perf_counter() - start)
        time.sleep(IDLE_GAP_S)
    return latencies


def raw_durable_rate(workload: Sequence[SaleLines], path: Path) -> float:
    """Context: raw pycrdt plus one SQLite commit (WAL, synchronous=FULL) of its update per sale."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE updates (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    doc, sales = raw_doc()
    pending: list[bytes] = []
    subscription = doc.observe(lambda event: pending.append(bytes(event.update)))
    try:
        with stopwatch() as t:
            for seq, lines in enumerate(workload, 1):
                raw_write(doc, sales, seq, lines)
                db.execute("BEGIN IMMEDIATE")
                db.executemany("INSERT INTO updates (data) VALUES (?)", [(u,) for u in pending])
                db.execute("COMMIT")
                pending.clear()
    finally:
        doc.unobserve(subscription)
        db.close()
    return len(workload) / t.wall
