"""The two systems of ``lanesync bench mesh`` end to end: starting lanesync's lanes (a full mesh
of daemons) or pycrdt-websocket's (a star), warming them up, the ladder, the API check, the
profile, and the catch-up after a split.
"""

from __future__ import annotations

import asyncio
import json
import math
import pstats
import shutil
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.outcome import lane_names
from lanesync.bench.studies.common import progress
from lanesync.bench.studies.mesh_control import LOOPBACK
from lanesync.bench.studies.mesh_fleet import POLL_S, Fleet, Proc, System, spawn, stop_all
from lanesync.bench.studies.mesh_steps import (
    ACK_SETTLE_S,
    SETTLE_TIMEOUT_S,
    Ladder,
    Step,
    climb,
    measure,
)
from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.faultproxy import FaultLink

WARMUP_S = 1.0
SPLIT_RATE = 5_000  # sales/s asked of the lone selling lane during the split (as fast as it can)
SPLIT_WARM_SALES = 20
PROFILE_TOP = 25
TARGET_RATE = 1_500  # the throughput target (8 lanes on 2 cores, everything on)
# Store-wide sales/s tried in turn, upwards, until a rate is not kept up (twice in a row).
LADDER = (200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000)
QUICK_LADDER = (200, 500, 1000, 2000)
SPLIT_SALES = 10_000


@dataclass(frozen=True, slots=True)
class MeshOptions:
    """The command's options, defaults resolved (``--quick`` picks smaller ones)."""

    lanes: int = 8
    rate: float = 200.0
    duration: float = 5.0
    quick: bool = False
    split_sales: int = SPLIT_SALES
    ladder: tuple[float, ...] = LADDER
    skip_baseline: bool = False
    profile_rate: float | None = None
    profile_out: Path | None = None
    wait_idle: float = 600.0
    workdir: Path | None = None


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
            "(the rest of the dialer's jittered wait, core/redial.py)"
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
        for name in names:  # one at a time: each waits for its process to be ready
            procs.append(await spawn(f"pycrdt-{name}", ["pycrdt-client", name], logs))  # noqa: PERF401
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
    if server is None:  # start_pycrdt always starts one
        raise BenchError("pycrdt-websocket has no server process")
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


def profile_rate(args: MeshOptions, ladder: Ladder) -> float | None:
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


async def open_fleet(system: System, args: MeshOptions, root: Path) -> Fleet:
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


async def run_all(args: MeshOptions, root: Path) -> list[SystemResult]:
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
