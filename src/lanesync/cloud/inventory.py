"""What ``lanesync cloud stores`` and ``cloud verify`` read: the stores a cloud serves and, while
no ``cloud serve`` runs on its directory, their replicas opened from storage.

The stores are the registry's (cloud/registry.py): CLOUD_DIR/stores, and with a database
(``--db``) its table ``registered_stores`` too, as ``cloud serve --db`` reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.pgstorage import PostgresStoreStorage
from lanesync.cloud.registry import StoreRegistry, open_registry
from lanesync.cloud.schema import require_current_postgresql
from lanesync.cloud.sql import PostgresSql, connect, redact
from lanesync.errors import UsageError
from lanesync.shell.terminal import Terminal

# A replica's directory lock is held while ``cloud serve`` runs: wait for it no longer than a
# lane's offline commands do for theirs (they say who holds it).
LOCK_WAIT_S = 0.0


@contextlib.contextmanager
def registry_of(
    directory: CloudDirectory, db_url: str | None
) -> Iterator[tuple[StoreRegistry, PostgresSql | None]]:
    """The cloud's registry, and its database connection (None on SQLite), open for the block."""
    if db_url is None:
        yield open_registry(directory, None), None
        return
    sql = connect(db_url)
    try:
        require_current_postgresql(sql, redact(db_url))
        yield open_registry(directory, sql), sql
    finally:
        sql.close()


def store_entry(registry: StoreRegistry, store_id: str) -> dict[str, Any]:
    """What the registry says of one store: its time zone, the cloud's certificate for it, and
    where it is registered."""
    served = registry.store_directory(store_id)
    cert = served.me.certificate
    return {
        "store_id": store_id,
        "timezone": served.store.timezone,
        "cert_fingerprint": cert.key_fingerprint,
        "cert_not_after_ms": cert.not_after_ms,
        "registered_in": registry.registered_in(store_id).value,
    }


@contextlib.contextmanager
def _replica(registry: StoreRegistry, sql: PostgresSql | None, store_id: str) -> Iterator[Terminal]:
    served = registry.store_directory(store_id)
    storage = None if sql is None else (lambda: PostgresStoreStorage(sql, store_id))
    with Terminal.open_directory(
        served, lock_wait_s=LOCK_WAIT_S, open_storage=storage, feed=False
    ) as terminal:
        yield terminal


@contextlib.contextmanager
def open_replica(
    directory: CloudDirectory, store_id: str, db_url: str | None
) -> Iterator[Terminal]:
    """The cloud's replica of ``store_id`` from its SQLite file, or from ``db_url``'s
    PostgreSQL. Raises ``UsageError`` for a store this cloud does not serve."""
    with registry_of(directory, db_url) as (registry, sql), _replica(registry, sql, store_id) as t:
        yield t


def stores_report(
    directory: CloudDirectory, served: dict[str, dict[str, Any]] | None, db_url: str | None
) -> dict[str, Any]:
    """Every store of the registry. ``served``: a running ``cloud serve``'s ``/v1/stores``
    rows by store id (records and last upload from memory, for its resident stores); None: open
    each replica (records; the last upload is known only to a running process)."""
    rows = []
    with registry_of(directory, db_url) as (registry, sql):
        listed = registry.store_ids()
        unknown = sorted(set(served or ()) - set(listed))
        if unknown and db_url is None:
            # The running process reads a database this command was not given: without it
            # the list would silently lack those stores.
            raise UsageError(
                f"`cloud serve` on {directory.path} serves stores registered in its database "
                f"({', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): "
                "give the database with --db URL or LANESYNC_CLOUD_DB"
            )
        for store_id in listed:
            row = store_entry(registry, store_id)
            if served is not None:
                live = served.get(store_id, {})
                row["records"] = live.get("records")
                row["last_upload_ms"] = live.get("last_upload_ms")
                # False: served, but its replica is not in memory now (no leader connected).
                row["resident"] = live.get("resident")
            else:
                with _replica(registry, sql, store_id) as terminal:
                    row["records"] = terminal.replica.views.accepted_count()
                row["last_upload_ms"] = None
            rows.append(row)
    return {"serving": served is not None, "stores": rows}
