"""What ``lanesync cloud stores`` and ``cloud verify`` read: the stores a cloud directory serves
and, while no ``cloud serve`` runs on it, their replicas opened from storage.

The stores a cloud serves are the ones ``cloud add-store`` installed in ``CLOUD_DIR/stores``,
also on PostgreSQL (the database holds their documents and head-office rows, not the list):
each process's directory says what it serves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.pgstorage import PostgresStoreStorage
from lanesync.cloud.sql import connect
from lanesync.shell.terminal import Terminal

# A replica's directory lock is held while ``cloud serve`` runs: wait for it no longer than a
# lane's offline commands do for theirs (they say who holds it).
LOCK_WAIT_S = 0.0


def store_entry(directory: CloudDirectory, store_id: str) -> dict[str, Any]:
    """What the directory says of one store: its time zone and the cloud's certificate for it."""
    served = directory.store_directory(store_id)
    cert = served.me.certificate
    return {
        "store_id": store_id,
        "timezone": served.store.timezone,
        "cert_fingerprint": cert.key_fingerprint,
        "cert_not_after_ms": cert.not_after_ms,
    }


@contextlib.contextmanager
def open_replica(
    directory: CloudDirectory, store_id: str, db_url: str | None
) -> Iterator[Terminal]:
    """The cloud's replica of ``store_id`` from its SQLite file, or from ``db_url``'s
    PostgreSQL. Raises ``UsageError`` for a store this cloud does not serve."""
    served = directory.store_directory(store_id)
    if db_url is None:
        with Terminal.open_directory(served, lock_wait_s=LOCK_WAIT_S, feed=False) as terminal:
            yield terminal
        return
    sql = connect(db_url)
    try:
        with Terminal.open_directory(
            served,
            lock_wait_s=LOCK_WAIT_S,
            open_storage=lambda: PostgresStoreStorage(sql, store_id),
            feed=False,
        ) as terminal:
            yield terminal
    finally:
        sql.close()


def stores_report(
    directory: CloudDirectory, served: dict[str, dict[str, Any]] | None, db_url: str | None
) -> dict[str, Any]:
    """Every store of the directory. ``served``: a running ``cloud serve``'s ``/v1/stores``
    rows by store id (records and last upload from memory, for its resident stores); None: open
    each replica (records; the last upload is known only to a running process)."""
    rows = []
    for store_id in directory.store_ids():
        row = store_entry(directory, store_id)
        if served is not None:
            live = served.get(store_id, {})
            row["records"] = live.get("records")
            row["last_upload_ms"] = live.get("last_upload_ms")
            # False: served, but its replica is not in memory now (no leader connected).
            row["resident"] = live.get("resident")
        else:
            with open_replica(directory, store_id, db_url) as terminal:
                row["records"] = terminal.replica.views.accepted_count()
            row["last_upload_ms"] = None
        rows.append(row)
    return {"serving": served is not None, "stores": rows}
