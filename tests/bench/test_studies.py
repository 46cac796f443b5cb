"""Every study of ``lanesync bench`` (the scripts that were in ``benchmarks/``) in a tiny
configuration: the real command in a subprocess, a valid results.json and report, and figures
that were measured (present, finite, positive, in a plausible range), never wall-clock
thresholds: the machine is shared.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lanesync.tools.netns import unavailable_reason

from .conftest import ENV, RunBench, requires_bench_deps

pytestmark = [pytest.mark.slow]


def figures(results: dict[str, Any], study: str) -> dict[str, dict[str, Any]]:
    """The study's figures by name; checks the layout ``lanesync bench compare`` reads."""
    assert results["schema"] == "lanesync-bench/1"
    assert results["config"]["scenarios"] == [study]
    assert results["machine"]["cpu_count"] >= 1
    assert results["command"].startswith("lanesync bench " + study)
    report = (Path(results["_out"]) / "report.md").read_text()
    assert f"## {study}" in report
    data = results["scenarios"][study]
    assert data["figures"], "no figure"
    return {f["name"]: f for f in data["figures"]}


def values(figure: dict[str, Any], system: str = "lanesync") -> list[float]:
    found: list[float] = figure["systems"][system]["values"]
    assert found, figure["name"]
    assert all(v is not None and math.isfinite(v) and v > 0 for v in found), figure
    return found


def test_receive_path(run_bench: RunBench) -> None:
    results = run_bench("receive-path", "--sales", "60", "--batches", "1,20", "--repeats", "2")
    by_name = figures(results, "receive-path")
    assert set(by_name) == {
        "Ed25519 verify alone",
        "CPU per sale received, 1 per frame",
        "CPU per sale received, 20 per frame",
    }
    verify = values(by_name["Ed25519 verify alone"])
    assert len(verify) == 2
    # One verification takes tens of microseconds (50-200 us on the 2-core test machine);
    # receiving a sale verifies its record and does more, so its CPU time cannot be much below
    # one verification (a third leaves room for the two being measured at different moments).
    assert all(1 < v < 10_000 for v in verify)
    for batch in (1, 20):
        received = values(by_name[f"CPU per sale received, {batch} per frame"])
        assert min(received) > min(verify) / 3
        assert max(received) < 1e6


def test_receive_path_refuses_a_bad_batch_list(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lanesync.cli.main import cli

    done = CliRunner().invoke(
        cli, ["bench", "receive-path", "--batches", "1,x", "--out", str(tmp_path)]
    )
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1].startswith("error: --batches")


def test_foundation(run_bench: RunBench) -> None:
    results = run_bench("foundation", "--sales", "100")
    by_name = figures(results, "foundation")
    assert len(by_name) == 20
    for name, figure in by_name.items():
        if name.startswith(("RSS", "same, vs raw reloaded")):
            # A difference of two RSS readings: finite, but on 100 sales it may round to 0.
            assert all(math.isfinite(v) for v in figure["systems"]["lanesync"]["values"])
        else:
            values(figure)
    per_sale = values(by_name["Bytes per sale update"])[0]
    raw_per_sale = values(by_name["Bytes per sale update"], "raw-pycrdt")[0]
    # A sale's update carries a 64 B signature and a 32 B chain hash besides its lines.
    assert 96 < per_sale < 2_000
    assert 10 < raw_per_sale < 2_000
    assert by_name["Bytes per sale update"]["ratios"]["raw-pycrdt"]["median"] > 0
    concurrent = by_name["Sales/s, 64 concurrent writers, group commit, durable"]
    assert values(concurrent, "raw-pycrdt")[0] > 0
    data = results["scenarios"]["foundation"]
    assert data["details"]["lanesync_first_open"]["sales"] == 100
    assert [r["sales"] for r in data["details"]["lanesync_reopen_runs"]] == [100, 100, 100]
    assert {t["result"] for t in data["targets"]} <= {"", "PASS", "FAIL", "n/a (small N)"}


@requires_bench_deps
def test_mesh(run_bench: RunBench) -> None:
    results = run_bench(
        "mesh", "--quick", "--lanes", "2", "--rate", "20", "--duration", "1",
        "--split-sales", "30", "--ladder", "40",
    )  # fmt: skip
    by_name = figures(results, "mesh")
    data = results["scenarios"]["mesh"]
    assert data["systems"] == ["lanesync", "pycrdt-websocket"]
    for name in (
        "Propagation p50 at 20 sales/s",
        "Propagation p99 at 20 sales/s",
        "Wire bytes per sale and receiving lane at 20/s",
        "Catch-up after a split of 30 sales",
        "catch-up bytes per sale",
        "CPU per sale at 20/s, all processes",
    ):
        values(by_name[name])
        values(by_name[name], "pycrdt-websocket")
        assert by_name[name]["ratios"]["pycrdt-websocket"]["median"] > 0
    lanesync = data["details"]["lanesync"]
    # Every sale of the latency step reached the other lane, and the lanes agree.
    latency = lanesync["latency"]
    assert latency["sales"] == 20
    assert latency["pairs_received"] == latency["pairs_expected"] == 20
    assert lanesync["check"]["digests_equal"] is True
    assert lanesync["check"]["missing_deliveries"] == 0
    # A sale carries at least its 64 B signature over the wire to the other lane.
    assert values(by_name["Wire bytes per sale and receiving lane at 20/s"])[0] > 64
    assert lanesync["catch_up"]["bytes"] > 30 * 64
    assert {r["system"] for r in data["runs"]} == {"lanesync", "pycrdt-websocket"}


def test_mesh_refuses_a_bad_ladder(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lanesync.cli.main import cli

    done = CliRunner().invoke(
        cli, ["bench", "mesh", "--ladder", "200,fast", "--skip-baseline", "--out", str(tmp_path)]
    )
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1].startswith("error: --ladder")


def test_cloud(run_bench: RunBench) -> None:
    results = run_bench("cloud", "--lanes", "2", "--sales", "40", "--kills", "1")
    by_name = figures(results, "cloud")
    details = results["scenarios"]["cloud"]["details"]
    catch_up = details["catch_up"]
    # The cloud's tables hold the whole day (the run stops with an error otherwise), and what
    # crossed the WAN is at least the delta it was missing.
    assert catch_up["leader_sales"] == 40
    assert catch_up["sales_written"] == 40
    assert catch_up["minimal_delta_bytes"] > 40 * 64  # each sale carries a 64 B signature
    assert catch_up["wan_over_minimal"] >= 1.0
    assert values(by_name["catch-up: WAN bytes per sale"])[0] > 64
    for name in (
        "catch-up: heal -> tables exact",
        "catch-up: heal -> everything acknowledged",
        "failover: elected p50 after the kill",
        "failover: uplinked p50 after the kill",
    ):
        values(by_name[name])
    failover = details["failover"]
    assert failover["kills"] == 1
    assert 0 < failover["elected_s"]["max"] <= failover["uplinked_s"]["max"] < 60


def test_cloud_ingest(run_bench: RunBench) -> None:
    from lanesync.tools.pgserver import unavailable_reason

    # PostgreSQL too where the machine has its server binaries (as the cloud tests do).
    processes = "1" if unavailable_reason() is None else ""
    results = run_bench(
        "cloud-ingest", "--stores", "2", "--sales", "5", "--uploaders", "1",
        "--processes", processes,
    )  # fmt: skip
    data = results["scenarios"]["cloud-ingest"]
    systems = ["SQLite-1", *(["PG-1"] if processes else [])]
    assert data["systems"] == systems
    by_name = figures(results, "cloud-ingest")
    configurations = data["details"]["configurations"]
    assert [c["name"] for c in configurations] == systems
    for configuration in configurations:
        # Every sale of both stores reached the head-office tables, exactly.
        assert configuration["exact"] is True, configuration["problems"]
        assert configuration["records"] == 2 * (5 + 20)  # 5 sales and 20 receipts per store
        assert set(configuration["store_done_s"]) == {"store-000", "store-001"}
    for system in systems:
        records_per_s = values(by_name["records/s"], system)[0]
        time_s = values(by_name["time until every sale is in the tables"], system)[0]
        assert records_per_s == pytest.approx(50 / time_s, rel=0.05)  # time_s: rounded to 0.01
        assert values(by_name["cloud peak RSS"], system)[0] > 10  # MB: a Python process at least
    assert data["details"]["reference_merge"]["records"] == 50


def test_cloud_ingest_refuses_nothing_to_run(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lanesync.cli.main import cli

    args = ["bench", "cloud-ingest", "--skip-sqlite", "--processes", "", "--out", str(tmp_path)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1
    assert (
        done.output.strip().splitlines()[-1]
        == "error: nothing to run: --skip-sqlite and no --processes"
    )


def test_cloud_chain(run_bench: RunBench) -> None:
    from lanesync.tools.pgserver import unavailable_reason as postgresql_unavailable

    # PostgreSQL only where the machine has its server binaries (as the cloud tests do).
    if (reason := postgresql_unavailable()) is not None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    results = run_bench(
        "cloud-chain", "--stores", "6", "--active", "3", "--catchup-stores", "1",
        "--catchup-sales", "300", "--sales", "5", "--processes", "1", "--uploaders", "1",
        "--interval", "0.2", "--duration", "0.5",
    )  # fmt: skip
    data = results["scenarios"]["cloud-chain"]
    assert data["systems"] == ["PG-1"]
    by_name = figures(results, "cloud-chain")
    details = data["details"]
    # The idle process was measured with the active stores registered, then with all six.
    assert [r["registered"] for r in details["idle_rss"]] == [3, 6]
    assert all(r["rss_mb"] > 10 for r in details["idle_rss"])  # MB: a Python process at least
    (run,) = details["configurations"]
    # Every sale, offline and live, reached the head-office tables exactly.
    assert run["exact"] is True, run["problems"]
    assert run["records"] == (300 + 20) + 2 * (5 + 20)  # sales and 20 receipts per store
    assert run["records_in_tables"] >= run["records"]
    assert run["records_per_s"] == pytest.approx(run["records_in_tables"] / run["time_s"], 0.05)
    assert set(run["catchup_acked_s"]) == {"store-0000"}
    # The small stores sold live and timed every acknowledgement; none was left unacknowledged.
    assert run["unacked"] == 0
    without, during = run["ack_without_catchup_ms"], run["ack_during_catchup_ms"]
    assert 0 < without["count"] <= run["live_sales"]
    assert 0 < without["p50"] <= without["p99"] <= without["max"]
    assert values(by_name["ack latency p99, without a catch-up"], "PG-1")
    assert run["uplink_drops"] == 0
    assert run["handshake_failures"] == 0
    # The timeline holds every sale counted above, by when it was committed.
    assert sum(t["count"] for t in run["ack_timeline"]) == without["count"] + during["count"]
    # Both restarts served an upload: its hello came before its acknowledgement.
    assert [r["signal"] for r in run["restarts"]] == ["SIGTERM", "SIGKILL"]
    for restart in run["restarts"]:
        assert restart["spawn_to_ready_s"] > 0
        assert 0 < restart["spawn_to_first_hello_s"] <= restart["spawn_to_first_upload_served_s"]
    assert values(by_name["cloud RSS per process, active (max)"], "PG-1")[0] > 10
    # The cloud's own merge histogram (its /metrics): every store merged at least once.
    (merges,) = run["merges"]
    assert merges["merges"] >= 3
    assert merges["seconds"] > 0
    assert 0 <= merges["over_15_s"] <= merges["over_5_s"] <= merges["over_1_s"] <= merges["merges"]


def test_cloud_chain_refuses_more_active_than_stores(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lanesync.cli.main import cli

    args = ["bench", "cloud-chain", "--stores", "5", "--active", "6", "--out", str(tmp_path)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1] == "error: --active (6) cannot exceed --stores (5)"


@pytest.mark.skipif(
    unavailable_reason() is not None,
    reason=f"network namespaces unavailable: {unavailable_reason()}",
)
def test_discovery(run_bench: RunBench) -> None:
    # The daemons listen on 0.0.0.0 and speak mDNS only inside the namespaces the study
    # creates (and deletes: TestNet.close fails the run if anything with its prefix is left).
    results = run_bench("discovery", "--reps", "1")
    by_name = figures(results, "discovery")
    orders = ("new lane sorts first", "new lane sorts last")
    phases = ("start -> synced", "start -> ready", "ready -> registered (probing)")
    phases += ("registered -> synced", "ready -> synced")
    assert set(by_name) == {f"{phase}, {order}" for phase in phases for order in orders}
    for order in orders:
        (total,) = values(by_name[f"start -> synced, {order}"])
        parts = [values(by_name[f"{p}, {order}"])[0] for p in phases[1:4]]
        assert total == pytest.approx(sum(parts))
        # Registration includes RFC 6762 probing: a random 150-250 ms, then two 500 ms gaps.
        assert parts[1] > 1.0
        assert total < 60  # the study's own timeout per wait


def test_discovery_without_namespaces_is_one_error_line(tmp_path: Path) -> None:
    # No `ip` on the PATH (and, for a user, no root either): the study refuses before it starts.
    done = subprocess.run(
        [sys.executable, "-m", "lanesync", "bench", "discovery", "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=ENV | {"PATH": str(tmp_path)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: lanesync bench discovery needs network namespaces: ")
    assert not (tmp_path / "o").exists()


def test_year(run_bench: RunBench) -> None:
    results = run_bench(
        "year", "--days", "2", "--sales-per-day", "40", "--runs", "1", "--checkpoints", "2"
    )
    by_name = figures(results, "year")
    data = results["scenarios"]["year"]
    points = data["details"]["checkpoints"]
    assert [p["day"] for p in points] == [2]  # one checkpoint keeps the test short
    for point in points:
        day = point["day"]
        assert point["sales"] == 40 * day
        # Every day built is closed (or, once sealing exists, sealed) on the measured lane.
        states = point["listing"]["states"]
        assert states.get("closed", 0) + states.get("sealed", 0) == day
        (opened,) = point["reopens"]
        assert opened["records"] == 40 * day + 4 * day  # every sale, a day-end per lane and day
        for name in ("Lane RSS after reopening", "after reopening + a sale"):
            # The whole process: the interpreter and lanesync's imports are tens of MB.
            assert values(by_name[f"{name}, day {day}"])[0] > 10
        for name in ("the lane alone (minus the imports)",):
            assert all(math.isfinite(v) for v in by_name[f"{name}, day {day}"]["systems"][
                "lanesync"]["values"])  # fmt: skip
        for name in (
            "Reopen",
            "CPU",
            "State message of one anti-entropy round",
            "documents in it",
            "Disk per sale",
            "report --day, the year's first day",
            "report --day, the newest day",
        ):
            values(by_name[f"{name}, day {day}"])
        # A State message holds at least the config document's vector and the day's ledger's.
        assert opened["state_docs"] >= 2
        assert values(by_name[f"Disk per sale, day {day}"])[0] > 64  # a signature at least
        # "its own work" is a difference of two wall times: finite, not necessarily positive.
        for which in ("first day", "newest day"):
            for row in (f"its own work ({which})", f"its own work, CPU ({which})"):
                own = by_name[f"{row}, day {day}"]["systems"]["lanesync"]
                assert math.isfinite(own["median"])
    assert not any(name.startswith("Close to sealed") for name in by_name)  # never measured here
    results_by_key = {t["key"]: t["result"] for t in data["targets"]}
    assert results_by_key["close_to_sealed_s"] == "n/a"
    assert results_by_key["reopen_s"] == "n/a (smaller run)"


def test_sealing(run_bench: RunBench) -> None:
    results = run_bench("sealing", "--lanes", "2", "--sales", "6", "--runs", "1")
    by_name = figures(results, "sealing")
    data = results["scenarios"]["sealing"]
    (run,) = data["details"]["runs"]
    # The run stops with an error unless every lane's report of the day is sealed, complete,
    # the same, and counts every sale, and every lane logged days.sealed.
    assert set(run["sealed_after_s"]) == {"lane01", "lane02"}
    assert run["records"] == 6 + 2  # the sales and a day-end per lane
    (last,) = values(by_name["last close -> every lane sealed"])
    (first,) = values(by_name["last close -> first lane sealed"])
    assert first <= last == max(run["sealed_after_s"].values())
    assert last < 60  # the study's own limit
    assert [t["name"] for t in data["targets"]] == [
        "last close -> every lane sealed",
        "last close -> first lane sealed",
    ]
    assert {t["target"] for t in data["targets"]} == {"< 5 s"}
    assert {t["result"] for t in data["targets"]} <= {"PASS", "FAIL"}


def test_sealing_refuses_fewer_sales_than_lanes(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from lanesync.cli.main import cli

    args = ["bench", "sealing", "--lanes", "4", "--sales", "3", "--out", str(tmp_path / "o")]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 1
    assert done.output.strip().splitlines()[-1] == (
        "error: --sales must be at least --lanes (every lane sells)"
    )
    assert not (tmp_path / "o").exists()
