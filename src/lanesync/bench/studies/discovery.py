"""``lanesync bench discovery``: from starting a daemon to its first completed sync with a
discovered peer.

Real ``lanesync run`` processes with zeroconf's DEFAULT timers (nothing patched), in a private
network of Linux network namespaces (``lanesync.tools.netns``: a switch namespace with a
bridge, one namespace per terminal, addresses 10.213.1.x only inside them). Must run as root.

One repetition: a fresh store; terminal A starts in namespace h1, registers its mDNS service
and records one receipt; then terminal B (empty) is started in namespace h2 with no --peer, and
the clock runs from just before B's process is spawned until B holds A's receipt and both
digests are equal (B has discovered A, connected, authenticated and synced both ways). Phases
are timed by polling every 20 ms from inside h2 (``lanesync.tools.nsagent`` talking to B's
local API on 127.0.0.1 there):

    start -> ready        process start, imports, storage open, runtime.json written
    ready -> registered   mDNS registration: RFC 6762 section 8.1 probing (random 150-250 ms,
                          then three probes 500 ms apart in this zeroconf: a floor near 1.2 s)
    registered -> synced  browse, resolve, dial, handshake, state-vector exchange

Two orders, N repetitions each: B's terminal id sorts before A's, and after it (lanesync's
discovered-peer dial rule makes one side wait 2 s before dialling; the other side dials at once).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LANESYNC, BenchError
from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.common import StudyRun, progress
from lanesync.core.identity import Role
from lanesync.errors import NetnsUnavailable
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.netns import ApiAgent, Host, TestNet, stop_process, unavailable_reason
from lanesync.tools.procs import child_env

NAME = "discovery"
POLL_S = 0.02
TIMEOUT_S = 60.0
VALID_DAYS = 1
# RFC 6762 section 8.1 as this zeroconf does it: 150-250 ms random delay, then 2 x 500 ms
# between three probes.
PROBING_FLOOR_S = 1.2
ORDERS = (("new lane sorts first", True), ("new lane sorts last", False))
PHASES = (
    ("start -> synced", "start_to_synced"),
    ("start -> ready", "start_to_ready"),
    ("ready -> registered (probing)", "ready_to_registered"),
    ("registered -> synced", "registered_to_synced"),
    ("ready -> synced", "ready_to_synced"),
)
ENV = child_env(columns=120)


def figure_name(phase: str, order: str) -> str:
    return f"{phase}, {order}"


def spawn(host: Host, directory: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [
        sys.executable, "-m", "lanesync", "run", str(directory),
        "--listen", "0.0.0.0:0", "--api", "127.0.0.1:0",
    ]  # fmt: skip
    with log.open("wb") as out:
        process: subprocess.Popen[bytes] = host.popen(
            args, env=ENV, stdout=out, stderr=subprocess.STDOUT
        )
    return process


def wait_for(predicate: Callable[[], bool], what: str, log: Path) -> float:
    """Poll ``predicate`` every ``POLL_S``; the monotonic time it first held."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            raise BenchError(f"timed out waiting for {what}; its log ends: {tail}")
        time.sleep(POLL_S)
    return time.monotonic()


def one_run(net: TestNet, work: Path, rep: int, b_first: bool) -> dict[str, float]:
    """One repetition: A up and holding a receipt, then B started; B's phases in seconds."""
    h1, h2 = net.hosts
    store = StoreDirectory.init(work / "store", f"bench-{os.getpid()}-{rep}")
    a_id, b_id = ("lane2", "lane1") if b_first else ("lane1", "lane2")
    a_dir, b_dir = work / "a", work / "b"
    store.enroll(a_dir, a_id, Role.CASHIER, wall_clock_ms(), VALID_DAYS)
    store.enroll(b_dir, b_id, Role.CASHIER, wall_clock_ms(), VALID_DAYS)
    agent_a, agent_b = ApiAgent(h1, ENV), ApiAgent(h2, ENV)
    a_log, b_log = work / "a.log", work / "b.log"
    a = spawn(h1, a_dir, a_log)
    b: subprocess.Popen[bytes] | None = None
    try:
        # A is up and registered (its "started" line follows the registration).
        wait_for(lambda: "started terminal=" in a_log.read_text(errors="replace"), "A", a_log)
        answer = agent_a.call(a_dir, "POST", "/v1/stock/receive", {"sku": "milk", "qty": 5})
        if answer.get("status") != 201:
            raise BenchError(f"A refused the receipt: {answer}")

        started = time.monotonic()
        b = spawn(h2, b_dir, b_log)
        ready = wait_for(lambda: (b_dir / "runtime.json").exists(), "B ready", b_log)
        registered = wait_for(
            lambda: "started terminal=" in b_log.read_text(errors="replace"), "B registered", b_log
        )

        def synced() -> bool:
            # A's receipt is on B, and both hold the same state (B's own certificate record
            # reached A too): the first sync is complete in both directions.
            stock = agent_b.call(b_dir, "GET", "/v1/stock")
            if stock.get("status") != 200:
                return False
            if {i["sku"]: i["on_hand"] for i in stock["body"]["items"]}.get("milk") != 5:
                return False
            ours = agent_b.call(b_dir, "GET", "/v1/digest")
            theirs = agent_a.call(a_dir, "GET", "/v1/digest")
            return bool(ours.get("body") == theirs.get("body"))

        done = wait_for(synced, "B synced", b_log)
    finally:
        for process in (b, a):
            if process is not None:
                stop_process(process)
        agent_a.close()
        agent_b.close()
    return {
        "start_to_synced": done - started,
        "start_to_ready": ready - started,
        "ready_to_registered": registered - ready,
        "registered_to_synced": done - registered,
        "ready_to_synced": done - ready,
    }


def run_study(reps: int, work: Path | None = None) -> tuple[list[str], dict[str, Any]]:
    """Every repetition of both orders; returns the lines to print and ``results.json``.
    ``NetnsUnavailable`` (before anything starts) when namespaces cannot be created here."""
    reason = unavailable_reason()
    if reason is not None:
        raise NetnsUnavailable(f"lanesync bench discovery needs network namespaces: {reason}")
    study = StudyRun(NAME, {"reps": reps})
    outcomes = [Outcome(NAME, LANESYNC, r) for r in range(reps)]
    runs: dict[str, list[dict[str, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="lanesync-discovery-", dir=work) as tmp,
        TestNet.create() as net,
    ):
        net.add_host("h1")
        net.add_host("h2")
        for label, b_first in ORDERS:
            runs[label] = []
            for rep, outcome in enumerate(outcomes):
                folder = Path(tmp) / f"{int(b_first)}-{rep}"
                folder.mkdir()
                run = one_run(net, folder, rep, b_first)
                runs[label].append(run)
                for title, key in PHASES:
                    outcome.add(figure_name(title, label), run[key], "s", "lower")
                progress(
                    f"{label} #{rep + 1}: start->synced {run['start_to_synced']:.3f} s "
                    f"(ready {run['start_to_ready']:.3f}, probing "
                    f"{run['ready_to_registered']:.3f}, then {run['registered_to_synced']:.3f})"
                )
    lines = [f"{'order':22} {'phase':30} {'min':>7} {'median':>7} {'max':>7}  (s, N={reps})"]
    for label, order_runs in runs.items():
        for title, key in PHASES:
            values = [r[key] for r in order_runs]
            lines.append(
                f"{label:22} {title:30} {min(values):7.3f} {statistics.median(values):7.3f} "
                f"{max(values):7.3f}"
            )
        median = statistics.median(r["ready_to_synced"] for r in order_runs)
        lines.append(
            f"{'':22} ready -> synced median is {median / PROBING_FLOOR_S:.2f} x the "
            f"~{PROBING_FLOOR_S} s probing floor (+{median - PROBING_FLOOR_S:.3f} s)"
        )
    return lines, study.results(outcomes, (LANESYNC,), {"runs": runs})
