"""Opening a store on PostgreSQL (issue 19): CPU, wall time and peak RSS of one process's
``PostgresStoreStorage.load`` + ``Replica.restore``, base code against new, A/B interleaved.

Run ``BASE_SRC=DIR NEW_SRC=DIR [SEAL=1] .venv/bin/python benchmarks/pg_open.py build OUT N...``
(the two ``src`` directories to compare; PYTHONPATH must import the new one, which builds the
stores). It starts a throwaway PostgreSQL server on loopback (lanesync.tools.pgserver) and, per
N: builds a store of one lane's N sales (2,500 a day, 500 a commit, merged and committed as the
cloud does, compacted when due) in its own database, then a checkpoint and 1,000 sales after
it (the tail, about what the lane's rule lets grow before the next one); ``SEAL=1``: the lane
closes each day and the cloud seals it at once (all but the last day of the N sales and
the tail's). Then three
opens with each code, interleaved, each in a fresh process (``open URL KEY PUBKEY``), and the
median (min-max); the rows go to OUT/pg_open_results[_sealed].json. The server is stopped at
the end (and on Ctrl-C). benchmarks/README.md ("Opening a store on PostgreSQL") has figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nacl.signing import SigningKey

SALES_A_DAY = 2_500  # one lane's day in issue 19's chain (2,000 stores x 8 lanes x 2,500)
TAIL = 1_000  # sales after the checkpoint: ~220 KiB of log, under CHECKPOINT_MIN_LOG_BYTES
BATCH = 500  # sales a commit, as the cloud benchmarks' group commits
RUNS = 3
SEAL = os.environ.get("SEAL") == "1"
DAY_MS = 86_400_000
CODE = {"base": "BASE_SRC", "new": "NEW_SRC"}  # the two trees compared: environment variables
NOW_MS = 1_795_000_000_000


def build(url: str, key: str, sales: int) -> str:
    """The store: returns its authority's public key (hex) for the opening processes."""
    from lanesync.cloud.pgstorage import PostgresStoreStorage
    from lanesync.cloud.sql import connect
    from lanesync.core import sealdays
    from lanesync.core.identity import (
        LocalIdentity,
        Role,
        StoreIdentity,
        issue_certificate,
        public_key_of,
    )
    from lanesync.core.ids import Sku, StoreId, TerminalId
    from lanesync.core.records import Sale, SaleLine
    from lanesync.core.replica import Replica

    authority = SigningKey.generate()
    identity = StoreIdentity(StoreId("shop1"), public_key_of(authority), "UTC")
    lane_key = SigningKey.generate()
    start = NOW_MS - 400 * DAY_MS
    cert = issue_certificate(
        authority,
        identity.store_id,
        TerminalId("lane1"),
        public_key_of(lane_key),
        Role.CASHIER,
        0,
        start + 800 * DAY_MS,
    )
    lane = Replica(identity, 1, LocalIdentity(cert, lane_key))
    restored = lane.restore({}, set(), start)
    sql = connect(url)
    storage = PostgresStoreStorage(sql, key)
    cloud = Replica(identity, 2, None)
    cloud.attach_archives(storage.read_archive)
    cloud.restore({}, set(), start)

    def receive(updates: list[tuple[str, bytes]], now: int) -> None:
        merged = cloud.merge(updates, now)
        storage.commit([merged])
        cloud.persisted([merged])

    receive(list(restored.updates), start)
    made = 0
    while made < sales + TAIL:
        if made == sales:
            for doc in cloud.doc_names():
                storage.compact(cloud, doc)
            storage.write_checkpoint(cloud)  # the base code's load ignores the table
        updates: list[tuple[str, bytes]] = []
        now = start
        for _ in range(min(BATCH, sales + TAIL - made)):
            now = start + (made // SALES_A_DAY) * DAY_MS + 3_600_000 + made % SALES_A_DAY
            _, change = lane.append(Sale.of((SaleLine(Sku(f"sku{made % 200}"), 1, 149),)), now)
            updates.extend(change.updates)
            made += 1
        receive(updates, now)
        if SEAL and made % SALES_A_DAY == 0 and made < sales:
            _, closed = lane.close_days(None, now + 1)
            receive(list(closed.updates), now + 1)
            for day in sealdays.candidates(cloud):
                storage.seal([sealdays.seal_day(cloud, day)], cloud, now + 2)
        for doc in storage.documents_to_compact():
            storage.compact(cloud, doc)
    sql.close()
    return bytes(identity.public_key).hex()


def open_once(url: str, key: str, public_hex: str) -> None:
    """One open, as ``Terminal.open_directory`` does it for the cloud; prints its figures."""
    from lanesync.cloud.pgstorage import PostgresStoreStorage
    from lanesync.cloud.sql import connect
    from lanesync.core.identity import StoreIdentity
    from lanesync.core.ids import StoreId
    from lanesync.core.replica import Replica

    sql = connect(url)
    identity = StoreIdentity(StoreId("shop1"), bytes.fromhex(public_hex), "UTC")
    wall, cpu = time.perf_counter(), time.process_time()
    storage = PostgresStoreStorage(sql, key)
    replica = Replica(identity, 3, None)
    loaded = storage.load()
    replica.attach_archives(storage.read_archive)
    replica.restore(
        loaded.stored,
        loaded.verified,
        NOW_MS,
        checkpoint=loaded.checkpoint,
        tail=loaded.tail,
        sealed=loaded.sealed,
        amended=loaded.amended,
    )
    figures = {
        "wall_s": time.perf_counter() - wall,
        "cpu_s": time.process_time() - cpu,
        "maxrss_mb": peak_rss_mb(),
        "records": replica.views.accepted_count(),
        "restored_from": replica.restored_from,
    }
    sql.close()
    print(json.dumps(figures))


def peak_rss_mb() -> float:
    """This process's peak RSS since it started (VmHWM): not ``ru_maxrss``, which Linux carries
    over an exec from the parent that forked it (the builder, hundreds of MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def summary(rows: list[dict[str, float]], field: str) -> str:
    values = [row[field] for row in rows]
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    if sys.argv[1] == "open":
        open_once(*sys.argv[2:5])
        return
    from lanesync.cloud.schema import migrate_postgresql
    from lanesync.cloud.sql import connect
    from lanesync.tools.pgserver import PostgresServer

    out, sizes = Path(sys.argv[2]), [int(n) for n in sys.argv[3:]]
    # Absolute: each open runs in a process of its own, which must import the tree named.
    code = {name: str(Path(os.environ[var]).resolve()) for name, var in CODE.items()}
    server = PostgresServer.start()
    try:
        results: dict[str, list[dict[str, float]]] = {}
        for n in sizes:
            url = server.create_database(f"open{n}{'sealed' if SEAL else ''}")
            sql = connect(url)
            migrate_postgresql(sql)
            sql.close()
            started = time.perf_counter()
            public_hex = build(url, "s1", n)
            print(f"built {n} + {TAIL} sales in {time.perf_counter() - started:.0f} s", flush=True)
            for run in range(RUNS):
                for name, src in code.items():  # interleaved: base, new, base, new, ...
                    done = subprocess.run(
                        [sys.executable, __file__, "open", url, "s1", public_hex],
                        env={**os.environ, "PYTHONPATH": src},
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    row = json.loads(done.stdout)
                    results.setdefault(f"{n} {name}", []).append(row)
                    print(n, name, run, row, flush=True)
        for label, rows in results.items():
            print(
                label,
                "wall",
                summary(rows, "wall_s"),
                "cpu",
                summary(rows, "cpu_s"),
                "rss",
                summary(rows, "maxrss_mb"),
            )
        (out / f"pg_open_results{'_sealed' if SEAL else ''}.json").write_text(
            json.dumps(results, indent=1)
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
