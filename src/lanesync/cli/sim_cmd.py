"""``lanesync sim``: run seeded schedules of a whole store through the deterministic simulator.

Exit status 0 when every seed kept every invariant, 1 when any seed violated one (each failing
seed is printed with its invariant, the command that replays it and a minimal trace).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import click

from lanesync.sim import (
    FaultRates,
    PlantedBug,
    SeedResult,
    SimConfig,
    Summary,
    Topology,
    run_seed,
)

from .output import emit_json

DEFAULT_SEEDS = 100


def _run_chunk(seeds: Sequence[int], config: SimConfig, strict: bool) -> list[SeedResult]:
    """Worker: passing seeds come back without their trace (it is only needed to report)."""
    results = []
    for seed in seeds:
        result = run_seed(seed, config)
        if not result.failures(strict=strict):
            result = replace(result, trace=())
        results.append(result)
    return results


def run_many(
    seeds: Sequence[int], config: SimConfig, *, jobs: int = 1, strict: bool = False
) -> Summary:
    """Run ``seeds`` on ``jobs`` processes; the summary lists results in seed order, so it
    does not depend on ``jobs``."""
    import time

    started = time.perf_counter()
    if jobs <= 1 or len(seeds) < 2:
        results = _run_chunk(seeds, config, strict)
    else:
        chunks = [list(seeds[i::jobs]) for i in range(jobs)]
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(_run_chunk, chunk, config, strict) for chunk in chunks]
            results = sorted((r for f in futures for r in f.result()), key=lambda r: r.seed)
    summary = Summary(config, strict=strict)
    for result in results:
        summary.add(result)
    summary.wall_s = time.perf_counter() - started
    return summary


@click.command()
@click.option("--seeds", "count", type=click.IntRange(1), help="How many seeds (default 100).")
@click.option("--seed", "first", type=click.IntRange(0), help="First seed (alone: replay it).")
@click.option("--lanes", type=click.IntRange(2, 32), default=None, help="Lanes in the store.")
@click.option(
    "--topology",
    type=click.Choice([t.value for t in Topology]),
    default=None,
    help="Which lanes dial each other (default: full mesh).",
)
@click.option("--ops", type=click.IntRange(0), default=None, help="Operations per schedule.")
@click.option("--fault-ms", type=click.IntRange(1_000), default=None, help="Faulty phase length.")
@click.option("--anti-entropy-ms", type=click.IntRange(50), default=None, hidden=True)
@click.option("--no-faults", is_flag=True, help="A perfect network and no crashes.")
@click.option(
    "--plant",
    type=click.Choice([p.value for p in PlantedBug]),
    default=None,
    help="Plant a known bug (to see the simulator find it).",
)
@click.option("--trace", "full_trace", is_flag=True, help="Print each seed's whole trace.")
@click.option("--strict", is_flag=True, help="Known core findings fail the run too.")
@click.option("--jobs", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
def sim(
    count: int | None,
    first: int | None,
    lanes: int | None,
    topology: str | None,
    ops: int | None,
    fault_ms: int | None,
    anti_entropy_ms: int | None,
    no_faults: bool,
    plant: str | None,
    full_trace: bool,
    strict: bool,
    jobs: int,
    as_json: bool,
) -> None:
    """Simulate a store (lanes, election, uplink, cloud) under faults, deterministically.

    Runs N seeded schedules through the real pure cores with a simulated network and clock,
    then checks every invariant. A failing seed prints its replay command: --seed S runs
    exactly the same schedule again.
    """
    config = SimConfig.for_plant(None if plant is None else PlantedBug(plant))
    overrides: dict[str, object] = {}
    if lanes is not None:
        overrides["lanes"] = lanes
    if topology is not None:
        overrides["topology"] = Topology(topology)
    if ops is not None:
        overrides["ops"] = ops
    if fault_ms is not None:
        overrides["fault_ms"] = fault_ms
    if anti_entropy_ms is not None:
        overrides["anti_entropy_ms"] = anti_entropy_ms
    if no_faults:
        overrides["faults"] = FaultRates.none()
    config = replace(config, **overrides)  # type: ignore[arg-type]
    start = first or 0
    total = count if count is not None else (1 if first is not None else DEFAULT_SEEDS)
    seeds = list(range(start, start + total))
    if full_trace:
        jobs = 1
    summary = run_many(seeds, config, jobs=jobs, strict=strict)
    if as_json:
        emit_json(summary.to_json())
    else:
        _print_text(summary, full_trace)
    if summary.failed:
        raise SystemExit(1)


def _print_text(summary: Summary, full_trace: bool) -> None:
    out = click.echo  # plain lines, never wrapped: a trace must compare byte for byte
    if full_trace:
        for seed in summary.seeds:
            result = run_seed(seed, summary.config)
            out(f"seed {seed} trace:")
            for line in result.render_trace(full=True):
                out(f"  {line}")
    for result in summary.failed:
        out(result.render_failure(strict=summary.strict))
    data = summary.to_json()
    out(
        f"{data['seeds_run']} seeds, {len(summary.failed)} failed, "
        f"{data['invariant_checks']} invariant checks, {data['simulated_s']} s simulated in "
        f"{data['wall_s']} s ({data['seeds_per_s']} seeds/s)"
    )
    seeds_with = ", ".join(f"{kind} {n}" for kind, n in data["seeds_with"].items())
    out(f"seeds with: {seeds_with}")
    for name, info in data["known_findings"].items():
        out(f"known core finding {name} seen in {info['seeds']} seeds (--strict fails on it)")
