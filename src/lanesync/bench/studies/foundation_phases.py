"""The measurements of ``lanesync bench foundation`` that need a clean process (reopen time,
RSS): each runs in a fresh interpreter, ``python -m lanesync.bench.studies.foundation_phases
PHASE --sales N --dir DIR [--profile]``, and prints one JSON line, so earlier phases cannot
pollute them.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.common import rss_mb, stopwatch
from lanesync.bench.studies.foundation_raw import load_blob, raw_doc, raw_fill
from lanesync.bench.studies.workload import TERMINAL, make_workload
from lanesync.shell.terminal import Terminal

PHASES = ("rss-raw", "reopen-raw", "reopen-lanesync")
PHASE_TIMEOUT_S = 900


def run_phase(phase: str, sales: int, directory: Path, *extra: str) -> dict[str, Any]:
    """Run ``phase`` in a fresh interpreter; it prints one JSON line."""
    cmd = [sys.executable, "-m", __name__, phase, "--sales", str(sales), "--dir", str(directory)]
    done = subprocess.run(
        [*cmd, *extra],
        capture_output=True,
        text=True,
        timeout=PHASE_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"phase {phase} failed ({done.returncode}): {done.stderr.strip()}")
    if done.stderr:
        print(done.stderr, file=sys.stderr, end="")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def phase_rss_raw(sales: int) -> dict[str, Any]:
    """RSS of a process that wrote ``sales`` nested-Map sales into one raw pycrdt doc."""
    workload = make_workload(sales)
    before = rss_mb()
    doc, sales_map = raw_fill(workload)
    after = rss_mb()
    if len(sales_map) != sales:
        raise BenchError("raw doc is incomplete")
    del doc
    return {"rss_mb": after - before}


def phase_reopen_raw(directory: Path) -> dict[str, Any]:
    """Reload the raw full state from SQLite into a fresh doc: read, then apply (timed apart)."""
    before = rss_mb()
    with stopwatch() as read:
        blob = load_blob(directory / "raw-state.db")
    doc, sales_map = raw_doc()
    with stopwatch() as apply:
        doc.apply_update(blob)
    count = len(sales_map)
    del blob
    after = rss_mb()
    return {
        "read_s": read.wall,
        "apply_s": apply.wall,
        "apply_cpu_s": apply.cpu,
        "sales": count,
        "rss_mb": after - before,
    }


def phase_reopen_lanesync(directory: Path, profile: bool) -> dict[str, Any]:
    """Terminal.open of the filled terminal: wall time of the open only, and RSS holding it."""
    before = rss_mb()
    profiler = cProfile.Profile() if profile else None
    with stopwatch() as t:
        if profiler is not None:
            profiler.enable()
        terminal = Terminal.open(directory / TERMINAL)
        if profiler is not None:
            profiler.disable()
    after = rss_mb()
    accepted = terminal.replica.views.accepted_count()
    terminal.close()
    if profiler is not None:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(30)
        stats.sort_stats("tottime").print_stats(20)
    return {"open_s": t.wall, "open_cpu_s": t.cpu, "sales": accepted, "rss_mb": after - before}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--sales", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    phases: dict[str, Callable[[], dict[str, Any]]] = {
        "rss-raw": lambda: phase_rss_raw(args.sales),
        "reopen-raw": lambda: phase_reopen_raw(args.dir),
        "reopen-lanesync": lambda: phase_reopen_lanesync(args.dir, args.profile),
    }
    print(json.dumps(phases[args.phase]()))


if __name__ == "__main__":
    main()
