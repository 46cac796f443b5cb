"""``lanesync bench cloud-chain``: a chain's cloud, many stores registered and a few hundred
uploading at once, some of them with a big catch-up, against one PostgreSQL (issue #19;
benchmarks/README.md, "cloud-chain", says what every figure means).

The chain is built offline once (``chain_fleet``): ``stores`` registered, the first ``active``
of them with a terminal and a small day of sales, the first ``catchup_stores`` with
``catchup_sales`` instead. Then, for each of ``processes`` (a fresh database of one throwaway
PostgreSQL each, migrated; fresh copies of the terminals), as ``lanesync bench cloud-ingest``
does: the cloud processes start, the uploader processes (``chain_uploader``) open their share of
the active stores, and on ``go`` every active store dials (store i dials process i % P):

1. ingest: the clock runs until the head-office tables (plain SQL, polled) hold every record
   the stores held; the catch-up runs until the catch-up stores' sales are all there. Meanwhile
   every small store, once the cloud acknowledged what it held, sells one sale every
   ``interval_s`` and times its acknowledgement (``chain_uploader``).
2. quiet: the small stores go on selling for ``duration_s`` with no catch-up running.
3. restart (unless skipped): cloud process 0 is stopped with SIGTERM and started again on the
   same port; then the same with SIGKILL. Each time: from the new process's spawn to its
   runtime.json, and to the first sale of one of its stores acknowledged after the spawn.
4. the uploaders stop (waiting for their last acknowledgements); the tables must then hold
   exactly every sale written, offline and live.

Only loopback is used, and nothing starts mDNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.httpio import HttpClient
from lanesync.bench.stats import percentile
from lanesync.bench.studies.chain_fleet import Chain, build_chain, copy_cloud_config
from lanesync.bench.studies.cloud_ingest import (
    CLOUD_START_TIMEOUT_S,
    INGEST_TIMEOUT_S,
    LOOPBACK,
    POLL_INTERVAL_S,
    STOP_TIMEOUT_S,
    CloudProcess,
    UploaderProcess,
    postmaster_pid,
    start_cloud,
)
from lanesync.bench.studies.common import LinePipe, StudyRun, progress
from lanesync.bench.studies.ingest_fleet import Fleet, reference_merge
from lanesync.bench.studies.ingest_procs import (
    HeadOfficeReader,
    check_exact,
    cpu_delta,
    postgres_server,
    status_mb,
    tree_cpu_s,
)
from lanesync.errors import ProcessFailed
from lanesync.tools.pgserver import PostgresServer
from lanesync.tools.procs import ProcessGroup, child_env

NAME = "cloud-chain"
# The chain: 2,000 stores, 200 uploading at once, a few with a 50k-sale catch-up,
# against 1 and 2 cloud processes.
DEFAULT_STORES = 2000
DEFAULT_ACTIVE = 200
DEFAULT_CATCHUP_STORES = 2
DEFAULT_CATCHUP_SALES = 50_000  # the day of a 16-lane store, as in `lanesync bench cloud`
DEFAULT_SALES = 50  # what a small active store holds when it connects
DEFAULT_PROCESSES = (1, 2)
DEFAULT_UPLOADERS = 2  # as cloud-ingest: a few asyncio processes host the stores
DEFAULT_INTERVAL_S = 1.0  # each small store sells once a second (the example)
DEFAULT_DURATION_S = 20.0  # the quiet phase: small uploads with no catch-up running
QUICK = {"stores": 200, "active": 20, "catchup_stores": 1, "catchup_sales": 5000}
QUICK_DURATION_S = 5.0
MERGE_HISTOGRAM = "lanesync_cloud_merge_seconds"  # cloud.metrics: one observation per merge
# The acknowledgement latency's timeline: one entry per this many seconds of commits.
TIMELINE_S = 10.0
# A restarted process must serve an upload within this long, or the phase is a failure.
RESTART_TIMEOUT_S = 60.0
# A process just up is read this long after its runtime.json: its startup over, its tasks idle.
IDLE_S = 0.5
SETTLE_S = 2.0  # after a restart, before the next: the redials are over
# After the uploaders stop, how long the tables may take to hold their last sales.
FINAL_TIMEOUT_S = 120.0
UPLOADER = "lanesync.bench.studies.chain_uploader"


@dataclass(frozen=True, slots=True)
class ChainOptions:
    stores: int = DEFAULT_STORES
    active: int = DEFAULT_ACTIVE
    catchup_stores: int = DEFAULT_CATCHUP_STORES
    catchup_sales: int = DEFAULT_CATCHUP_SALES
    sales: int = DEFAULT_SALES
    processes: tuple[int, ...] = DEFAULT_PROCESSES
    uploaders: int = DEFAULT_UPLOADERS
    interval_s: float = DEFAULT_INTERVAL_S
    duration_s: float = DEFAULT_DURATION_S
    restart: bool = True
    workdir: Path | None = None
    keep: Path | None = None


@dataclass(slots=True)
class ChainRun:
    name: str
    processes: int
    stores: int
    active: int
    records: int  # held by the active stores at ``go``
    exact: bool = False
    problems: list[str] = field(default_factory=list)
    startup_s: float = float("nan")
    # Ingest: ``go`` until the tables hold every record held at ``go``; records counted in the
    # tables then (the live sales that reached them too).
    time_s: float = float("nan")
    records_in_tables: int = 0
    records_per_s: float = float("nan")
    catchup_s: float = float("nan")  # ``go`` until the catch-up stores' sales are all there
    catchup_acked_s: dict[str, float] = field(default_factory=dict)  # as their uploader saw
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_s_per_1k_records: dict[str, float] = field(default_factory=dict)
    cloud_cpu_s_per_process: list[float] = field(default_factory=list)
    # Acknowledgement latency of the live sales, committed while a catch-up ran or not.
    ack_during_catchup_ms: dict[str, float] = field(default_factory=dict)
    ack_without_catchup_ms: dict[str, float] = field(default_factory=dict)
    live_sales: int = 0
    acked_across_restart: int = 0  # committed before the restarts, acknowledged after
    unacked: int = 0
    # Per cloud process: VmRSS once up (every store registered, none resident), VmRSS at the
    # end of the quiet phase (the active stores resident), VmHWM then (the peak).
    rss_idle_mb: list[float] = field(default_factory=list)
    rss_active_mb: list[float] = field(default_factory=list)
    rss_peak_mb: list[float] = field(default_factory=list)
    uplink_drops: int = 0  # before the restart phase
    uplink_drop_reasons: dict[str, int] = field(default_factory=dict)  # of those drops
    # Dials that ended in the handshake, before the cloud was verified (before the restarts).
    handshake_failures: int = 0
    # The live sales' acknowledgement latency by when they were committed: one entry per
    # TIMELINE_S seconds after ``go`` (until the restarts).
    ack_timeline: list[dict[str, float]] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    # Per cloud process, before the restarts: its merges and how many were slow.
    merges: list[dict[str, float]] = field(default_factory=list)
    uploaders: list[dict[str, Any]] = field(default_factory=list)
    load_before: list[float] = field(default_factory=list)
    load_after: list[float] = field(default_factory=list)


def distribution_ms(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"count": 0}
    ordered = sorted(samples)
    return {
        "count": len(ordered),
        "p50": round(percentile(ordered, 50) * 1000, 1),
        "p99": round(percentile(ordered, 99) * 1000, 1),
        "max": round(ordered[-1] * 1000, 1),
    }


class AckLog:
    """The uploaders' acks files, read as they grow."""

    def __init__(self, files: list[Path]) -> None:
        self._offsets = dict.fromkeys(files, 0)
        self.lines: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        """The lines written since the last call (whole lines only)."""
        new = []
        for path, offset in self._offsets.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            new += [json.loads(line) for line in data[:end].splitlines() if line]
        self.lines += new
        return new


async def migrated_database(server: PostgresServer, name: str, cloud_dir: Path) -> str:
    url = server.create_database(name)
    migrate = [sys.executable, "-m", "lanesync", "cloud", "migrate", str(cloud_dir), "--db", url]
    await asyncio.to_thread(
        subprocess.run, migrate, check=True, capture_output=True, env=child_env()
    )
    return url


async def idle_rss(chain: Chain, work: Path, url: str, registered: int) -> dict[str, float]:
    """One cloud process with ``registered`` of the chain's stores and none resident: its
    resident set once up, and how long it took to come up."""
    root = work / f"idle-{registered}"
    only = None if registered == chain.registered else [d.store_id for d in chain.fleet.stores]
    copy_cloud_config(chain.fleet.cloud_template, root / "cloud", only)
    group = ProcessGroup(root / "logs", die_with_parent=True)
    try:
        started = time.monotonic()
        cloud = start_cloud(group, "cloud", root / "cloud", url)
        await cloud.ready(CLOUD_START_TIMEOUT_S)
        ready_s = time.monotonic() - started
        await asyncio.sleep(IDLE_S)
        return {
            "registered": registered,
            "ready_s": round(ready_s, 2),
            "rss_mb": round(status_mb(cloud.process.pid, "VmRSS"), 1),
        }
    finally:
        await asyncio.to_thread(group.close, STOP_TIMEOUT_S)


def with_live_sales(fleet: Fleet, sold: dict[str, list[int]]) -> Fleet:
    """The fleet as the tables must hold it: the live sales added to each store's day."""
    days = [
        replace(
            d,
            sales=d.sales + sold.get(d.store_id, [0, 0])[0],
            total_cents=d.total_cents + sold.get(d.store_id, [0, 0])[1],
        )
        for d in fleet.stores
    ]
    return Fleet(fleet.cloud_template, days, fleet.build_s)


async def wait_served(
    acks: AckLog, stores: set[str], since: float, within_s: float
) -> float | None:
    """The time (``time.time()``) of the first acknowledgement after ``since`` of a sale of one
    of ``stores``, or None if none came within ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        for line in acks.read():
            if "ack" in line and line["store"] in stores and line["ack"] > since:
                return float(line["ack"])
        await asyncio.sleep(0.02)
    return None


def first_hello(log: Path) -> float | None:
    """When (``time.time()``) a cloud process first opened a store for a leader's hello: the
    first uplink it took (its JSON log's ``store.opened ... reason=hello``)."""
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            message = str(entry.get("msg", "")) if isinstance(entry, dict) else ""
            if message.startswith("store.opened") and "reason=hello" in message:
                return float(entry["ts"])
    return None


async def merge_histogram(cloud: CloudProcess) -> dict[str, float]:
    """The process's ``lanesync_cloud_merge_seconds`` histogram (its ``/metrics``: every batch
    of leaders' records it merged, verified, committed and projected): how many, their total
    time, and how many took longer than 1, 5 and 15 s (bucket bounds of ``MERGE_BUCKETS_S``)."""
    client = HttpClient(cloud.api, (cloud.directory / "api.token").read_text().strip())
    try:
        response = await client.request("GET", "/metrics")
    finally:
        client.close()
    if response.status != 200:
        raise BenchError(f"{cloud.api}/metrics answered {response.status}")
    text = bytes(response.body).decode()
    buckets: dict[str, float] = {}
    figures: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith(f'{MERGE_HISTOGRAM}_bucket{{le="'):
            buckets[name.split('"')[1]] = float(value)
        elif name in (f"{MERGE_HISTOGRAM}_count", f"{MERGE_HISTOGRAM}_sum"):
            figures[name.rsplit("_", 1)[1]] = float(value)
    count = figures.get("count", 0.0)
    return {
        "merges": count,
        "seconds": round(figures.get("sum", 0.0), 2),
        **{f"over_{b}_s": count - buckets.get(f"{b}.0", count) for b in (1, 5, 15)},
    }


async def restart_phase(
    group: ProcessGroup, clouds: list[CloudProcess], acks: AckLog, stores: set[str]
) -> list[dict[str, Any]]:
    """Cloud process 0 stopped (SIGTERM, then SIGKILL) and started again on its port."""
    results: list[dict[str, Any]] = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if results:
            await asyncio.sleep(SETTLE_S)
        old = clouds[0]
        port = old.listen.rsplit(":", 1)[1]
        args = list(old.process.args)
        args[args.index("--listen") + 1] = f"{LOOPBACK}:{port}"
        acks.read()  # what came before is not the new process's
        stopping = time.monotonic()
        try:
            new_proc = await asyncio.to_thread(
                group.restart, old.process, kill=sig == signal.SIGKILL, args=args
            )
        except ProcessFailed as exc:  # it ignored SIGTERM (and was killed)
            raise BenchError(str(exc).splitlines()[0]) from None
        stopped_s = new_proc.started - stopping
        spawned = new_proc.started_ns / 1e9
        clouds[0] = CloudProcess(old.directory, new_proc)
        await clouds[0].ready(CLOUD_START_TIMEOUT_S)
        ready_s = time.monotonic() - new_proc.started
        served = await wait_served(acks, stores, spawned, RESTART_TIMEOUT_S)
        hello = first_hello(clouds[0].log)
        result = {
            "signal": signal.Signals(sig).name,
            "old_process_exit_s": round(stopped_s, 3),
            "spawn_to_ready_s": round(ready_s, 3),
            "spawn_to_first_hello_s": None if hello is None else round(hello - spawned, 3),
            "spawn_to_first_upload_served_s": (
                None if served is None else round(served - spawned, 3)
            ),
        }
        results.append(result)
        progress(f"restart ({result['signal']}): {result}")
    return results


async def run_configuration(
    processes: int, chain: Chain, work: Path, server: PostgresServer, options: ChainOptions
) -> ChainRun:
    name = f"PG-{processes}"
    fleet = chain.fleet
    root = work / name
    logs = root / "logs"
    logs.mkdir(parents=True)
    outcome = ChainRun(name, processes, chain.registered, len(fleet.stores), fleet.records)
    cloud_dirs = [root / f"cloud{k}" for k in range(processes)]
    for directory in cloud_dirs:
        copy_cloud_config(fleet.cloud_template, directory)
    url = await migrated_database(server, name.lower().replace("-", "_"), cloud_dirs[0])
    for day in fleet.stores:
        shutil.copytree(day.terminal, root / "terminals" / day.store_id)
    group = ProcessGroup(logs, die_with_parent=True)
    clouds: list[CloudProcess] = []
    uploads: list[UploaderProcess] = []
    reader: HeadOfficeReader | None = None
    try:
        started = time.monotonic()
        clouds += [start_cloud(group, f"cloud{k}", d, url) for k, d in enumerate(cloud_dirs)]
        listen = [
            await c.ready(max(1.0, started + CLOUD_START_TIMEOUT_S - time.monotonic()))
            for c in clouds
        ]
        outcome.startup_s = round(time.monotonic() - started, 2)
        await asyncio.sleep(IDLE_S)
        outcome.rss_idle_mb = [round(status_mb(c.process.pid, "VmRSS"), 1) for c in clouds]
        progress(f"{name}: up in {outcome.startup_s} s, RSS MB {outcome.rss_idle_mb}")
        ack_files = [root / f"acks{u}.jsonl" for u in range(options.uploaders)]
        for u in range(options.uploaders):
            spec = {
                "interval_s": options.interval_s,
                "acks": str(ack_files[u]),
                "stores": [
                    {
                        "store_id": day.store_id,
                        "terminal": str(root / "terminals" / day.store_id),
                        "url": listen[i % processes],
                        "ticks": day.store_id not in chain.catchup,
                    }
                    for i, day in enumerate(fleet.stores)
                    if i % options.uploaders == u
                ],
            }
            spec_file = root / f"uploader{u}.json"
            spec_file.write_text(json.dumps(spec, indent=1))
            process = group.spawn(f"uploader{u}", root, ["-m", UPLOADER, spec_file], pipes=True)
            uploads.append(UploaderProcess(process, await LinePipe.open(process)))
        for upload in uploads:
            await upload.line("ready line")
        reader = HeadOfficeReader(None, url)
        acks = AckLog(ack_files)
        if any(reader.sales_per_store().values()):
            raise BenchError("the head-office tables hold sales before any upload")
        outcome.load_before = [round(x, 2) for x in os.getloadavg()]
        pg_pid = postmaster_pid(server)

        def cpu_now() -> dict[str, dict[int, float]]:
            return {
                "cloud": {c.process.pid: tree_cpu_s(c.process.pid)[c.process.pid] for c in clouds},
                "uploaders": {
                    u.process.pid: tree_cpu_s(u.process.pid)[u.process.pid] for u in uploads
                },
                "postgresql": tree_cpu_s(pg_pid),
                "poller": {os.getpid(): time.process_time()},
            }

        def check_alive() -> None:
            for proc in [c.process for c in clouds] + [u.process for u in uploads]:
                if proc.returncode is not None:
                    raise BenchError(f"{proc.name} exited ({proc.returncode}); logs in {logs}")

        # 1. ingest, the catch-up among it.
        expected = {day.store_id: day.sales for day in fleet.stores}
        cpu_before = cpu_now()
        t0, go = time.monotonic(), time.time()
        for upload in uploads:
            await upload.say("go")
        done: set[str] = set()
        catchup_done: float | None = None
        while len(done) < len(expected):
            if time.monotonic() - t0 > INGEST_TIMEOUT_S:
                raise BenchError(f"ingest not done after {INGEST_TIMEOUT_S:.0f} s")
            check_alive()
            counts = reader.sales_per_store()
            done |= {s for s, n in counts.items() if n >= expected.get(s, 0)}
            if catchup_done is None and chain.catchup <= done:
                catchup_done = time.monotonic() - t0
                progress(f"{name}: the catch-up is in the tables after {catchup_done:.1f} s")
            await asyncio.sleep(POLL_INTERVAL_S)
        elapsed = time.monotonic() - t0
        cpu_after = cpu_now()
        (sales_rows,) = reader.rows("SELECT COUNT(*) FROM sales")[0]
        (receipts,) = reader.rows("SELECT COUNT(*) FROM stock_movements WHERE kind = 'receipt'")[0]
        outcome.records_in_tables = int(sales_rows) + int(receipts)
        outcome.time_s = round(elapsed, 2)
        outcome.records_per_s = round(outcome.records_in_tables / elapsed, 1)
        outcome.catchup_s = round(catchup_done if catchup_done is not None else elapsed, 2)
        catchup_end = go + outcome.catchup_s
        outcome.cpu_s = {
            part: round(cpu_delta(cpu_before[part], cpu_after[part]), 2) for part in cpu_before
        }
        outcome.cloud_cpu_s_per_process = [
            round(cpu_after["cloud"][pid] - cpu_before["cloud"][pid], 2)
            for pid in cpu_after["cloud"]
        ]
        outcome.cpu_s_per_1k_records = {
            part: round(cpu / outcome.records_in_tables * 1000, 3)
            for part, cpu in outcome.cpu_s.items()
        }
        progress(f"{name}: ingest {outcome.records_per_s:,.0f} records/s in {elapsed:.1f} s")
        # 2. quiet: live sales with no catch-up running.
        quiet_end = time.monotonic() + options.duration_s
        while time.monotonic() < quiet_end:
            check_alive()
            acks.read()
            await asyncio.sleep(POLL_INTERVAL_S)
        outcome.rss_active_mb = [round(status_mb(c.process.pid, "VmRSS"), 1) for c in clouds]
        outcome.rss_peak_mb = [round(status_mb(c.process.pid, "VmHWM"), 1) for c in clouds]
        outcome.merges = [await merge_histogram(c) for c in clouds]
        restart_from = time.time()
        # 3. restarts.
        if options.restart:
            served_by_0 = {d.store_id for i, d in enumerate(fleet.stores) if i % processes == 0}
            outcome.restarts = await restart_phase(group, clouds, acks, served_by_0)
            for result in outcome.restarts:
                if result["spawn_to_first_upload_served_s"] is None:
                    outcome.problems.append(
                        f"no upload served within {RESTART_TIMEOUT_S:.0f} s of the restart "
                        f"after {result['signal']}"
                    )
        # 4. the end: every sale, offline and live, exactly once in the tables.
        outcome.uploaders = [await u.finish() for u in uploads]
        outcome.load_after = [round(x, 2) for x in os.getloadavg()]
        acks.read()
        sold: dict[str, list[int]] = {}
        for figures in outcome.uploaders:
            sold.update(figures["sold"])
            outcome.unacked += figures["unacked"]
            outcome.problems += [f"uploader storage failure: {f}" for f in figures["fatal"]]
            for when, reason in figures["uplinks_closed_at"]:
                if when < restart_from:
                    outcome.uplink_drops += 1
                    reasons = outcome.uplink_drop_reasons
                    reasons[reason] = reasons.get(reason, 0) + 1
            for when in figures["unverified_closed_at"]:
                outcome.handshake_failures += when < restart_from
        if outcome.unacked:
            outcome.problems.append(f"{outcome.unacked} live sales never acknowledged")
        final = with_live_sales(fleet, sold)
        want = {d.store_id: d.sales for d in final.stores}
        deadline = time.monotonic() + FINAL_TIMEOUT_S
        while time.monotonic() < deadline:
            counts = reader.sales_per_store()
            if all(counts.get(s, 0) >= n for s, n in want.items()):
                break
            await asyncio.sleep(POLL_INTERVAL_S)
        outcome.problems += check_exact(reader, final)
        outcome.exact = not outcome.problems
        # The live sales' acknowledgements, by what ran when they were committed.
        during: list[float] = []
        without: list[float] = []
        timeline: dict[int, list[float]] = {}
        for line in acks.lines:
            if "caught_up" in line and line["store"] in chain.catchup:
                outcome.catchup_acked_s[line["store"]] = round(line["caught_up"] - go, 2)
            elif "commit" in line and line["ack"] < restart_from:
                latency = line["ack"] - line["commit"]
                (during if line["commit"] <= catchup_end else without).append(latency)
                timeline.setdefault(int((line["commit"] - go) // TIMELINE_S), []).append(latency)
            elif "commit" in line and line["commit"] < restart_from:
                outcome.acked_across_restart += 1  # its wait includes the restart: not counted
        outcome.live_sales = sum(n for n, _ in sold.values())
        outcome.ack_during_catchup_ms = distribution_ms(during)
        outcome.ack_without_catchup_ms = distribution_ms(without)
        outcome.ack_timeline = [
            {"from_s": k * TIMELINE_S, **distribution_ms(v)} for k, v in sorted(timeline.items())
        ]
        return outcome
    finally:
        if reader is not None:
            reader.close()
        await asyncio.to_thread(group.close, STOP_TIMEOUT_S)


async def run_study(options: ChainOptions) -> tuple[str, dict[str, Any], bool]:
    """Every configuration: the text to print, results.json, and whether all were exact."""
    from lanesync.bench.studies.chain_report import figures_of, table

    record = StudyRun(
        NAME,
        {
            "stores": options.stores,
            "active": options.active,
            "catchup_stores": options.catchup_stores,
            "catchup_sales": options.catchup_sales,
            "sales_per_small_store": options.sales,
            "processes": list(options.processes),
            "uploaders": options.uploaders,
            "interval_s": options.interval_s,
            "duration_s": options.duration_s,
            "restart": options.restart,
            "poll_interval_s": POLL_INTERVAL_S,
        },
    )
    details: dict[str, Any] = {}
    outcomes: list[ChainRun] = []
    with (
        tempfile.TemporaryDirectory(prefix="lanesync-chain-", dir=options.workdir) as tmp,
        postgres_server(True) as server,
    ):
        if server is None:
            raise BenchError("cloud-chain needs PostgreSQL")
        work = Path(tmp)
        try:
            progress(
                f"building {options.stores} stores, {options.active} active, "
                f"{options.catchup_stores} x {options.catchup_sales} catch-up sales"
            )
            chain = await asyncio.to_thread(
                build_chain,
                work / "fleet",
                options.stores,
                options.active,
                options.catchup_stores,
                options.catchup_sales,
                options.sales,
            )
            details["build_s"] = {
                "register": round(chain.register_s, 2),
                "write": round(chain.write_s, 2),
                "register_per_store_ms": round(chain.register_s / chain.registered * 1000, 2),
            }
            sample = Fleet(chain.fleet.cloud_template, chain.small[:4] + chain.big[:1], 0.0)
            details["reference_merge"] = await asyncio.to_thread(reference_merge, sample)
            progress(f"built {details['build_s']}; reference merge {details['reference_merge']}")
            copy_cloud_config(chain.fleet.cloud_template, work / "idle" / "migrate", only=())
            idle_url = await migrated_database(server, "idle", work / "idle" / "migrate")
            details["idle_rss"] = [
                await idle_rss(chain, work / "idle", idle_url, n)
                for n in sorted({len(chain.fleet.stores), chain.registered})
            ]
            progress(f"idle cloud process: {details['idle_rss']}")
            for processes in options.processes:
                progress(f"PG-{processes}: starting (load {os.getloadavg()[0]:.2f})")
                try:
                    outcome = await run_configuration(
                        processes, chain, work / "runs", server, options
                    )
                except (BenchError, OSError, subprocess.SubprocessError) as exc:
                    outcome = ChainRun(
                        f"PG-{processes}",
                        processes,
                        chain.registered,
                        len(chain.fleet.stores),
                        chain.fleet.records,
                        problems=[f"failed: {exc}"],
                    )
                outcomes.append(outcome)
                progress(
                    f"{outcome.name}: exact {outcome.exact} {outcome.problems[:3]}; acks during "
                    f"{outcome.ack_during_catchup_ms}, without {outcome.ack_without_catchup_ms}"
                )
        finally:
            if options.keep is not None and (work / "runs").exists():
                for logs in (work / "runs").glob("*/logs"):
                    shutil.copytree(logs, options.keep / logs.parent.name, dirs_exist_ok=True)
    details["configurations"] = [asdict(o) for o in outcomes]
    lines = [
        f"lanesync cloud chain: {options.stores} stores registered, {options.active} active "
        f"({options.catchup_stores} with {options.catchup_sales} sales, the others "
        f"{options.sales}), {chain.fleet.records} records held at go",
        f"built offline: {details['build_s']}; reference merge: {details['reference_merge']}",
        "idle cloud process (none resident): "
        + ", ".join(f"{r['registered']} registered {r['rss_mb']} MB" for r in details["idle_rss"]),
        table(outcomes, details["reference_merge"]["cpu_s_per_1k_records"]),
    ]
    lines += [
        f"{o.name}: restarts {o.restarts}; catch-up acknowledged (s) {o.catchup_acked_s}; "
        f"ack ms p50/p99 by commit time after go (per {TIMELINE_S:.0f} s) "
        f"{[(t['from_s'], t.get('p50'), t.get('p99')) for t in o.ack_timeline]}; "
        f"dials ended in the handshake {o.handshake_failures}; merges {o.merges}; "
        f"CPU s {o.cpu_s}; per process {o.cloud_cpu_s_per_process}; drop reasons "
        f"{o.uplink_drop_reasons}; load {o.load_before} -> {o.load_after}"
        for o in outcomes
    ]
    systems = tuple(o.name for o in outcomes)
    results = record.results([figures_of(o) for o in outcomes], systems, {"details": details})
    return "\n".join(lines), results, bool(outcomes) and all(o.exact for o in outcomes)
