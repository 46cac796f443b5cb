"""Cloud ingest benchmark (issue #7): many stores upload a day of sales each to the cloud.

Run ``.venv/bin/python benchmarks/cloud_ingest.py [--stores 100] [--sales 300]
[--processes 1,2,4] [--uploaders 2] [--json OUT] [--quick]``; benchmarks/README.md
("cloud_ingest.py") says what every figure means.

Built offline, once: ``--stores`` stores, each with its authority (``StoreDirectory.init``), one
enrolled cashier terminal holding the store's opening stock (one receipt per SKU) and a day of
``--sales`` sales (500 per ``Terminal.commit``), and one cloud directory serving every store (the
Python APIs behind ``cloud init``, ``store certify-cloud`` and ``cloud add-store``). The cloud
directory is kept config-only (key, identity, stores/*/{store.json,terminal.cert}) and copied
for every cloud process, like ``World.copy_cloud`` in tests/cloud/conftest.py.

Then, for each configuration (SQLite with one process, then PostgreSQL with each of
``--processes``, a fresh database from a throwaway server, migrated with ``lanesync cloud
migrate``): the cloud processes start (``python -m lanesync cloud serve DIR --listen
127.0.0.1:0 --api 127.0.0.1:0 [--db URL]``), fresh copies of the terminal directories are made
(so every configuration uploads the same records), and ``--uploaders`` uploader processes (this
script with ``--uploader SPEC``) each open their share of the stores' terminals. Each store's
uploader is lanesync's own code: the terminal's replica, a ``core.node.Node`` and a
``shell.mesh.Mesh`` that dials the cloud with ``Mesh.add_uplink(url, "cloud", Role.CLOUD)``,
exactly what ``shell.uplink.Uplink`` does once its lane is the store's leader. Store i dials
cloud process i % P. The clock starts when the uploaders are told to dial and stops when the
head-office ``sales`` table (polled with plain SQL) holds every sale of every store.

Only loopback is used, and nothing starts mDNS (the uploaders never create a Discovery).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import platform
import random
import re
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import httpx
import psutil
import psycopg

from lanesync.bench.cluster import child_env
from lanesync.bench.stats import percentile as sorted_percentile
from lanesync.bench.studies.common import progress
from lanesync.cloud.directory import CloudDirectory
from lanesync.core import bodies
from lanesync.core.identity import Role, public_key_of
from lanesync.core.ids import CLOUD_TERMINAL_ID, Sku
from lanesync.core.node import Node
from lanesync.core.records import Body, Sale
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.shell.directories import StoreDirectory, new_client_id
from lanesync.shell.mesh import SHUTDOWN_REASON, Mesh
from lanesync.shell.terminal import Terminal, wall_clock_ms
from lanesync.tools.pgserver import PostgresServer, unavailable_reason

LOOPBACK = "127.0.0.1"
# The figures: 100 stores, a day of sales each, 1, 2 and 4 cloud processes.
DEFAULT_STORES = 100
DEFAULT_SALES = 300  # a small store's day (the brief's default)
DEFAULT_PROCESSES = (1, 2, 4)
# 100 `lanesync run` processes do not fit a 2-core machine: a few asyncio processes host them.
DEFAULT_UPLOADERS = 2
QUICK_STORES, QUICK_SALES = 10, 50
TERMINAL_ID = "till1"
# Opening stock: one receipt per SKU of a small catalog (20 SKUs, 500 units each).
SKUS = [Sku(f"sku{i:02d}") for i in range(20)]
OPENING_QTY = 500
# Catalog prices, drawn once (cents); sales carry explicit prices (a cashier sets none).
PRICES = {sku: random.Random(42).randint(50, 4999) for sku in SKUS}
BATCH = 500  # records per commit, as in benchmarks/cloud.py (one group commit per 500 sales)
VALID_DAYS = 30  # certificates only need to outlive the run
# How often the head-office tables are polled: the resolution of every completion time.
POLL_INTERVAL_S = 0.2
# `cloud serve` opens (and projects) every store before it writes runtime.json; 4 processes
# opening 100 stores each on a shared 2-core machine can take a while.
CLOUD_START_TIMEOUT_S = 300.0
UPLOADER_READY_TIMEOUT_S = 300.0
INGEST_TIMEOUT_S = 1800.0
STOP_TIMEOUT_S = 15.0  # SIGTERM, then SIGKILL after this long
# The offline reference merge (cloud-side work per record without any I/O) uses this many stores.
REFERENCE_STORES = 5
PR_SET_PDEATHSIG = 1  # prctl(2): children die with this script even if it is SIGKILLed

ENV = child_env()


def percentile(samples: Sequence[float], p: float) -> float:
    return sorted_percentile(sorted(samples), p)


class ApiProbe:
    """Polls the cloud's API every 0.2 s in a thread; ``stop()`` returns the slowest answer."""

    def __init__(self, base_url: str, token: str) -> None:
        self._client = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=300,
            trust_env=False,
        )
        self._stop = threading.Event()
        self.slowest = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self._client.get("/v1/status").raise_for_status()
            self.slowest = max(self.slowest, time.perf_counter() - started)
            self._stop.wait(0.2)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(300)
        self._client.close()
        return self.slowest


# -- building the stores, offline ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreDay:
    store_id: str
    terminal: Path  # the built terminal directory (copied for every configuration)
    sales: int
    total_cents: int
    receipts: int

    @property
    def records(self) -> int:
        return self.sales + self.receipts


@dataclass(frozen=True, slots=True)
class Fleet:
    cloud_template: Path  # config only: cloud.key, cloud.json, stores/*/{store.json,...}
    stores: list[StoreDay]
    build_s: float

    @property
    def records(self) -> int:
        return sum(s.records for s in self.stores)

    @property
    def sales(self) -> int:
        return sum(s.sales for s in self.stores)


def sale_builder(rng: random.Random) -> Callable[[Views], Body]:
    requests = [
        bodies.LineRequest(sku, rng.randint(1, 3), PRICES[sku])
        for sku in rng.sample(SKUS, rng.randint(1, 3))
    ]
    return partial(bodies.build_sale, requests=requests)


def receipt_builder(sku: Sku) -> Callable[[Views], Body]:
    return lambda _: bodies.build_receipt(sku, OPENING_QTY)


def write_all(till: Terminal, builders: Sequence[Callable[[Views], Body]]) -> list[Body]:
    """Every record staged, then committed BATCH at a time (one ``Terminal.commit`` each, as
    the daemon's group commit does), compacting when due; a refused write raises."""
    bodies: list[Body] = []
    for first in range(0, len(builders), BATCH):
        staged = [till.stage(build) for build in builders[first : first + BATCH]]
        till.commit([change for _, change in staged])
        till.compact_if_due()
        bodies += [record.body for record, _ in staged]
    return bodies


def build_fleet(root: Path, stores: int, sales: int) -> Fleet:
    started = time.perf_counter()
    cloud = CloudDirectory.init(root / "cloud-template")
    days = []
    for i in range(stores):
        store_id = f"store-{i:03d}"
        authority = StoreDirectory.init(root / "authorities" / store_id, store_id)
        cert = authority.certify_cloud(public_key_of(cloud.key), wall_clock_ms(), VALID_DAYS)
        cert_file = root / "certs" / f"{store_id}.cert"
        cert_file.parent.mkdir(exist_ok=True)
        cert_file.write_bytes(cert.encoded)
        cloud.add_store(authority.identity_file, cert_file)
        terminal = root / "terminals" / store_id
        authority.enroll(terminal, TERMINAL_ID, Role.CASHIER, wall_clock_ms(), VALID_DAYS)
        rng = random.Random(i)
        with Terminal.open(terminal) as till:
            receipts = write_all(till, [receipt_builder(sku) for sku in SKUS])
            day = write_all(till, [sale_builder(rng) for _ in range(sales)])
        totals = [body.total_cents for body in day if isinstance(body, Sale)]
        days.append(StoreDay(store_id, terminal, len(totals), sum(totals), len(receipts)))
        if (i + 1) % 25 == 0 or i + 1 == stores:
            progress(f"built {i + 1}/{stores} stores")
    return Fleet(root / "cloud-template", days, time.perf_counter() - started)


def reference_merge(fleet: Fleet) -> dict[str, float]:
    """CPU per 1k records of what the cloud must do with every record it did not have: merge
    the CRDT update, verify the Ed25519 signature, fold it into the views (Replica.merge into a
    fresh replica, in this process, no I/O). The cloud's per-record floor."""
    cpu = 0.0
    records = 0
    for day in fleet.stores[:REFERENCE_STORES]:
        with Terminal.open(day.terminal) as till:
            updates = list(till.replica.updates_since({}).items())
            store = till.directory.store
        replica = Replica(store, new_client_id(), None)
        started = time.process_time()
        replica.merge(updates, wall_clock_ms())
        cpu += time.process_time() - started
        if replica.views.accepted_count() != day.records:
            raise RuntimeError(f"reference merge of {day.store_id} accepted the wrong records")
        records += day.records
    return {"records": records, "cpu_s_per_1k_records": round(cpu / records * 1000, 3)}


# -- processes ----------------------------------------------------------------------------------


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM if this script dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each live descendant; the process's own
    entry includes the children it has reaped, so short-lived ones are not lost."""
    root = psutil.Process(pid)
    times = root.cpu_times()
    cpu = {pid: times.user + times.system + times.children_user + times.children_system}
    for child in root.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = child.cpu_times()
            cpu[child.pid] = t.user + t.system
    return cpu


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def schedstat_s(pid: int) -> tuple[float, float]:
    """Seconds every thread of ``pid`` has run on a CPU and waited in a run queue for one
    (Linux /proc/PID/task/*/schedstat). Wall time minus both is time blocked: sleeping,
    waiting for I/O or for another process (PostgreSQL, a peer)."""
    run_ns = wait_ns = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "schedstat").read_text().split()
                run_ns += int(fields[0])
                wait_ns += int(fields[1])
    return run_ns / 1e9, wait_ns / 1e9


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class CloudProcess:
    """One ``lanesync cloud serve`` on loopback; ``ready()`` returns its uplink URL."""

    def __init__(self, directory: Path, db_url: str | None, log: Path) -> None:
        self.directory = directory
        self.log = log
        args = ["cloud", "serve", str(directory), "--listen", f"{LOOPBACK}:0"]
        args += ["--api", f"{LOOPBACK}:0"]
        if db_url is not None:
            args += ["--db", db_url]
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lanesync", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                preexec_fn=die_with_parent,  # no threads run in this script when it starts one
            )
        self.listen = ""
        self.api = ""

    def ready(self, deadline: float) -> str:
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cloud serve {self.directory} exited; see {self.log}")
            try:
                info = json.loads((self.directory / "runtime.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid:
                self.listen = str(info["listen"])
                self.api = str(info["api"])
                return self.listen
            time.sleep(0.1)
        raise RuntimeError(f"cloud serve {self.directory} did not start; see {self.log}")


class UploaderProcess:
    """This script with ``--uploader SPEC``: answers ``ready``, dials on ``go``, stops on
    ``stop`` (or when its stdin closes) and prints its figures as one JSON line."""

    def __init__(self, spec: Path, log: Path) -> None:
        self.log = log
        with log.open("wb") as err:
            self.process: subprocess.Popen[str] = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--uploader", str(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=ENV,
            )

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        return self.process.stdin, self.process.stdout

    def wait_ready(self) -> dict[str, Any]:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError(f"uploader exited before it was ready; see {self.log}")
        return dict(json.loads(line))

    def go(self) -> None:
        stdin = self._pipes()[0]
        stdin.write("go\n")
        stdin.flush()

    def finish(self) -> dict[str, Any]:
        out, _ = self.process.communicate("stop\n", timeout=120)
        lines = out.strip().splitlines()
        if not lines:
            raise RuntimeError(f"uploader printed no figures; see {self.log}")
        return dict(json.loads(lines[-1]))


# -- the uploader process -------------------------------------------------------------------------


class UplinkEvents(logging.Handler):
    """Counts the mesh's uplink events (``peer.connected peer=cloud``, ``peer.closed ...``)."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = 0
        self.closed: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("peer.connected peer=cloud"):
            self.connected += 1
        elif message.startswith("peer.closed peer=cloud"):
            match = re.search(r"reason=(.*) by_peer=", message)
            self.closed[match.group(1) if match else message] += 1


async def run_uploader(spec: dict[str, Any]) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(created).3f %(name)s %(message)s"
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    events = UplinkEvents()
    logging.getLogger("lanesync.mesh").addHandler(events)
    fatal: list[str] = []
    opened = time.perf_counter()
    stores: list[tuple[Terminal, Mesh, str]] = []
    try:
        for entry in spec["stores"]:
            terminal = Terminal.open(Path(entry["terminal"]), lock_wait_s=0)
            terminal.on_failure = lambda exc: fatal.append(str(exc))
            mesh = Mesh(Node(terminal.replica), terminal)
            mesh.start()
            stores.append((terminal, mesh, str(entry["url"])))
        print(json.dumps({"ready": len(stores), "open_s": time.perf_counter() - opened}))
        sys.stdout.flush()
        command = await asyncio.to_thread(sys.stdin.readline)
        if command.strip() == "go":
            for _, mesh, url in stores:
                # What shell.uplink.Uplink._steer does once its lane leads the store.
                mesh.add_uplink(url, CLOUD_TERMINAL_ID, Role.CLOUD)
            await asyncio.to_thread(sys.stdin.readline)  # "stop", or EOF if the parent died
        # Uplinks that closed before we were told to stop (our own shutdown closes them all).
        dropped = dict(events.closed)
        for _, mesh, _ in stores:
            for peer in mesh.peers:
                peer.gone = True
                if peer.task is not None:
                    peer.task.cancel()
            mesh.close_all(SHUTDOWN_REASON)
        await asyncio.sleep(0.5)  # let the close frames go out
        figures = {
            "stores": len(stores),
            "uplink_bytes_out": sum(mesh.bytes_out for _, mesh, _ in stores),
            "uplinks_connected": events.connected,
            "uplinks_closed": dropped,
            "fatal": fatal,
        }
    finally:
        for terminal, _, _ in stores:
            terminal.close()
    print(json.dumps(figures))
    sys.stdout.flush()


# -- one configuration --------------------------------------------------------------------------


@dataclass(slots=True)
class Config:
    name: str  # "SQLite-1", "PG-2", ...
    processes: int
    postgresql: bool


@dataclass(slots=True)
class Outcome:
    name: str
    processes: int
    backend: str
    stores: int
    records: int
    sales: int
    exact: bool
    problems: list[str] = field(default_factory=list)
    time_s: float = float("nan")
    records_per_s: float = float("nan")
    store_done_s: dict[str, float] = field(default_factory=dict)
    store_done_p50_s: float = float("nan")
    store_done_p99_s: float = float("nan")
    store_done_max_s: float = float("nan")
    cpu_s: dict[str, float] = field(default_factory=dict)  # cloud, postgresql, uploaders
    cpu_s_per_1k_records: dict[str, float] = field(default_factory=dict)
    cloud_cpu_s_per_process: list[float] = field(default_factory=list)
    # Per cloud process over the ingest: waiting in a run queue for a CPU (the machine's
    # contention), and blocked (wall - on CPU - run queue: waiting for PostgreSQL, fsync, peers).
    cloud_runqueue_s_per_process: list[float] = field(default_factory=list)
    cloud_blocked_s_per_process: list[float] = field(default_factory=list)
    # Slowest answer of each process's read API (polled every 0.2 s): how long its event loop
    # stalled at worst.
    cloud_api_max_latency_s: list[float] = field(default_factory=list)
    cloud_peak_rss_mb: list[float] = field(default_factory=list)
    uploaders: list[dict[str, Any]] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)
    startup_s: float = float("nan")


class HeadOfficeReader:
    """Plain SQL on the head-office tables, as head office would read them."""

    def __init__(self, sqlite_file: Path | None, url: str | None) -> None:
        self._sqlite = None
        self._pg: psycopg.Connection[Any] | None = None
        if url is not None:
            self._pg = psycopg.connect(url, autocommit=True)
        else:
            assert sqlite_file is not None
            self._sqlite = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return list(self._pg.execute(query).fetchall())
        assert self._sqlite is not None
        return self._sqlite.execute(query).fetchall()

    def sales_per_store(self) -> dict[str, int]:
        return dict(self.rows("SELECT store_id, COUNT(*) FROM sales GROUP BY store_id"))

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()


def check_exact(reader: HeadOfficeReader, fleet: Fleet) -> list[str]:
    """Every store's sales count and total, voids and receipts equal what was written."""
    sales = {
        store: (int(n), int(total), int(voided))
        for store, n, total, voided in reader.rows(
            "SELECT store_id, COUNT(*), SUM(total_cents), SUM(voided) FROM sales GROUP BY store_id"
        )
    }
    receipts = dict(
        reader.rows(
            "SELECT store_id, COUNT(*) FROM stock_movements WHERE kind = 'receipt' "
            "GROUP BY store_id"
        )
    )
    problems = []
    for day in fleet.stores:
        got = sales.get(day.store_id, (0, 0, 0))
        if got != (day.sales, day.total_cents, 0):
            problems.append(
                f"{day.store_id}: sales (count, total, voided) {got}, "
                f"wrote {(day.sales, day.total_cents, 0)}"
            )
        if int(receipts.get(day.store_id, 0)) != day.receipts:
            problems.append(
                f"{day.store_id}: {receipts.get(day.store_id, 0)} receipts, wrote {day.receipts}"
            )
    strangers = set(sales) - {d.store_id for d in fleet.stores}
    if strangers:
        problems.append(f"sales of unknown stores: {sorted(strangers)}")
    return problems


def copy_config_only(source: Path, target: Path) -> None:
    shutil.copytree(
        source,
        target,
        ignore=shutil.ignore_patterns("runtime.json", "lock", "api.token", "*.db", "*.db-*"),
    )


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.root / "data" / "postmaster.pid").read_text().splitlines()[0])


def run_configuration(
    config: Config,
    fleet: Fleet,
    work: Path,
    server: PostgresServer | None,
    uploaders: int,
) -> Outcome:
    root = work / config.name
    logs = root / "logs"
    logs.mkdir(parents=True)
    outcome = Outcome(
        config.name,
        config.processes,
        "postgresql" if config.postgresql else "sqlite",
        len(fleet.stores),
        fleet.records,
        fleet.sales,
        exact=False,
    )
    cloud_dirs = [root / f"cloud{k}" for k in range(config.processes)]
    for directory in cloud_dirs:
        copy_config_only(fleet.cloud_template, directory)
    url = None
    if config.postgresql:
        assert server is not None
        url = server.create_database(config.name.lower().replace("-", "_"))
        migrate = ["cloud", "migrate", str(cloud_dirs[0]), "--db", url]
        subprocess.run(
            [sys.executable, "-m", "lanesync", *migrate],
            check=True,
            capture_output=True,
            env=ENV,
        )
    for day in fleet.stores:
        shutil.copytree(day.terminal, root / "terminals" / day.store_id)
    clouds: list[CloudProcess] = []
    uploads: list[UploaderProcess] = []
    probes: list[ApiProbe] = []
    reader: HeadOfficeReader | None = None
    try:
        started = time.monotonic()
        clouds = [CloudProcess(d, url, logs / f"cloud{k}.log") for k, d in enumerate(cloud_dirs)]
        listen = [c.ready(started + CLOUD_START_TIMEOUT_S) for c in clouds]
        outcome.startup_s = round(time.monotonic() - started, 2)
        progress(f"{config.name}: {len(clouds)} cloud process(es) up in {outcome.startup_s} s")
        for u in range(uploaders):
            spec = {
                "stores": [
                    {
                        "store_id": day.store_id,
                        "terminal": str(root / "terminals" / day.store_id),
                        "url": listen[i % config.processes],
                    }
                    for i, day in enumerate(fleet.stores)
                    if i % uploaders == u
                ]
            }
            spec_file = root / f"uploader{u}.json"
            spec_file.write_text(json.dumps(spec, indent=1))
            uploads.append(UploaderProcess(spec_file, logs / f"uploader{u}.log"))
        for upload in uploads:
            upload.wait_ready()
        reader = HeadOfficeReader(cloud_dirs[0] / "headoffice.db", url)
        expected = {day.store_id: day.sales for day in fleet.stores}
        if any(reader.sales_per_store().values()):
            raise RuntimeError("the head-office tables hold sales before any upload")
        outcome.load_before = [round(x, 2) for x in os.getloadavg()]
        pg_pid = postmaster_pid(server) if server is not None and config.postgresql else None

        def cpu_now() -> dict[str, dict[int, float]]:
            cpu = {
                "cloud": {c.process.pid: tree_cpu_s(c.process.pid)[c.process.pid] for c in clouds},
                "uploaders": {
                    u.process.pid: tree_cpu_s(u.process.pid)[u.process.pid] for u in uploads
                },
                "postgresql": tree_cpu_s(pg_pid) if pg_pid is not None else {},
            }
            cpu["poller"] = {os.getpid(): time.process_time()}
            return cpu

        tokens = [(c.directory / "api.token").read_text().strip() for c in clouds]
        probes += [ApiProbe(c.api, token) for c, token in zip(clouds, tokens, strict=True)]
        sched_before = [schedstat_s(c.process.pid) for c in clouds]
        cpu_before = cpu_now()
        t0 = time.monotonic()
        for upload in uploads:
            upload.go()
        done: dict[str, float] = {}
        watched: list[tuple[str, subprocess.Popen[Any]]] = [(str(c.log), c.process) for c in clouds]
        watched += [(str(u.log), u.process) for u in uploads]
        while len(done) < len(expected):
            now = time.monotonic() - t0
            if now > INGEST_TIMEOUT_S:
                outcome.problems.append(
                    f"timed out after {INGEST_TIMEOUT_S:.0f} s with {len(done)} stores complete"
                )
                break
            for name, proc in watched:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited ({proc.returncode}); logs in {logs}")
            for store, count in reader.sales_per_store().items():
                if store not in done and count >= expected.get(store, 0):
                    done[store] = now
            time.sleep(POLL_INTERVAL_S)
        elapsed = time.monotonic() - t0
        cpu_after = cpu_now()
        sched_after = [schedstat_s(c.process.pid) for c in clouds]
        wall = time.monotonic() - t0
        outcome.cloud_api_max_latency_s = [round(probe.stop(), 2) for probe in probes]
        for (run0, wait0), (run1, wait1) in zip(sched_before, sched_after, strict=True):
            outcome.cloud_runqueue_s_per_process.append(round(wait1 - wait0, 2))
            outcome.cloud_blocked_s_per_process.append(
                round(wall - (run1 - run0) - (wait1 - wait0), 2)
            )
        outcome.load_after = [round(x, 2) for x in os.getloadavg()]
        outcome.cloud_peak_rss_mb = [round(peak_rss_mb(c.process.pid), 1) for c in clouds]
        if len(done) == len(expected):
            elapsed = max(done.values())
        outcome.time_s = round(elapsed, 2)
        outcome.records_per_s = round(fleet.records / elapsed, 1)
        outcome.store_done_s = {s: round(t, 2) for s, t in sorted(done.items())}
        samples = list(done.values())
        if samples:
            outcome.store_done_p50_s = round(percentile(samples, 50), 2)
            outcome.store_done_p99_s = round(percentile(samples, 99), 2)
            outcome.store_done_max_s = round(max(samples), 2)
        outcome.cpu_s = {
            part: round(cpu_delta(cpu_before[part], cpu_after[part]), 2) for part in cpu_before
        }
        outcome.cloud_cpu_s_per_process = [
            round(cpu_after["cloud"][pid] - cpu_before["cloud"][pid], 2)
            for pid in cpu_after["cloud"]
        ]
        outcome.cpu_s_per_1k_records = {
            part: round(cpu / fleet.records * 1000, 3) for part, cpu in outcome.cpu_s.items()
        }
        outcome.uploaders = [u.finish() for u in uploads]
        outcome.problems += check_exact(reader, fleet)
        for figures in outcome.uploaders:
            outcome.problems += [f"uploader storage failure: {f}" for f in figures["fatal"]]
        outcome.exact = not outcome.problems
        return outcome
    finally:
        for probe in probes:
            with contextlib.suppress(Exception):  # already stopped, or its cloud died
                probe.stop()
        if reader is not None:
            reader.close()
        for upload in uploads:
            stop_process(upload.process)
        for cloud in clouds:
            stop_process(cloud.process)


# -- report -------------------------------------------------------------------------------------


def ratio(value: float, base: Outcome | None) -> str:
    if base is None or not base.records_per_s or base.records_per_s != base.records_per_s:
        return "-"
    return f"{value / base.records_per_s:.2f}x"


def table(outcomes: list[Outcome], reference_per_1k: float) -> str:
    sqlite1 = next((o for o in outcomes if o.backend == "sqlite"), None)
    pg1 = next((o for o in outcomes if o.backend == "postgresql" and o.processes == 1), None)
    head = (
        "| configuration | records/s | vs SQLite-1 | vs PG-1 | time (s) | store done p50 / p99 (s) "
        "| CPU s per 1k records: cloud / PostgreSQL / uploaders / all "
        "| cloud CPU / reference merge | cloud peak RSS (MB) | uplink drops | exact |"
    )
    lines = [head, "|" + "---|" * head.count(" |")]
    for o in outcomes:
        per = o.cpu_s_per_1k_records
        total = per.get("cloud", 0) + per.get("postgresql", 0) + per.get("uploaders", 0)
        drops = sum(sum(u["uplinks_closed"].values()) for u in o.uploaders)
        pg_cpu = f"{per['postgresql']:.2f}" if o.backend == "postgresql" else "-"
        lines.append(
            f"| {o.name} ({o.processes} process{'es' if o.processes > 1 else ''}) "
            f"| {o.records_per_s:,.0f} | {ratio(o.records_per_s, sqlite1)} "
            f"| {ratio(o.records_per_s, pg1) if o.backend == 'postgresql' else '-'} "
            f"| {o.time_s:.1f} | {o.store_done_p50_s:.1f} / {o.store_done_p99_s:.1f} "
            f"| {per.get('cloud', 0):.2f} / {pg_cpu} / {per.get('uploaders', 0):.2f} / "
            f"{total:.2f} | {per.get('cloud', 0) / reference_per_1k:.1f}x "
            f"| {max(o.cloud_peak_rss_mb or [float('nan')]):.0f} "
            f"| {drops} | {'yes' if o.exact else 'NO'} |"
        )
    return "\n".join(lines)


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version}
    for package in ("lanesync", "pycrdt", "psycopg", "websockets", "PyNaCl", "psutil"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def git_state() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True
        ).stdout.splitlines()
    except OSError:
        return "unknown"
    return f"{commit} + {len(changed)} changed paths" if changed else commit


# -- main ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(needed: bool) -> Iterator[PostgresServer | None]:
    if not needed:
        yield None
        return
    reason = unavailable_reason()
    if reason is not None:
        raise SystemExit(f"error: cannot start PostgreSQL: {reason}")
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def parse_processes(text: str) -> list[int]:
    try:
        counts = [int(p) for p in text.split(",") if p.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4, got {text!r}") from exc
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("process counts must be positive")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stores", type=int, default=DEFAULT_STORES)
    parser.add_argument("--sales", type=int, default=DEFAULT_SALES, help="sales per store")
    parser.add_argument(
        "--processes",
        type=parse_processes,
        default=list(DEFAULT_PROCESSES),
        help="PostgreSQL configurations to run (cloud processes each), e.g. 1,2,4",
    )
    parser.add_argument("--uploaders", type=int, default=DEFAULT_UPLOADERS)
    parser.add_argument("--skip-sqlite", action="store_true", help="no SQLite-1 baseline")
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_STORES} stores x {QUICK_SALES} sales"
    )
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--keep", type=Path, help="copy the processes' logs here at the end")
    parser.add_argument("--uploader", type=Path, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    if args.uploader is not None:
        asyncio.run(run_uploader(json.loads(args.uploader.read_text())))
        return 0
    if args.quick:
        args.stores, args.sales = QUICK_STORES, QUICK_SALES
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run every finally, then exit
    configs = [] if args.skip_sqlite else [Config("SQLite-1", 1, postgresql=False)]
    configs += [Config(f"PG-{p}", p, postgresql=True) for p in args.processes]
    command = shlex.join([sys.executable, *sys.argv])
    result: dict[str, Any] = {
        "command": command,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_state(),
        "machine": machine(),
        "versions": versions(),
        "parameters": {
            "stores": args.stores,
            "sales_per_store": args.sales,
            "receipts_per_store": len(SKUS),
            "uploaders": args.uploaders,
            "poll_interval_s": POLL_INTERVAL_S,
        },
    }
    progress(f"machine: {result['machine']}")
    outcomes: list[Outcome] = []
    with (
        tempfile.TemporaryDirectory(prefix="lanesync-ingest-", dir=args.workdir) as tmp,
        postgres_server(any(c.postgresql for c in configs)) as server,
    ):
        work = Path(tmp)
        try:
            if server is not None:
                with psycopg.connect(server.url(), autocommit=True) as conn:
                    row = conn.execute("SHOW server_version").fetchone()
                    result["versions"]["postgresql"] = str(row[0]) if row else "?"
            progress(f"building {args.stores} stores x {args.sales} sales offline")
            fleet = build_fleet(work / "fleet", args.stores, args.sales)
            result["build_s"] = round(fleet.build_s, 1)
            result["reference_merge"] = reference_merge(fleet)
            progress(
                f"built in {fleet.build_s:.1f} s: {fleet.records} records ({fleet.sales} sales); "
                f"reference merge {result['reference_merge']}"
            )
            for config in configs:
                progress(f"{config.name}: starting (load {os.getloadavg()[0]:.2f})")
                try:
                    outcome = run_configuration(
                        config, fleet, work / "runs", server, args.uploaders
                    )
                except (RuntimeError, OSError, subprocess.SubprocessError, psycopg.Error) as exc:
                    backend = "postgresql" if config.postgresql else "sqlite"
                    outcome = Outcome(
                        config.name,
                        config.processes,
                        backend,
                        len(fleet.stores),
                        fleet.records,
                        fleet.sales,
                        exact=False,
                        problems=[f"failed: {exc}"],
                    )
                outcomes.append(outcome)
                progress(
                    f"{config.name}: {outcome.records_per_s:,.0f} records/s in "
                    f"{outcome.time_s} s, CPU {outcome.cpu_s}, exact {outcome.exact} "
                    f"{outcome.problems[:3]}"
                )
        finally:
            if args.keep is not None and (work / "runs").exists():
                for logs in (work / "runs").glob("*/logs"):
                    shutil.copytree(logs, args.keep / logs.parent.name, dirs_exist_ok=True)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    result["configurations"] = [asdict(o) for o in outcomes]
    text = table(outcomes, result["reference_merge"]["cpu_s_per_1k_records"])
    print(
        f"lanesync cloud ingest: {args.stores} stores x ({args.sales} sales + {len(SKUS)} "
        f"receipts) = {outcomes[0].records if outcomes else 0} records"
    )
    print(f"command: {command}")
    print(f"git: {result['git']}; {result['when']}")
    print(f"machine: {result['machine']}; load after {result['load_after']}")
    print(f"versions: {result['versions']}")
    print(f"reference merge (verify + CRDT + fold, no I/O): {result['reference_merge']}")
    print(text)
    for o in outcomes:
        print(
            f"{o.name}: per cloud process: CPU s {o.cloud_cpu_s_per_process}, run-queue wait s "
            f"{o.cloud_runqueue_s_per_process}, blocked s {o.cloud_blocked_s_per_process}, "
            f"slowest API answer s {o.cloud_api_max_latency_s}, peak RSS MB "
            f"{o.cloud_peak_rss_mb}; load {o.load_before} -> {o.load_after}; "
            f"uplinks closed before the end {[u['uplinks_closed'] for u in o.uploaders]}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if not all(o.exact for o in outcomes):
        for o in outcomes:
            for problem in o.problems[:20]:
                print(f"NOT EXACT {o.name}: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
