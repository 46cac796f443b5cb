"""The measurements of ``lanesync bench year`` that need a clean process: each runs in a fresh
interpreter, ``python -m lanesync.bench.studies.year_phases PHASE --dir DIR ...``, and prints one
JSON line (as ``foundation_phases`` does), so the year built in the study's process cannot
pollute them.

- ``reopen``: ``Terminal.open`` of the lane (wall and CPU time), the RSS holding it, the State
  message its anti-entropy round would send (``catchup``: ``State(state_vectors(), reply=True)``,
  encoded by ``wire.encode_message``), then one sale and the RSS after it.

``report`` and ``days`` run the CLI itself (``python -m lanesync report|days DIR ... --json``),
so they measure whatever those commands do, sealed days included once sealing exists.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.common import rss_mb, stopwatch
from lanesync.bench.studies.workload import make_workload, sale_builders

PHASES = ("reopen",)
PHASE_TIMEOUT_S = 900


def run_phase(phase: str, directory: Path, *extra: str) -> dict[str, Any]:
    """Run ``phase`` in a fresh interpreter; it prints one JSON line."""
    cmd = [sys.executable, "-m", __name__, phase, "--dir", str(directory), *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=PHASE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise BenchError(f"phase {phase} failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def phase_reopen(directory: Path, now_ms: int) -> dict[str, Any]:
    """Open the lane at ``now_ms`` (store's clock), measure, then sell once and measure again."""
    from lanesync.core.wire import State, encode_message
    from lanesync.shell.terminal import Terminal

    sale = sale_builders(make_workload(1))[0]
    before = rss_mb()
    with stopwatch() as t:
        terminal = Terminal.open(directory, clock=lambda: now_ms)
    try:
        opened = rss_mb()
        vectors = terminal.replica.state_vectors()
        state = encode_message(State(vectors, reply=True))
        heads = sum(h.seq for h in terminal.replica.views.heads())
        terminal.write(sale)
        sold = rss_mb()
    finally:
        terminal.close()
    return {
        "open_s": t.wall,
        "open_cpu_s": t.cpu,
        "rss_mb": opened - before,
        "rss_after_sale_mb": sold - before,
        # The whole process, as a lane's RSS is seen from outside (issue #17's figures).
        "rss_process_mb": opened,
        "rss_process_after_sale_mb": sold,
        "state_bytes": len(state),
        "state_docs": len(vectors),
        "records": heads,
    }


@dataclass(frozen=True)
class CliRun:
    wall_s: float
    cpu_s: float  # the child's user + system time: on a shared machine, what its work cost
    output: str


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_cli(*args: str) -> CliRun:
    """Run ``lanesync ARGS`` in a fresh interpreter (the benchmarks import no CLI code): its
    wall and CPU time, interpreter start and imports included, and its output."""
    cpu, started = _children_cpu_s(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "lanesync", *args],
        capture_output=True,
        text=True,
        timeout=PHASE_TIMEOUT_S,
        check=False,
    )
    wall_s, cpu_s = time.perf_counter() - started, _children_cpu_s() - cpu
    if done.returncode != 0:
        raise BenchError(f"lanesync {args[0]} failed ({done.returncode}): {done.stderr.strip()}")
    return CliRun(wall_s, cpu_s, done.stdout)


def report(directory: Path, day: str) -> dict[str, Any]:
    """``lanesync report DIR --day DAY --json``, and the same command's start alone (``--help``:
    the interpreter and the CLI's imports, no lane opened), in fresh processes."""
    done = run_cli("report", str(directory), "--day", day, "--json")
    start = run_cli("report", "--help")
    answer = json.loads(done.output)
    return {
        "report_s": done.wall_s,
        "start_s": start.wall_s,
        # What the command itself costs: a POS asking a running lane pays no interpreter start.
        "work_s": done.wall_s - start.wall_s,
        "report_cpu_s": done.cpu_s,
        "start_cpu_s": start.cpu_s,
        "work_cpu_s": done.cpu_s - start.cpu_s,
        "complete": answer["complete"],
        "sales": answer["totals"]["sales"],
        "sealed": answer.get("sealed", False),
    }


def days(directory: Path) -> dict[str, Any]:
    """``lanesync days DIR --json``: how many days are in each state."""
    listed = json.loads(run_cli("days", str(directory), "--json").output)["days"]
    return {
        "states": dict(Counter(entry["state"] for entry in listed)),
        "records": sum(entry["records"] for entry in listed),
        "days": [entry["day"] for entry in listed],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("phase", choices=PHASES)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--now-ms", type=int, default=0)
    args = parser.parse_args(argv)
    phases: dict[str, Callable[[], dict[str, Any]]] = {
        "reopen": partial(phase_reopen, args.dir, args.now_ms),
    }
    print(json.dumps(phases[args.phase]()))


if __name__ == "__main__":
    main()
