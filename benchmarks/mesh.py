"""Convergence benchmark: lanesync's peer mesh against pycrdt-websocket, in one run.

Run ``.venv/bin/python benchmarks/mesh.py [--lanes N] [--rate R] [--duration S] [--json OUT]
[--quick]``; benchmarks/README.md says what every figure means.

Every lane is its own process (benchmarks/lane_driver.py) on 127.0.0.1. A lanesync lane runs
the real daemon (``lanesync run DIR --listen 127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``:
durable SQLite commit, record verification, frame encryption) and writes its sales through the
daemon's group committer; the lanes form a full mesh (each dials the lanes after it). The
baseline is a pycrdt-websocket server (a star relay, no signing, no durability) with one
pycrdt ``Provider`` client process per lane writing sales of the same size into a Map.

Each process logs, on one shared clock (``time.time_ns``), when each of its sales was
acknowledged and when each sale of another lane became visible to it; the benchmark joins the
logs: propagation latency = visible on the receiving lane - acknowledged on the selling lane.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import pstats
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any, Literal

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.faultproxy import FaultLink

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "lane_driver.py"
LOOPBACK = "127.0.0.1"
System = Literal["lanesync", "pycrdt"]

# Store-wide sales/s tried in turn, upwards, until a rate is not kept up (twice in a row).
LADDER = (200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
QUICK_LADDER = (200, 500, 1000, 2000)
KEEP_UP_S = 1.0  # the issue: converged within 1 s of the last sale, and p99 under 1 s
SETTLE_TIMEOUT_S = 30.0  # a step that has not converged by then is abandoned
ACK_SETTLE_S = 0.4  # after convergence, let the delayed acks (node.ACK_DELAY_MS) go out
START_DELAY_S = 0.3  # every lane starts a step at the same instant, this far in the future
WARMUP_S = 1.0
SPLIT_SALES = 10_000
SPLIT_RATE = 5_000  # sales/s asked of the lone selling lane during the split (as fast as it can)
SPLIT_WARM_SALES = 20
READY_TIMEOUT_S = 90.0
CALL_TIMEOUT_S = 120.0
POLL_S = 0.05
IDLE_LOAD = 1.0  # 1-minute load average under which the machine counts as quiet
IDLE_POLL_S = 10.0
IDLE_BUSY_CORES = 0.2
BUSY_OTHER_CORES = 0.25  # other people's work above this during a step taints its figures
PROFILE_TOP = 25

# The issue's targets (2-core machine, 8 lanes as 8 processes, everything on).
TARGET_LATENCY_RATIO = 0.7
TARGET_RATE = 1_500
TARGET_RATE_RATIO = 2.0
TARGET_WIRE_BYTES = 350
TARGET_CATCH_UP_S = 3.0


class BenchError(Exception):
    """The benchmark could not measure what it was asked to (not a slow result: a broken run)."""


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(samples: Sequence[float], p: float) -> float:
    """Linear interpolation between closest ranks; ``samples`` must be sorted."""
    if not samples:
        return math.nan
    k = (len(samples) - 1) * p / 100
    low = math.floor(k)
    high = min(low + 1, len(samples) - 1)
    return samples[low] + (samples[high] - samples[low]) * (k - low)


# -- driver processes ----------------------------------------------------------------------------

_LIVE: dict[int, asyncio.subprocess.Process] = {}  # by pid; killed on any exit path (main)


@dataclass
class Proc:
    """One driver process and its command pipe."""

    name: str
    process: asyncio.subprocess.Process
    log: Path
    ready: dict[str, Any]
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def call(self, cmd: str, wait_s: float = CALL_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        stdin, stdout = self.process.stdin, self.process.stdout
        if stdin is None or stdout is None:
            raise BenchError(f"{self.name}: no command pipe")
        async with self._lock:
            request = {"id": next(self._ids), "cmd": cmd, **fields}
            try:
                stdin.write(json.dumps(request).encode() + b"\n")
                await stdin.drain()
                line = await asyncio.wait_for(stdout.readline(), wait_s)
            except (ConnectionError, TimeoutError) as exc:
                raise BenchError(f"{self.name}: {cmd} failed ({exc!r}); see {self.log}") from exc
        if not line:
            raise BenchError(f"{self.name} exited during {cmd}; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {cmd}: {reply['error']}; see {self.log}")
        return reply

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(BenchError):
                await self.call("quit", wait_s=10)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        _LIVE.pop(self.process.pid, None)


async def spawn(name: str, args: Sequence[str], logs: Path) -> Proc:
    log = logs / f"{name}.log"
    with log.open("wb") as err:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(DRIVER),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            limit=1 << 20,
        )
    _LIVE[process.pid] = process
    proc = Proc(name, process, log, {})
    if process.stdout is None:
        raise BenchError(f"{name}: no stdout pipe")
    try:
        line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT_S)
    except TimeoutError:
        line = b""
    if not line:
        await proc.stop()
        raise BenchError(f"{name} did not start; see {log}")
    proc.ready = json.loads(line)
    return proc


async def stop_all(procs: Iterable[Proc]) -> None:
    await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)


def kill_leftovers() -> None:
    """SIGKILL every driver not yet stopped (works after the event loop is gone too)."""
    for pid, process in list(_LIVE.items()):
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _LIVE.pop(pid, None)


# -- one system (a set of lanes and, for pycrdt, its server) -------------------------------------


@dataclass
class Fleet:
    system: System
    lanes: list[Proc]
    server: Proc | None = None

    @property
    def procs(self) -> list[Proc]:
        return [*self.lanes, *([self.server] if self.server else [])]

    async def statuses(self) -> dict[str, dict[str, Any]]:
        replies = await asyncio.gather(*(p.call("status") for p in self.procs))
        return {p.name: r for p, r in zip(self.procs, replies, strict=True)}

    def missing(self, statuses: dict[str, dict[str, Any]]) -> int:
        """Sales some lane has not yet received (sum over receiving lanes)."""
        sent = {lane.name: int(statuses[lane.name]["sent"]) for lane in self.lanes}
        return sum(
            max(0, count - int(statuses[lane.name]["have"].get(sender, 0)))
            for lane in self.lanes
            for sender, count in sent.items()
            if sender != lane.name
        )

    async def wait_converged(self, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while True:
            if self.missing(await self.statuses()) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def wait_links(self, procs: Sequence[Proc], links: int, limit_s: float = 30) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            replies = await asyncio.gather(*(p.call("status") for p in procs))
            if all(r["links"] == links for r in replies):
                return
            if time.monotonic() > deadline:
                got = {p.name: r["links"] for p, r in zip(procs, replies, strict=True)}
                raise BenchError(f"{self.system}: lanes did not reach {links} links: {got}")
            await asyncio.sleep(POLL_S)

    async def collect(self, where: Path) -> dict[str, dict[str, Any]]:
        paths = {lane.name: where / f"collect-{lane.name}.json" for lane in self.lanes}
        await asyncio.gather(
            *(lane.call("collect", path=str(paths[lane.name])) for lane in self.lanes)
        )
        out = {}
        for name, path in paths.items():
            out[name] = json.loads(path.read_text())
            path.unlink()
        return out

    async def load(
        self, rate: float, duration: float, lanes: Sequence[Proc] | None = None
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """Every given lane sells at its share of ``rate`` for ``duration`` s, all starting
        together, evenly interleaved. Returns (start_ns, scheduled end_ns, replies)."""
        lanes = list(lanes or self.lanes)
        share = rate / len(lanes)
        count = max(1, round(share * duration))
        start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
        replies = await asyncio.gather(
            *(
                lane.call(
                    "load",
                    wait_s=duration + CALL_TIMEOUT_S,
                    rate=share,
                    count=count,
                    start_ns=start_ns,
                    phase=i / len(lanes),
                )
                for i, lane in enumerate(lanes)
            )
        )
        end_ns = start_ns + int((count - 1 + (len(lanes) - 1) / len(lanes)) / share * 1e9)
        return start_ns, end_ns, list(replies)


# -- one measured step ---------------------------------------------------------------------------


@dataclass
class Step:
    system: str
    label: str
    rate: float
    lanes: int
    duration_s: float
    sales: int = 0
    failed_writes: int = 0
    generator_late_ms: float = 0.0
    pairs_expected: int = 0
    pairs_received: int = 0
    converged_after_s: float | None = None  # last arrival - scheduled last sale
    settled: bool = False
    latency_ms: dict[str, float] = field(default_factory=dict)  # p50 p90 p99 max
    durable_latency_ms: dict[str, float] = field(default_factory=dict)
    ack_ms: dict[str, float] = field(default_factory=dict)  # issue -> acknowledged
    end_to_end_ms: dict[str, float] = field(default_factory=dict)  # issue -> visible elsewhere
    wire_bytes_per_sale_receiver: float = math.nan
    payload_bytes_per_sale_receiver: float = math.nan
    wire_bytes_total: int = 0
    cpu_s: float = 0.0
    cpu_ms_per_sale: float = math.nan
    cpu_cores_busy: float = math.nan
    window_s: float = 0.0
    # lanesync: share of each lane's wall time its event loop spent inside SQLite commits and
    # compactions (fsync included), averaged over lanes; and commits per lane per second.
    storage_busy: float = math.nan
    storage_calls_per_lane_s: float = math.nan
    # Share of wall time the processes' event loops were runnable but waiting for a core
    # (/proc/self/schedstat), averaged over processes: the machine was oversubscribed.
    runqueue_wait: float = math.nan
    # CPU the rest of the machine used meanwhile (other people's work), in cores.
    other_cores: float = math.nan
    keeps_up: bool = False
    why_not: str = ""


def summary(samples_ns: list[int]) -> dict[str, float]:
    if not samples_ns:
        return {}
    ordered = sorted(samples_ns)
    ms = [s / 1e6 for s in ordered]
    return {
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": ms[-1],
        "n": len(ms),
    }


def analyse(
    step: Step,
    data: dict[str, dict[str, Any]],
    end_ns: int,
    before: dict[str, dict[str, Any]],
    after: dict[str, dict[str, Any]],
) -> None:
    """Join the lanes' logs into the step's figures (in place)."""
    ack: dict[str, dict[int, int]] = {}  # sender -> seq -> acknowledged (durable on lanesync)
    issue: dict[str, dict[int, int]] = {}
    acked: dict[str, dict[int, int]] = {}
    for lane, logs in data.items():
        issue[lane] = {seq: issued for seq, issued, _ in logs["sends"]}
        acked[lane] = {seq: done for seq, _, done in logs["sends"]}
        commits: dict[int, int] = {}
        for first, last, at in logs["commits"]:
            for seq in range(first, last + 1):
                commits[seq] = at
        ack[lane] = {seq: commits.get(seq, acked[lane][seq]) for seq in issue[lane]}
    receivers = len(data) - 1
    step.sales = sum(len(s) for s in issue.values())
    step.pairs_expected = step.sales * receivers

    def join(kind: str) -> tuple[list[int], list[int], int]:
        latencies: list[int] = []
        end_to_end: list[int] = []
        last = 0
        for receiver, logs in data.items():
            for sender, first, final, at in logs.get(kind) or []:
                sent = ack.get(sender)
                if sent is None or sender == receiver:
                    continue
                for seq in range(first, final + 1):
                    t = sent.get(seq)
                    if t is not None:
                        latencies.append(at - t)
                        end_to_end.append(at - issue[sender][seq])
                        last = max(last, at)
        return latencies, end_to_end, last

    latencies, end_to_end, last = join("accepted")
    step.pairs_received = len(latencies)
    step.latency_ms = summary(latencies)
    step.end_to_end_ms = summary(end_to_end)
    step.converged_after_s = (last - end_ns) / 1e9 if latencies else None
    if any("durable" in logs for logs in data.values()):
        step.durable_latency_ms = summary(join("durable")[0])
    step.ack_ms = summary([acked[s][q] - issue[s][q] for s in issue for q in issue[s]])
    wire = sum(after[p]["wire_out"] - before[p]["wire_out"] for p in after)
    payload = sum(after[p]["payload_out"] - before[p]["payload_out"] for p in after)
    step.wire_bytes_total = wire
    if step.pairs_expected:
        step.wire_bytes_per_sale_receiver = wire / step.pairs_expected
        step.payload_bytes_per_sale_receiver = payload / step.pairs_expected
    step.cpu_s = sum(after[p]["cpu_s"] - before[p]["cpu_s"] for p in after)
    if step.sales:
        step.cpu_ms_per_sale = step.cpu_s / step.sales * 1e3
    if step.window_s:
        step.cpu_cores_busy = step.cpu_s / step.window_s
        waited = sum(after[p]["runq_s"] - before[p]["runq_s"] for p in after)
        step.runqueue_wait = waited / (len(after) * step.window_s)
        lanes = [p for p in after if "storage_s" in after[p]]
        if lanes:
            spent = sum(
                after[p]["storage_s"].get(k, 0.0) - before[p]["storage_s"].get(k, 0.0)
                for p in lanes
                for k in after[p]["storage_s"]
            )
            calls = sum(
                after[p]["storage_calls"].get(k, 0) - before[p]["storage_calls"].get(k, 0)
                for p in lanes
                for k in after[p]["storage_calls"]
            )
            step.storage_busy = spent / (len(lanes) * step.window_s)
            step.storage_calls_per_lane_s = calls / (len(lanes) * step.window_s)
    reasons = []
    if step.failed_writes:
        reasons.append(f"{step.failed_writes} writes failed")
    if step.pairs_received < step.pairs_expected:
        reasons.append(f"{step.pairs_expected - step.pairs_received} deliveries missing")
    elif step.converged_after_s is not None and step.converged_after_s > KEEP_UP_S:
        reasons.append(f"converged {step.converged_after_s:.2f} s after the last sale")
    if step.latency_ms and step.latency_ms["p99"] >= KEEP_UP_S * 1e3:
        reasons.append(f"p99 {step.latency_ms['p99']:.0f} ms")
    step.keeps_up = not reasons and step.sales > 0
    step.why_not = "; ".join(reasons)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat, all cores)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return math.nan
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # minus idle, iowait


async def measure(fleet: Fleet, rate: float, duration: float, label: str, work: Path) -> Step:
    step = Step(fleet.system, label, rate, len(fleet.lanes), duration)
    before = await fleet.statuses()
    busy0, own0 = machine_busy_s(), time.process_time()
    t0 = time.monotonic()
    _, end_ns, replies = await fleet.load(rate, duration)
    step.failed_writes = sum(r["failed"] for r in replies)
    step.generator_late_ms = max(r["late_s"] for r in replies) * 1e3
    step.settled = await fleet.wait_converged(SETTLE_TIMEOUT_S)
    await asyncio.sleep(ACK_SETTLE_S)
    after = await fleet.statuses()
    step.window_s = time.monotonic() - t0
    busy, own = machine_busy_s() - busy0, time.process_time() - own0
    analyse(step, await fleet.collect(work), end_ns, before, after)
    step.other_cores = max(0.0, busy - own - step.cpu_s) / step.window_s
    if not step.settled:
        step.keeps_up = False
        step.why_not = step.why_not or "did not converge"
        progress(f"  {fleet.system}: not converged after {SETTLE_TIMEOUT_S:.0f} s; waiting more")
        if not await fleet.wait_converged(4 * SETTLE_TIMEOUT_S):
            raise BenchError(f"{fleet.system} never converged after the {rate:.0f}/s step")
        await fleet.collect(work)  # late arrivals belong to no later step
    lat = step.latency_ms
    sqlite = "" if math.isnan(step.storage_busy) else f"loops in SQLite {step.storage_busy:.0%}, "
    progress(
        f"  {fleet.system} {label} {rate:.0f}/s: {step.sales} sales, "
        f"p50 {lat.get('p50', math.nan):.2f} ms p99 {lat.get('p99', math.nan):.2f} ms, "
        f"converged +{step.converged_after_s or math.nan:.3f} s, "
        f"{step.wire_bytes_per_sale_receiver:.0f} B/sale/receiver, "
        f"CPU {step.cpu_cores_busy:.2f} cores, {sqlite}"
        f"waiting for a core {step.runqueue_wait:.0%}, other work {step.other_cores:.2f} cores -> "
        f"{'keeps up' if step.keeps_up else step.why_not}"
    )
    return step


@dataclass
class Ladder:
    steps: list[Step] = field(default_factory=list)
    highest_kept: float = 0.0
    first_failed: float | None = None


async def climb(
    fleets: dict[str, Fleet], rates: Sequence[float], duration: float, root: Path
) -> dict[str, Ladder]:
    """Every system up the same ladder of rates, their steps alternating, so both meet the same
    machine (other people's work comes and goes); a system stops at the first rate it does not
    keep up twice in a row (the retry absorbs one hiccup). The first rate is the latency step."""
    ladders = {name: Ladder() for name in fleets}
    climbing = list(fleets)
    for i, rate in enumerate(rates):
        for name in list(climbing):
            fleet, ladder = fleets[name], ladders[name]
            label = "latency" if i == 0 else "ladder"
            step = await measure(fleet, rate, duration, label, root / name)
            ladder.steps.append(step)
            if not step.keeps_up:
                step = await measure(fleet, rate, duration, f"{label}-retry", root / name)
                ladder.steps.append(step)
            if step.keeps_up:
                ladder.highest_kept = rate
            else:
                ladder.first_failed = rate
                climbing.remove(name)
        if not climbing:
            break
    return ladders


# -- lanesync ------------------------------------------------------------------------------------


def lane_names(n: int) -> list[str]:
    return [f"lane{i:02d}" for i in range(1, n + 1)]


def make_store(root: Path, store_id: str, names: Sequence[str]) -> list[Path]:
    store = StoreDirectory.init(root / store_id, store_id)
    paths = []
    for i, name in enumerate(names):
        role = Role.MANAGER if i == 0 else Role.CASHIER
        store.enroll(root / name, name, role, wall_clock_ms(), 30)
        paths.append(root / name)
    return paths


def runtime_of(directory: Path) -> dict[str, Any]:
    """What a running daemon says about itself (TERMINAL_DIR/runtime.json), checked loopback."""
    info: dict[str, Any] = json.loads((directory / "runtime.json").read_text())
    for key in ("listen", "api"):
        if not str(info[key]).startswith(("ws://127.0.0.1:", "http://127.0.0.1:")):
            raise BenchError(f"{directory.name} is bound to {info[key]}, not loopback")
    return info


async def start_lanesync(root: Path, store_id: str, names: Sequence[str], logs: Path) -> Fleet:
    dirs = make_store(root, store_id, names)
    lanes: list[Proc] = []
    try:
        for name, directory in zip(names, dirs, strict=True):
            lanes.append(await spawn(name, ["lanesync", str(directory)], logs))
    except BaseException:
        await stop_all(lanes)
        raise
    return Fleet("lanesync", lanes)


async def connect_full_mesh(fleet: Fleet, root: Path) -> None:
    urls = {lane.name: runtime_of(root / lane.name)["listen"] for lane in fleet.lanes}
    for i, lane in enumerate(fleet.lanes):  # each lane dials the ones after it
        later = [urls[other.name] for other in fleet.lanes[i + 1 :]]
        if later:
            await lane.call("connect", urls=later)
    await fleet.wait_links(fleet.lanes, len(fleet.lanes) - 1)


def api_get(directory: Path, path: str) -> Any:
    """GET from a lane's local HTTP API, at the address and with the token the daemon left in
    its directory; never through a proxy."""
    base = runtime_of(directory)["api"]
    token = (directory / "api.token").read_text().strip()
    request = urllib.request.Request(base + path)  # noqa: S310 - http://127.0.0.1, checked above
    request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=30) as response:
        return json.loads(response.read())


async def api_check(fleet: Fleet, root: Path) -> dict[str, Any]:
    digests = {}
    for lane in fleet.lanes:
        reply = await asyncio.to_thread(api_get, root / lane.name, "/v1/digest")
        digests[lane.name] = reply["digest"]
    statuses = await fleet.statuses()
    return {
        "digests_equal": len(set(digests.values())) == 1,
        "digest": next(iter(digests.values())),
        "sales_per_lane": {name: s["sent"] for name, s in statuses.items()},
        "missing_deliveries": fleet.missing(statuses),
        "write_errors": sum(s["errors"] for s in statuses.values()),
    }


async def profile_step(
    fleet: Fleet, rate: float, duration: float, work: Path, keep: Path | None
) -> dict[str, Any]:
    lane = fleet.lanes[0]
    path = work / f"{lane.name}.prof"
    await lane.call("profile", on=True)
    step = await measure(fleet, rate, duration, "profiled", work)
    await lane.call("profile", on=False, path=str(path))
    tables = {}
    for order in ("tottime", "cumulative"):
        out = StringIO()
        pstats.Stats(str(path), stream=out).sort_stats(order).print_stats(PROFILE_TOP)
        tables[order] = out.getvalue()
    progress(f"cProfile of {lane.name} at {rate:.0f}/s (tottime):\n{tables['tottime']}")
    if keep is not None:
        shutil.copy(path, keep)
        progress(f"kept the profile as {keep}")
    return {"lane": lane.name, "rate": rate, "step": asdict(step), "top": tables}


@dataclass
class CatchUp:
    system: str
    sales: int
    seconds_from_connect: float = math.nan
    seconds_from_heal: float | None = None
    seconds_until_durable: float | None = None
    bytes: int = 0
    bytes_per_sale: float = math.nan
    note: str = ""


class TimedLink(FaultLink):
    """The fault proxy, noting when it lets a connection through."""

    accepted_ns: list[int]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.partitioned:
            self.accepted_ns.append(time.time_ns())
        await super()._accept(reader, writer)


async def lanesync_catch_up(root: Path, sales: int, logs: Path) -> CatchUp:
    """Two lanes through a fault proxy: split them, one sells ``sales``, heal, time until the
    other holds every one of them (accepted; durable reported too)."""
    names = ["split-a", "split-b"]
    fleet = await start_lanesync(root, "bench-split", names, logs)
    a, b = fleet.lanes
    link = TimedLink(LOOPBACK, int(runtime_of(root / a.name)["listen"].rsplit(":", 1)[1]))
    link.accepted_ns = []
    await link.start()
    try:
        await b.call("connect", urls=[f"ws://{LOOPBACK}:{link.port}"])
        await fleet.wait_links(fleet.lanes, 1)
        await fleet.load(200, SPLIT_WARM_SALES / 100)
        if not await fleet.wait_converged(SETTLE_TIMEOUT_S):
            raise BenchError("lanesync split lanes did not converge before the split")
        link.partition()
        await fleet.wait_links(fleet.lanes, 0)
        progress(f"  lanesync: split; {a.name} sells {sales}")
        replies = (await fleet.load(SPLIT_RATE, sales / SPLIT_RATE, [a]))[2]
        if replies[0]["failed"]:
            raise BenchError(f"{replies[0]['failed']} split sales failed: {replies[0]['errors']}")
        await fleet.collect(root)
        total = int((await a.call("status"))["sent"])
        bytes_before = link.stats.bytes_forwarded
        heal_ns = time.time_ns()
        link.heal()
        deadline = time.monotonic() + 4 * SETTLE_TIMEOUT_S
        while int((await b.call("status"))["have"].get(a.name, 0)) < total:
            if time.monotonic() > deadline:
                raise BenchError("lanesync split lane did not catch up")
            await asyncio.sleep(0.01)
        await asyncio.sleep(ACK_SETTLE_S)
        result = CatchUp("lanesync", sales, bytes=link.stats.bytes_forwarded - bytes_before)
        logs_b = (await fleet.collect(root))[b.name]
        done = _reached(logs_b["accepted"], a.name, total)
        durable = _reached(logs_b["durable"], a.name, total)
        connect_ns = min((t for t in link.accepted_ns if t >= heal_ns), default=heal_ns)
        result.seconds_from_connect = (done - connect_ns) / 1e9
        result.seconds_from_heal = (done - heal_ns) / 1e9
        result.seconds_until_durable = (durable - connect_ns) / 1e9
        result.bytes_per_sale = result.bytes / sales
        result.note = (
            f"reconnect came {(connect_ns - heal_ns) / 1e9:.2f} s after the heal "
            "(the dialer's jittered backoff, capped at 5 s)"
        )
        return result
    finally:
        await link.stop()
        await stop_all(fleet.procs)


def _reached(arrivals: list[list[Any]], sender: str, seq: int) -> int:
    for who, first, last, at in arrivals:
        if who == sender and first <= seq <= last:
            return int(at)
    raise BenchError(f"no arrival of {sender}:{seq} was logged")


# -- pycrdt-websocket ----------------------------------------------------------------------------


async def start_pycrdt(names: Sequence[str], logs: Path, *, connect: bool = True) -> Fleet:
    procs: list[Proc] = []
    try:
        server = await spawn("pycrdt-server", ["pycrdt-server"], logs)
        procs.append(server)
        url = str(server.ready["listen"])
        if not url.startswith(f"ws://{LOOPBACK}:"):
            raise BenchError(f"pycrdt-websocket server bound to {url}, not loopback")
        for name in names:
            procs.append(await spawn(f"pycrdt-{name}", ["pycrdt-client", name], logs))
    except BaseException:
        await stop_all(procs)
        raise
    fleet = Fleet("pycrdt", procs[1:], server)
    for lane in fleet.lanes:
        lane.name = lane.name.removeprefix("pycrdt-")
    if connect:
        try:
            # Create the room with one client first (eight at once often failed to sync,
            # 2026-11-26).
            for lane in fleet.lanes:
                await lane.call("connect", urls=[url])
        except BaseException:
            await stop_all(procs)
            raise
    return fleet


async def pycrdt_catch_up(sales: int, logs: Path, work: Path) -> CatchUp:
    """Server + A connected, B away; A sells ``sales``; B connects: time until B has them."""
    fleet = await start_pycrdt(["split-a", "split-b"], logs, connect=False)
    a, b = fleet.lanes
    server = fleet.server
    assert server is not None  # start_pycrdt always starts one
    url = str(server.ready["listen"])
    try:
        await a.call("connect", urls=[url])
        progress(f"  pycrdt: {b.name} away; {a.name} sells {sales}")
        await fleet.load(SPLIT_RATE, sales / SPLIT_RATE, [a])
        deadline = time.monotonic() + 4 * SETTLE_TIMEOUT_S
        while int((await server.call("status"))["room_size"]) < sales:
            if time.monotonic() > deadline:
                raise BenchError("the pycrdt-websocket server never held every split sale")
            await asyncio.sleep(POLL_S)
        await fleet.collect(work)
        before = await fleet.statuses()
        connect_ns = time.time_ns()
        await b.call("connect", urls=[url])
        deadline = time.monotonic() + 4 * SETTLE_TIMEOUT_S
        while int((await b.call("status"))["have"].get(a.name, 0)) < sales:
            if time.monotonic() > deadline:
                raise BenchError("the pycrdt-websocket client did not catch up")
            await asyncio.sleep(0.01)
        await asyncio.sleep(ACK_SETTLE_S)
        after = await fleet.statuses()
        arrivals = (await fleet.collect(work))[b.name]["accepted"]
        done = max(int(at) for who, *_, at in arrivals if who == a.name)
        moved = sum(after[p]["wire_out"] - before[p]["wire_out"] for p in (server.name, b.name))
        return CatchUp(
            "pycrdt",
            sales,
            seconds_from_connect=(done - connect_ns) / 1e9,
            bytes=moved,
            bytes_per_sale=moved / sales,
            note="from B's connect call: websocket handshake, sync step 1/2 with the server",
        )
    finally:
        await stop_all(fleet.procs)


def profile_rate(args: argparse.Namespace, ladder: Ladder) -> float | None:
    """``--profile-rate``, or by default (full runs) the first rate lanesync did not keep up
    when that misses the throughput target: the profile then shows what limits it."""
    if args.profile_rate is not None:
        return float(args.profile_rate) or None
    if args.quick or ladder.highest_kept >= TARGET_RATE:
        return None
    return ladder.first_failed


# -- one system end to end -----------------------------------------------------------------------


@dataclass
class SystemResult:
    system: str
    latency: Step
    ladder: Ladder
    catch_up: CatchUp
    check: dict[str, Any] = field(default_factory=dict)
    profile: dict[str, Any] | None = None


async def open_fleet(system: System, args: argparse.Namespace, root: Path) -> Fleet:
    """Start, connect and warm up one system's lanes (stopped again on failure)."""
    work = root / system
    logs = work / "logs"
    logs.mkdir(parents=True)
    names = lane_names(args.lanes)
    progress(f"{system}: starting {args.lanes} lanes")
    if system == "lanesync":
        fleet = await start_lanesync(work, "bench-store", names, logs)
    else:
        fleet = await start_pycrdt(names, logs)
    try:
        if system == "lanesync":
            await connect_full_mesh(fleet, work)
        progress(f"{system}: connected; warming up")
        await fleet.load(args.rate, WARMUP_S)
        if not await fleet.wait_converged(SETTLE_TIMEOUT_S):
            raise BenchError(f"{system}: the warm-up did not converge")
        await fleet.collect(work)
    except BaseException:
        await stop_all(fleet.procs)
        raise
    return fleet


async def run_all(args: argparse.Namespace, root: Path) -> list[SystemResult]:
    systems: list[System] = ["lanesync"] if args.skip_baseline else ["lanesync", "pycrdt"]
    fleets: dict[str, Fleet] = {}
    profile = None
    check: dict[str, Any] = {}
    try:
        for system in systems:
            fleets[system] = await open_fleet(system, args, root)
        rates = [args.rate, *(r for r in args.ladder if r > args.rate)]
        ladders = await climb(fleets, rates, args.duration, root)
        lanesync = fleets["lanesync"]
        rate = profile_rate(args, ladders["lanesync"])
        if rate:
            profile = await profile_step(
                lanesync, rate, args.duration, root / "lanesync", args.profile_out
            )
        check = await api_check(lanesync, root / "lanesync")
        progress(f"lanesync: API check {check}")
    finally:
        await asyncio.gather(*(stop_all(f.procs) for f in fleets.values()))
    results = []
    for system in systems:
        work = root / system
        progress(f"{system}: catch-up after a split of {args.split_sales} sales")
        if system == "lanesync":
            catch_up = await lanesync_catch_up(work, args.split_sales, work / "logs")
        else:
            catch_up = await pycrdt_catch_up(args.split_sales, work / "logs", work)
        progress(f"  {catch_up}")
        ladder = ladders[system]
        results.append(
            SystemResult(
                system,
                [step for step in ladder.steps if step.rate == rates[0]][-1],
                ladder,
                catch_up,
                check if system == "lanesync" else {},
                profile if system == "lanesync" else None,
            )
        )
    return results


# -- report --------------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    unit: str
    lanesync: float | None
    pycrdt: float | None
    target: str = ""
    result: str = ""  # PASS / FAIL / "" (context row)
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.lanesync is None or not self.pycrdt or math.isnan(self.pycrdt):
            return None
        return self.lanesync / self.pycrdt


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def figures(ls: SystemResult, py: SystemResult | None, args: argparse.Namespace) -> list[Figure]:
    def pick(result: SystemResult | None, get: Any) -> float | None:
        return None if result is None else get(result)

    def lat(r: SystemResult, key: str) -> float:
        return float(r.latency.latency_ms.get(key, math.nan))

    full = args.lanes == 8 and not args.quick
    rate = args.rate
    rows: list[Figure] = []
    for key in ("p50", "p99"):
        fig = Figure(
            f"Propagation {key} at {rate:.0f} sales/s",
            "ms",
            lat(ls, key),
            pick(py, lambda r, k=key: lat(r, k)),
            target=f"<= {TARGET_LATENCY_RATIO}x pycrdt-websocket",
            note="acknowledged on the selling lane -> counted in the receiving lane's views",
        )
        ratio = fig.ratio
        fig.result = verdict(None if ratio is None else ratio <= TARGET_LATENCY_RATIO)
        rows.append(fig)
    rows.append(
        Figure(
            "  same, until durable on the receiver p50 / p99",
            "ms",
            ls.latency.durable_latency_ms.get("p50"),
            None,
            note=f"p99 {ls.latency.durable_latency_ms.get('p99', math.nan):.2f} ms "
            "(pycrdt-websocket has no durability)",
        )
    )
    rows.append(
        Figure(
            "  ack latency (sale issued -> durable) p50 / p99",
            "ms",
            ls.latency.ack_ms.get("p50"),
            None,
            note=f"p99 {ls.latency.ack_ms.get('p99', math.nan):.2f} ms, group commit, fsync",
        )
    )
    kept = Figure(
        "Highest rate kept up (store-wide)",
        "sales/s",
        ls.ladder.highest_kept,
        pick(py, lambda r: r.ladder.highest_kept),
        target=f">= {TARGET_RATE} and >= {TARGET_RATE_RATIO:.0f}x pycrdt-websocket",
        note=f"first rate not kept up: lanesync {ls.ladder.first_failed}, pycrdt-websocket "
        f"{py.ladder.first_failed if py else None}",
    )
    ratio = kept.ratio
    kept.result = verdict(
        None
        if ratio is None
        else ls.ladder.highest_kept >= TARGET_RATE and ratio >= TARGET_RATE_RATIO
    )
    rows.append(kept)
    wire = Figure(
        f"Wire bytes per sale and receiving lane at {rate:.0f}/s",
        "B",
        ls.latency.wire_bytes_per_sale_receiver,
        pick(py, lambda r: r.latency.wire_bytes_per_sale_receiver),
        target=f"<= {TARGET_WIRE_BYTES} B",
        note="every byte written to the sockets (websocket frames with headers, masks, "
        "signatures, encryption, acks, pings) / (sales x receiving lanes)",
    )
    wire.result = verdict(ls.latency.wire_bytes_per_sale_receiver <= TARGET_WIRE_BYTES)
    rows.append(wire)
    rows.append(
        Figure(
            "  frame payloads only",
            "B",
            ls.latency.payload_bytes_per_sale_receiver,
            pick(py, lambda r: r.latency.payload_bytes_per_sale_receiver),
        )
    )
    top = _step_at(ls.ladder, ls.ladder.highest_kept)
    top_py = _step_at(py.ladder, py.ladder.highest_kept) if py else None
    rows.append(
        Figure(
            "  at each system's highest kept-up rate",
            "B",
            top.wire_bytes_per_sale_receiver if top else None,
            top_py.wire_bytes_per_sale_receiver if top_py else None,
        )
    )
    split_full = args.split_sales >= SPLIT_SALES
    catch = Figure(
        f"Catch-up after a split of {args.split_sales} sales",
        "s",
        ls.catch_up.seconds_from_connect,
        pick(py, lambda r: r.catch_up.seconds_from_connect),
        target=f"< {TARGET_CATCH_UP_S:.0f} s",
        note="from the reconnect to the last sale counted on the lane that was away",
    )
    catch.result = (
        verdict(ls.catch_up.seconds_from_connect < TARGET_CATCH_UP_S)
        if split_full
        else "n/a (< 10k)"
    )
    rows.append(catch)
    rows.append(
        Figure(
            "  from the heal (includes reconnect backoff)",
            "s",
            ls.catch_up.seconds_from_heal,
            None,
            note=ls.catch_up.note,
        )
    )
    rows.append(
        Figure(
            "  catch-up bytes per sale",
            "B",
            ls.catch_up.bytes_per_sale,
            pick(py, lambda r: r.catch_up.bytes_per_sale),
            note="both directions of the one link (lanesync: TCP payload through the fault "
            "proxy; pycrdt-websocket: server and the returning client)",
        )
    )
    rows.append(
        Figure(
            f"CPU per sale at {rate:.0f}/s, all processes",
            "ms",
            ls.latency.cpu_ms_per_sale,
            pick(py, lambda r: r.latency.cpu_ms_per_sale),
        )
    )
    rows.append(
        Figure(
            f"  lanesync event loops inside SQLite at {rate:.0f}/s",
            "%",
            ls.latency.storage_busy * 100,
            None,
            note=f"{ls.latency.storage_calls_per_lane_s:.0f} commits per lane and second; "
            "commit (fsync) and compaction run on the event loop",
        )
    )
    if not full:
        for row in rows:
            if row.result in ("PASS", "FAIL"):
                row.result += " (not the 8-lane target setup)"
    return rows


def _step_at(ladder: Ladder, rate: float) -> Step | None:
    kept = [s for s in ladder.steps if s.rate == rate and s.keeps_up]
    return kept[-1] if kept else None


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.0f} %"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:,.0f} {unit}"


def render(rows: Sequence[Figure]) -> str:
    header = ("Figure", "lanesync", "pycrdt-websocket", "ratio", "target", "result")
    table = [header]
    for row in rows:
        ratio = row.ratio
        table.append(
            (
                row.name,
                fmt(row.lanesync, row.unit),
                fmt(row.pycrdt, row.unit),
                "-" if ratio is None else f"{ratio:.2f}x",
                row.target,
                row.result,
            )
        )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in table
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def ladder_table(results: Sequence[SystemResult]) -> str:
    lines = [
        "| system | step | sales/s | sales | p50 ms | p99 ms | converged +s | B/sale/recv "
        "| CPU cores | loops in SQLite | waiting for a core | other work, cores | kept up |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        for s in result.ladder.steps:
            sqlite = "-" if math.isnan(s.storage_busy) else f"{s.storage_busy:.0%}"
            lines.append(
                f"| {s.system} | {s.label} | {s.rate:.0f} | {s.sales} | "
                f"{s.latency_ms.get('p50', math.nan):.2f} | "
                f"{s.latency_ms.get('p99', math.nan):.2f} | "
                f"{s.converged_after_s if s.converged_after_s is not None else math.nan:.3f} | "
                f"{s.wire_bytes_per_sale_receiver:.0f} | {s.cpu_cores_busy:.2f} | {sqlite} | "
                f"{s.runqueue_wait:.0%} | {s.other_cores:.2f} | "
                f"{'yes' if s.keeps_up else 'no: ' + s.why_not} |"
            )
    return "\n".join(lines)


# -- machine -------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in ("lanesync", "pycrdt", "pycrdt-websocket", "websockets", "PyNaCl", "msgpack"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
    }


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=HERE, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    status = git("status", "--porcelain") or ""
    return {
        "commit": (git("rev-parse", "HEAD") or "").strip() or None,
        "dirty_paths": [line[3:] for line in status.splitlines() if line.strip()],
    }


def load_average() -> float:
    return os.getloadavg()[0]


async def others_busy(seconds: float = 5.0) -> float:
    """Cores the machine kept busy over ``seconds`` while this process slept."""
    before = machine_busy_s()
    await asyncio.sleep(seconds)
    return (machine_busy_s() - before) / seconds


async def wait_for_quiet(limit_s: float) -> dict[str, Any]:
    """Wait until the 1-minute load average is under IDLE_LOAD and the machine is not busy
    right now either (the load average lags by a minute), at most ``limit_s``."""
    started = time.monotonic()
    first = load_average()
    busy = await others_busy(1.0)
    while time.monotonic() - started < limit_s:
        if load_average() < IDLE_LOAD and busy < IDLE_BUSY_CORES:
            break
        progress(
            f"load average {load_average():.2f}, {busy:.2f} cores busy: waiting for a quiet "
            f"machine (load < {IDLE_LOAD}, < {IDLE_BUSY_CORES} cores busy)"
        )
        busy = await others_busy(IDLE_POLL_S)
    return {
        "loadavg_1m_first_seen": first,
        "loadavg_1m_at_start": load_average(),
        "cores_busy_at_start": busy,
        "waited_s": round(time.monotonic() - started, 1),
        "quiet": load_average() < IDLE_LOAD and busy < IDLE_BUSY_CORES,
    }


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=None, help="lanes, 2-16 (default 8; quick 3)")
    parser.add_argument("--rate", type=float, default=200.0, help="sales/s for the latency figures")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per load step (default 5; quick 1.5)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--quick", action="store_true", help="smoke run, about a minute")
    parser.add_argument(
        "--split-sales", type=int, default=None, help="sales during the split (default 10000)"
    )
    parser.add_argument(
        "--ladder", type=str, default=None, help="comma-separated store-wide sales/s to try"
    )
    parser.add_argument(
        "--skip-baseline", action="store_true", help="lanesync only (no ratios, no verdicts)"
    )
    parser.add_argument(
        "--profile-rate",
        type=float,
        default=None,
        help="after the ladder, one more lanesync step at this rate with lane 1 under cProfile "
        "(default: the first rate not kept up, if under the 1,500/s target; 0 or --quick: never)",
    )
    parser.add_argument(
        "--profile-out", type=Path, default=None, help="keep the cProfile data (pstats) here"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=None,
        help=f"wait up to this many s for load average < {IDLE_LOAD} (default 600; quick 0)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp directory")
    args = parser.parse_args(argv)
    args.lanes = args.lanes or (3 if args.quick else 8)
    if not 2 <= args.lanes <= 16:
        parser.error("--lanes must be between 2 and 16")
    args.duration = args.duration or (1.5 if args.quick else 5.0)
    args.split_sales = args.split_sales or (2_000 if args.quick else SPLIT_SALES)
    if args.wait_idle is None:
        args.wait_idle = 0.0 if args.quick else 600.0
    if args.ladder:
        args.ladder = tuple(float(x) for x in args.ladder.split(","))
    else:
        args.ladder = QUICK_LADDER if args.quick else LADDER
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    machine = machine_info()
    load = await wait_for_quiet(args.wait_idle)
    git_at_start = git_info()
    progress(f"machine: {machine['nproc']} CPUs, {machine['cpu_model']}; load {load}")
    started = datetime.now(UTC)
    root = Path(tempfile.mkdtemp(prefix="lanesync-mesh-", dir=args.workdir))
    try:
        results = await run_all(args, root)
    except BaseException:
        progress(f"failed: the lanes' logs and directories are kept in {root}")
        raise
    shutil.rmtree(root, ignore_errors=True)
    ls, py = results[0], (results[1] if len(results) > 1 else None)
    rows = figures(ls, py, args)
    others = [
        s.other_cores for r in results for s in r.ladder.steps if not math.isnan(s.other_cores)
    ]
    load["max_other_cores_during_steps"] = max(others, default=math.nan)
    print()
    if others and max(others) > BUSY_OTHER_CORES:
        print(
            f"WARNING: other work on this machine used up to {max(others):.2f} cores during the "
            "measured steps (see the ladder table): the figures are pessimistic."
        )
    print(render(rows))
    print()
    print(ladder_table(results))
    load["loadavg_1m_at_end"] = load_average()
    return {
        "command": shlex.join([sys.executable, *sys.argv]),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
        "config": {
            "lanes": args.lanes,
            "rate": args.rate,
            "duration_s": args.duration,
            "ladder": list(args.ladder),
            "split_sales": args.split_sales,
            "quick": args.quick,
        },
        "machine": machine,
        "load": load,
        "git": git_at_start,
        "git_changed_during_run": git_info() != git_at_start,
        "figures": [{**asdict(r), "ratio": r.ratio} for r in rows],
        "results": {r.system: asdict(r) for r in results},
        "table": render(rows),
        "ladder_table": ladder_table(results),
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:  # SIGTERM/SIGHUP unwind like Ctrl-C: every process is stopped
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, task.cancel)
        try:
            return await run(args)
        finally:
            kill_leftovers()

    try:
        report = asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        progress("interrupted: every process this run started has been stopped")
        raise SystemExit(130) from None
    finally:
        kill_leftovers()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        progress(f"wrote {args.json}")


if __name__ == "__main__":
    main()
