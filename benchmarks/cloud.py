"""Cloud benchmark: catch-up after a day-long WAN outage, and leader failover times.

Run ``.venv/bin/python benchmarks/cloud.py [--lanes 16] [--sales 50000] [--kills 10]
[--json OUT] [--quick]``; benchmarks/README.md ("Cloud") says what every figure means.

Catch-up. A store of ``--lanes`` terminal directories and a cloud that holds the store's morning
(prices and opening stock) are built offline. The day is then written offline: each lane writes
its share of ``--sales`` sales, 500 per ``Terminal.commit`` (one group commit, catalog
prices, 1-3 lines over 200 SKUs), and the lanes exchange the day with signed bundles, as the
LAN would have. The cloud saw none of it: the WAN was down all day. The minimal delta is
computed offline: ``sum(len(u) for u in leader.updates_since(cloud.state_vectors()).values())``.
Then the cloud (``lanesync cloud serve``) and two lanes (``lanesync run --cloud``; the leader
holds the whole day) start with the WAN cut (a ``faultproxy.FaultLink`` partitioned between the
lanes and the cloud); once the leader is elected the WAN heals, and the benchmark measures the time
until the cloud's head-office tables hold every sale (and the digests match), and the bytes that
crossed the WAN (proxy, both directions) and that the leader sent on its uplink (frame bytes).

Failover. A store of 3 lanes (full mesh) and a cloud; ``--kills`` times the leader (lane1,
which ranks first) is killed with SIGKILL; the surviving lanes' status is polled every 50 ms:
"elected" when both name lane2, "uplinked" when lane2's cloud link is up. lane1 is restarted and
the next kill waits until it leads again.

Only loopback is used: every process binds 127.0.0.1 with port 0 and never uses mDNS.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lanesync.cloud.directory import CloudDirectory
from lanesync.core import bodies
from lanesync.core.election import FAILOVER_BOUND_MS, GOSSIP_MS, LEASE_MS
from lanesync.core.identity import Role, public_key_of
from lanesync.core.ids import Sku
from lanesync.core.records import Body
from lanesync.core.views import Views
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms
from lanesync.shell.uplink import CHECK_INTERVAL_S, PROBE_INTERVAL_S
from lanesync.tools.faultproxy import FaultLink

T = TypeVar("T")
LOOPBACK = "127.0.0.1"
STORE_ID = "bench-store"
SKUS = [Sku(f"sku{i:03d}") for i in range(200)]
BATCH = 500
START_TIMEOUT_S = 60.0
CATCH_UP_TIMEOUT_S = 900.0
ENV = {
    k: v
    for k, v in os.environ.items()
    if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")
}


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def percentile(samples: Sequence[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- processes ---------------------------------------------------------------------------------


class Proc:
    def __init__(self, name: str, path: Path, args: list[str], logs: Path) -> None:
        self.name, self.path = name, path
        self.log = logs / f"{name}.{int(time.time() * 1000)}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lanesync", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        self.runtime: dict[str, Any] = {}
        self.client: httpx.Client | None = None

    def ready(self) -> Proc:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited; see {self.log}")
            try:
                info = json.loads((self.path / "runtime.json").read_text())
            except (OSError, ValueError):
                info = {}
            if info.get("pid") == self.process.pid:
                self.runtime = info
                token = (self.path / "api.token").read_text().strip()
                self.client = httpx.Client(
                    base_url=info["api"],
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=120,
                    trust_env=False,
                    limits=httpx.Limits(max_keepalive_connections=0),
                )
                return self
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start; see {self.log}")

    def get(self, path: str) -> Any:
        assert self.client is not None
        response = self.client.get(path)
        response.raise_for_status()
        return response.json()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


class Procs:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        logs.mkdir(parents=True, exist_ok=True)
        self.all: list[Proc] = []

    def lane(self, path: Path, *, peers: Sequence[str] = (), cloud: str, priority: int = 0) -> Proc:
        args = ["run", str(path), "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
        args += ["--no-discovery", "--cloud", cloud, "--priority", str(priority)]
        for peer in peers:
            args += ["--peer", peer]
        proc = Proc(path.name, path, args, self.logs)
        self.all.append(proc)
        return proc

    def cloud(self, path: Path) -> Proc:
        args = ["cloud", "serve", str(path), "--listen", f"{LOOPBACK}:0"]
        proc = Proc("cloud", path, [*args, "--api", f"{LOOPBACK}:0"], self.logs)
        self.all.append(proc)
        return proc.ready()

    def close(self) -> None:
        for proc in self.all:
            proc.stop()


class ProxyLoop:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.links: list[FaultLink] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def call(self, func: Callable[[], T]) -> T:
        async def hop() -> T:
            return func()

        return self.run(hop())

    def link(self, port: int) -> FaultLink:
        link = FaultLink(LOOPBACK, port)
        self.run(link.start(LOOPBACK))
        self.links.append(link)
        return link

    def close(self) -> None:
        async def stop() -> None:
            for link in self.links:
                await link.stop()

        with contextlib.suppress(Exception):
            self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


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


# -- the store, offline ------------------------------------------------------------------------


def make_store(root: Path, lanes: int) -> tuple[StoreDirectory, CloudDirectory, list[Path]]:
    store = StoreDirectory.init(root / "store", STORE_ID)
    cloud = CloudDirectory.init(root / "cloud")
    cert = store.certify_cloud(public_key_of(cloud.key), wall_clock_ms(), 30)
    (root / "cloud.cert").write_bytes(cert.encoded)
    cloud.add_store(store.identity_file, root / "cloud.cert")
    paths = []
    for i in range(1, lanes + 1):
        name = f"lane{i:02d}"
        role = Role.MANAGER if i == 1 else Role.CASHIER
        store.enroll(root / name, name, role, wall_clock_ms(), 30)
        paths.append(root / name)
    return store, cloud, paths


def sale_builder(rng: random.Random) -> Callable[[Views], Body]:
    requests = [
        bodies.LineRequest(rng.choice(SKUS), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))
    ]
    return partial(bodies.build_sale, requests=requests)


def write_together(terminal: Terminal, builders: list[Callable[[Views], Body]]) -> int:
    """Stage every record, then make them durable in one ``Terminal.commit`` (one group commit,
    as the daemon's committer does), compacting when due; a refused sale raises."""
    staged = [terminal.stage(build) for build in builders]
    terminal.commit([change for _, change in staged])
    terminal.compact_if_due()
    return len(staged)


def build_day(root: Path, cloud: CloudDirectory, lanes: list[Path], sales: int) -> dict[str, Any]:
    """The morning (in the cloud too), then a day of sales on every lane, exchanged by bundles
    into the two lanes that will run; the cloud stays at the morning."""
    rng = random.Random(42)
    with Terminal.open(lanes[0]) as manager:
        for sku in SKUS:
            manager.write(lambda _, s=sku: bodies.build_price_change(Role.MANAGER, s, 100))
        write_together(manager, [lambda _, s=sku: bodies.build_receipt(s, 10_000) for sku in SKUS])
        morning = manager.export_bundle()
    with Terminal.open_directory(cloud.store_directory(STORE_ID)) as replica:
        replica.import_bundle(morning)
    written = 0
    started = time.perf_counter()
    bundles = []
    for k, path in enumerate(lanes):
        share = sales // len(lanes) + (1 if k < sales % len(lanes) else 0)
        with Terminal.open(path) as lane:
            lane.import_bundle(morning)
            for first in range(0, share, BATCH):
                written += write_together(
                    lane, [sale_builder(rng) for _ in range(min(BATCH, share - first))]
                )
            bundles.append(lane.export_bundle())
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in lanes[:2]:
        with Terminal.open(path) as lane:
            for bundle in bundles:
                lane.import_bundle(bundle)
    exchange_s = time.perf_counter() - started
    return {
        "sales_written": written,
        "write_s": round(write_s, 2),
        "exchange_s": round(exchange_s, 2),
        "bundle_bytes": sum(len(b) for b in bundles),
    }


def minimal_delta(cloud: CloudDirectory, leader: Path) -> dict[str, Any]:
    with (
        Terminal.open(leader) as lane,
        Terminal.open_directory(cloud.store_directory(STORE_ID)) as replica,
    ):
        delta = lane.replica.updates_since(replica.replica.state_vectors())
        return {
            "minimal_delta_bytes": sum(len(u) for u in delta.values()),
            "delta_docs": {name: len(u) for name, u in sorted(delta.items())},
            "leader_records": lane.replica.views.accepted_count(),
            "leader_sales": sum(1 for _ in lane.replica.views.sale_ids()),
            "cloud_records_before": replica.replica.views.accepted_count(),
        }


# -- catch-up ----------------------------------------------------------------------------------


def catch_up(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    progress(f"catch-up: {args.lanes} lanes, {args.sales} sales, built offline")
    _, cloud_dir, lanes = make_store(root, args.lanes)
    day = build_day(root, cloud_dir, lanes, args.sales)
    progress(f"day written: {day}")
    offline = minimal_delta(cloud_dir, lanes[0])
    progress(f"minimal delta {offline['minimal_delta_bytes']} bytes")
    procs, proxies = Procs(args.logs or root / "logs"), ProxyLoop()
    try:
        cloud = procs.cloud(cloud_dir.path)
        wan = proxies.link(int(cloud.runtime["listen"].rsplit(":", 1)[1]))
        proxies.call(wan.partition)
        url = f"ws://{LOOPBACK}:{wan.port}"
        leader = procs.lane(lanes[0], cloud=url, priority=1).ready()
        other = procs.lane(lanes[1], cloud=url, peers=[leader.runtime["listen"]]).ready()
        wait(
            lambda: all(p.get("/v1/status")["leader"] == "lane01" for p in (leader, other)),
            60,
            "lane01 elected",
        )
        time.sleep(1)
        forwarded_before = wan.stats.bytes_forwarded
        stalls = ApiProbe(cloud.runtime["api"], (cloud_dir.path / "api.token").read_text().strip())
        progress(f"WAN heals ({load()})")
        healed = time.monotonic()
        proxies.call(wan.heal)

        def cloud_link() -> dict[str, Any] | None:
            rows = leader.get("/v1/status")["connections"]
            return next((r for r in rows if r["role"] == "cloud"), None)

        wait(cloud_link, 60, "the uplink", interval=0.02)
        connected = time.monotonic()
        expected_sales = offline["leader_sales"]

        def exact() -> bool:
            stores = cloud.get("/v1/stores")["stores"]
            row = stores[0]
            return (
                row["sales_recorded"] == expected_sales
                and row["records"] == offline["leader_records"]
            )

        wait(exact, CATCH_UP_TIMEOUT_S, "the cloud's tables hold the day", interval=0.1)
        done = time.monotonic()
        wait(
            lambda: (
                cloud.get(f"/v1/stores/{STORE_ID}/digest")["digest"]
                == leader.get("/v1/digest")["digest"]
            ),
            60,
            "digests match",
        )
        wait(lambda: (cloud_link() or {}).get("unacked_bytes") == 0, 120, "acknowledged")
        acked = time.monotonic()
        max_stall = stalls.stop()
        wan_bytes = wan.stats.bytes_forwarded - forwarded_before
        sales_view = cloud.get(f"/v1/stores/{STORE_ID}/sales")
        assert sales_view["count"] == expected_sales, sales_view["count"]
        return {
            **day,
            **offline,
            "heal_to_uplink_s": round(connected - healed, 3),
            "uplink_to_tables_exact_s": round(done - connected, 3),
            "heal_to_tables_exact_s": round(done - healed, 3),
            "heal_to_acknowledged_s": round(acked - healed, 3),
            "wan_bytes_both_ways": wan_bytes,
            "wan_over_minimal": round(wan_bytes / max(1, offline["minimal_delta_bytes"]), 4),
            "wan_bytes_per_sale": round(wan_bytes / max(1, expected_sales), 1),
            "uplink_connections": leader.log.read_text().count("peer.connected peer=cloud"),
            "uplink_drops": [
                line["msg"]
                for line in map(json.loads, leader.log.read_text().splitlines())
                if line["msg"].startswith("peer.closed peer=cloud")
            ],
            "cloud_api_max_latency_s": round(max_stall, 3),
        }
    finally:
        procs.close()
        proxies.close()


# -- failover ----------------------------------------------------------------------------------


def leads(proc: Proc) -> bool:
    status = proc.get("/v1/status")
    return status["leader"] == proc.path.name and bool(status["cloud"]["connected"])


def failover(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    progress(f"failover: {args.kills} leader kills")
    _, cloud_dir, lanes = make_store(root, 3)
    procs = Procs(args.logs or root / "logs")
    try:
        cloud = procs.cloud(cloud_dir.path)
        url = cloud.runtime["listen"]
        lane1 = procs.lane(lanes[0], cloud=url, priority=2).ready()
        lane2 = procs.lane(lanes[1], cloud=url, priority=1, peers=[lane1.runtime["listen"]]).ready()
        peers = [lane1.runtime["listen"], lane2.runtime["listen"]]
        lane3 = procs.lane(lanes[2], cloud=url, peers=peers).ready()
        elected: list[float] = []
        uplinked: list[float] = []
        for kill in range(args.kills):
            first = lane1
            wait(lambda first=first: leads(first), 60, "lane01 leads with its uplink")
            for other in (lane2, lane3):
                wait(lambda o=other: o.get("/v1/status")["leader"] == "lane01", 60, "lane01 named")
            time.sleep(random.uniform(0.5, 1.5))  # any phase of the gossip round
            lane1.stop(signal.SIGKILL)
            killed = time.monotonic()
            got_elected = None
            while time.monotonic() - killed < 60:
                now = time.monotonic() - killed
                named = {p.get("/v1/status")["leader"] for p in (lane2, lane3)}
                if got_elected is None and named == {"lane02"}:
                    got_elected = now
                if got_elected is not None and lane2.get("/v1/status")["cloud"]["connected"]:
                    elected.append(got_elected)
                    uplinked.append(now)
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("no failover within 60 s")
            progress(f"kill {kill + 1}: elected {elected[-1]:.2f} s, uplink {uplinked[-1]:.2f} s")
            peers = [lane2.runtime["listen"], lane3.runtime["listen"]]
            lane1 = procs.lane(lanes[0], cloud=url, priority=2, peers=peers).ready()

        def dist(samples: list[float]) -> dict[str, float]:
            return {
                "p50": round(percentile(samples, 50), 3),
                "p99": round(percentile(samples, 99), 3),
                "min": round(min(samples), 3),
                "max": round(max(samples), 3),
                "mean": round(statistics.fmean(samples), 3),
            }

        return {
            "kills": args.kills,
            "elected_s": dist(elected),
            "uplinked_s": dist(uplinked),
            "samples_elected_s": [round(x, 3) for x in elected],
            "samples_uplinked_s": [round(x, 3) for x in uplinked],
        }
    finally:
        procs.close()


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--sales", type=int, default=50_000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="4 lanes, 2,000 sales, 3 kills")
    parser.add_argument("--skip", choices=["catch-up", "failover"], action="append", default=[])
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--logs", type=Path, help="keep the processes' logs here")
    args = parser.parse_args()
    if args.quick:
        args.lanes, args.sales, args.kills = 4, 2_000, 3
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    result: dict[str, Any] = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "uptime_before": uptime.strip(),
        "constants": {
            "LEASE_MS": LEASE_MS,
            "GOSSIP_MS": GOSSIP_MS,
            "FAILOVER_BOUND_MS": FAILOVER_BOUND_MS,
            "PROBE_INTERVAL_S": PROBE_INTERVAL_S,
            "CHECK_INTERVAL_S": CHECK_INTERVAL_S,
        },
    }
    progress(f"before: {uptime.strip()}")
    with tempfile.TemporaryDirectory(prefix="lanesync-cloud-bench-", dir=args.workdir) as tmp:
        root = Path(tmp)
        if "catch-up" not in args.skip:
            result["catch_up"] = catch_up(args, root / "catch-up")
        if "failover" not in args.skip:
            result["failover"] = failover(args, root / "failover")
    result["load_after"] = load()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
