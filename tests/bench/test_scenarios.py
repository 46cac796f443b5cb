"""Every scenario of ``lanesync bench`` in a tiny configuration (seconds, not minutes): real
processes on 127.0.0.1, valid results.json, a report and plots, sane figures.

Figures are checked for sanity only (finite where measured, non-negative, lanesync converged and
lost no acknowledged sale), never against wall-clock thresholds: the machine is shared.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from .conftest import RunBench, requires_bench_deps

pytestmark = [requires_bench_deps, pytest.mark.slow]

TINY = ("--lanes", "2", "--rate", "20", "--duration", "1")


def check(results: dict[str, Any], scenario: str, systems: list[str]) -> dict[str, Any]:
    data = results["scenarios"][scenario]
    assert data["systems"] == systems
    for system in systems:
        assert all(data["checks"][system]["converged"]), (system, data["checks"])
        assert data["checks"][system]["lost_sales"] == [0] * results["config"]["repeat"]
    assert data["figures"], "no figure"
    for figure in data["figures"]:
        assert figure["better"] in ("lower", "higher")
        for system, spread in figure["systems"].items():
            for value in spread["values"]:
                assert value is None or (math.isfinite(value) and value >= 0), (figure, system)
        if "lanesync" in figure["systems"] and len(systems) > 1 and figure["unit"] != "count":
            assert figure["ratios"], figure["name"]
    machine = results["machine"]
    assert machine["cpu_count"] >= 1
    assert machine["python"]
    assert results["command"]
    report = (Path(results["_out"]) / "report.md").read_text()
    assert f"## {scenario}" in report
    return data


def plots(results: dict[str, Any]) -> set[str]:
    return {p.name for p in (Path(results["_out"]) / "plots").glob("*.png")}


def test_steady_every_system(run_bench: RunBench) -> None:
    systems = ["lanesync", "lanesync-unsigned", "pycrdt-websocket", "naive-broadcast"]
    results = run_bench("steady", *TINY, "--max-rate", "50", "--systems", "all", "--ladder")
    data = check(results, "steady", systems)
    names = {f["name"] for f in data["figures"]}
    assert "propagation p50 at 20/s" in names
    assert "highest rate kept up" in names
    assert set(data["latency_cdf_ms"]) == set(systems)
    made = plots(results)
    assert {"latency-cdf-steady.png", "bytes-per-sale-steady.png", "ladder-steady.png"} <= made
    with Image.open(Path(results["_out"]) / "plots" / "ladder-steady.png") as image:
        assert (
            image.info["Title"] == "steady: throughput ladder \N{EM DASH} 2 lanes, from 20 sales/s"
        )


def test_split_heal(run_bench: RunBench) -> None:
    systems = ["lanesync", "pycrdt-websocket"]
    results = run_bench("split-heal", *TINY, "--systems", ",".join(systems))
    data = check(results, "split-heal", systems)
    sizes = [row["split_sales"] for row in data["runs"][0]["details"]["splits"]]
    assert sizes == [5, 10, 20]
    assert "convergence-vs-split.png" in plots(results)


def test_outage(run_bench: RunBench) -> None:
    results = run_bench("outage", *TINY, "--systems", "lanesync")
    data = check(results, "outage", ["lanesync"])
    assert data["runs"][0]["details"]["outage"]["cloud_exact"] is True
    assert {s["system"] for s in results["skipped"]} == set()


def test_join(run_bench: RunBench) -> None:
    results = run_bench("join", *TINY, "--systems", "lanesync,naive-broadcast")
    data = check(results, "join", ["lanesync", "naive-broadcast"])
    assert data["runs"][0]["details"]["join"]["acked"] == 20


def test_churn_loses_no_sale(run_bench: RunBench) -> None:
    results = run_bench("churn", "--lanes", "3", "--rate", "20", "--duration", "2")
    data = check(results, "churn", ["lanesync"])  # by default lanesync only
    assert data["runs"][0]["details"]["restarts"]


def test_scale(run_bench: RunBench) -> None:
    results = run_bench(
        "scale",
        "--lanes",
        "4",
        "--rate",
        "20",
        "--duration",
        "1",
        "--systems",
        "lanesync",
    )
    data = check(results, "scale", ["lanesync"])
    names = {f["name"] for f in data["figures"]}
    assert {"propagation p50 at 20/s, 2 lanes", "propagation p50 at 20/s, 4 lanes"} <= names
    # no ladder unless asked for (--ladder)
    assert results["config"]["ladder"] is False
    assert not any(name.startswith("highest rate kept up") for name in names)
