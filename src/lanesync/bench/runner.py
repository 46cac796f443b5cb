"""Running scenarios for every system and repeat, and assembling ``results.json``.

Every figure is reported with its spread over ``--repeat`` runs (min, median, p99, max), and
every lanesync figure also as a ratio to each baseline measured in the same run (the ratio of
the two values of each repeat, then its spread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.metadata
import math
import os
import platform
import shlex
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import BASELINES, LANESYNC, SYSTEMS, BenchError
from lanesync.bench.scenarios import RUNNERS, Context, Outcome, Settings, applies
from lanesync.bench.stats import Spread, cdf_points
from lanesync.bench.ui import Ui
from lanesync.shell.eventloop import DEFAULT_LOOP, LOOP_ENV

SCHEMA = "lanesync-bench/1"
MAX_SAMPLES = 4000  # latency samples kept per system and scenario (for the CDF)


@dataclass(frozen=True, slots=True)
class Plan:
    scenarios: tuple[str, ...]
    systems: tuple[str, ...]
    settings: Settings
    out: Path
    command: str
    work: Path | None = None
    keep_work: bool = False
    estimated_s: float | None = None  # the wall time lanesync.bench.estimate told beforehand


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions: dict[str, str] = {}
    for dist in (
        "lanesync",
        "pycrdt",
        "pycrdt-websocket",
        "websockets",
        "PyNaCl",
        "msgpack",
        "fastapi",
        "uvicorn",
        "matplotlib",
        "uvloop",
    ):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    memory_mb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024  # the kernel reports kB
                break
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_mb": memory_mb,
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "versions": versions,
        # What the lanes (`lanesync run`, and the mesh study's lanes) read from the environment.
        "event_loop": os.environ.get(LOOP_ENV, DEFAULT_LOOP.value),
    }


def git_info() -> dict[str, Any]:
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=here, capture_output=True, text=True, check=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.rstrip("\n")

    commit = git("rev-parse", "HEAD")
    changed = (git("status", "--porcelain", "--untracked-files=all") or "").splitlines()
    # A fingerprint of the code under src/: others may edit it while a run goes on, and the
    # processes a run starts import whatever is there then.
    root = Path(git("rev-parse", "--show-toplevel") or ".")
    src = (git("diff", "HEAD", "--", "src") or "") + "".join(
        (root / line[3:]).read_text(errors="replace")
        for line in changed
        if line.startswith("?? src/") and (root / line[3:]).is_file()
    )
    return {
        "commit": commit,
        "dirty": bool(changed),
        "changed": changed,
        "src_digest": hashlib.sha256(f"{commit}\n{src}".encode()).hexdigest(),
    }


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def aggregate(scenario: str, outcomes: list[Outcome], systems: tuple[str, ...]) -> dict[str, Any]:
    """One scenario's figures over repeats and systems, with lanesync's ratios to baselines."""
    names: list[str] = []
    for outcome in outcomes:
        names.extend(n for n in outcome.figures if n not in names)
    present = [s for s in systems if any(o.system == s for o in outcomes)]
    figures = []
    for name in names:
        unit = better = ""
        values: dict[str, list[float]] = {}
        for system in present:
            runs = sorted((o for o in outcomes if o.system == system), key=lambda o: o.repeat)
            row = []
            for o in runs:
                v = o.figures.get(name)
                row.append(math.nan if v is None else v.value)
                if v is not None:
                    unit, better = v.unit, v.better
            values[system] = row
        ratios = {}
        mine = values.get(LANESYNC, [])
        for base in (b for b in present if b != LANESYNC):
            theirs = values[base]
            pairs = [
                a / b
                for a, b in zip(mine, theirs, strict=False)
                if not (math.isnan(a) or math.isnan(b)) and b != 0
            ]
            if pairs:
                ratios[base] = {
                    "values": [round(p, 6) for p in pairs],
                    **Spread.of(pairs).as_dict(),
                }
        figures.append(
            {
                "name": name,
                "unit": unit,
                "better": better,
                "systems": {
                    s: {"values": [_clean(x) for x in v], **Spread.of(v).as_dict()}
                    for s, v in values.items()
                },
                "ratios": ratios,
            }
        )
    checks = {
        s: {
            "converged": [o.converged for o in outcomes if o.system == s],
            "lost_sales": [o.lost_sales for o in outcomes if o.system == s],
        }
        for s in present
    }
    samples = {}
    for system in present:
        pooled = [x for o in outcomes if o.system == system for x in o.samples_ms]
        if pooled:
            samples[system] = {
                "n": len(pooled),
                "cdf": [[round(v, 4), round(f, 5)] for v, f in cdf_points(pooled, MAX_SAMPLES)],
            }
    return {
        "systems": present,
        "figures": figures,
        "checks": checks,
        "latency_cdf_ms": samples,
        "runs": [{"system": o.system, "repeat": o.repeat, "details": o.details} for o in outcomes],
    }


async def run_plan(plan: Plan, ui: Ui) -> dict[str, Any]:
    settings = plan.settings
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "command": plan.command,
        "started": started.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "git": git_info(),
        "load_average_before": [round(x, 2) for x in load_before],
        "config": {
            "scenarios": list(plan.scenarios),
            "systems": list(plan.systems),
            "lanes": settings.lanes,
            "scale_lanes": settings.scale_lanes,
            "rate": settings.rate,
            "duration_s": settings.duration_s,
            "latency_ms": settings.faults.latency_ms,
            "jitter_ms": settings.faults.jitter_ms,
            "loss_pct": settings.faults.loss_pct,
            "repeat": settings.repeat,
            "seed": settings.seed,
            "ladder": settings.ladder,
        },
        "scenarios": {},
        "skipped": [],
    }
    with tempfile.TemporaryDirectory(prefix="lanesync-bench-", dir=plan.work) as tmp:
        root = Path(tmp)
        for scenario in plan.scenarios:
            outcomes: list[Outcome] = []
            for repeat in range(settings.repeat):
                for system in plan.systems:
                    if not applies(scenario, system):
                        if repeat == 0:
                            results["skipped"].append(
                                {"scenario": scenario, "system": system, "why": "no cloud uplink"}
                            )
                        continue
                    ui.log(f"{scenario} / {system} / repeat {repeat + 1} of {settings.repeat}")
                    outcome = Outcome(scenario, system, repeat)
                    work = root / f"{scenario}-{system}-{repeat}"
                    ctx = Context(settings, work, ui)
                    began = time.monotonic()
                    try:
                        await RUNNERS[scenario](ctx, system, outcome)
                    except BenchError as exc:
                        # One system failing (a baseline that cannot keep up at all) must not
                        # lose the others' figures: the run is reported as not converged.
                        ui.log(f"  {system}: FAILED: {exc}")
                        outcome.converged = False
                        outcome.details["error"] = str(exc)
                    outcome.details["seconds"] = round(time.monotonic() - began, 1)
                    outcomes.append(outcome)
            results["scenarios"][scenario] = aggregate(scenario, outcomes, plan.systems)
        if plan.keep_work:
            import shutil

            shutil.copytree(root, plan.out / "work", dirs_exist_ok=True)
    results["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    results["estimated_seconds"] = plan.estimated_s
    results["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return results


def run_bench(plan: Plan, *, progress: bool = True) -> dict[str, Any]:
    """Run the plan (blocking). Ctrl-C, SIGTERM or SIGHUP stop every process it started, then
    raise ``BenchError``."""

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            # SIGINT too: a shell starting us in the background may have set it to "ignore".
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, task.cancel)
        with Ui(enabled=progress) as ui:
            return await run_plan(plan, ui)

    try:
        return asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise BenchError("interrupted; every process it started was stopped") from None


def lanesync_failures(results: dict[str, Any]) -> list[str]:
    """What went wrong for lanesync itself: not converged, or acknowledged sales lost."""
    problems = []
    for scenario, data in results["scenarios"].items():
        check = data["checks"].get(LANESYNC)
        if check is None:
            continue
        if not all(check["converged"]):
            problems.append(f"{scenario}: lanesync did not converge in every repeat")
        if any(check["lost_sales"]):
            problems.append(f"{scenario}: lanesync lost {max(check['lost_sales'])} sales")
        problems.extend(
            f"{scenario}: {run['details']['error']}"
            for run in data["runs"]
            if run["system"] == LANESYNC and "error" in run["details"]
        )
    return problems


def command_line() -> str:
    return shlex.join(["lanesync", *sys.argv[1:]])


__all__ = [
    "BASELINES",
    "SYSTEMS",
    "BenchError",
    "Plan",
    "command_line",
    "lanesync_failures",
    "run_bench",
]
