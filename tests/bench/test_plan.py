"""What ``lanesync bench`` plans before it runs (the systems, the ladder, the estimated time)
and the plots' titles, without starting a store: ``--dry-run`` and the real plotting code on
a small results structure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from lanesync.bench.cluster import LANESYNC, SYSTEMS
from lanesync.bench.estimate import LADDER_TOP, STEP_OVERHEAD_S, estimate, human_seconds
from lanesync.bench.outcome import LADDER, Settings
from lanesync.bench.plots import ladder_points, make_plots
from lanesync.cli.main import cli

from .conftest import requires_bench_deps

pytestmark = requires_bench_deps

STEADY = ("bench", "steady", "--lanes", "3", "--rate", "50", "--duration", "5")


def plan(*args: str) -> dict[str, Any]:
    done = CliRunner().invoke(cli, [*STEADY, *args, "--dry-run", "--json"])
    assert done.exit_code == 0, done.output
    planned: dict[str, Any] = json.loads(done.stdout)
    return planned


def test_by_default_only_lanesync_and_no_ladder() -> None:
    planned = plan()
    assert planned["systems"] == [LANESYNC]
    assert planned["ladder"] is False
    assert planned["load_steps"] == 2  # the warm-up and the step at --rate
    assert planned["store_runs"] == 1


def test_systems_all_and_ladder_select_the_sweep() -> None:
    planned = plan("--systems", "all", "--ladder")
    assert planned["systems"] == list(SYSTEMS)
    assert planned["ladder"] is True
    assert planned["store_runs"] == len(SYSTEMS)
    assert planned["estimated_seconds"] > plan()["estimated_seconds"] * len(SYSTEMS)
    # a comma list still works, in the registry's order
    listed = plan("--systems", "naive-broadcast,lanesync")
    assert listed["systems"] == [LANESYNC, "naive-broadcast"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("lanesync,bogus", "error: unknown system 'bogus'; choose from all, lanesync"),
        ("naive-broadcast", "error: --systems must include lanesync"),
    ],
)
def test_a_bad_systems_value_is_one_line_and_fails(value: str, message: str) -> None:
    done = CliRunner().invoke(cli, [*STEADY, "--systems", value])
    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith(message)


def test_the_dry_run_prints_the_estimate_line() -> None:
    done = CliRunner().invoke(cli, [*STEADY, "--dry-run"])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("steady for lanesync: estimated wall time: about ")
    assert lines[0].endswith("(1 store run, 2 load steps, no ladder (--ladder))")


def test_the_estimate_grows_with_what_the_options_ask() -> None:
    base = Settings(lanes=3, rate=50, duration_s=5)
    one = estimate(["steady"], [LANESYNC], base)
    longer = estimate(["steady"], [LANESYNC], Settings(lanes=3, rate=50, duration_s=15))
    assert longer.seconds == pytest.approx(one.seconds + 10, abs=0.2)  # the step at --rate
    assert estimate(["steady"], [LANESYNC], Settings(lanes=3, rate=50, repeat=3)).stores == 3
    # the ladder climbs every rung up to the measured top, then one rung fails
    climbed = estimate(
        ["steady"], [LANESYNC], Settings(lanes=3, rate=50, duration_s=5, ladder=True)
    )
    kept = [r for r in LADDER if 50 < r <= LADDER_TOP[LANESYNC]]
    assert climbed.steps == one.steps + len(kept) + 2  # the failing rung is tried twice
    assert climbed.seconds > one.seconds + len(kept) * (5 + STEP_OVERHEAD_S)
    # above its top, the ladder comes down: a rung not kept up (tried twice), then one kept up
    top = LADDER.index(int(LADDER_TOP["naive-broadcast"]))
    down = Settings(lanes=3, rate=LADDER[top + 2], duration_s=5, ladder=True)
    assert estimate(["steady"], ["naive-broadcast"], down).steps == 2 + 2 + 1
    # outage has no baseline: only the two lanesync systems count
    assert estimate(["outage"], SYSTEMS, base).stores == 2


def test_the_estimate_reads_as_seconds_minutes_or_hours() -> None:
    assert [human_seconds(s) for s in (12.4, 312, 5400)] == ["12 s", "5.2 min", "1.5 h"]


def step(label: str, rate: float, p99: float, kept_up: bool, lanes: int = 3) -> dict[str, Any]:
    return {
        "label": label,
        "rate": rate,
        "lanes": lanes,
        "latency_ms": {"p99": p99},
        "kept_up": kept_up,
    }


def steady_results() -> dict[str, Any]:
    ladder = [
        step("warm-up", 50, 99.0, True),
        step("steady", 50, 5.0, True),
        step("ladder", 100, 8.0, True),
        step("ladder", 200, 900.0, False),
        step("retry", 200, 20.0, True),  # the retry replaces the first try
        step("ladder", 300, 1500.0, False),
        step("retry", 300, 1600.0, False),
    ]
    baseline = [step("steady", 50, 3.0, True), step("ladder", 100, 4.0, True)]
    spread = {"values": [300.0], "min": 300.0, "median": 300.0, "p99": 300.0, "max": 300.0, "n": 1}
    return {
        "config": {"lanes": 3, "rate": 50.0},
        "scenarios": {
            "steady": {
                "systems": [LANESYNC, "naive-broadcast"],
                "figures": [
                    {
                        "name": "bytes per sale per receiver at 50/s",
                        "unit": "B",
                        "better": "lower",
                        "systems": {LANESYNC: spread, "naive-broadcast": spread},
                        "ratios": {},
                    }
                ],
                "latency_cdf_ms": {LANESYNC: {"n": 2, "cdf": [[1.0, 0.5], [2.0, 1.0]]}},
                "runs": [
                    {"system": LANESYNC, "repeat": 0, "details": {"steps": ladder}},
                    {"system": "naive-broadcast", "repeat": 0, "details": {"steps": baseline}},
                ],
            }
        },
    }


def title(path: Path) -> str:
    with Image.open(path) as image:
        return str(image.info["Title"])


def test_the_ladder_plot_and_every_title_name_lanes_and_rate(tmp_path: Path) -> None:
    results = steady_results()
    rungs = ladder_points(results["scenarios"]["steady"])[3][LANESYNC]
    assert [(r.rate, r.p99_ms, r.kept_up) for r in rungs] == [
        (50.0, 5.0, True),
        (100.0, 8.0, True),
        (200.0, 20.0, True),
        (300.0, 1600.0, False),
    ]
    made = make_plots(results, tmp_path / "plots")
    assert made["steady"] == [
        "plots/latency-cdf-steady.png",
        "plots/ladder-steady.png",
        "plots/bytes-per-sale-steady.png",
    ]
    ladder = title(tmp_path / "plots" / "ladder-steady.png")
    assert ladder == "steady: throughput ladder \N{EM DASH} 3 lanes, from 50 sales/s"
    for name in made["steady"]:
        if name != "plots/ladder-steady.png":
            assert title(tmp_path / name).endswith("\N{EM DASH} 3 lanes, 50 sales/s"), name


def test_no_ladder_no_ladder_plot(tmp_path: Path) -> None:
    results = steady_results()
    for run in results["scenarios"]["steady"]["runs"]:
        run["details"]["steps"] = [s for s in run["details"]["steps"] if s["label"] == "steady"]
    assert ladder_points(results["scenarios"]["steady"]) == {}
    made = make_plots(results, tmp_path / "plots")
    assert "plots/ladder-steady.png" not in made["steady"]
