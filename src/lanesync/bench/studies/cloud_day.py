"""The store of ``lanesync bench cloud``, built offline: terminal directories, a cloud that holds
the store's morning (prices and opening stock), a day of sales written on every lane and
exchanged by signed bundles into the two lanes that will run (as the LAN would have), and the
minimal delta the cloud is missing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lanesync.bench.load import seeded
from lanesync.cloud.directory import CloudDirectory
from lanesync.core import bodies
from lanesync.core.identity import Role, public_key_of
from lanesync.core.ids import Sku
from lanesync.core.records import Body
from lanesync.core.views import Views
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

STORE_ID = "bench-store"
SKUS = [Sku(f"sku{i:03d}") for i in range(200)]
BATCH = 500  # sales per Terminal.commit: one group commit, as the daemon's committer makes


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


def price_change(_: Views, sku: Sku) -> Body:
    return bodies.build_price_change(Role.MANAGER, sku, 100)


def receipt(_: Views, sku: Sku) -> Body:
    return bodies.build_receipt(sku, 10_000)  # the opening stock


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
    rng = seeded(42)
    with Terminal.open(lanes[0]) as manager:
        for sku in SKUS:
            manager.write(partial(price_change, sku=sku))
        write_together(manager, [partial(receipt, sku=sku) for sku in SKUS])
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
