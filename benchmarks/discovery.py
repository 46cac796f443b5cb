"""Discovery latency: from starting a daemon to its first completed sync with a discovered peer.

Real ``lanesync run`` processes with zeroconf's DEFAULT timers (nothing patched), in a private
network of Linux network namespaces (tests/discovery/netns.py: a switch namespace with a bridge,
one namespace per terminal, addresses 10.213.1.x only inside them). Must run as root.

One repetition: a fresh store; terminal A starts in namespace h1, registers its mDNS service
and records one receipt; then terminal B (empty) is started in namespace h2 with no --peer, and
the clock runs from just before B's process is spawned until B holds A's receipt and both
digests are equal (B has discovered A, connected, authenticated and synced both ways). Phases
are timed by polling every 20 ms from inside h2 (an agent process talking to B's local API on
127.0.0.1 there):

    start -> ready        process start, imports, storage open, runtime.json written
    ready -> registered   mDNS registration: RFC 6762 section 8.1 probing (random 150-250 ms,
                          then three probes 500 ms apart in this zeroconf: a floor near 1.2 s)
    registered -> synced  browse, resolve, dial, handshake, state-vector exchange

Two orders, N repetitions each: B's terminal id sorts before A's, and after it (lanesync's
discovered-peer dial rule makes one side wait 2 s before dialling; the other side dials at once).

    sudo .venv/bin/python benchmarks/discovery.py            # N = 10 per order, ~3 minutes
    sudo .venv/bin/python benchmarks/discovery.py --reps 3   # quick check
    sudo .venv/bin/python benchmarks/discovery.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/discovery: the namespace network and the API agent
sys.path.insert(0, str(ROOT / "tests"))  # ... which import the shared harness as `support`

from lanesync.core.identity import Role  # noqa: E402
from lanesync.shell.directories import StoreDirectory  # noqa: E402
from lanesync.shell.terminal import wall_clock_ms  # noqa: E402
from tests.discovery.lan import AGENT, ENV  # noqa: E402
from tests.discovery.netns import Host, TestNet, stop_process  # noqa: E402

POLL_S = 0.02
TIMEOUT_S = 60.0
PROBING_FLOOR_S = 1.2  # 150-250 ms random delay + 2 x 500 ms between three probes


class Agent:
    """tests/discovery/agent.py inside one namespace."""

    def __init__(self, host: Host) -> None:
        self.process = host.popen(
            [sys.executable, str(AGENT)],
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def get(self, directory: Path, path: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"dir": str(directory), "method": "GET", "path": path}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer

    def post(self, directory: Path, path: str, body: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        request = {"dir": str(directory), "method": "POST", "path": path, "body": body}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer: dict[str, Any] = json.loads(self.process.stdout.readline())
        return answer


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


def wait_for(predicate: Any, what: str, log: Path) -> float:
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}\n{log.read_text(errors='replace')}")
        time.sleep(POLL_S)
    return time.monotonic()


def one_run(net: TestNet, work: Path, rep: int, b_first: bool) -> dict[str, float]:
    h1, h2 = net.hosts
    store = StoreDirectory.init(work / f"store{rep}", f"bench-{os.getpid()}-{rep}")
    a_id, b_id = ("lane2", "lane1") if b_first else ("lane1", "lane2")
    a_dir, b_dir = work / f"a{rep}", work / f"b{rep}"
    store.enroll(a_dir, a_id, Role.CASHIER, wall_clock_ms(), 1)
    store.enroll(b_dir, b_id, Role.CASHIER, wall_clock_ms(), 1)
    agent_a, agent_b = Agent(h1), Agent(h2)
    a_log, b_log = work / f"a{rep}.log", work / f"b{rep}.log"
    a = spawn(h1, a_dir, a_log)
    b: subprocess.Popen[bytes] | None = None
    try:
        # A is up and registered (its "started" line follows the registration).
        wait_for(lambda: "started terminal=" in a_log.read_text(errors="replace"), "A", a_log)
        answer = agent_a.post(a_dir, "/v1/stock/receive", {"sku": "milk", "qty": 5})
        assert answer.get("status") == 201, answer

        started = time.monotonic()
        b = spawn(h2, b_dir, b_log)
        ready = wait_for(lambda: (b_dir / "runtime.json").exists(), "B ready", b_log)
        registered = wait_for(
            lambda: "started terminal=" in b_log.read_text(errors="replace"), "B registered", b_log
        )

        def synced() -> bool:
            # A's receipt is on B, and both hold the same state (B's own certificate record
            # reached A too): the first sync is complete in both directions.
            stock = agent_b.get(b_dir, "/v1/stock")
            if stock.get("status") != 200:
                return False
            if {i["sku"]: i["on_hand"] for i in stock["body"]["items"]}.get("milk") != 5:
                return False
            ours, theirs = agent_b.get(b_dir, "/v1/digest"), agent_a.get(a_dir, "/v1/digest")
            return bool(ours.get("body") == theirs.get("body"))

        done = wait_for(synced, "B synced", b_log)
    finally:
        for process in (b, a):
            if process is not None:
                stop_process(process)
        for agent in (agent_a, agent_b):
            if agent.process.stdin is not None:
                agent.process.stdin.close()
            stop_process(agent.process, 5.0, signalled=True)
            if agent.process.stdout is not None:
                agent.process.stdout.close()
    return {
        "start_to_synced": done - started,
        "start_to_ready": ready - started,
        "ready_to_registered": registered - ready,
        "registered_to_synced": done - registered,
        "ready_to_synced": done - ready,
    }


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


def summary(values: list[float]) -> dict[str, float]:
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10, help="repetitions per order (10)")
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark creates network namespaces")

    print(f"before: {machine_load()}")
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="lanesync-discovery-") as tmp, TestNet.create() as net:
        net.add_host("h1")
        net.add_host("h2")
        for label, b_first in (("new lane sorts first", True), ("new lane sorts last", False)):
            runs = []
            for rep in range(args.reps):
                work = Path(tmp) / f"{int(b_first)}-{rep}"
                work.mkdir()
                run = one_run(net, work, rep, b_first)
                runs.append(run)
                print(
                    f"  {label:22} #{rep + 1:2}: start->synced {run['start_to_synced']:.3f} s "
                    f"(ready {run['start_to_ready']:.3f}, probing "
                    f"{run['ready_to_registered']:.3f}, then {run['registered_to_synced']:.3f})",
                    flush=True,
                )
            results[label] = runs
    print(f"after:  {machine_load()}\n")

    phases = [
        ("start -> synced", "start_to_synced"),
        ("start -> ready", "start_to_ready"),
        ("ready -> registered (probing)", "ready_to_registered"),
        ("registered -> synced", "registered_to_synced"),
        ("ready -> synced", "ready_to_synced"),
    ]
    print(f"{'order':22} {'phase':30} {'min':>7} {'median':>7} {'max':>7}  (s, N={args.reps})")
    report: dict[str, Any] = {"reps": args.reps, "orders": {}}
    for label, runs in results.items():
        report["orders"][label] = {"runs": runs, "summary": {}}
        for title, key in phases:
            s = summary([r[key] for r in runs])
            report["orders"][label]["summary"][key] = s
            print(f"{label:22} {title:30} {s['min']:7.3f} {s['median']:7.3f} {s['max']:7.3f}")
        median = report["orders"][label]["summary"]["ready_to_synced"]["median"]
        print(
            f"{'':22} ready -> synced median is {median / PROBING_FLOOR_S:.2f} x the "
            f"~{PROBING_FLOOR_S} s probing floor (+{median - PROBING_FLOOR_S:.3f} s)"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
