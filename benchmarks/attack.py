"""Attacks on a lane (issue 14, items 2 and 3): its RSS and its API latency, run after run.

Run ``.venv/bin/python benchmarks/attack.py [--attack a|b|all] [--frames N] [--prefill N]
[--runs R] [--json OUT]``; benchmarks/README.md ("Attacks on a lane: RSS and API latency") says
what every figure means.

One lane directory is prefilled with ``--prefill`` sales (tests/mesh/attacker.py ``prefill``),
and every run starts a fresh real daemon on it (tests/mesh/cluster.py: ``lanesync run DIR
--listen 127.0.0.1:0 --api 127.0.0.1:0 --no-discovery``), lets it settle, runs one attack of
tests/mesh/attacker.py against it while sampling its RSS and probing its API, and stops it:

* a: an enrolled terminal floods ``--frames`` tiny sealed frames (half State(reply=True) with
  empty vectors, half Peers) and never reads; it resets its socket after ``--hold`` seconds;
* b: ``--hellos`` parallel connections each send one ``--hello-mib`` MiB hello before
  authenticating.

The table gives the median and the range over the runs of each figure. Everything runs on
127.0.0.1; every daemon is stopped at the end, whatever happened (Ctrl-C and SIGTERM too).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/mesh: the attacker and the daemon harness
sys.path.insert(0, str(ROOT / "tests"))  # ... which import the shared harness as `support`

from tests.mesh.attacker import (  # noqa: E402
    HELLO_CONNECTIONS,
    HELLO_SIZE,
    HOLD_S,
    MIB,
    Attack,
    FloodAndStall,
    OversizedHellos,
    Scene,
    measure,
    scene,
)
from tests.mesh.cluster import Cluster, Daemon  # noqa: E402

# The attack: 5,000 frames against a lane holding a day (2,000 sales, ~400 KB answers).
FRAMES = 5_000
PREFILL = 2_000
RUNS = 5
# A daemon's RSS and CPU settle within a second of writing runtime.json (it has opened its
# storage and bound its ports by then); the idle baseline starts after this.
SETTLE_S = 2.0
ATTACKS = ("a", "b")
# Other work under this many cores counts as a quiet machine (`lanesync bench mesh`'s threshold).
QUIET_CORES = 0.25
WAIT_QUIET_S = 60.0


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout

    status = git("status", "--porcelain")
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "dirty_paths": [line[3:] for line in status.splitlines() if line.strip()],
    }


def machine_info() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_mib": psutil.virtual_memory().total // MIB,
    }


def busy_cpu_s() -> float:
    """CPU seconds every core of the machine spent busy so far (/proc/stat: guest time is
    counted in user time already)."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def wait_for_quiet(limit_s: float) -> float:
    """Wait until other processes keep less than QUIET_CORES busy (over one second), at most
    ``limit_s``; returns the last figure."""
    deadline = time.monotonic() + limit_s
    while True:
        before, mine = busy_cpu_s(), sum(psutil.Process().cpu_times()[:2])
        time.sleep(1.0)
        others = busy_cpu_s() - before - (sum(psutil.Process().cpu_times()[:2]) - mine)
        if others < QUIET_CORES or time.monotonic() >= deadline:
            return float(others)


class OtherWork:
    """How many cores processes other than the lane and this one kept busy meanwhile (the run
    competes with them on a shared machine: its latencies are pessimistic when this is high)."""

    def __init__(self, lane_pid: int) -> None:
        self._lane = psutil.Process(lane_pid)
        self._me = psutil.Process()
        self._start = time.monotonic()
        self._machine = busy_cpu_s()
        self._ours = self._ours_s()

    def _ours_s(self) -> float:
        lane = self._lane.cpu_times()
        me = self._me.cpu_times()
        return float(lane.user + lane.system + me.user + me.system)

    def cores(self) -> float:
        wall = time.monotonic() - self._start
        try:
            ours = self._ours_s() - self._ours
        except psutil.NoSuchProcess:
            return math.nan
        return max(0.0, (busy_cpu_s() - self._machine - ours) / wall)


def make_attack(name: str, lane: Daemon, where: Scene, args: argparse.Namespace) -> Attack:
    if name == "a":
        return FloodAndStall(lane, where.attacker, args.frames, hold_s=args.hold)
    return OversizedHellos(
        lane, where.store.identity.store_id, connections=args.hellos, size=args.hello_mib * MIB
    )


def run_once(cluster: Cluster, where: Scene, name: str, args: argparse.Namespace) -> dict[str, Any]:
    quiet = wait_for_quiet(args.wait_quiet)
    if quiet >= QUIET_CORES:
        progress(f"WARNING: other work keeps {quiet:.2f} cores busy: the figures are pessimistic")
    lane = cluster.start(where.lane)
    try:
        time.sleep(SETTLE_S)
        others = OtherWork(lane.pid)
        load = os.getloadavg()[0]
        figures = measure(lane, make_attack(name, lane, where, args))
        other_cores = others.cores()
    finally:
        cluster.stop(lane)
    progress(figures.describe())
    return {**figures.as_dict(), "loadavg_1m": load, "other_cores": other_cores}


# -- the table ---------------------------------------------------------------------------------


def latest_close(run: dict[str, Any]) -> float | None:
    """When the lane had closed every attacking connection of a run (None: not all of them)."""
    closed = [end["closed_after_s"] for end in run["ends"]]
    return None if not closed or None in closed else max(closed)


ROWS: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = [
    ("RSS idle, MiB", lambda r: r["rss_idle"] / MIB),
    ("RSS peak, MiB", lambda r: r["rss_peak"] / MIB),
    ("RSS peak / idle", lambda r: r["rss_peak"] / r["rss_idle"]),
    ("RSS when the attacker left, MiB", lambda r: r["rss_held"] / MIB),
    ("RSS 5 s after it left, MiB", lambda r: r["rss_after"] / MIB),
    ("API p50, ms", lambda r: r["api_p50"] * 1000),
    ("API p99, ms", lambda r: r["api_p99"] * 1000),
    ("API max, ms", lambda r: r["api_max"] * 1000),
    ("closed by the lane after, s", latest_close),
    ("other work, cores", lambda r: r["other_cores"]),
]


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, value in ROWS:
        values = [value(run) for run in runs]
        known = [v for v in values if v is not None and not math.isnan(v)]
        out[label] = {
            "median": statistics.median(known) if known else None,
            "min": min(known, default=None),
            "max": max(known, default=None),
            "missing": len(values) - len(known),  # for "closed": runs where it never was
            "runs": values,
        }
    return out


def number(value: float | None) -> str:
    if value is None:
        return "-"
    return (
        f"{value:.0f}"
        if abs(value) >= 100
        else f"{value:.2f}"
        if abs(value) < 10
        else f"{value:.1f}"
    )


def render(name: str, title: str, figures: dict[str, dict[str, Any]], runs: int) -> str:
    lines = [f"{name}: {title} ({runs} runs)", f"  {'figure':<32} {'median':>9} {'range':>21}"]
    for label, cell in figures.items():
        if label.startswith("closed") and cell["missing"]:
            shown = f"not closed in {cell['missing']} of {runs} runs"
            if cell["median"] is not None:
                shown += f"; else {number(cell['median'])}"
            lines.append(f"  {label:<32} {shown}")
            continue
        span = f"{number(cell['min'])} - {number(cell['max'])}"
        lines.append(f"  {label:<32} {number(cell['median']):>9} {span:>21}")
    return "\n".join(lines)


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attack", choices=("a", "b", "all"), default="all")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"attack a (default {FRAMES})")
    parser.add_argument(
        "--prefill", type=int, default=PREFILL, help=f"sales on the lane (default {PREFILL})"
    )
    parser.add_argument("--runs", type=int, default=RUNS, help=f"per attack (default {RUNS})")
    parser.add_argument(
        "--hold", type=float, default=HOLD_S, help=f"attack a's stall, s (default {HOLD_S:.0f})"
    )
    parser.add_argument(
        "--hellos", type=int, default=HELLO_CONNECTIONS, help="attack b's parallel connections"
    )
    parser.add_argument(
        "--hello-mib", type=int, default=HELLO_SIZE // MIB, help="attack b's hello size, MiB"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=WAIT_QUIET_S,
        help=f"before each run, wait up to this many s for other work < {QUIET_CORES} cores "
        f"(default {WAIT_QUIET_S:.0f}; 0: never)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--workdir", type=Path, default=None, help="parent of the temp directory")
    args = parser.parse_args(argv)
    if min(args.frames, args.prefill, args.runs, args.hellos, args.hello_mib) < 1:
        parser.error("--frames, --prefill, --runs, --hellos and --hello-mib must be at least 1")
    return args


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the finally blocks that stop the daemons


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    names = ATTACKS if args.attack == "all" else (args.attack,)
    started = datetime.now(UTC)
    git = git_info()
    root = Path(tempfile.mkdtemp(prefix="lanesync-attack-", dir=args.workdir))
    cluster = Cluster(root / "cluster")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    try:
        progress(f"prefilling {args.prefill} sales in {root}")
        where = scene(cluster, args.prefill)
        for i in range(args.runs):
            for name in names:
                progress(f"run {i + 1}/{args.runs}, attack {name}")
                runs[name].append(run_once(cluster, where, name, args))
    except BaseException:
        progress(f"failed: the lane's logs and directories are kept in {root}")
        raise
    finally:
        cluster.close()
    shutil.rmtree(root, ignore_errors=True)
    titles = {
        "a": f"{args.frames} frames from an enrolled peer that never reads, {args.prefill} "
        f"sales on the lane, held {args.hold:.0f} s",
        "b": f"{args.hellos} x {args.hello_mib} MiB hellos before authentication",
    }
    tables = {name: summary(runs[name]) for name in names}
    text = "\n\n".join(render(n, titles[n], tables[n], args.runs) for n in names)
    print()
    print(text)
    if args.json:
        report = {
            "command": shlex.join([sys.executable, *sys.argv]),
            "started": started.isoformat(timespec="seconds"),
            "seconds": round((datetime.now(UTC) - started).total_seconds(), 1),
            "git": git,
            "git_changed_during_run": git_info() != git,
            "machine": machine_info(),
            "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "summary": tables,
            "runs": runs,
            "table": text,
        }
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        progress(f"wrote {args.json}")


if __name__ == "__main__":
    main()
