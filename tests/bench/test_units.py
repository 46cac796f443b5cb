"""The benchmark's pure parts: statistics, the event-log tracker, compare, the missing extra."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lanesync.bench.compare import compare
from lanesync.bench.events import SeqSet, Tracker
from lanesync.bench.stats import Latency, Spread, cdf_points
from lanesync.cli.main import cli

from .conftest import requires_bench_deps


def test_spread_and_latency() -> None:
    spread = Spread.of([3.0, 1.0, 2.0, math.nan])
    assert (spread.min, spread.median, spread.max, spread.n) == (1.0, 2.0, 3.0, 3)
    assert Spread.of([]).n == 0
    latency = Latency.of_ns([1_000_000, 3_000_000, 2_000_000])
    assert (latency.min, latency.p50, latency.max) == (1.0, 2.0, 3.0)
    points = cdf_points([float(i) for i in range(1000)], points=10)
    assert points[-1] == (999.0, 1.0)
    assert len(points) <= 12


def test_seqset_out_of_order() -> None:
    held = SeqSet()
    held.add_range(3, 4)
    assert 3 in held
    assert 1 not in held
    held.add_range(1, 2)
    assert held.high == 4
    assert not held.extra
    assert len(held) == 4


def test_tracker_reads_incrementally_and_skips_torn_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    log.write_text("S 1 10\nA lane1 1 2 100\nR lane2 1 3 150\nR lane2 4")
    tracker = Tracker()
    tracker.watch("lane1", log, "lane1")
    tracker.poll()
    assert tracker.acks["lane1"] == {1: 100, 2: 100}
    assert tracker.holds("lane1", "lane2", 3)
    assert not tracker.holds("lane1", "lane2", 4)
    with log.open("a") as handle:
        handle.write(" 4 160\nR lane2 x y z\n")  # the torn line completes; garbage is skipped
    tracker.poll()
    assert tracker.holds("lane1", "lane2", 4)
    assert [a.last for a in tracker.take_arrivals()] == [3, 4]


def test_a_restart_forgets_what_was_held_in_memory(tmp_path: Path) -> None:
    first, second = tmp_path / "e0.log", tmp_path / "e1.log"
    first.write_text("R lane2 1 5 100\n")
    second.write_text("H lane2 3 200\n")
    tracker = Tracker()
    tracker.watch("lane1", first, "lane1")
    tracker.poll()
    tracker.watch("lane1", second, "lane1")
    tracker.poll()
    assert tracker.holds("lane1", "lane2", 3)
    assert not tracker.holds("lane1", "lane2", 4)


def results(values: dict[str, list[float]], better: str = "lower") -> dict[str, Any]:
    def spread(v: list[float]) -> dict[str, Any]:
        return {"values": v, **Spread.of(v).as_dict()}

    return {
        "schema": "lanesync-bench/1",
        "scenarios": {
            "steady": {
                "figures": [
                    {
                        "name": "propagation p50",
                        "unit": "ms",
                        "better": better,
                        "systems": {s: spread(v) for s, v in values.items()},
                        "ratios": {},
                    }
                ]
            }
        },
    }


def test_compare_flags_only_changes_outside_the_spread() -> None:
    old = results({"lanesync": [10, 12, 11], "naive-broadcast": [5, 6, 5]})
    new = results({"lanesync": [11, 13, 12], "naive-broadcast": [8, 9, 9]})
    rows = {row.system: row for row in compare(old, new)}
    assert rows["lanesync"].verdict == ""  # overlapping spreads: noise
    assert rows["naive-broadcast"].verdict == "worse"
    assert rows["naive-broadcast"].ratio == pytest.approx(9 / 5)


def test_compare_single_runs_use_a_noise_band() -> None:
    old = results({"lanesync": [10.0]}, better="higher")
    assert compare(old, results({"lanesync": [11.0]}, better="higher"))[0].verdict == ""
    assert compare(old, results({"lanesync": [13.0]}, better="higher"))[0].verdict == "better"


def test_compare_command(tmp_path: Path) -> None:
    import json

    old = results({"lanesync": [10, 12, 11]})
    new = copy.deepcopy(old)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    runner = CliRunner()
    done = runner.invoke(
        cli, ["bench", "compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["changes"][0]["ratio"] == 1.0
    (tmp_path / "bad.json").write_text("{}")
    done = runner.invoke(
        cli, ["bench", "compare", str(tmp_path / "bad.json"), str(tmp_path / "new.json")]
    )
    assert done.exit_code == 1


def test_missing_extra_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lanesync.bench.deps.missing_bench_deps", lambda: ["matplotlib"])
    done = CliRunner().invoke(cli, ["bench", "steady", "--lanes", "2"])
    assert done.exit_code == 1
    lines = [line for line in done.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "pip install 'lanesync[bench]'" in lines[0]


@requires_bench_deps
def test_systems_must_include_lanesync() -> None:
    done = CliRunner().invoke(cli, ["bench", "steady", "--systems", "naive-broadcast"])
    assert done.exit_code == 1
    assert "must include lanesync" in done.output
