"""Fixtures of the ``lanesync bench`` tests: the benchmark's extra dependencies, and running the
real command in a subprocess (every process it starts binds 127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lanesync.bench.deps import missing_bench_deps

BENCH_TIMEOUT_S = 240

requires_bench_deps = pytest.mark.skipif(
    bool(missing_bench_deps()), reason="needs the bench extra: pip install 'lanesync[bench]'"
)

ENV = {
    k: v
    for k, v in os.environ.items()
    if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy")
}
ENV.update({"PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "120"})

RunBench = Callable[..., dict[str, Any]]
# The commands that tell their estimated wall time up front and keep it in results.json: the
# scenarios (lanesync.bench.estimate) and the sealing study; the other studies say theirs in
# their progress lines.
ESTIMATED = frozenset(
    {"steady", "split-heal", "outage", "join", "churn", "scale", "all", "sealing"}
)


@pytest.fixture
def run_bench(tmp_path: Path) -> RunBench:
    """Run ``lanesync bench ARGS --out DIR --json`` in a subprocess and return results.json
    (checking that stdout held the same JSON)."""

    def run(*args: str) -> dict[str, Any]:
        out = tmp_path / "out"
        command = [sys.executable, "-m", "lanesync", "bench", *args, "--out", str(out), "--json"]
        command += ["--work", str(tmp_path)]
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=BENCH_TIMEOUT_S,
            env=ENV,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        results: dict[str, Any] = json.loads((out / "results.json").read_text())
        assert json.loads(done.stdout)["schema"] == results["schema"]
        if args[0] in ESTIMATED:
            # the estimate, told on stderr before the run (stdout is the JSON), is in
            # results.json
            told = [line for line in done.stderr.splitlines() if line.startswith("estimated wall")]
            assert len(told) == 1, done.stderr[-4000:]
            assert results["estimated_seconds"] > 0
            assert results["wall_seconds"] >= results["seconds"] > 0
        assert (out / "report.md").is_file()
        return results | {"_out": str(out)}

    return run
