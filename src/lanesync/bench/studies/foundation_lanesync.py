"""``lanesync bench foundation``, lanesync's side: a store and terminals created with
``StoreDirectory.init`` / ``.enroll``, written through ``Terminal`` and ``GroupCommitter``. Every
acknowledged sale is signed (Ed25519), chained (BLAKE2b), folded into the views and committed to
SQLite with ``synchronous=FULL`` before the call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.common import Elapsed, nearest_rank, stopwatch
from lanesync.bench.studies.foundation_raw import IDLE_GAP_S, WARMUP_SALES, idle_count
from lanesync.bench.studies.workload import TERMINAL
from lanesync.core.identity import Role, StoreIdentity
from lanesync.core.ids import CONFIG_DOC
from lanesync.core.replica import Replica
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import BodyBuilder, Terminal, wall_clock_ms

BUILD_BATCH = 500  # sales per durable commit while filling the N-sale terminal
CONCURRENT_TASKS = 64
READER_CLIENT_ID = 7  # CRDT client id of the second replica the sales are merged into


@dataclass
class Store:
    directory: StoreDirectory
    next_lane: int = 1

    def enroll(self, root: Path) -> Path:
        name = TERMINAL if self.next_lane == 1 else f"lane{self.next_lane}"
        self.next_lane += 1
        path = root / name
        self.directory.enroll(path, name, Role.CASHIER, wall_clock_ms(), 30)
        return path


@dataclass
class BuildResult:
    staged_per_s: float
    batched_per_s: float
    bytes_per_sale: float
    bytes_min: int
    bytes_max: int
    updates: list[tuple[str, bytes]]
    config_update: bytes
    stage: Elapsed
    commit: Elapsed


def build_terminal(path: Path, builders: Sequence[BodyBuilder]) -> BuildResult:
    """Fill a terminal with every sale, BUILD_BATCH per durable commit (stage then one commit,
    with stage and commit timed apart); keep each sale's update bytes for (d) and (e)."""
    stage, commit = Elapsed(), Elapsed()
    sizes: list[int] = []
    updates: list[tuple[str, bytes]] = []
    with Terminal.open(path) as terminal:
        for start in range(0, len(builders), BUILD_BATCH):
            with stopwatch() as t:
                staged = [terminal.stage(build) for build in builders[start : start + BUILD_BATCH]]
            stage.add(t)
            with stopwatch() as t:
                terminal.commit([change for _, change in staged])
                terminal.compact_if_due()
            commit.add(t)
            for _, change in staged:
                sizes.append(sum(len(update) for _, update in change.updates))
                updates.extend(change.updates)
        config_update = terminal.replica.updates_since({})[CONFIG_DOC]
        accepted = terminal.replica.views.accepted_count()
    if accepted != len(builders) or len(updates) != len(builders):
        raise BenchError(
            f"built {accepted} sales with {len(updates)} updates, expected {len(builders)}"
        )
    return BuildResult(
        staged_per_s=len(builders) / stage.wall,
        batched_per_s=len(builders) / (stage.wall + commit.wall),
        bytes_per_sale=statistics.fmean(sizes),
        bytes_min=min(sizes),
        bytes_max=max(sizes),
        updates=updates,
        config_update=config_update,
        stage=stage,
        commit=commit,
    )


def merge_time(
    store: StoreIdentity, config_update: bytes, updates: Sequence[tuple[str, bytes]], batch: int
) -> Elapsed:
    """Time to merge ``updates`` into a fresh reader replica, ``batch`` per merge call.

    Every record is decoded, Ed25519-verified against the writer's certificate and folded into
    the views; the returned Change is not persisted (the raw baseline persists nothing either).
    """
    replica = Replica(store, READER_CLIENT_ID, None)
    replica.restore({}, set(), wall_clock_ms())
    replica.merge([(CONFIG_DOC, config_update)], wall_clock_ms())
    with stopwatch() as t:
        for start in range(0, len(updates), batch):
            replica.merge(updates[start : start + batch], wall_clock_ms())
    if replica.views.accepted_count() != len(updates):
        raise BenchError(
            f"reader accepted {replica.views.accepted_count()} sales, expected {len(updates)}"
        )
    return t


def sequential_writes(path: Path, builders: Sequence[BodyBuilder], count: int) -> Elapsed:
    """(a) terminal.write one sale at a time, each durably committed before the next."""
    with Terminal.open(path) as terminal:
        for i in range(WARMUP_SALES):
            terminal.write(builders[i % len(builders)])
        with stopwatch() as t:
            for i in range(count):
                terminal.write(builders[i % len(builders)])
    return t


@dataclass
class ConcurrentResult:
    sales_per_s: float
    commits: int
    latency_p50_ms: float
    latency_p99_ms: float
    elapsed: Elapsed


async def _run_with(committer: GroupCommitter, work: asyncio.Future[Any]) -> None:
    """Await ``work`` while the committer runs; a committer failure ends the wait with it."""
    runner = asyncio.create_task(committer.run())
    try:
        await asyncio.wait({runner, work}, return_when=asyncio.FIRST_COMPLETED)
        if runner.done():
            runner.result()  # raises the storage error that stopped it
        await work
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def concurrent_load(
    terminal: Terminal, builders: Sequence[BodyBuilder], count: int
) -> ConcurrentResult:
    committer = GroupCommitter(terminal)
    latencies: list[float] = []
    indices = iter(range(count))  # shared: each worker pulls the next sale

    async def worker() -> None:
        for i in indices:
            start = time.perf_counter()
            await committer.write(builders[i % len(builders)])
            latencies.append(time.perf_counter() - start)

    with stopwatch() as t:
        await _run_with(committer, asyncio.gather(*(worker() for _ in range(CONCURRENT_TASKS))))
    return ConcurrentResult(
        sales_per_s=count / t.wall,
        commits=committer.commits,
        latency_p50_ms=nearest_rank(latencies, 50) * 1e3,
        latency_p99_ms=nearest_rank(latencies, 99) * 1e3,
        elapsed=t,
    )


def idle_latencies_direct(path: Path, builders: Sequence[BodyBuilder]) -> list[float]:
    """(c) terminal.write (stage + durable commit) of single sales, IDLE_GAP_S apart."""
    latencies: list[float] = []
    with Terminal.open(path) as terminal:
        for i in range(WARMUP_SALES + idle_count(len(builders))):
            start = time.perf_counter()
            terminal.write(builders[i % len(builders)])
            if i >= WARMUP_SALES:
                latencies.append(time.perf_counter() - start)
            time.sleep(IDLE_GAP_S)
    return latencies


async def idle_latencies_committer(
    terminal: Terminal, builders: Sequence[BodyBuilder]
) -> list[float]:
    """(c) the daemon path: GroupCommitter.write of single sales, IDLE_GAP_S apart."""
    committer = GroupCommitter(terminal)
    latencies: list[float] = []

    async def sell() -> None:
        for i in range(WARMUP_SALES + idle_count(len(builders))):
            start = time.perf_counter()
            await committer.write(builders[i % len(builders)])
            if i >= WARMUP_SALES:
                latencies.append(time.perf_counter() - start)
            await asyncio.sleep(IDLE_GAP_S)

    await _run_with(committer, asyncio.ensure_future(sell()))
    return latencies


def database_breakdown(path: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        snapshot_rows, snapshot_bytes = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM snapshots"
        ).fetchone()
        log_rows, log_bytes = db.execute(
            "SELECT count(*), coalesce(sum(length(data)), 0) FROM updates"
        ).fetchone()
        (verified,) = db.execute("SELECT count(*) FROM verified").fetchone()
    finally:
        db.close()
    return {
        "snapshot_rows": snapshot_rows,
        "snapshot_bytes": snapshot_bytes,
        "log_rows": log_rows,
        "log_bytes": log_bytes,
        "verified_rows": verified,
    }
