"""``lanesync demo``: its JSON summary, and Ctrl-C on the live demo (cli/demo.py,
cli/live_demo.py)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .helpers import ENV, Cli

# What a shell gives a command it starts in the foreground: Python's own SIGINT handler
# (KeyboardInterrupt). A process started in the background of a non-interactive shell, as
# pytest may be, inherits SIGINT ignored instead, and Ctrl-C would then do nothing at all.
AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('lanesync', run_name='__main__', alter_sys=True)"
)
LANES_START_WITHIN_S = 40.0


def test_offline_demo_json_is_only_the_summary(cli: Cli) -> None:
    summary = cli.json("demo", "--offline", "--dir", "demo")
    assert set(summary) == {
        "mode", "lanes", "converged", "digest", "stock", "bundle_bytes", "verified",
    }  # fmt: skip
    assert (summary["mode"], summary["lanes"], summary["converged"]) == ("offline", 3, True)
    assert summary["stock"] == {"bread": 8, "eggs": 18, "milk": 14}  # received - sold + voided
    assert summary["verified"] is True
    assert cli.digest("demo/lane2") == summary["digest"]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_ctrl_c_on_the_live_demo_exits_130_and_stops_its_lanes(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-c", AS_FROM_A_TERMINAL, "demo", "--dir", str(root)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + LANES_START_WITHIN_S
        while len(runtimes := sorted(root.glob("lane*/runtime.json"))) < 4:
            assert demo.poll() is None, demo.communicate()
            assert time.monotonic() < deadline, "the demo's lanes did not start"
            time.sleep(0.1)
        lanes = [json.loads(path.read_text())["pid"] for path in runtimes]
        assert all(_alive(pid) for pid in lanes)
        time.sleep(1.0)  # selling by now, or about to
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 130, (out, err)
    assert err == "error: interrupted\n"
    assert not [pid for pid in lanes if _alive(pid)]
    assert not list(root.glob("lane*/runtime.json"))  # each lane stopped cleanly
    assert (root / "store").is_dir()  # --dir is kept: only what the demo started is gone


@pytest.mark.slow
def test_live_demo_json_is_only_the_summary(cli: Cli) -> None:
    # the live table and the split/heal narration go nowhere: stdout is one JSON document
    summary = cli.ok("demo", "--json", timeout_s=180).json()
    assert (summary["mode"], summary["lanes"], summary["converged"]) == ("live", 4, True)
    assert summary["verified"] is True
    assert summary["states_during_split"] >= 2  # the halves differed while apart
    assert summary["sales"] > 0
    assert set(summary["stock"]) == {"bread", "eggs", "milk"}
