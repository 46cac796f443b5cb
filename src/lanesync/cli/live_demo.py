"""``lanesync demo``: a store of four lanes as separate processes on loopback.

The lanes replicate live through fault-injecting proxies (one per pair of lanes). The demo
rings sales on every lane, splits the store in two halves that cannot reach each other, keeps
selling on both sides, heals the split, and shows each lane's stock and digest live until all
four hold the same state with stock exactly received - sold. The lanes are started, and
stopped whatever happens, by ``lanesync.tools.procs`` (the harness of the tests and benchmarks
too).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from lanesync.core.identity import Role
from lanesync.errors import LanesyncError, ProcessFailed
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.runtime import DaemonClient
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.faultproxy import FaultLink
from lanesync.tools.procs import Proc, ProcessGroup

from .output import console, print_z_report

LANES = ("lane1", "lane2", "lane3", "lane4")
HALVES = ({"lane1", "lane2"}, {"lane3", "lane4"})
STOCK = {"milk": 400, "bread": 250, "eggs": 600}
PRICES = {"milk": 149, "bread": 299, "eggs": 35}
PHASE_S = 3.0
SALES_PER_S = 40  # store-wide; enough to watch, far below what a lane absorbs
CONVERGE_TIMEOUT_S = 30.0
START_TIMEOUT_S = 20.0


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        # die_with_parent: a demo killed outright (not Ctrl-C) leaves no lane running.
        self.group = ProcessGroup(root, die_with_parent=True)
        self.lanes: dict[str, Proc] = {}
        self.clients: dict[str, DaemonClient] = {}
        self.links: dict[tuple[str, str], FaultLink] = {}
        self.sold: dict[str, int] = {}
        self.sales = 0
        self.phase = "starting"
        self.rng = random.Random(7)  # noqa: S311 - a demo workload

    async def start(self) -> None:
        store = StoreDirectory.init(self.root / "store", "demo-store")
        for i, name in enumerate(LANES):
            role = Role.MANAGER if i == 0 else Role.CASHIER
            store.enroll(self.root / name, name, role, wall_clock_ms(), 30)
        # One proxy per pair; the lower lane dials the higher one through it.
        for a, b in itertools.combinations(LANES, 2):
            link = FaultLink("127.0.0.1", 0)
            await link.start()
            link.partition()  # until the target lane is listening
            self.links[(a, b)] = link
        for name in LANES:
            peers = [f"ws://127.0.0.1:{self.links[(name, b)].port}" for b in LANES if b > name]
            # Lanes reach each other only through the proxies (no mDNS), so the split is real.
            args = ["-m", "lanesync", "run", str(self.root / name), "--no-discovery"]
            for peer in peers:
                args += ["--peer", peer]
            self.lanes[name] = self.group.spawn(name, self.root / name, args)
        deadline = time.monotonic() + START_TIMEOUT_S
        for name, lane in self.lanes.items():
            try:
                await lane.wait_ready_async(max(0.0, deadline - time.monotonic()))
            except ProcessFailed:
                raise LanesyncError(f"{name} did not start; see {lane.log_path}") from None
            client = DaemonClient.for_directory(lane.path)
            if client is None:
                raise LanesyncError(f"{name} started without its API; see {lane.log_path}")
            self.clients[name] = client
        for (_, b), link in self.links.items():
            link.target_port = int(str(self.lanes[b].runtime["listen"]).rsplit(":", 1)[1])
            link.heal()

    async def call(self, lane: str, method: str, path: str, body: Any = None) -> Any:
        return await asyncio.to_thread(self.clients[lane].call, method, path, body)

    async def ring(self, lanes: list[str], seconds: float) -> None:
        """Ring random baskets on the given lanes at SALES_PER_S store-wide."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            lane = self.rng.choice(lanes)
            basket = {sku: self.rng.randint(1, 3) for sku in self.rng.sample(sorted(STOCK), 2)}
            lines = [{"sku": sku, "qty": qty} for sku, qty in basket.items()]
            await self.call(lane, "POST", "/v1/sales", {"lines": lines})
            for sku, qty in basket.items():  # counted only once acknowledged
                self.sold[sku] = self.sold.get(sku, 0) + qty
            self.sales += 1
            await asyncio.sleep(1 / SALES_PER_S)

    async def snapshot(self) -> dict[str, dict[str, Any]]:
        rows = {}
        for lane in LANES:
            status = await self.call(lane, "GET", "/v1/status")
            stock = await self.call(lane, "GET", "/v1/stock")
            rows[lane] = {
                "digest": status["digest"],
                "peers": len(status["peers"]),
                "records": status["records"],
                "stock": {item["sku"]: item["on_hand"] for item in stock["items"]},
            }
        return rows

    def expected(self) -> dict[str, int]:
        return {sku: qty - self.sold.get(sku, 0) for sku, qty in STOCK.items()}

    def table(self, rows: dict[str, dict[str, Any]]) -> Table:
        table = Table(title=f"lanesync demo: {self.phase} ({self.sales} sales acknowledged)")
        table.add_column("lane")
        table.add_column("peers", justify="right")
        table.add_column("records", justify="right")
        for sku in sorted(STOCK):
            table.add_column(sku, justify="right")
        table.add_column("digest")
        digests = {row["digest"] for row in rows.values()}
        for lane, row in rows.items():
            style = "green" if len(digests) == 1 else None
            table.add_row(
                lane,
                str(row["peers"]),
                str(row["records"]),
                *(str(row["stock"].get(sku, "-")) for sku in sorted(STOCK)),
                row["digest"][:12],
                style=style,
            )
        expected = self.expected()
        table.add_row(
            "expected", "", "", *(str(expected[s]) for s in sorted(STOCK)), "", style="dim"
        )
        return table

    def split(self) -> None:
        for (a, b), link in self.links.items():
            if (a in HALVES[0]) != (b in HALVES[0]):
                link.partition()

    def heal(self) -> None:
        for link in self.links.values():
            link.heal()

    async def stop(self) -> None:
        await asyncio.to_thread(self.group.close)
        for link in self.links.values():
            await link.stop()


def _converged(rows: dict[str, dict[str, Any]], expected: dict[str, int]) -> bool:
    digests = {row["digest"] for row in rows.values()}
    return len(digests) == 1 and all(row["stock"] == expected for row in rows.values())


async def _demo(root: Path) -> dict[str, Any]:
    store = Store(root)
    console.rule(
        Text.assemble(("lanesync demo", "bold"), ": four lanes, no server, a split and a heal")
    )
    try:
        await store.start()
        lane1 = "lane1"
        for sku, cents in PRICES.items():
            await store.call(lane1, "POST", "/v1/prices", {"sku": sku, "unit_price": cents})
        for sku, qty in STOCK.items():
            await store.call(lane1, "POST", "/v1/stock/receive", {"sku": sku, "qty": qty})
        # Lanes ring sales at catalog prices: they need lane1's prices before the first one.
        started = time.monotonic()
        while not _converged(await store.snapshot(), store.expected()):
            if time.monotonic() - started > CONVERGE_TIMEOUT_S:
                raise LanesyncError("the lanes did not receive lane1's prices within 30 s")
            await asyncio.sleep(0.05)
        with Live(console=console, refresh_per_second=8) as live:

            async def show_until(done: asyncio.Task[None]) -> None:
                try:
                    while not done.done():
                        live.update(store.table(await store.snapshot()))
                        await asyncio.sleep(0.25)
                finally:
                    # Interrupted (Ctrl-C): the sales stop before the lanes they ring on do.
                    done.cancel()
                    await asyncio.wait([done])
                done.result()  # a refused sale stops the demo with its error

            store.phase = "all lanes connected, selling"
            await show_until(asyncio.create_task(store.ring(list(LANES), PHASE_S)))
            store.phase = "SPLIT: lanes 1-2 | lanes 3-4, both halves selling"
            store.split()
            await show_until(asyncio.create_task(store.ring(list(LANES), PHASE_S)))
            split_rows = await store.snapshot()
            store.phase = "healed: converging"
            store.heal()
            healed = time.monotonic()
            while True:
                rows = await store.snapshot()
                live.update(store.table(rows))
                if _converged(rows, store.expected()):
                    break
                if time.monotonic() - healed > CONVERGE_TIMEOUT_S:
                    raise LanesyncError("the lanes did not converge within 30 s of the heal")
                await asyncio.sleep(0.1)
            took = time.monotonic() - healed
            store.phase = f"converged {took:.1f} s after the heal"
            live.update(store.table(rows))
        console.print()
        verified = [await store.call(lane, "GET", "/v1/verify") for lane in LANES]
        if not all(report["ok"] for report in verified):
            raise LanesyncError("a lane's journal does not verify")
        halves = len({row["digest"] for row in split_rows.values()})
        console.print(
            f"converged: {store.sales} sales on 4 lanes; during the split the store "
            f"held {halves} different states; {took:.1f} s after the heal every lane has digest "
            f"{rows[lane1]['digest'][:16]} and stock exactly received - sold; "
            "every journal verifies"
        )
        report = await _close_the_day(store)
        return {
            "mode": "live",
            "lanes": len(LANES),
            "converged": True,
            "sales": store.sales,
            "states_during_split": halves,
            "converged_after_heal_s": round(took, 1),
            "digest": rows[lane1]["digest"],
            "stock": dict(sorted(store.expected().items())),
            "verified": True,
            "z_report": report,
        }
    finally:
        await store.stop()


async def _close_the_day(store: Store) -> dict[str, Any]:
    """Every lane closes the demo's day; once each holds every day-end, the store's Z-report
    is the same on all of them, and once every lane acknowledged it each seals the day: print
    the report, and return it for the summary."""
    for lane in LANES:
        await store.call(lane, "POST", "/v1/close", {})
    started = time.monotonic()
    while True:
        reports = [await store.call(lane, "GET", "/v1/reports") for lane in LANES]
        first = reports[0]
        if first["complete"] and first["sealed"] and all(r == first for r in reports):
            break
        if time.monotonic() - started > CONVERGE_TIMEOUT_S:
            raise LanesyncError("the lanes did not seal the same Z-report within 30 s")
        await asyncio.sleep(0.1)
    console.print(
        f"every lane closed and sealed {first['day']} "
        f"({time.monotonic() - started:.1f} s after the last close)"
    )
    console.print()
    print_z_report(reports[0])
    console.print("every lane prints this report, byte for byte")
    report: dict[str, Any] = reports[0]
    return report


def run_live_demo(work_dir: Path | None) -> dict[str, Any]:
    """Run the live demo; returns its summary (``lanesync demo --json``). Ctrl-C stops it: the
    lanes and proxies it started are stopped (``_demo``'s finally, run as asyncio cancels it)
    before ``KeyboardInterrupt`` leaves here, for the CLI's one-line exit 130."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lanesync-demo-") as tmp:
        root = work_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        return asyncio.run(_demo(root))
