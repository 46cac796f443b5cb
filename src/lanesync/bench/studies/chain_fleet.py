"""The chain of ``lanesync bench cloud-chain``, built offline and compactly: every store the
cloud serves is registered (``ingest_fleet.register_store``: an authority, the cloud's
certificate, ``cloud add-store``), but only the active ones get a terminal directory with data
(``ingest_fleet.write_store``): a small day each, or a big catch-up for the first
``catchup_stores``. An idle store is a registered identity and nothing else, as in a chain
whose stores mostly sit between uploads.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lanesync.bench.studies.common import progress
from lanesync.bench.studies.ingest_fleet import (
    RUNTIME_FILES,
    Fleet,
    StoreDay,
    register_store,
    write_store,
)
from lanesync.cloud.directory import CloudDirectory

STORES_DIR = "stores"  # CLOUD_DIR/stores/<store id>: what ``cloud add-store`` writes


def store_name(i: int) -> str:
    return f"store-{i:04d}"


@dataclass(frozen=True, slots=True)
class Chain:
    fleet: Fleet  # the active stores (the catch-up ones first); its template registers all
    registered: int
    catchup: frozenset[str]  # store ids of the stores carrying a big catch-up
    register_s: float  # identities, certificates and add-store of every store
    write_s: float  # the active stores' terminals and their records

    @property
    def small(self) -> list[StoreDay]:
        return [d for d in self.fleet.stores if d.store_id not in self.catchup]

    @property
    def big(self) -> list[StoreDay]:
        return [d for d in self.fleet.stores if d.store_id in self.catchup]


def build_chain(
    root: Path, stores: int, active: int, catchup_stores: int, catchup_sales: int, sales: int
) -> Chain:
    """``stores`` registered; the first ``active`` written, the first ``catchup_stores`` of
    them with ``catchup_sales`` sales, the others with ``sales``."""
    started = time.perf_counter()
    cloud = CloudDirectory.init(root / "cloud-template")
    authorities = []
    for i in range(stores):
        authority = register_store(root, cloud, store_name(i))
        if i < active:
            authorities.append(authority)
    register_s = time.perf_counter() - started
    progress(f"registered {stores} stores in {register_s:.1f} s")
    started = time.perf_counter()
    days = []
    for i, authority in enumerate(authorities):
        count = catchup_sales if i < catchup_stores else sales
        days.append(write_store(authority, root / "terminals" / store_name(i), i, count))
        if (i + 1) % 50 == 0 or i + 1 == active:
            progress(f"wrote {i + 1}/{active} active stores")
    write_s = time.perf_counter() - started
    return Chain(
        Fleet(root / "cloud-template", days, register_s + write_s),
        stores,
        frozenset(store_name(i) for i in range(min(catchup_stores, active))),
        register_s,
        write_s,
    )


def copy_cloud_config(source: Path, target: Path, only: Iterable[str] | None = None) -> None:
    """The cloud's configuration (``ingest_fleet.copy_config_only``), with only the stores
    named in ``only`` registered when it is given."""
    keep = None if only is None else set(only)

    def ignored(directory: str, names: list[str]) -> set[str]:
        skip = set(RUNTIME_FILES(directory, names))
        if keep is not None and Path(directory) == source / STORES_DIR:
            skip |= {n for n in names if n not in keep}
        return skip

    shutil.copytree(source, target, ignore=ignored)
