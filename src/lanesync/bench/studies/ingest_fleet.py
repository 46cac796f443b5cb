"""The stores of ``lanesync bench cloud-ingest``, built offline once: per store an authority
(``StoreDirectory.init``), one enrolled cashier terminal holding the opening stock (one receipt
per SKU) and a day of sales (500 per ``Terminal.commit``), and one cloud directory serving every
store (the Python APIs behind ``cloud init``, ``store certify-cloud`` and ``cloud add-store``),
kept config-only and copied for every cloud process; and the reference merge, the cloud's
per-record floor.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lanesync.bench.cluster import BenchError
from lanesync.bench.load import seeded
from lanesync.bench.studies.common import progress
from lanesync.cloud.directory import CloudDirectory
from lanesync.core import bodies
from lanesync.core.identity import Role, public_key_of
from lanesync.core.ids import Sku
from lanesync.core.records import Body, Sale
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.shell.directories import StoreDirectory, new_client_id
from lanesync.shell.terminal import Terminal, wall_clock_ms

TERMINAL_ID = "till1"
# Opening stock: one receipt per SKU of a small catalog (20 SKUs, 500 units each).
SKUS = [Sku(f"sku{i:02d}") for i in range(20)]
OPENING_QTY = 500
# Catalog prices, drawn once (cents); sales carry explicit prices (a cashier sets none).
PRICES = {sku: seeded(42).randint(50, 4999) for sku in SKUS}
BATCH = 500  # records per commit, as in ``lanesync bench cloud`` (one group commit per 500)
VALID_DAYS = 30  # certificates only need to outlive the run
# What a cloud directory holds besides its configuration (a copy leaves them out).
RUNTIME_FILES = shutil.ignore_patterns("runtime.json", "lock", "api.token", "*.db", "*.db-*")
# The offline reference merge (cloud-side work per record without any I/O) uses this many stores.
REFERENCE_STORES = 5


@dataclass(frozen=True, slots=True)
class StoreDay:
    store_id: str
    terminal: Path  # the built terminal directory (copied for every configuration)
    sales: int
    total_cents: int
    receipts: int

    @property
    def records(self) -> int:
        return self.sales + self.receipts


@dataclass(frozen=True, slots=True)
class Fleet:
    cloud_template: Path  # config only: cloud.key, cloud.json, stores/*/{store.json,...}
    stores: list[StoreDay]
    build_s: float

    @property
    def records(self) -> int:
        return sum(s.records for s in self.stores)

    @property
    def sales(self) -> int:
        return sum(s.sales for s in self.stores)


def sale_builder(rng: random.Random) -> Callable[[Views], Body]:
    requests = [
        bodies.LineRequest(sku, rng.randint(1, 3), PRICES[sku])
        for sku in rng.sample(SKUS, rng.randint(1, 3))
    ]
    return partial(bodies.build_sale, requests=requests)


def receipt(_: Views, sku: Sku) -> Body:
    return bodies.build_receipt(sku, OPENING_QTY)


def receipt_builder(sku: Sku) -> Callable[[Views], Body]:
    return partial(receipt, sku=sku)


def write_all(till: Terminal, builders: Sequence[Callable[[Views], Body]]) -> list[Body]:
    """Every record staged, then committed BATCH at a time (one ``Terminal.commit`` each, as
    the daemon's group commit does), compacting when due; a refused write raises."""
    bodies: list[Body] = []
    for first in range(0, len(builders), BATCH):
        staged = [till.stage(build) for build in builders[first : first + BATCH]]
        till.commit([change for _, change in staged])
        till.compact_if_due()
        bodies += [record.body for record, _ in staged]
    return bodies


def register_store(root: Path, cloud: CloudDirectory, store_id: str) -> StoreDirectory:
    """A store's authority (``store init``), the cloud's certificate it signs (``store
    certify-cloud``) and the store added to the cloud (``cloud add-store``): all a store the
    cloud serves needs before any of its lanes exists."""
    authority = StoreDirectory.init(root / "authorities" / store_id, store_id)
    cert = authority.certify_cloud(public_key_of(cloud.key), wall_clock_ms(), VALID_DAYS)
    cert_file = root / "certs" / f"{store_id}.cert"
    cert_file.parent.mkdir(exist_ok=True)
    cert_file.write_bytes(cert.encoded)
    cloud.add_store(authority.identity_file, cert_file)
    return authority


def write_store(authority: StoreDirectory, terminal: Path, seed: int, sales: int) -> StoreDay:
    """One enrolled cashier terminal with the opening stock and ``sales`` sales (drawn from
    ``seed``), written offline."""
    authority.enroll(terminal, TERMINAL_ID, Role.CASHIER, wall_clock_ms(), VALID_DAYS)
    rng = seeded(seed)
    with Terminal.open(terminal) as till:
        receipts = write_all(till, [receipt_builder(sku) for sku in SKUS])
        day = write_all(till, [sale_builder(rng) for _ in range(sales)])
    totals = [body.total_cents for body in day if isinstance(body, Sale)]
    return StoreDay(
        str(authority.identity.store_id), terminal, len(totals), sum(totals), len(receipts)
    )


def build_fleet(root: Path, stores: int, sales: int) -> Fleet:
    started = time.perf_counter()
    cloud = CloudDirectory.init(root / "cloud-template")
    days = []
    for i in range(stores):
        store_id = f"store-{i:03d}"
        authority = register_store(root, cloud, store_id)
        days.append(write_store(authority, root / "terminals" / store_id, i, sales))
        if (i + 1) % 25 == 0 or i + 1 == stores:
            progress(f"built {i + 1}/{stores} stores")
    return Fleet(root / "cloud-template", days, time.perf_counter() - started)


def reference_merge(fleet: Fleet) -> dict[str, float]:
    """CPU per 1k records of what the cloud must do with every record it did not have: merge
    the CRDT update, verify the Ed25519 signature, fold it into the views (Replica.merge into a
    fresh replica, in this process, no I/O). The cloud's per-record floor."""
    cpu = 0.0
    records = 0
    for day in fleet.stores[:REFERENCE_STORES]:
        with Terminal.open(day.terminal) as till:
            updates = list(till.replica.updates_since({}).items())
            store = till.directory.store
        replica = Replica(store, new_client_id(), None)
        started = time.process_time()
        replica.merge(updates, wall_clock_ms())
        cpu += time.process_time() - started
        if replica.views.accepted_count() != day.records:
            raise BenchError(f"reference merge of {day.store_id} accepted the wrong records")
        records += day.records
    return {"records": records, "cpu_s_per_1k_records": round(cpu / records * 1000, 3)}


def copy_config_only(source: Path, target: Path) -> None:
    shutil.copytree(source, target, ignore=RUNTIME_FILES)
