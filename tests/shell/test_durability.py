"""Acknowledged sales survive SIGKILL (DESIGN.md invariant 1).

A worker process sells in a loop and prints each sale id once the write returned; it is killed
with SIGKILL at a random moment, restarted on the same directory, killed again... Afterwards
every acknowledged sale is present, the terminal's chain is gap-free and verifies, nothing is
duplicated, and stock is exact.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lanesync.core.ids import RecordId
from lanesync.core.records import MAX_QTY

from .conftest import Lanes
from .helpers import on_hand, receipt

WORKER = Path(__file__).with_name("durability_worker.py")
ROUNDS = 6
STARTUP_TIMEOUT_S = 30.0
# Small enough that compactions (snapshot rewrites) happen often, so kills land in them too.
COMPACT_MIN_LOG_BYTES = 8 * 1024


def run_and_kill(path: Path, mode: str, delay_s: float, log: Path) -> list[str]:
    """Start a worker, SIGKILL it ``delay_s`` after its first acknowledgement; its acks."""
    acks: list[str] = []
    first = threading.Event()
    with (
        log.open("w") as stderr,
        subprocess.Popen(
            [sys.executable, str(WORKER), mode, str(path), str(COMPACT_MIN_LOG_BYTES)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        ) as worker,
    ):
        stdout = worker.stdout
        assert stdout is not None

        def read() -> None:
            for line in stdout:
                if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                    acks.append(line[:-1])
                    first.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            started = first.wait(STARTUP_TIMEOUT_S)
            if started:
                time.sleep(delay_s)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
            reader.join(timeout=10)
    assert started, f"worker acknowledged nothing: {log.read_text()}"
    assert worker.returncode == -signal.SIGKILL, f"worker died by itself: {log.read_text()}"
    return acks


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_acknowledged_sales_survive_sigkill(lanes: Lanes, tmp_path: Path, mode: str) -> None:
    path = lanes.enroll("lane1")
    terminal = lanes.open(path)
    terminal.write(receipt("milk", MAX_QTY))
    lanes.close(terminal)

    acked: list[str] = []
    for round_no in range(ROUNDS):
        rng = random.Random(f"{mode}-{round_no}")
        delay = rng.uniform(0.05, 0.6)
        acks = run_and_kill(path, mode, delay, tmp_path / f"worker-{round_no}.log")
        assert acks, f"round {round_no} acknowledged nothing"
        acked.extend(acks)

    # Acknowledgements came in commit order and the chain went on across restarts: a sequence
    # number is never acknowledged twice.
    seqs = [RecordId.parse(i).seq for i in acked]
    assert seqs == sorted(set(seqs))

    terminal = lanes.open(path)
    views = terminal.replica.views
    lost = [i for i in acked if not views.is_sale(i)]
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged sales lost"
    sales = list(views.sale_ids())
    assert len(sales) == len(set(sales)) >= len(acked)
    assert all(i.startswith("lane1:") for i in sales)

    head = views.head(terminal.terminal_id)
    assert head.seq == views.accepted_count() == 1 + len(sales)
    report = terminal.integrity()
    assert report["ok"] is True, report
    assert [c["seq"] for c in report["chains"]] == [head.seq]
    assert on_hand(terminal, "milk") == MAX_QTY - len(sales)

    # The survivor keeps selling where the chain stopped.
    record = terminal.write(receipt("milk", 1))
    assert record.seq == head.seq + 1
