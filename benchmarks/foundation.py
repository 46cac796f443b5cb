"""Foundation benchmark: lanesync against raw pycrdt doing the same document writes, in one run.

Run ``.venv/bin/python benchmarks/foundation.py [--sales N] [--json OUT]``; see benchmarks/README.md
for what every figure means. Measurements that need a clean process (reopen time, RSS) run in a
fresh subprocess of this same script (``--phase ...``, internal), so earlier phases cannot
pollute them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import pstats
import random
import shlex
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

import psutil
from nacl.signing import SigningKey
from pycrdt import Array, Doc, Map, TransactionEvent

from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.identity import Role, StoreIdentity
from lanesync.core.ids import CONFIG_DOC, Sku
from lanesync.core.replica import Replica
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import BodyBuilder, Terminal, wall_clock_ms

SEED = 42
SKU_COUNT = 500
TERMINAL = "lane1"  # raw pycrdt keys its sales like lanesync's record ids: "lane1:<seq>"
BUILD_BATCH = 500  # sales per durable commit while filling the N-sale terminal
SEQUENTIAL_SALES = 3_000  # (a): capped at N
CONCURRENT_SALES = 20_000  # (b): capped at N
CONCURRENT_TASKS = 64
IDLE_SALES = 1_000  # (c)
IDLE_GAP_S = 0.002
WARMUP_SALES = 20  # written before (a) and (c) are timed, not counted
MERGE_BATCH = 100  # (e), batched variant
REOPEN_RUNS = 3  # fresh subprocesses per reopen figure (after the first open); median reported
FULL_SCALE = 100_000  # the targets for reopen and RSS are stated for this many sales
READER_CLIENT_ID = 7  # CRDT client id of the second replica in (e)
PHASE_TIMEOUT_S = 900
# Measured on a quiet 2-core machine (2026-11-26): Ed25519 verify of 200 B takes ~50 us. Much
# slower means the CPU is shared with other work and every figure below is pessimistic.
QUIET_VERIFY_US = 50.0
BUSY_VERIFY_US = 1.5 * QUIET_VERIFY_US
BUSY_CPU_PCT = 25.0

Line = tuple[str, int, int]  # sku, qty, unit price in cents
SaleLines = tuple[Line, ...]
Better = Literal["higher", "lower"]


# -- workload -----------------------------------------------------------------------------------


def make_workload(count: int) -> list[SaleLines]:
    """``count`` sales of 1-3 lines over ~500 SKUs, integer quantities and prices, seeded."""
    rng = random.Random(SEED)
    skus = [f"sku-{i:03d}" for i in range(SKU_COUNT)]
    prices = {sku: rng.randrange(50, 5_000) for sku in skus}
    sales: list[SaleLines] = []
    for _ in range(count):
        picked = rng.sample(skus, rng.randint(1, 3))
        sales.append(tuple((sku, rng.randint(1, 5), prices[sku]) for sku in picked))
    return sales


def sale_builders(workload: Sequence[SaleLines]) -> list[BodyBuilder]:
    """The lanesync path a cashier's request takes: explicit prices, checked by build_sale."""
    return [
        partial(build_sale, requests=[LineRequest(Sku(s), q, u) for s, q, u in lines])
        for lines in workload
    ]


# -- raw pycrdt ---------------------------------------------------------------------------------


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


# -- measuring helpers --------------------------------------------------------------------------


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def rss_mb() -> float:
    gc.collect()
    return float(psutil.Process().memory_info().rss) / 2**20


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class Elapsed:
    """Wall and CPU seconds (CPU of this process, all threads). On a shared machine the wall
    time grows with the neighbours' load; the CPU time mostly does not."""

    wall: float = 0.0
    cpu: float = 0.0

    def add(self, other: Elapsed) -> None:
        self.wall += other.wall
        self.cpu += other.cpu


@contextlib.contextmanager
def stopwatch() -> Iterator[Elapsed]:
    """``with stopwatch() as t: ...`` then ``t.wall`` / ``t.cpu`` hold the elapsed seconds."""
    elapsed = Elapsed()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield elapsed
    finally:
        elapsed.wall = time.perf_counter() - wall
        elapsed.cpu = time.process_time() - cpu


def run_phase(phase: str, sales: int, directory: Path, *extra: str) -> dict[str, Any]:
    """Run ``--phase`` of this script in a fresh interpreter; it prints one JSON line."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase]
    cmd += ["--sales", str(sales), "--dir", str(directory), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PHASE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed ({done.returncode}):\n{done.stderr}")
    if done.stderr:
        print(done.stderr, file=sys.stderr, end="")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median_of(runs: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- raw pycrdt measurements (in the main process) ----------------------------------------------


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
    out.latency_p50_ms = percentile(latencies, 50) * 1e3
    out.latency_p99_ms = percentile(latencies, 99) * 1e3
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
        raise RuntimeError(f"raw replica holds {len(sales)} sales, expected {len(updates)}")
    return t


def raw_idle_latencies(workload: Sequence[SaleLines]) -> list[float]:
    doc, sales = raw_doc()
    latencies: list[float] = []
    for seq in range(1, WARMUP_SALES + IDLE_SALES + 1):
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


# -- lanesync measurements ----------------------------------------------------------------------


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
        raise RuntimeError(
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
        raise RuntimeError(
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
        latency_p50_ms=percentile(latencies, 50) * 1e3,
        latency_p99_ms=percentile(latencies, 99) * 1e3,
        elapsed=t,
    )


def idle_latencies_direct(path: Path, builders: Sequence[BodyBuilder]) -> list[float]:
    """(c) terminal.write (stage + durable commit) of single sales, IDLE_GAP_S apart."""
    latencies: list[float] = []
    with Terminal.open(path) as terminal:
        for i in range(WARMUP_SALES + IDLE_SALES):
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
        for i in range(WARMUP_SALES + IDLE_SALES):
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


# -- subprocess phases --------------------------------------------------------------------------


def phase_rss_raw(sales: int) -> dict[str, Any]:
    """RSS of a process that wrote ``sales`` nested-Map sales into one raw pycrdt doc."""
    workload = make_workload(sales)
    before = rss_mb()
    doc, sales_map = raw_fill(workload)
    after = rss_mb()
    if len(sales_map) != sales:
        raise RuntimeError("raw doc is incomplete")
    del doc
    return {"rss_mb": after - before}


def phase_reopen_raw(directory: Path) -> dict[str, Any]:
    """Reload the raw full state from SQLite into a fresh doc: read, then apply (timed apart)."""
    before = rss_mb()
    with stopwatch() as read:
        blob = load_blob(directory / "raw-state.db")
    doc, sales_map = raw_doc()
    with stopwatch() as apply:
        doc.apply_update(blob)
    count = len(sales_map)
    del blob
    after = rss_mb()
    return {
        "read_s": read.wall,
        "apply_s": apply.wall,
        "apply_cpu_s": apply.cpu,
        "sales": count,
        "rss_mb": after - before,
    }


def phase_reopen_lanesync(directory: Path, profile: bool) -> dict[str, Any]:
    """Terminal.open of the filled terminal: wall time of the open only, and RSS holding it."""
    before = rss_mb()
    profiler = cProfile.Profile() if profile else None
    with stopwatch() as t:
        if profiler is not None:
            profiler.enable()
        terminal = Terminal.open(directory / TERMINAL)
        if profiler is not None:
            profiler.disable()
    after = rss_mb()
    accepted = terminal.replica.views.accepted_count()
    terminal.close()
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)
    return {"open_s": t.wall, "open_cpu_s": t.cpu, "sales": accepted, "rss_mb": after - before}


# -- report -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    op: Literal[">=", "<="]
    value: float
    on_ratio: bool = False  # compare lanesync/raw rather than the lanesync figure
    full_scale_only: bool = False  # stated for FULL_SCALE sales; not judged on smaller runs

    def describe(self) -> str:
        text = f"{self.op} {self.value:g}{'x raw' if self.on_ratio else ''}"
        return text + (f" @{FULL_SCALE // 1000}k" if self.full_scale_only else "")

    def judge(self, value: float | None, ratio: float | None, sales: int) -> str:
        subject = ratio if self.on_ratio else value
        if subject is None:
            return "n/a"
        if self.full_scale_only and sales < FULL_SCALE:
            return "n/a (small N)"
        ok = subject >= self.value if self.op == ">=" else subject <= self.value
        return "PASS" if ok else "FAIL"


@dataclass
class Figure:
    key: str
    name: str
    unit: str
    lanesync: float | None
    raw: float | None
    better: Better
    target: Target | None = None
    note: str = ""
    ratio: float | None = field(init=False, default=None)
    result: str = field(init=False, default="")

    def finish(self, sales: int) -> None:
        if self.lanesync is not None and self.raw:
            self.ratio = self.lanesync / self.raw
        self.result = self.target.judge(self.lanesync, self.ratio, sales) if self.target else ""


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("ms", "s"):
        return f"{value:,.3f} {unit}" if value < 10 else f"{value:,.1f} {unit}"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f} {unit}"


def render_table(figures: Sequence[Figure]) -> str:
    header = ("#", "Figure", "lanesync", "raw pycrdt", "ratio l/r", "better", "target", "result")
    rows = [
        (
            str(i),
            f.name,
            fmt(f.lanesync, f.unit),
            fmt(f.raw, f.unit),
            "-" if f.ratio is None else f"{f.ratio:.2f}x",
            f.better,
            f.target.describe() if f.target else "",
            f.result,
        )
        for i, f in enumerate(figures, 1)
    ]
    widths = [max(len(row[c]) for row in [header, *rows]) for c in range(len(header))]
    right = {0, 2, 3, 4}

    def line(row: Sequence[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    notes = [f"  {i}. {f.note}" for i, f in enumerate(figures, 1) if f.note]
    return "\n".join([line(header), rule, *(line(r) for r in rows), "", "Notes:", *notes])


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("lanesync", "pycrdt", "msgpack", "PyNaCl", "psutil"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_mb": psutil.virtual_memory().total // 2**20,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
    }


def calibrate() -> dict[str, float]:
    """How busy the machine is: whole-machine CPU use over one second (while this process
    sleeps), the 1-minute load average and the time of one Ed25519 verify."""
    busy = psutil.cpu_percent(interval=1.0)
    key = SigningKey.generate()
    signed = key.sign(bytes(200))
    verify_key = key.verify_key
    rounds = 2_000
    with stopwatch() as t:
        for _ in range(rounds):
            verify_key.verify(signed)
    return {
        "cpu_busy_pct": busy,
        "loadavg_1m": os.getloadavg()[0],
        "ed25519_verify_us": t.wall / rounds * 1e6,
    }


def describe_load(when: str, load: dict[str, float]) -> str:
    text = (
        f"{when}: machine CPU {load['cpu_busy_pct']:.0f}% busy, load {load['loadavg_1m']:.2f}, "
        f"Ed25519 verify {load['ed25519_verify_us']:.0f} us (quiet: ~{QUIET_VERIFY_US:.0f} us)"
    )
    if load["cpu_busy_pct"] > BUSY_CPU_PCT or load["ed25519_verify_us"] > BUSY_VERIFY_US:
        text += "  WARNING: shared with other work, figures are pessimistic"
    return text


def git_state() -> tuple[str, list[str], str]:
    """HEAD, the paths that differ from it, and a fingerprint of the code under src/ (others
    may edit it while a run goes on; subprocess phases import whatever is there then)."""
    commit = (git("rev-parse", "HEAD") or "unknown").strip()
    changed = (git("status", "--porcelain", "--untracked-files=all") or "").splitlines()
    root = Path((git("rev-parse", "--show-toplevel") or ".").strip())
    src = (git("diff", "HEAD", "--", "src") or "") + "".join(
        (root / line[3:]).read_text(errors="replace")
        for line in changed
        if line.startswith("?? src/") and (root / line[3:]).is_file()
    )
    return commit, changed, hashlib.sha256(f"{commit}\n{src}".encode()).hexdigest()


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


# -- main ---------------------------------------------------------------------------------------


def run(sales: int, workdir: Path, profile_reopen: bool) -> tuple[list[Figure], dict[str, Any]]:
    workload = make_workload(sales)
    sequential = min(sales, SEQUENTIAL_SALES)
    concurrent = min(sales, CONCURRENT_SALES)

    progress(f"raw pycrdt: {sales:,} sales as nested Maps")
    raw = measure_raw(workload, workdir)
    progress("raw pycrdt: RSS and reopen in fresh processes")
    raw_rss = run_phase("rss-raw", sales, workdir)
    raw_reopens = [run_phase("reopen-raw", sales, workdir) for _ in range(REOPEN_RUNS)]
    raw_apply_s = median_of(raw_reopens, "apply_s")
    raw_read_apply_s = float(statistics.median(r["read_s"] + r["apply_s"] for r in raw_reopens))

    progress(f"lanesync: filling a terminal with {sales:,} sales ({BUILD_BATCH} per commit)")
    builders = sale_builders(workload)
    store = Store(StoreDirectory.init(workdir / "store", "bench-store"))
    filled = store.enroll(workdir)
    built = build_terminal(filled, builders)
    on_disk = dir_size(filled)
    breakdown = database_breakdown(filled / "lanesync.db")

    progress("lanesync: merging every sale into a second replica")
    identity = store.directory.identity
    merge_1 = merge_time(identity, built.config_update, built.updates, batch=1)
    merge_n = merge_time(identity, built.config_update, built.updates, batch=MERGE_BATCH)
    updates_count = len(built.updates)
    built.updates.clear()
    gc.collect()

    progress("lanesync: reopen and RSS in fresh processes")
    first_open = run_phase("reopen-lanesync", sales, workdir)
    breakdown_reopened = database_breakdown(filled / "lanesync.db")
    reopens = [run_phase("reopen-lanesync", sales, workdir) for _ in range(REOPEN_RUNS)]
    if any(r["sales"] != sales for r in [first_open, *reopens]):
        raise RuntimeError(f"reopened terminal holds {reopens[0]['sales']} sales, not {sales}")
    if profile_reopen:
        run_phase("reopen-lanesync", sales, workdir, "--profile")

    progress(f"lanesync: {sequential:,} sequential durable writes")
    # Right before (a), so both meet the same disk and the same neighbours on this machine.
    raw_durable = raw_durable_rate(workload[:sequential], workdir / "raw-log.db")
    seq = sequential_writes(store.enroll(workdir), builders, sequential)
    seq_rate = sequential / seq.wall
    progress(f"lanesync: {concurrent:,} sales from {CONCURRENT_TASKS} concurrent writers")
    with Terminal.open(store.enroll(workdir)) as terminal:
        conc = asyncio.run(concurrent_load(terminal, builders, concurrent))
    progress(f"lanesync: acknowledgement latency of {IDLE_SALES} single sales on idle terminals")
    direct = idle_latencies_direct(store.enroll(workdir), builders)
    with Terminal.open(store.enroll(workdir)) as terminal:
        via_committer = asyncio.run(idle_latencies_committer(terminal, builders))

    n = f"{sales // 1000}k" if sales % 1000 == 0 else f"{sales:,}"
    reverified = (
        " (own records had no verdict: all re-verified)"
        if breakdown["verified_rows"] < breakdown_reopened["verified_rows"]
        else ""
    )
    figures = [
        Figure(
            "sales_per_s_concurrent",
            f"Sales/s, {CONCURRENT_TASKS} concurrent writers, group commit, durable",
            "/s",
            conc.sales_per_s,
            raw.sales_per_s,
            "higher",
            Target(">=", 2000),
            f"{concurrent:,} sales through GroupCommitter.write from {CONCURRENT_TASKS} asyncio "
            f"tasks on a fresh terminal; {conc.commits:,} commits "
            f"({concurrent / max(conc.commits, 1):.1f} sales each). Raw: one in-memory "
            "transaction per sale, nothing durable.",
        ),
        Figure(
            "ack_p50_ms_concurrent",
            "  ack latency p50 under that load",
            "ms",
            conc.latency_p50_ms,
            None,
            "lower",
        ),
        Figure(
            "ack_p99_ms_concurrent",
            "  ack latency p99 under that load",
            "ms",
            conc.latency_p99_ms,
            None,
            "lower",
        ),
        Figure(
            "sales_per_s_sequential",
            "Sales/s, one writer, terminal.write (fsync each)",
            "/s",
            seq_rate,
            raw.sales_per_s,
            "higher",
            note=f"{sequential:,} sales, each durably committed before the next. Raw: in-memory.",
        ),
        Figure(
            "sales_per_s_sequential_vs_raw_durable",
            "  same, vs raw pycrdt + SQLite commit each",
            "/s",
            seq_rate,
            raw_durable,
            "higher",
            note="Raw pycrdt writing the same sales and committing each update to SQLite "
            "(WAL, synchronous=FULL) like lanesync: the cost of durability alone.",
        ),
        Figure(
            "sales_per_s_batch",
            f"Sales/s, write batches of {BUILD_BATCH}, durable",
            "/s",
            built.batched_per_s,
            raw.sales_per_s,
            "higher",
            note=f"Filling the {n}-sale terminal: stage {BUILD_BATCH}, one commit, compaction "
            "when due.",
        ),
        Figure(
            "sales_per_s_staged",
            "Sales/s staged in memory (signed, not durable)",
            "/s",
            built.staged_per_s,
            raw.sales_per_s,
            "higher",
            note="terminal.stage alone: build_sale, sign (Ed25519), CRDT write, fold into views.",
        ),
        Figure(
            "ack_p50_ms_idle_committer",
            "Ack latency p50, idle, GroupCommitter (daemon)",
            "ms",
            statistics.median(via_committer) * 1e3,
            raw.latency_p50_ms,
            "lower",
            note=f"{IDLE_SALES} single sales {IDLE_GAP_S * 1e3:g} ms apart after {WARMUP_SALES} "
            "warm-up sales, on a fresh terminal; await GroupCommitter.write. Raw: one "
            "in-memory write on an idle doc.",
        ),
        Figure(
            "ack_p99_ms_idle_committer",
            "Ack latency p99, idle, GroupCommitter (daemon)",
            "ms",
            percentile(via_committer, 99) * 1e3,
            raw.latency_p99_ms,
            "lower",
            Target("<=", 5),
        ),
        Figure(
            "ack_p50_ms_idle_direct",
            "Ack latency p50, idle, terminal.write (CLI)",
            "ms",
            statistics.median(direct) * 1e3,
            raw.latency_p50_ms,
            "lower",
            note="Same, calling terminal.write directly in the caller's thread.",
        ),
        Figure(
            "ack_p99_ms_idle_direct",
            "Ack latency p99, idle, terminal.write (CLI)",
            "ms",
            percentile(direct, 99) * 1e3,
            raw.latency_p99_ms,
            "lower",
            Target("<=", 5),
        ),
        Figure(
            "bytes_per_sale_update",
            "Bytes per sale update",
            "B",
            built.bytes_per_sale,
            raw.bytes_per_sale,
            "lower",
            Target("<=", 1.5, on_ratio=True),
            f"Mean over {sales:,} sales of the CRDT update bytes a sale produces (lanesync: "
            f"Change.updates, {built.bytes_min}-{built.bytes_max} B, including the record key, "
            "the 64 B signature and the 32 B chain hash; raw: the doc.observe update of a "
            "nested Map).",
        ),
        Figure(
            "applied_per_s",
            "Updates applied/s on a 2nd replica, 1 per merge",
            "/s",
            updates_count / merge_1.wall,
            raw.applied_per_s,
            "higher",
            note="lanesync: Replica.merge of one sale's update at a time into a fresh replica; "
            "includes decoding and Ed25519 verification of every record and folding the views, "
            "not persistence. Raw: doc.apply_update one at a time into a fresh doc.",
        ),
        Figure(
            "applied_per_s_batched",
            f"Updates applied/s on a 2nd replica, {MERGE_BATCH} per merge",
            "/s",
            updates_count / merge_n.wall,
            raw.applied_per_s_batched,
            "higher",
            note=f"Same, {MERGE_BATCH} updates per merge call (raw: per transaction).",
        ),
        Figure(
            "reopen_s_first",
            f"Reopen a terminal holding {n} sales, first open",
            "s",
            first_open["open_s"],
            raw_apply_s,
            "lower",
            Target("<=", 2, full_scale_only=True),
            "Fresh process, wall time of Terminal.open only "
            f"(CPU {first_open['open_cpu_s']:.2f} s), the first open after the sales "
            f"were written: verdict rows before {breakdown['verified_rows']:,}, after "
            f"{breakdown_reopened['verified_rows']:,}{reverified}. Raw: apply "
            "the full state (doc.get_update()) to a fresh doc, median of "
            f"{REOPEN_RUNS} fresh processes.",
        ),
        Figure(
            "reopen_s",
            f"Reopen a terminal holding {n} sales, later opens",
            "s",
            median_of(reopens, "open_s"),
            raw_apply_s,
            "lower",
            Target("<=", 2, full_scale_only=True),
            f"Median of the {REOPEN_RUNS} opens after the first, each in a fresh process (CPU "
            f"{median_of(reopens, 'open_cpu_s'):.2f} s): read SQLite, apply snapshot + log, take "
            "the views from the stored checkpoint and fold the log rows after it (signatures "
            "trusted from the verdict cache). Raw CPU: "
            f"{median_of(raw_reopens, 'apply_cpu_s'):.2f} s.",
        ),
        Figure(
            "reopen_s_vs_raw_sqlite",
            "  same, vs raw read from SQLite + apply",
            "s",
            median_of(reopens, "open_s"),
            raw_read_apply_s,
            "lower",
            note=f"Raw full state stored in SQLite (WAL, FULL; storing it took "
            f"{raw.store_full_state_s:.3f} s), read back and applied in a fresh process.",
        ),
        Figure(
            "rss_mb",
            f"RSS for {n} sales",
            "MB",
            median_of(reopens, "rss_mb"),
            raw_rss["rss_mb"],
            "lower",
            Target("<=", 150, full_scale_only=True),
            "psutil RSS after the work minus RSS after imports, in a fresh process. lanesync: "
            f"holding the opened terminal (median of the {REOPEN_RUNS} later opens). Raw: after "
            "writing the sales as nested Maps.",
        ),
        Figure(
            "rss_mb_vs_raw_reloaded",
            "  same, vs raw reloaded from full state",
            "MB",
            median_of(reopens, "rss_mb"),
            median_of(raw_reopens, "rss_mb"),
            "lower",
            note="Raw: RSS after applying the full state to a fresh doc (the reopen above).",
        ),
        Figure(
            "disk_bytes",
            "On-disk size",
            "MB",
            on_disk / 2**20,
            raw.sqlite_file_bytes / 2**20,
            "lower",
            note="lanesync: the terminal directory after close (SQLite snapshot + log + verdicts, "
            "keys, certificate). Raw: SQLite file holding the full state.",
        ),
    ]
    for figure in figures:
        figure.finish(sales)
    details = {
        "raw": asdict(raw),
        "raw_rss_phase": raw_rss,
        "raw_reopen_runs": raw_reopens,
        "lanesync_first_open": first_open,
        "lanesync_reopen_runs": reopens,
        "lanesync_database_after_first_open": breakdown_reopened,
        "raw_durable_sales_per_s": raw_durable,
        "lanesync_database": breakdown,
        "lanesync_on_disk_bytes": on_disk,
        "lanesync_bytes_per_sale": {
            "mean": built.bytes_per_sale,
            "min": built.bytes_min,
            "max": built.bytes_max,
        },
        "merge": {"batch_1": asdict(merge_1), f"batch_{MERGE_BATCH}": asdict(merge_n)},
        "concurrent": asdict(conc) | {"sales": concurrent, "tasks": CONCURRENT_TASKS},
        "sequential": {"sales": sequential, "elapsed": asdict(seq)},
        "fill": {"stage": asdict(built.stage), "commit": asdict(built.commit)},
        "idle_sales": IDLE_SALES,
    }
    return figures, details


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sales", type=int, default=FULL_SCALE, help="N (default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every figure here")
    parser.add_argument(
        "--workdir", type=Path, help="where to create the temporary directory (default: $TMPDIR)"
    )
    parser.add_argument(
        "--profile-reopen",
        action="store_true",
        help="also cProfile one lanesync reopen and print the top functions to stderr",
    )
    phases = ["rss-raw", "reopen-raw", "reopen-lanesync"]
    parser.add_argument("--phase", choices=phases, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sales < MERGE_BATCH:
        parser.error(f"--sales must be at least {MERGE_BATCH}")

    if args.phase is not None:
        phase_runs: dict[str, Callable[[], dict[str, Any]]] = {
            "rss-raw": lambda: phase_rss_raw(args.sales),
            "reopen-raw": lambda: phase_reopen_raw(args.dir),
            "reopen-lanesync": lambda: phase_reopen_lanesync(args.dir, args.profile),
        }
        print(json.dumps(phase_runs[args.phase]()))
        return

    command = shlex.join(sys.orig_argv)
    started = datetime.now(UTC)
    commit, changed, src_state = git_state()
    load_before = calibrate()
    progress(describe_load("before", load_before))
    with tempfile.TemporaryDirectory(prefix="lanesync-bench-", dir=args.workdir) as tmp:
        figures, details = run(args.sales, Path(tmp), args.profile_reopen)
    load_after = calibrate()
    machine = machine_info()
    code_moved = git_state()[2] != src_state
    print(f"lanesync foundation benchmark, {args.sales:,} sales, {started:%Y-%m-%d %H:%M} UTC")
    print(f"command: {command}")
    print(
        f"machine: {machine['usable_cpus']} CPUs ({machine['cpu_model']}), Python "
        f"{machine['python']}, pycrdt {machine['versions']['pycrdt']}, "
        f"PyNaCl {machine['versions']['PyNaCl']}, msgpack {machine['versions']['msgpack']}"
    )
    print(
        f"git: {commit}"
        + (f" + {len(changed)} changed paths" if changed else "")
        + ("  WARNING: src/ changed during the run" if code_moved else "")
    )
    print(describe_load("before", load_before))
    print(describe_load("after ", load_after) + "\n")
    print(render_table(figures))
    if args.json is not None:
        report = {
            "command": command,
            "argv": sys.orig_argv,
            "cwd": str(Path.cwd()),
            "started_utc": started.isoformat(),
            "duration_s": (datetime.now(UTC) - started).total_seconds(),
            "sales": args.sales,
            "git_commit": commit,
            "git_changed_paths": changed,
            "git_src_changed_during_run": code_moved,
            "machine": machine,
            "load_before": load_before,
            "load_after": load_after,
            "figures": [asdict(f) for f in figures],
            "details": details,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
