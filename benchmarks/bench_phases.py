"""The phases of one ``lanesync bench`` store run, timed one by one: the costs behind the
constants of src/lanesync/bench/estimate.py (the estimate ``lanesync bench`` prints before it
starts).

Run ``.venv/bin/python benchmarks/bench_phases.py [--systems A,B] [--lanes 2,4] [--runs 2]``.
For every run, system and lane count it starts a store (``Cluster.start``), rings one 1 s step
at 20 sales/s (``measure``), makes the final check (``final_check``), rings 400 sales
closed-loop (``fill``) and waits until they are everywhere, then stops the store
(``Cluster.close``); it prints one JSON line of seconds per phase. Everything runs on 127.0.0.1
and every process is stopped when the store closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from lanesync.bench.cluster import SYSTEMS, Cluster, Faults
from lanesync.bench.load import fill, seeded
from lanesync.bench.measure import measure, pending_pairs, wait_delivered
from lanesync.bench.outcome import Context, Outcome, Settings, final_check, lane_names
from lanesync.bench.ui import Ui

RATE = 20.0  # sales/s of the timed step: every system keeps it up
STEP_S = 1.0
FILL_SALES = 400


async def phases(system: str, lanes: int, root: Path) -> dict[str, float | int | str]:
    settings = Settings(lanes=lanes, rate=RATE, duration_s=STEP_S)
    names = lane_names(lanes)
    rng = seeded(1)
    times: dict[str, float] = {}
    began = time.monotonic()

    def lap(name: str) -> None:
        nonlocal began
        now = time.monotonic()
        times[name] = round(now - began, 2)
        began = now

    async with Cluster(system, root, Faults()) as cluster:
        await cluster.start(names)
        lap("start")
        step = await measure(cluster, names, RATE, STEP_S, rng, "timed", settings.settle_s)
        lap("step_1s")
        await final_check(
            Context(settings, root, Ui(enabled=False)),
            cluster,
            step.sales_list,
            Outcome("phases", system, 0),
        )
        lap("final_check")
        sales = await fill(cluster, names, FILL_SALES, rng)
        lap(f"fill_{FILL_SALES}")
        await wait_delivered(cluster, pending_pairs(cluster, sales, names), settings.settle_s)
        lap("drain_fill")
    lap("stop")
    return {"system": system, "lanes": lanes, **times}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--lanes", default="2,4")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    for _ in range(args.runs):
        for system in args.systems.split(","):
            for lanes in (int(n) for n in args.lanes.split(",")):
                with tempfile.TemporaryDirectory(prefix="bench-phases-") as tmp:
                    print(json.dumps(await phases(system, lanes, Path(tmp))), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
