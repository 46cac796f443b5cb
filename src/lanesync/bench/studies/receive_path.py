"""``lanesync bench receive-path``: CPU per received sale on one lane, by how many sales each
frame carries; no sockets, no disk.

Two terminals of one store (real directories in a temporary folder) and their ``Node`` objects
are wired back to back, as tests/core/mesh_helpers.py does. Lane A signs and commits N sales
(1-3 lines over 500 SKUs, as ``lanesync bench foundation``) and hands them to its node in groups
of B, so each frame carries B sales. Lane B then receives every frame: ``data_received``
(decrypt, decode) and ``take_output`` (merge: Ed25519 verification, record parsing, pycrdt
transaction, fold into the views). B's commit is not measured: a daemon commits peers' updates
about five times a second whatever the rate (docs/explanation/architecture.md, "The write
path").

Reported per (sale, receiving lane): process CPU time, each repeat on fresh terminals; the
figure to quote is the minimum over the repeats, because this VM's speed swings by +-50 %
between runs and noise only ever adds time. Also one Ed25519 verification measured alone, the
floor of the figure.
"""

from __future__ import annotations

import tempfile
import time
import timeit
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from lanesync.bench.cluster import LANESYNC, BenchError
from lanesync.bench.load import seeded
from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.common import StudyRun
from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.node import Node
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

NAME = "receive-path"
SKU_COUNT = 500  # the workload of ``lanesync bench foundation``: 1-3 lines over 500 SKUs
CONN = 1
VERIFY_RUNS = 2000
VERIFY_FIGURE = "Ed25519 verify alone"


def figure_name(batch: int) -> str:
    return f"CPU per sale received, {batch} per frame"


def connected(root: Path) -> tuple[Terminal, Terminal, Node, Node]:
    store = StoreDirectory.init(root / "store", "bench")
    for name in ("lane-a", "lane-b"):
        store.enroll(root / name, name, Role.CASHIER, wall_clock_ms(), 30)
    a, b = Terminal.open(root / "lane-a"), Terminal.open(root / "lane-b")
    node_a, node_b = Node(a.replica), Node(b.replica)
    node_a.connection_made(CONN, dialer=True, now_ms=wall_clock_ms())
    node_b.connection_made(CONN, dialer=False, now_ms=wall_clock_ms())
    moved = True
    while moved:  # the handshake and the first state exchange
        moved = False
        for src, dst, terminal in ((node_a, node_b, a), (node_b, node_a, b)):
            out = src.take_output()
            if out.persist:
                terminal.commit(out.persist)
            for frames in out.frames.values():
                for frame in frames:
                    dst.data_received(CONN, frame, wall_clock_ms())
                    moved = True
    return a, b, node_a, node_b


def frames_of_sales(a: Terminal, node_a: Node, sales: int, batch: int) -> list[bytes]:
    rng = seeded(42)
    frames: list[bytes] = []
    for _ in range(0, sales, batch):
        changes = []
        for _ in range(batch):
            lines = [
                LineRequest(
                    Sku(f"sku-{rng.randrange(SKU_COUNT):03d}"),
                    rng.randint(1, 5),
                    rng.randint(50, 4999),
                )
                for _ in range(rng.randint(1, 3))
            ]
            changes.append(a.stage(partial(build_sale, requests=lines))[1])
        a.commit(changes)
        for change in changes:
            node_a.local_change(change, wall_clock_ms())
        frames.extend(f for out in node_a.take_output().frames.values() for f in out)
    return frames


def receive_us(sales: int, batch: int, work: Path | None = None) -> float:
    """CPU microseconds lane B spends per sale it receives, ``batch`` sales per frame."""
    with tempfile.TemporaryDirectory(prefix="lanesync-receive-", dir=work) as tmp:
        a, b, node_a, node_b = connected(Path(tmp))
        try:
            frames = frames_of_sales(a, node_a, sales, batch)
            started = time.process_time()
            for frame in frames:
                node_b.data_received(CONN, frame, wall_clock_ms())
                node_b.take_output()
            spent = time.process_time() - started
            accepted = b.replica.views.accepted_count()
            if accepted < sales:
                raise BenchError(f"lane B accepted {accepted} of {sales} sales: a broken run")
        finally:
            a.close()
            b.close()
    return spent / sales * 1e6


def verify_us() -> float:
    key = SigningKey.generate()
    signed = key.sign(b"x" * 250)  # about a record's size
    return (
        timeit.timeit(lambda: key.verify_key.verify(signed), number=VERIFY_RUNS) / VERIFY_RUNS * 1e6
    )


def run_study(
    sales: int, batches: Sequence[int], repeats: int, work: Path | None = None
) -> tuple[list[str], dict[str, Any]]:
    """Every repeat of every batch size; returns the lines to print and ``results.json``."""
    study = StudyRun(NAME, {"sales": sales, "batches": list(batches), "repeats": repeats})
    outcomes = [Outcome(NAME, LANESYNC, r) for r in range(repeats)]
    for outcome in outcomes:
        outcome.add(VERIFY_FIGURE, verify_us(), "us", "lower")
    lines = [
        f"Ed25519 verify alone: {min(o.figures[VERIFY_FIGURE].value for o in outcomes):.0f} us"
    ]
    for batch in batches:
        runs = []
        for outcome in outcomes:
            spent = receive_us(sales, batch, work)
            outcome.add(figure_name(batch), spent, "us", "lower")
            runs.append(spent)
        lines.append(
            f"{batch:>4} sales per frame: {min(runs):6.0f} us CPU per sale received "
            f"(min of {repeats}; all: {', '.join(f'{r:.0f}' for r in runs)})"
        )
    return lines, study.results(outcomes, (LANESYNC,), {})
