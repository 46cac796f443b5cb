"""Seals a store's complete day as a cloud process does, stopping inside the seal's transaction;
run by test_cloud_seals.py as ``python seal_worker.py CLOUD_DIR STORE_ID STOP_AT [DB_URL]``.

The storage's connection is wrapped so that the statement ``STOP_AT`` names prints ``sealing``
and waits: the test SIGKILLs the process there, with the transaction open. ``snapshots``: the
statement deleting the day's snapshot (after the archive row and the log rows' deletion);
``checkpoint``: on PostgreSQL, the statement storing the checkpoint, the seal's last write.
Nothing else of the seal is changed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.stores import Backend, open_store
from lanesync.shell.admission import HandshakeGate

WAIT_S = 60.0  # far longer than the test takes to kill it


STOP_AT = {
    "snapshots": ("DELETE FROM snapshots", "DELETE FROM store_snapshots"),
    "checkpoint": ("INSERT INTO store_checkpoints",),
}


class Stopping:
    """A connection (sqlite3's or ``cloud.sql.Sql``) that stops after a statement of the seal."""

    def __init__(self, inner: Any, at: tuple[str, ...]) -> None:
        self._inner = inner
        self._at = at

    def execute(self, sql: str, *args: Any) -> Any:
        result = self._inner.execute(sql, *args)
        if sql.startswith(self._at):
            print("sealing", flush=True)
            time.sleep(WAIT_S)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def main(cloud_dir: Path, store_id: str, stop_at: str, db_url: str | None) -> None:
    directory = CloudDirectory.open(cloud_dir)
    backend = Backend.open(directory, db_url)
    runtime = open_store(
        directory.store_directory(store_id),
        backend,
        HeadOffice(backend.sql),
        lambda exc: None,
        HandshakeGate(),
    )
    storage: Any = runtime.shared_storage or runtime.terminal.storage
    if runtime.shared_storage is not None:
        storage._sql = Stopping(storage._sql, STOP_AT[stop_at])
    else:
        storage._db = Stopping(storage._db, STOP_AT[stop_at])

    async def seal() -> list[str]:
        return runtime.seal_due()

    print("sealed", asyncio.run(seal()), flush=True)  # not reached: killed while sealing


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else None)
