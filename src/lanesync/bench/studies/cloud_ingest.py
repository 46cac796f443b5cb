"""``lanesync bench cloud-ingest``: many stores upload a day of sales each to the cloud, SQLite
against PostgreSQL (issue #7; benchmarks/README.md, "cloud-ingest", says what every figure
means).

The stores are built offline once (``ingest_fleet``). Then, for each configuration (SQLite with
one process, then PostgreSQL with each of ``processes``, a fresh database from one throwaway
server, migrated with ``lanesync cloud migrate``): the cloud processes start (``python -m
lanesync cloud serve DIR --listen 127.0.0.1:0 --api 127.0.0.1:0 [--db URL]``), fresh copies of
the terminal directories are made (so every configuration uploads the same records), and
``uploaders`` uploader processes (``ingest_uploader``) each open their share of the stores'
terminals. Store i dials cloud process i % P. The clock starts when the uploaders are told to
dial and stops when the head-office ``sales`` table (polled with plain SQL) holds every sale of
every store.

Only loopback is used, and nothing starts mDNS (the uploaders never create a Discovery).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.stats import percentile
from lanesync.bench.studies.cloud_procs import ApiProbe
from lanesync.bench.studies.common import LinePipe, StudyRun, progress
from lanesync.bench.studies.ingest_fleet import (
    SKUS,
    Fleet,
    build_fleet,
    copy_config_only,
    reference_merge,
)
from lanesync.bench.studies.ingest_procs import (
    HeadOfficeReader,
    check_exact,
    cpu_delta,
    peak_rss_mb,
    postgres_server,
    schedstat_s,
    tree_cpu_s,
)
from lanesync.errors import ProcessFailed
from lanesync.tools import procs
from lanesync.tools.pgserver import PostgresServer
from lanesync.tools.procs import ProcessGroup, child_env

NAME = "cloud-ingest"
LOOPBACK = "127.0.0.1"
# The figures: 100 stores, a day of sales each, 1, 2 and 4 cloud processes.
DEFAULT_STORES = 100
DEFAULT_SALES = 300  # a small store's day (the brief's default)
DEFAULT_PROCESSES = (1, 2, 4)
# 100 `lanesync run` processes do not fit a 2-core machine: a few asyncio processes host them.
DEFAULT_UPLOADERS = 2
QUICK_STORES, QUICK_SALES = 10, 50
# How often the head-office tables are polled: the resolution of every completion time.
POLL_INTERVAL_S = 0.2
# `cloud serve` opens (and projects) every store before it writes runtime.json; 4 processes
# opening 100 stores each on a shared 2-core machine can take a while.
CLOUD_START_TIMEOUT_S = 300.0
UPLOADER_READY_TIMEOUT_S = 300.0
INGEST_TIMEOUT_S = 1800.0
STOP_TIMEOUT_S = 15.0  # SIGTERM, then SIGKILL after this long
UPLOADER = "lanesync.bench.studies.ingest_uploader"


@dataclass(frozen=True, slots=True)
class IngestOptions:
    stores: int = DEFAULT_STORES
    sales: int = DEFAULT_SALES
    processes: tuple[int, ...] = DEFAULT_PROCESSES
    uploaders: int = DEFAULT_UPLOADERS
    sqlite: bool = True
    workdir: Path | None = None
    keep: Path | None = None


@dataclass(slots=True)
class Config:
    name: str  # "SQLite-1", "PG-2", ...
    processes: int
    postgresql: bool


@dataclass(slots=True)
class IngestRun:
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


@dataclass
class CloudProcess:
    """One ``lanesync cloud serve`` on loopback."""

    directory: Path
    process: procs.Proc
    listen: str = ""
    api: str = ""

    @property
    def log(self) -> Path:
        return Path(self.process.log_path)

    async def ready(self, within_s: float) -> str:
        """Its uplink URL, once it has written its runtime.json."""
        try:
            info = await self.process.wait_ready_async(within_s)
        except ProcessFailed as exc:
            raise BenchError(f"{str(exc).splitlines()[0]}; see {self.log}") from None
        self.listen = str(info["listen"])
        self.api = str(info["api"])
        return self.listen


def start_cloud(
    group: ProcessGroup, name: str, directory: Path, db_url: str | None
) -> CloudProcess:
    args = ["-m", "lanesync", "cloud", "serve", str(directory), "--listen", f"{LOOPBACK}:0"]
    args += ["--api", f"{LOOPBACK}:0"]
    if db_url is not None:
        args += ["--db", db_url]
    return CloudProcess(directory, group.spawn(name, directory, args))


@dataclass
class UploaderProcess:
    """An ``ingest_uploader`` process and its command pipe."""

    process: procs.Proc
    pipe: LinePipe

    @property
    def log(self) -> Path:
        return Path(self.process.log_path)

    async def line(self, what: str) -> dict[str, Any]:
        line = await self.pipe.readline(UPLOADER_READY_TIMEOUT_S)
        if not line:
            raise BenchError(f"uploader printed no {what}; see {self.log}")
        return dict(json.loads(line))

    async def say(self, command: str) -> None:
        self.pipe.send(command)

    async def finish(self) -> dict[str, Any]:
        await self.say("stop")
        figures = await self.line("figures")
        try:  # it exits once it has printed them
            await asyncio.to_thread(self.process.process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            await asyncio.to_thread(self.process.kill)
        return figures


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.root / "data" / "postmaster.pid").read_text().splitlines()[0])


async def run_configuration(
    config: Config, fleet: Fleet, work: Path, server: PostgresServer | None, uploaders: int
) -> IngestRun:
    root = work / config.name
    logs = root / "logs"
    logs.mkdir(parents=True)
    backend = "postgresql" if config.postgresql else "sqlite"
    outcome = IngestRun(
        config.name, config.processes, backend, len(fleet.stores), fleet.records, fleet.sales, False
    )
    cloud_dirs = [root / f"cloud{k}" for k in range(config.processes)]
    for directory in cloud_dirs:
        copy_config_only(fleet.cloud_template, directory)
    url = None
    if config.postgresql:
        if server is None:
            raise BenchError("a PostgreSQL configuration without a server")
        url = server.create_database(config.name.lower().replace("-", "_"))
        migrate = [sys.executable, "-m", "lanesync", "cloud", "migrate", str(cloud_dirs[0])]
        await asyncio.to_thread(
            subprocess.run,
            [*migrate, "--db", url],
            check=True,
            capture_output=True,
            env=child_env(),
        )
    for day in fleet.stores:
        shutil.copytree(day.terminal, root / "terminals" / day.store_id)
    group = ProcessGroup(logs, die_with_parent=True)
    clouds: list[CloudProcess] = []
    uploads: list[UploaderProcess] = []
    probes: list[ApiProbe] = []
    reader: HeadOfficeReader | None = None
    try:
        started = time.monotonic()
        clouds += [start_cloud(group, f"cloud{k}", d, url) for k, d in enumerate(cloud_dirs)]
        listen = [
            await c.ready(max(1.0, started + CLOUD_START_TIMEOUT_S - time.monotonic()))
            for c in clouds
        ]
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
            process = group.spawn(f"uploader{u}", root, ["-m", UPLOADER, spec_file], pipes=True)
            uploads.append(UploaderProcess(process, await LinePipe.open(process)))
        for upload in uploads:
            await upload.line("ready line")
        reader = HeadOfficeReader(cloud_dirs[0] / "headoffice.db", url)
        expected = {day.store_id: day.sales for day in fleet.stores}
        if any(reader.sales_per_store().values()):
            raise BenchError("the head-office tables hold sales before any upload")
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

        for cloud in clouds:
            token = (cloud.directory / "api.token").read_text().strip()
            probes.append(ApiProbe(cloud.api, token))
        sched_before = [schedstat_s(c.process.pid) for c in clouds]
        cpu_before = cpu_now()
        t0 = time.monotonic()
        for upload in uploads:
            await upload.say("go")
        done: dict[str, float] = {}
        watched = [(str(c.log), c.process) for c in clouds]
        watched += [(str(u.log), u.process) for u in uploads]
        while len(done) < len(expected):
            now = time.monotonic() - t0
            if now > INGEST_TIMEOUT_S:
                outcome.problems.append(
                    f"timed out after {INGEST_TIMEOUT_S:.0f} s with {len(done)} stores complete"
                )
                break
            for name, proc in watched:
                if proc.returncode is not None:
                    raise BenchError(f"{name} exited ({proc.returncode}); logs in {logs}")
            for store, count in reader.sales_per_store().items():
                if store not in done and count >= expected.get(store, 0):
                    done[store] = now
            await asyncio.sleep(POLL_INTERVAL_S)
        elapsed = time.monotonic() - t0
        cpu_after = cpu_now()
        sched_after = [schedstat_s(c.process.pid) for c in clouds]
        wall = time.monotonic() - t0
        outcome.cloud_api_max_latency_s = [round(await probe.stop(), 2) for probe in probes]
        probes.clear()
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
        samples = sorted(done.values())
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
        outcome.uploaders = [await u.finish() for u in uploads]
        outcome.problems += check_exact(reader, fleet)
        for figures in outcome.uploaders:
            outcome.problems += [f"uploader storage failure: {f}" for f in figures["fatal"]]
        outcome.exact = not outcome.problems
        return outcome
    finally:
        for probe in probes:
            with contextlib.suppress(BenchError, OSError):  # its cloud died: already reported
                await probe.stop()
        if reader is not None:
            reader.close()
        await asyncio.to_thread(group.close, STOP_TIMEOUT_S)


async def run_study(options: IngestOptions) -> tuple[str, dict[str, Any], bool]:
    """Every configuration: the text to print, results.json, and whether all were exact."""
    from lanesync.bench.studies.ingest_report import figures_of, table

    configs = [Config("SQLite-1", 1, postgresql=False)] if options.sqlite else []
    configs += [Config(f"PG-{p}", p, postgresql=True) for p in options.processes]
    record = StudyRun(
        NAME,
        {
            "stores": options.stores,
            "sales_per_store": options.sales,
            "receipts_per_store": len(SKUS),
            "processes": list(options.processes),
            "uploaders": options.uploaders,
            "sqlite": options.sqlite,
            "poll_interval_s": POLL_INTERVAL_S,
        },
    )
    details: dict[str, Any] = {}
    outcomes: list[IngestRun] = []
    with (
        tempfile.TemporaryDirectory(prefix="lanesync-ingest-", dir=options.workdir) as tmp,
        postgres_server(any(c.postgresql for c in configs)) as server,
    ):
        work = Path(tmp)
        try:
            progress(f"building {options.stores} stores x {options.sales} sales offline")
            fleet = await asyncio.to_thread(
                build_fleet, work / "fleet", options.stores, options.sales
            )
            details["build_s"] = round(fleet.build_s, 1)
            details["reference_merge"] = reference_merge(fleet)
            progress(
                f"built in {fleet.build_s:.1f} s: {fleet.records} records ({fleet.sales} sales); "
                f"reference merge {details['reference_merge']}"
            )
            for config in configs:
                progress(f"{config.name}: starting (load {os.getloadavg()[0]:.2f})")
                try:
                    outcome = await run_configuration(
                        config, fleet, work / "runs", server, options.uploaders
                    )
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    backend = "postgresql" if config.postgresql else "sqlite"
                    outcome = IngestRun(
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
            if options.keep is not None and (work / "runs").exists():
                for logs in (work / "runs").glob("*/logs"):
                    shutil.copytree(logs, options.keep / logs.parent.name, dirs_exist_ok=True)
    details["configurations"] = [asdict(o) for o in outcomes]
    text = table(outcomes, details["reference_merge"]["cpu_s_per_1k_records"])
    lines = [
        f"lanesync cloud ingest: {options.stores} stores x ({options.sales} sales + {len(SKUS)} "
        f"receipts) = {outcomes[0].records if outcomes else 0} records",
        f"reference merge (verify + CRDT + fold, no I/O): {details['reference_merge']}",
        text,
    ]
    lines += [
        f"{o.name}: per cloud process: CPU s {o.cloud_cpu_s_per_process}, run-queue wait s "
        f"{o.cloud_runqueue_s_per_process}, blocked s {o.cloud_blocked_s_per_process}, "
        f"slowest API answer s {o.cloud_api_max_latency_s}, peak RSS MB "
        f"{o.cloud_peak_rss_mb}; load {o.load_before} -> {o.load_after}; "
        f"uplinks closed before the end {[u['uplinks_closed'] for u in o.uploaders]}"
        for o in outcomes
    ]
    systems = tuple(c.name for c in configs)
    results = record.results([figures_of(o) for o in outcomes], systems, {"details": details})
    return "\n".join(lines), results, all(o.exact for o in outcomes)
