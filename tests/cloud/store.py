"""Store scenarios for the cloud tests: lanes in a full mesh through fault proxies, the books
every acknowledged write is entered in, and waits for the cloud to be exact."""

from __future__ import annotations

import itertools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from support import Cli, ProxyLoop, parallel, port_of, wait_until

from lanesync.core.election import FAILOVER_BOUND_MS
from lanesync.shell.uplink import CHECK_INTERVAL_S, PROBE_INTERVAL_S

from .conftest import STORE_ID
from .procs import Cloud, Lane, Procs, cli, cli_json

# The documented bound from a leader's death to a new leader that uses the cloud link.
FAILOVER_BOUND_S = FAILOVER_BOUND_MS / 1000 + PROBE_INTERVAL_S + CHECK_INTERVAL_S
# Set to a file to collect figures the tests measure (one JSON object per line).
MEASUREMENTS = os.environ.get("LANESYNC_CLOUD_MEASUREMENTS")
LEAD_TIMEOUT_S = 30.0  # a store starting on a busy box: starts, first lease, first uplink
EXACT_TIMEOUT_S = 45.0
PRICES = {"milk": 149, "bread": 275, "eggs": 320}


def measured(name: str, value: object) -> None:
    """Print a measured figure (shown with ``pytest -rP``) and append it to MEASUREMENTS."""
    print(f"measured {name} = {value}")
    if MEASUREMENTS:
        with Path(MEASUREMENTS).open("a") as out:
            out.write(json.dumps({"name": name, "value": value}) + "\n")


@dataclass
class Books:
    """What the lanes acknowledged: the truth the cloud must equal exactly."""

    received: Counter[str] = field(default_factory=Counter)
    sales: dict[str, tuple[Counter[str], int]] = field(default_factory=dict)
    voided: set[str] = field(default_factory=set)

    def receive(self, lane: Lane, sku: str, qty: int) -> None:
        lane.receive(sku, qty)
        self.received[sku] += qty

    def sell(self, lane: Lane, lines: list[tuple[str, int] | tuple[str, int, int]]) -> str:
        """Sell through the lane's API; entered only once acknowledged."""
        result = lane.sell(lines)
        self.record_sale(str(result["sale_id"]), lines, int(result["total"]))
        return str(result["sale_id"])

    def record_sale(
        self, sale_id: str, lines: list[tuple[str, int] | tuple[str, int, int]], total: int
    ) -> None:
        """Enter an acknowledged sale (made through the API or the CLI)."""
        assert sale_id not in self.sales, f"sale id {sale_id} acknowledged twice"
        qty: Counter[str] = Counter()
        for line in lines:
            qty[line[0]] += line[1]
        self.sales[sale_id] = (qty, total)

    def void(self, lane: Lane, sale_id: str) -> None:
        lane.void(sale_id)
        self.voided.add(sale_id)

    def stock(self) -> dict[str, int]:
        on_hand = Counter(self.received)
        for sale_id, (qty, _) in self.sales.items():
            if sale_id not in self.voided:
                on_hand.subtract(qty)
        return {sku: on_hand[sku] for sku in sorted(set(on_hand) | set(self.received))}

    def live_sales(self) -> dict[str, int]:
        return {s: total for s, (_, total) in self.sales.items() if s not in self.voided}

    def totals(self) -> tuple[int, int]:
        live = self.live_sales()
        return len(live), sum(live.values())


def cloud_view(cloud: Cloud) -> dict[str, Any]:
    sales = cloud.sales(STORE_ID)
    return {
        "count": sales["count"],
        "total": sales["total"],
        "ids": sorted(s["sale_id"] for s in sales["sales"]),
        "stock": cloud.stock(STORE_ID),
    }


def wait_cloud_exact(cloud: Cloud, books: Books, timeout: float = EXACT_TIMEOUT_S) -> None:
    """Wait until the cloud's sales and stock are exactly the books'; then check that the
    sales it lists are exactly the acknowledged, non-voided ones (no duplicates, nothing
    forged)."""
    count, total = books.totals()
    expected_stock = books.stock()

    def exact() -> bool:
        view = cloud_view(cloud)
        # SKUs with only a price are listed with 0 on hand: anything else must be in the books.
        stock = {sku: n for sku, n in view["stock"].items() if sku in expected_stock or n}
        return (view["count"], view["total"]) == (count, total) and stock == expected_stock

    wait_until(
        exact,
        timeout,
        lambda: f"cloud exact: expected {(count, total, expected_stock)}, has {cloud_view(cloud)}",
        interval=0.25,
    )
    view = cloud_view(cloud)
    assert view["ids"] == sorted(books.live_sales())
    assert len(set(view["ids"])) == len(view["ids"])


def check_cloud_cli(root: Path, cloud_dir: Path, books: Books) -> None:
    """The head-office commands print exactly the books."""
    count, total = books.totals()
    sales = cli_json("cloud", "sales", cloud_dir, STORE_ID, cwd=root)
    assert (sales["count"], sales["total"]) == (count, total)
    assert sorted(s["sale_id"] for s in sales["sales"]) == sorted(books.live_sales())
    assert {s["sale_id"]: s["total"] for s in sales["sales"]} == books.live_sales()
    stock = cli_json("cloud", "stock", cloud_dir, STORE_ID, cwd=root)
    held = {item["sku"]: item["on_hand"] for item in stock["items"]}
    assert {sku: held.get(sku) for sku in books.stock()} == books.stock()


def leaders(lanes: list[Lane]) -> dict[str, str | None]:
    return {lane.name: lane.status()["leader"] for lane in lanes}


def wait_leader(lanes: list[Lane], leader: Lane, timeout: float = LEAD_TIMEOUT_S) -> None:
    """Every lane names ``leader`` and the leader's cloud link is up."""
    wait_until(
        lambda: set(leaders(lanes).values()) == {leader.name} and leader.leads(),
        timeout,
        lambda: (
            f"{leader.name} leads with its uplink: {leaders(lanes)}, "
            f"cloud {leader.status()['cloud']}"
        ),
        interval=0.2,
    )


@dataclass
class FullMesh:
    """Lanes in a full mesh, one fault proxy per pair (the lower id dials the higher)."""

    lanes: dict[str, Lane]
    links: dict[tuple[str, str], Any]

    def between(self, side_a: set[str], side_b: set[str]) -> list[Any]:
        return [
            link
            for (a, b), link in self.links.items()
            if (a in side_a and b in side_b) or (a in side_b and b in side_a)
        ]


def start_mesh(
    procs: Procs,
    proxies: ProxyLoop,
    dirs: dict[str, Path],
    *,
    cloud: str | None,
    priorities: dict[str, int] | None = None,
    clouds: dict[str, str] | None = None,
) -> FullMesh:
    """``cloud`` is every lane's cloud URL, unless ``clouds`` names another for a lane."""
    names = sorted(dirs)
    links = {pair: proxies.link() for pair in itertools.combinations(names, 2)}
    specs = [
        {
            "path": dirs[name],
            "peers": [f"ws://127.0.0.1:{links[(name, b)].port}" for b in names if b > name],
            "cloud": (clouds or {}).get(name, cloud),
            "priority": (priorities or {}).get(name),
        }
        for name in names
    ]
    lanes = dict(zip(names, procs.lanes(specs), strict=True))
    for (_, target), link in links.items():
        proxies.retarget(link, port_of(lanes[target].listen))
    return FullMesh(lanes, links)


def lines_for(i: int) -> list[tuple[str, int, int]]:
    """A varied sale with explicit unit prices (the catalog is not needed)."""
    skus = list(PRICES)
    first = skus[i % 3]
    out = [(first, 1 + i % 3, PRICES[first])]
    if i % 2:
        second = skus[(i + 1) % 3]
        out.append((second, 1, PRICES[second]))
    return out


def sell_rounds(books: Books, lanes: list[Lane], rounds: int, offset: int = 0) -> None:
    """Every lane sells ``rounds`` sales, the lanes at the same time."""

    def run(lane: Lane, k: int) -> list[tuple[str, list[Any], int]]:
        done = []
        for i in range(rounds):
            lines = lines_for(offset + i + 7 * k)
            result = lane.sell(lines)
            done.append((str(result["sale_id"]), lines, int(result["total"])))
        return done

    for acknowledged in parallel([partial(run, lane, k) for k, lane in enumerate(lanes)]):
        for sale_id, lines, total in acknowledged:
            books.record_sale(sale_id, lines, total)


def wait_digests(lanes: list[Lane], cloud: Cloud, timeout: float = 30.0) -> str:
    """Every lane holds exactly the cloud's state (same canonical digest)."""

    def same() -> bool:
        return {lane.digest() for lane in lanes} == {cloud.digest(STORE_ID)}

    wait_until(
        same,
        timeout,
        lambda: (
            f"digests {[lane.digest()[:12] for lane in lanes]} vs cloud "
            f"{cloud.digest(STORE_ID)[:12]}"
        ),
        interval=0.2,
    )
    return cloud.digest(STORE_ID)


def one_error_line(result: Any) -> str:
    assert result.returncode == 1, result.describe()
    assert result.stdout == "", result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("error: "), result.describe()
    return str(lines[0])


def clis(root: Path, *commands: tuple[str | Path, ...]) -> list[Cli]:
    """Run independent commands at the same time (each is a new Python process)."""
    return parallel([partial(cli, *args, cwd=root) for args in commands])
