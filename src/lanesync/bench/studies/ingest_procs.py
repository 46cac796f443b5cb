"""What ``lanesync bench cloud-ingest`` reads about its processes (Linux /proc: CPU of a process
tree, time on a CPU and in a run queue, peak RSS) and about the head-office tables (plain SQL, as
head office would read them), and the check that they hold exactly what was written.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.ingest_fleet import Fleet
from lanesync.tools.pgserver import PostgresServer, unavailable_reason


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (state first, then the ppid)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of a process and each live descendant; the process's own
    entry includes the children it has reaped, so short-lived ones are not lost."""
    tick = os.sysconf("SC_CLK_TCK")
    fields = _stat(pid)
    cpu = {pid: sum(int(x) for x in fields[11:15]) / tick}  # utime stime cutime cstime
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents.setdefault(int(_stat(int(entry.name))[1]), []).append(int(entry.name))
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            child_fields = _stat(child)
            cpu[child] = (int(child_fields[11]) + int(child_fields[12])) / tick
        todo += parents.get(child, [])
    return cpu


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def schedstat_s(pid: int) -> tuple[float, float]:
    """Seconds every thread of ``pid`` has run on a CPU and waited in a run queue for one
    (Linux /proc/PID/task/*/schedstat). Wall time minus both is time blocked: sleeping,
    waiting for I/O or for another process (PostgreSQL, a peer)."""
    run_ns = wait_ns = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (task / "schedstat").read_text().split()
                run_ns += int(fields[0])
                wait_ns += int(fields[1])
    return run_ns / 1e9, wait_ns / 1e9


def status_mb(pid: int, name: str) -> float:
    """A memory line of /proc/PID/status in MB (2^20 bytes): ``VmRSS`` (resident now),
    ``VmHWM`` (the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the process's peak resident set so far (Linux /proc)."""
    return status_mb(pid, "VmHWM")


class HeadOfficeReader:
    """Plain SQL on the head-office tables, as head office would read them."""

    def __init__(self, sqlite_file: Path | None, url: str | None) -> None:
        self._sqlite = None
        self._pg: psycopg.Connection[Any] | None = None
        if url is not None:
            self._pg = psycopg.connect(url, autocommit=True)
        else:
            if sqlite_file is None:
                raise BenchError("the head-office tables need a database")
            self._sqlite = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)

    def rows(self, query: str) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return list(self._pg.execute(query).fetchall())
        if self._sqlite is None:
            raise BenchError("the head-office reader is closed")
        return self._sqlite.execute(query).fetchall()

    def sales_per_store(self) -> dict[str, int]:
        return dict(self.rows("SELECT store_id, COUNT(*) FROM sales GROUP BY store_id"))

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()


def check_exact(reader: HeadOfficeReader, fleet: Fleet) -> list[str]:
    """Every store's sales count and total, voids and receipts equal what was written."""
    sales = {
        store: (int(n), int(total), int(voided))
        for store, n, total, voided in reader.rows(
            "SELECT store_id, COUNT(*), SUM(total_cents), SUM(voided) FROM sales GROUP BY store_id"
        )
    }
    receipts = dict(
        reader.rows(
            "SELECT store_id, COUNT(*) FROM stock_movements WHERE kind = 'receipt' "
            "GROUP BY store_id"
        )
    )
    problems = []
    for day in fleet.stores:
        got = sales.get(day.store_id, (0, 0, 0))
        if got != (day.sales, day.total_cents, 0):
            problems.append(
                f"{day.store_id}: sales (count, total, voided) {got}, "
                f"wrote {(day.sales, day.total_cents, 0)}"
            )
        if int(receipts.get(day.store_id, 0)) != day.receipts:
            problems.append(
                f"{day.store_id}: {receipts.get(day.store_id, 0)} receipts, wrote {day.receipts}"
            )
    strangers = set(sales) - {d.store_id for d in fleet.stores}
    if strangers:
        problems.append(f"sales of unknown stores: {sorted(strangers)}")
    return problems


@contextlib.contextmanager
def postgres_server(needed: bool) -> Iterator[PostgresServer | None]:
    if not needed:
        yield None
        return
    reason = unavailable_reason()
    if reason is not None:
        raise BenchError(f"cannot start PostgreSQL: {reason}")
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()
