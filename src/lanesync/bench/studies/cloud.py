"""``lanesync bench cloud``: catch-up after a day-long WAN outage, and leader failover times
(benchmarks/README.md, "Cloud", says what every figure means).

Catch-up. A store of ``lanes`` terminal directories and a cloud that holds the store's morning
are built offline, then a day of ``sales`` is written offline and exchanged by bundles
(``cloud_day``); the cloud saw none of it: the WAN was down all day. The minimal delta is
computed offline: ``sum(len(u) for u in leader.updates_since(cloud.state_vectors()).values())``.
Then the cloud (``lanesync cloud serve``) and two lanes (``lanesync run --cloud``; the leader
holds the whole day) start with the WAN cut (a ``faultproxy.FaultLink`` partitioned between the
lanes and the cloud); once the leader is elected the WAN heals, and the benchmark measures the
time until the cloud's head-office tables hold every sale (and the digests match), and the bytes
that crossed the WAN (proxy, both directions).

Failover. A store of 3 lanes (full mesh) and a cloud; ``kills`` times the leader (lane01, which
ranks first) is killed with SIGKILL; the surviving lanes' status is polled every 50 ms:
"elected" when both name lane02, "uplinked" when lane02's cloud link is up. lane01 is restarted
and the next kill waits until it leads again.

Only loopback is used: every process binds 127.0.0.1 with port 0 and never uses mDNS.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC, LOOPBACK, BenchError
from lanesync.bench.outcome import Outcome
from lanesync.bench.stats import percentile
from lanesync.bench.studies.cloud_day import STORE_ID, build_day, make_store, minimal_delta
from lanesync.bench.studies.cloud_procs import ApiProbe, Proc, Procs, wait
from lanesync.bench.studies.common import StudyRun, progress
from lanesync.core.election import FAILOVER_BOUND_MS, GOSSIP_MS, LEASE_MS
from lanesync.shell.uplink import CHECK_INTERVAL_S, PROBE_INTERVAL_S
from lanesync.tools.faultproxy import FaultLink

NAME = "cloud"
CATCH_UP_TIMEOUT_S = 900.0
FAILOVER_LIMIT_S = 60.0


@dataclass(frozen=True, slots=True)
class CloudOptions:
    lanes: int = 16
    sales: int = 50_000
    kills: int = 10
    catch_up: bool = True
    failover: bool = True
    workdir: Path | None = None
    logs: Path | None = None


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


async def catch_up(options: CloudOptions, root: Path) -> dict[str, Any]:
    progress(f"catch-up: {options.lanes} lanes, {options.sales} sales, built offline")
    _, cloud_dir, lanes = make_store(root, options.lanes)
    day = build_day(root, cloud_dir, lanes, options.sales)
    progress(f"day written: {day}")
    offline = minimal_delta(cloud_dir, lanes[0])
    progress(f"minimal delta {offline['minimal_delta_bytes']} bytes")
    procs = Procs(options.logs or root / "logs")
    wan: FaultLink | None = None
    try:
        cloud = await procs.cloud(cloud_dir.path)
        wan = FaultLink(LOOPBACK, int(cloud.runtime["listen"].rsplit(":", 1)[1]))
        await wan.start(LOOPBACK)
        wan.partition()
        url = f"ws://{LOOPBACK}:{wan.port}"
        leader = await procs.lane(lanes[0], cloud=url, priority=1)
        other = await procs.lane(lanes[1], cloud=url, peers=[leader.runtime["listen"]])

        async def lane01_leads() -> bool:
            named = [(await p.get("/v1/status"))["leader"] for p in (leader, other)]
            return named == ["lane01", "lane01"]

        await wait(lane01_leads, 60, "lane01 elected")
        await asyncio.sleep(1)
        forwarded_before = wan.stats.bytes_forwarded
        stalls = ApiProbe(cloud.runtime["api"], (cloud_dir.path / "api.token").read_text().strip())
        progress(f"WAN heals ({load()})")
        healed = time.monotonic()
        wan.heal()

        async def cloud_link() -> dict[str, Any] | None:
            rows = (await leader.get("/v1/status"))["connections"]
            return next((r for r in rows if r["role"] == "cloud"), None)

        await wait(cloud_link, 60, "the uplink", interval=0.02)
        connected = time.monotonic()
        expected_sales = offline["leader_sales"]

        async def exact() -> bool:
            row = (await cloud.get("/v1/stores"))["stores"][0]
            return bool(
                row["sales_recorded"] == expected_sales
                and row["records"] == offline["leader_records"]
            )

        await wait(exact, CATCH_UP_TIMEOUT_S, "the cloud's tables hold the day", interval=0.1)
        done = time.monotonic()

        async def digests_match() -> bool:
            theirs = (await cloud.get(f"/v1/stores/{STORE_ID}/digest"))["digest"]
            return bool(theirs == (await leader.get("/v1/digest"))["digest"])

        async def acknowledged() -> bool:
            return ((await cloud_link()) or {}).get("unacked_bytes") == 0

        await wait(digests_match, 60, "digests match")
        await wait(acknowledged, 120, "acknowledged")
        acked = time.monotonic()
        max_stall = await stalls.stop()
        wan_bytes = wan.stats.bytes_forwarded - forwarded_before
        counted = (await cloud.get(f"/v1/stores/{STORE_ID}/sales"))["count"]
        if counted != expected_sales:
            raise BenchError(f"the cloud counts {counted} sales, not {expected_sales}")
        log_lines = [json.loads(line)["msg"] for line in leader.log.read_text().splitlines()]
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
            "uplink_connections": sum("peer.connected peer=cloud" in m for m in log_lines),
            "uplink_drops": [m for m in log_lines if m.startswith("peer.closed peer=cloud")],
            "cloud_api_max_latency_s": round(max_stall, 3),
        }
    finally:
        await procs.close()
        if wan is not None:
            await wan.stop()


async def leads(proc: Proc) -> bool:
    status = await proc.get("/v1/status")
    return status["leader"] == proc.path.name and bool(status["cloud"]["connected"])


async def failover(options: CloudOptions, root: Path) -> dict[str, Any]:
    progress(f"failover: {options.kills} leader kills")
    _, cloud_dir, lanes = make_store(root, 3)
    procs = Procs(options.logs or root / "logs")
    try:
        cloud = await procs.cloud(cloud_dir.path)
        url = cloud.runtime["listen"]
        lane1 = await procs.lane(lanes[0], cloud=url, priority=2)
        lane2 = await procs.lane(lanes[1], cloud=url, priority=1, peers=[lane1.runtime["listen"]])
        peers = [lane1.runtime["listen"], lane2.runtime["listen"]]
        lane3 = await procs.lane(lanes[2], cloud=url, peers=peers)
        elected: list[float] = []
        uplinked: list[float] = []
        for kill in range(options.kills):
            await wait(partial(leads, lane1), 60, "lane01 leads with its uplink")
            for other in (lane2, lane3):

                async def names_lane01(o: Proc = other) -> bool:
                    return bool((await o.get("/v1/status"))["leader"] == "lane01")

                await wait(names_lane01, 60, "lane01 named")
            await asyncio.sleep(random.uniform(0.5, 1.5))  # noqa: S311 - any phase of the gossip
            await lane1.stop(signal.SIGKILL)
            killed = time.monotonic()
            got_elected = None
            while time.monotonic() - killed < FAILOVER_LIMIT_S:
                now = time.monotonic() - killed
                named = {(await p.get("/v1/status"))["leader"] for p in (lane2, lane3)}
                if got_elected is None and named == {"lane02"}:
                    got_elected = now
                if (
                    got_elected is not None
                    and (await lane2.get("/v1/status"))["cloud"]["connected"]
                ):
                    elected.append(got_elected)
                    uplinked.append(now)
                    break
                await asyncio.sleep(0.05)
            else:
                raise BenchError(f"no failover within {FAILOVER_LIMIT_S:.0f} s")
            progress(f"kill {kill + 1}: elected {elected[-1]:.2f} s, uplink {uplinked[-1]:.2f} s")
            peers = [lane2.runtime["listen"], lane3.runtime["listen"]]
            lane1 = await procs.lane(lanes[0], cloud=url, priority=2, peers=peers)
        return {
            "kills": options.kills,
            "elected_s": dist(elected),
            "uplinked_s": dist(uplinked),
            "samples_elected_s": [round(x, 3) for x in elected],
            "samples_uplinked_s": [round(x, 3) for x in uplinked],
        }
    finally:
        await procs.close()


def dist(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50": round(percentile(ordered, 50), 3),
        "p99": round(percentile(ordered, 99), 3),
        "min": round(ordered[0], 3),
        "max": round(ordered[-1], 3),
        "mean": round(statistics.fmean(ordered), 3),
    }


FIGURES = (  # (results key, figure name, unit); every one: lower is better
    ("heal_to_uplink_s", "catch-up: heal -> uplink connected", "s"),
    ("uplink_to_tables_exact_s", "catch-up: uplink connected -> head-office tables exact", "s"),
    ("heal_to_tables_exact_s", "catch-up: heal -> tables exact", "s"),
    ("heal_to_acknowledged_s", "catch-up: heal -> everything acknowledged", "s"),
    ("wan_over_minimal", "catch-up: WAN bytes / minimal delta", "x"),
    ("wan_bytes_per_sale", "catch-up: WAN bytes per sale", "B"),
    ("cloud_api_max_latency_s", "catch-up: slowest cloud API answer", "s"),
)


def outcome(result: dict[str, Any]) -> Outcome:
    out = Outcome(NAME, LANESYNC, 0)
    if "catch_up" in result:
        for key, name, unit in FIGURES:
            out.add(name, result["catch_up"][key], unit, "lower")
    if "failover" in result:
        for what in ("elected", "uplinked"):
            for stat in ("p50", "p99", "max"):
                value = result["failover"][f"{what}_s"][stat]
                out.add(f"failover: {what} {stat} after the kill", value, "s", "lower")
    return out


async def run_study(options: CloudOptions) -> tuple[str, dict[str, Any]]:
    """Both parts (unless skipped): the JSON text the script printed, and results.json."""
    config = {"lanes": options.lanes, "sales": options.sales, "kills": options.kills}
    record = StudyRun(NAME, config)
    result: dict[str, Any] = {
        "constants": {
            "LEASE_MS": LEASE_MS,
            "GOSSIP_MS": GOSSIP_MS,
            "FAILOVER_BOUND_MS": FAILOVER_BOUND_MS,
            "PROBE_INTERVAL_S": PROBE_INTERVAL_S,
            "CHECK_INTERVAL_S": CHECK_INTERVAL_S,
        },
        "load_before": load(),
    }
    progress(f"before: {result['load_before']}")
    with tempfile.TemporaryDirectory(prefix="lanesync-cloud-bench-", dir=options.workdir) as tmp:
        root = Path(tmp)
        if options.catch_up:
            result["catch_up"] = await catch_up(options, root / "catch-up")
        if options.failover:
            result["failover"] = await failover(options, root / "failover")
    result["load_after"] = load()
    results = record.results([outcome(result)], (LANESYNC,), {"details": result})
    return json.dumps(result, indent=2), results
