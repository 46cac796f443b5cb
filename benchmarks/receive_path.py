"""CPU per received sale on one lane, by how many sales each frame carries; no sockets, no disk.

Run ``.venv/bin/python benchmarks/receive_path.py [--sales N] [--batches 1,10,50] [--repeats R]``.

Two terminals of one store (real directories in a temporary folder) and their ``Node`` objects
are wired back to back, as tests/core/mesh_helpers.py does. Lane A signs and commits N sales
(the workload of benchmarks/foundation.py) and hands them to its node in groups of B, so each
frame carries B sales. Lane B then receives every frame: ``data_received`` (decrypt, decode)
and ``take_output`` (merge: Ed25519 verification, record parsing, pycrdt transaction, fold into
the views). B's commit is not measured: a daemon commits peers' updates about five times a second
whatever the rate (docs/explanation/architecture.md, "The write path").

Reported per (sale, receiving lane): process CPU time, the minimum over ``--repeats`` runs
(each on fresh terminals), because this VM's speed swings by +-50 % between runs and noise only
ever adds time. Also one Ed25519 verification measured alone, the floor of the figure.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
import timeit
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from nacl.signing import SigningKey

from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.node import Node
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

SKU_COUNT = 500  # the workload of benchmarks/foundation.py: 1-3 lines over 500 SKUs
CONN = 1


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
    rng = random.Random(42)
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


def receive_us(sales: int, batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
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
                raise SystemExit(f"lane B accepted {accepted} of {sales} sales: a broken run")
        finally:
            a.close()
            b.close()
    return spent / sales * 1e6


def verify_us() -> float:
    key = SigningKey.generate()
    signed = key.sign(b"x" * 250)  # about a record's size
    runs = 2000
    return timeit.timeit(lambda: key.verify_key.verify(signed), number=runs) / runs * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sales", type=int, default=3000, help="sales per run (default 3000)")
    parser.add_argument("--batches", default="1,10,50", help="sales per frame, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="runs per batch size (default 5)")
    args = parser.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    if args.sales < 1 or args.repeats < 1 or any(b < 1 for b in batches):
        parser.error("--sales, --repeats and every batch size must be at least 1")
    print(f"Ed25519 verify alone: {min(verify_us() for _ in range(args.repeats)):.0f} us")
    for batch in batches:
        runs = [receive_us(args.sales, batch) for _ in range(args.repeats)]
        print(
            f"{batch:>4} sales per frame: {min(runs):6.0f} us CPU per sale received "
            f"(min of {args.repeats}; all: {', '.join(f'{r:.0f}' for r in runs)})"
        )


if __name__ == "__main__":
    main()
