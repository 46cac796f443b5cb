"""Chaos with real processes and real sockets (loopback only): the simulator's claims, checked
on the real shell.

Three ``lanesync run`` daemons in a full mesh and a ``lanesync cloud serve``, every link
(lane-lane and lane-cloud) through a ``faultproxy.Link`` on 127.0.0.1. A single thread
alternates a workload (sales rung through the local API, each acknowledged sale id recorded)
with faults: latency and jitter changes, LAN and WAN partitions that heal, and lanes SIGKILLed
and restarted. Workload and kills never overlap, so a request either got its answer or hit a
dead daemon (nothing committed). Then faults stop and the store must settle: one digest on
every lane and in the cloud, every acknowledged sale exactly once on every lane and in the
cloud, stock exactly received - sold, and ``lanesync verify`` clean.

CI runs a short chaos (``LANESYNC_CHAOS_S``, 15 s of faults by default); a long one is
``LANESYNC_CHAOS_S=600 pytest -m slow tests/sim/test_chaos.py -s`` (docs/simulation.md).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from mesh.cluster import (  # tests/mesh: the real-daemon harness
    ENV,
    LOOPBACK,
    Cluster,
    Daemon,
    wait_until,
)
from support import ProxyLoop, port_of

from lanesync.core.identity import Role
from lanesync.shell.terminal import Terminal

pytestmark = pytest.mark.slow

LANES = ("lane1", "lane2", "lane3")
STORE_ID = "chaos"
STOCK = {"milk": 500, "bread": 500}
CHAOS_S = float(os.environ.get("LANESYNC_CHAOS_S", "15"))
SETTLE_S = 60.0


class CloudProc:
    """``lanesync cloud serve`` on loopback and a client of its read API."""

    def __init__(self, cluster: Cluster, directory: Path) -> None:
        self.directory = directory
        log = cluster.root / "cloud.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lanesync", "cloud", "serve", str(directory),
                 "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"],
                stdout=out, stderr=subprocess.STDOUT, env=ENV,
            )  # fmt: skip
        self.log = log

        def runtime() -> dict[str, Any] | None:
            assert self.process.poll() is None, log.read_text()
            try:
                info: dict[str, Any] = json.loads((directory / "runtime.json").read_text())
            except (OSError, ValueError):
                return None
            return info if info.get("pid") == self.process.pid else None

        self.runtime = wait_until(runtime, 30, "cloud started")
        token = (directory / "api.token").read_text().strip()
        self.client = httpx.Client(
            base_url=self.runtime["api"],
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
            trust_env=False,
        )

    def get(self, path: str) -> Any:
        response = self.client.get(f"/v1/stores/{STORE_ID}{path}")
        assert response.status_code == 200, response.text
        return response.json()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class Chaos:
    def __init__(self, cluster: Cluster, proxies: ProxyLoop, seed: int) -> None:
        self.cluster = cluster
        self.proxies = proxies
        self.rng = random.Random(seed)
        self.acked: list[str] = []
        self.counts: Counter[str] = Counter()
        store = cluster.store(store_id=STORE_ID)
        self.dirs = {
            n: cluster.enroll(store, n, Role.MANAGER if n == "lane1" else Role.CASHIER)
            for n in LANES
        }
        cloud_dir = cluster.root / "cloud"
        for args in (
            ("cloud", "init", cloud_dir),
            ("store", "certify-cloud", store.path, cloud_dir / "cloud.json", "cloud.cert"),
            ("cloud", "add-store", cloud_dir, store.identity_file, "cloud.cert"),
        ):
            result = cluster.cli(*args)
            assert result.returncode == 0, result.describe()
        self.cloud = CloudProc(cluster, cloud_dir)
        cloud_port = port_of(self.cloud.runtime["listen"])
        self.lan = {pair: proxies.link(latency_ms=2, jitter_ms=1, seed=i)
                    for i, pair in enumerate(itertools.combinations(LANES, 2))}  # fmt: skip
        self.wan = {n: proxies.link(cloud_port, latency_ms=20, jitter_ms=5) for n in LANES}
        self.lanes: dict[str, Daemon] = {}
        for name, daemon in zip(LANES, cluster.start_many([self._spec(n) for n in LANES]),
                                strict=True):  # fmt: skip
            self.lanes[name] = daemon
            self._retarget(name)

    def _spec(self, name: str) -> tuple[Path, list[str]]:
        peers = [f"ws://{LOOPBACK}:{self.lan[(name, b)].port}" for b in LANES if b > name]
        return self.dirs[name], peers

    def _retarget(self, name: str) -> None:
        port = port_of(self.lanes[name].listen)
        for (_, target), link in self.lan.items():
            if target == name:
                link.target_port = port

    def start(self, name: str) -> None:
        path, peers = self._spec(name)
        extra = ["--cloud", f"ws://{LOOPBACK}:{self.wan[name].port}"]
        self.lanes[name] = self.cluster.start(path, peers, extra)
        self._retarget(name)

    # -- workload and faults ----------------------------------------------------------------------

    def sell(self) -> None:
        name = self.rng.choice(LANES)
        lane = self.lanes[name]
        if not lane.alive():
            return
        sku = self.rng.choice(sorted(STOCK))
        qty = self.rng.randint(1, 3)
        try:
            response = lane.post("/v1/sales", {"lines": [{"sku": sku, "qty": qty}]})
        except httpx.HTTPError:
            self.counts["sale-unanswered"] += 1
            return
        assert response.status_code == 201, response.text
        self.acked.append(response.json()["sale_id"])
        self.sold[sku] += qty
        self.counts["sale"] += 1

    def fault(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.25:
            link = rng.choice(list(self.lan.values()))
            self.proxies.partition(link)
            self.counts["lan-partition"] += 1
            self.pending_heal.append((time.monotonic() + rng.uniform(0.5, 3), link))
        elif roll < 0.4:
            link = rng.choice(list(self.wan.values()))
            self.proxies.partition(link)
            self.counts["wan-partition"] += 1
            self.pending_heal.append((time.monotonic() + rng.uniform(1, 4), link))
        elif roll < 0.6:
            link = rng.choice([*self.lan.values(), *self.wan.values()])
            latency, jitter = rng.choice(((1, 0), (5, 3), (30, 20), (120, 60)))

            def slow(link: Any = link, latency: int = latency, jitter: int = jitter) -> None:
                link.latency_ms, link.jitter_ms = latency, jitter

            self.proxies.call(slow)
            self.counts["latency"] += 1
        else:
            name = rng.choice(LANES)
            self.cluster.kill(self.lanes[name])
            self.counts["sigkill"] += 1
            self.start(name)
            self.counts["restart"] += 1

    def heal_due(self, everything: bool = False) -> None:
        now = time.monotonic()
        due = [link for at, link in self.pending_heal if everything or at <= now]
        self.pending_heal = [(at, link) for at, link in self.pending_heal if link not in due]
        if due:
            self.proxies.heal(*due)

    def run(self, seconds: float) -> None:
        self.sold: Counter[str] = Counter()
        self.pending_heal: list[tuple[float, Any]] = []
        lane1 = self.lanes["lane1"]
        for sku, qty in STOCK.items():
            lane1.set_price(sku, 100 + len(sku))
            lane1.receive(sku, qty)
        for name in LANES[1:]:  # restart with the uplink configured (lane1 keeps its records)
            self.cluster.stop(self.lanes[name])
            self.start(name)
        self.cluster.stop(lane1)
        self.start("lane1")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(self.rng.randint(2, 8)):
                self.sell()
            if self.rng.random() < 0.5:
                self.fault()
            self.heal_due()
            time.sleep(self.rng.uniform(0.05, 0.3))
        self.heal_due(everything=True)

        def calm(link: Any) -> None:
            link.latency_ms, link.jitter_ms = 1, 0

        for link in [*self.lan.values(), *self.wan.values()]:
            self.proxies.call(lambda link=link: calm(link))

    # -- the end state ----------------------------------------------------------------------------

    def expected_stock(self) -> dict[str, int]:
        return {sku: STOCK[sku] - self.sold[sku] for sku in STOCK}

    def settled(self) -> bool:
        digests = {lane.digest() for lane in self.lanes.values()}
        if len(digests) != 1:
            return False
        if self.cloud.get("/digest")["digest"] not in digests:
            return False
        expected = self.expected_stock()
        return all(
            {s: lane.on_hand(s) for s in expected} == expected for lane in self.lanes.values()
        )

    def describe(self) -> str:
        lanes = {
            n: (d.digest()[:12], d.stock(), d.status()["leader"]) for n, d in self.lanes.items()
        }
        return f"lanes {lanes} cloud {self.cloud.get('/digest')} expected {self.expected_stock()}"


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    group = Cluster(tmp_path / "chaos")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def proxies() -> Any:
    loop = ProxyLoop()
    try:
        yield loop
    finally:
        loop.close()


def test_chaos_store_converges_exactly(cluster: Cluster, proxies: ProxyLoop) -> None:
    seed = int(os.environ.get("LANESYNC_CHAOS_SEED", "1"))
    chaos = Chaos(cluster, proxies, seed)
    try:
        chaos.run(CHAOS_S)
        faults_over = time.monotonic()
        wait_until(chaos.settled, SETTLE_S, chaos.describe, interval=0.25)
        settle_s = time.monotonic() - faults_over
        cloud_sales = chaos.cloud.get("/sales")["sales"]
        cloud_ids = Counter(str(s["sale_id"]) for s in cloud_sales)
        assert not [i for i, n in cloud_ids.items() if n > 1], "sales twice in the cloud"
        assert set(chaos.acked) == set(cloud_ids), "cloud sales differ from acknowledged"
        assert chaos.cloud.get("/stock")["items"] == [
            {"sku": s, "on_hand": n} for s, n in sorted(chaos.expected_stock().items())
        ]
    finally:
        chaos.cloud.stop()
    for daemon in chaos.lanes.values():
        cluster.stop(daemon)
    for name, path in chaos.dirs.items():
        with Terminal.open(path) as terminal:
            ledger = terminal.replica.ledger
            held = Counter(
                str(r.id) for _, _, r in terminal.replica.records() if ledger.is_accepted(r)
            )
            missing = [s for s in chaos.acked if not ledger.is_sale(s) or held[s] != 1]
            assert not missing, f"{name} lacks acknowledged sales {missing[:5]}"
            assert set(ledger.sale_ids()) == set(chaos.acked), name
        verify = cluster.cli("verify", path, "--json")
        assert verify.returncode == 0, verify.describe()
    assert len(set(chaos.acked)) == len(chaos.acked)
    print(
        f"\nchaos: {CHAOS_S:.0f} s of faults, {len(chaos.acked)} acknowledged sales, "
        f"faults {dict(chaos.counts)}, settled {settle_s:.1f} s after faults stopped"
    )
