"""What every study shares: timing (wall and CPU), memory, the machine's load, and the
``results.json`` it writes (the scenarios' schema: one entry under ``scenarios``)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from lanesync.bench.cluster import BenchError
from lanesync.bench.outcome import Outcome
from lanesync.bench.runner import SCHEMA, aggregate, git_info, machine_info
from lanesync.tools.procs import Proc

LINE_LIMIT = 1 << 20  # the longest JSON line a helper process answers with

T = TypeVar("T")


def run_guarded(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())``; Ctrl-C, SIGTERM or SIGHUP cancel it (so every process it started
    is stopped on the way out), then raise ``BenchError``."""

    async def guarded() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, task.cancel)
        return await main()

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise BenchError("interrupted; every process it started was stopped") from None


class LinePipe:
    """The stdin and stdout of a helper started with ``ProcessGroup.spawn(..., pipes=True)``,
    one JSON-free line at a time, read without blocking the event loop."""

    def __init__(self, proc: Proc, reader: asyncio.StreamReader) -> None:
        self.proc = proc
        self._reader = reader

    @classmethod
    async def open(cls, proc: Proc) -> LinePipe:
        if proc.process.stdout is None:
            raise BenchError(f"{proc.name} has no stdout pipe")
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        loop = asyncio.get_running_loop()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), proc.process.stdout
        )
        return cls(proc, reader)

    async def readline(self, within_s: float) -> bytes:
        """The next line, or b"" when the process closed its stdout or did not answer."""
        try:
            return await asyncio.wait_for(self._reader.readline(), within_s)
        except TimeoutError:
            return b""

    def send(self, line: str) -> None:
        """Write one line (short commands: the pipe's buffer takes them at once)."""
        stdin = self.proc.process.stdin
        if stdin is None:
            raise BenchError(f"{self.proc.name} has no stdin pipe")
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, ValueError) as exc:  # it exited; its stdin is closed
            where = self.proc.log_path
            raise BenchError(f"{self.proc.name} is gone ({exc!r}); see {where}") from None


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def nearest_rank(samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (the studies' figures were always reported this way; the
    scenarios interpolate, ``stats.percentile``)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Elapsed:
    """Wall and CPU seconds (CPU of this process, all threads). On a shared machine the wall
    time grows with the neighbours' load; the CPU time mostly does not."""

    wall: float = 0.0
    cpu: float = 0.0

    def add(self, other: Elapsed) -> None:
        self.wall += other.wall
        self.cpu += other.cpu


@contextlib.contextmanager
def stopwatch() -> Iterator[Elapsed]:
    """``with stopwatch() as t: ...`` then ``t.wall`` / ``t.cpu`` hold the elapsed seconds."""
    elapsed = Elapsed()
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        yield elapsed
    finally:
        elapsed.wall = time.perf_counter() - wall
        elapsed.cpu = time.process_time() - cpu


def rss_mb() -> float:
    """This process's resident set (``VmRSS`` of /proc/self/status) in MB (2^20 bytes), after a
    full garbage collection."""
    import gc

    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    return math.nan


def machine_busy_pct(seconds: float = 1.0) -> float:
    """Whole-machine CPU use, in percent of every core, over ``seconds`` while this process
    sleeps (from the first line of /proc/stat)."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    total_0, idle_0 = sample()
    time.sleep(seconds)
    total_1, idle_1 = sample()
    spent = total_1 - total_0
    return 100.0 * (spent - (idle_1 - idle_0)) / spent if spent else 0.0


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def command_line() -> str:
    return shlex.join(["lanesync", *sys.argv[1:]])


@dataclass
class StudyRun:
    """One study's run: started with the machine's state, finished into ``results.json``."""

    name: str
    config: dict[str, Any]
    command: str = field(default_factory=command_line)
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)
    git: dict[str, Any] = field(default_factory=git_info)

    def results(
        self, outcomes: list[Outcome], systems: tuple[str, ...], extra: dict[str, Any]
    ) -> dict[str, Any]:
        """``results.json``: the scenarios' layout, ``extra`` under the study's name."""
        data = aggregate(self.name, outcomes, systems)
        data["checks"] = {}  # a study converges nothing and loses no sale: no such checks
        data.update(extra)
        return {
            "schema": SCHEMA,
            "command": self.command,
            "started": self.started.isoformat(timespec="seconds"),
            "machine": machine_info(),
            "git": self.git,
            "git_changed_during_run": git_info()["src_digest"] != self.git["src_digest"],
            "load_average_before": [round(x, 2) for x in self.load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "config": {"scenarios": [self.name], "systems": list(systems), **self.config},
            "scenarios": {self.name: data},
            "skipped": [],
            "seconds": round((datetime.now(UTC) - self.started).total_seconds(), 1),
        }
