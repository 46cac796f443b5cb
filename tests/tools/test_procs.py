"""The process harness (``lanesync.tools.procs``) on tiny real Python processes: readiness is the
process's own runtime.json, a process that dies while starting or hangs fails with its log,
SIGTERM then SIGKILL, a restart gets a new log, ``close()`` leaves nothing running, and the
kernel ends the processes of an orchestrator that dies without closing its group."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lanesync.errors import ProcessFailed
from lanesync.tools.procs import ProcessGroup, child_env

# A stand-in for a daemon on directory argv[1]: optionally ignores SIGTERM, writes its
# runtime.json (its own pid, and the X variable of its environment) after a short while, then
# waits to be ended.
DAEMON = """
import json, os, signal, sys, time
from pathlib import Path
if "ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("starting", flush=True)
time.sleep(0.2)
info = {"pid": os.getpid(), "listen": "ws://127.0.0.1:1", "x": os.environ.get("X")}
Path(sys.argv[1], "runtime.json").write_text(json.dumps(info))
print("ready", flush=True)
while True:
    time.sleep(1)
"""
FAIL = "print('boom: no such directory', flush=True); raise SystemExit(3)"
SLEEP = "import time; time.sleep(60)"
ECHO = "import sys\nfor line in sys.stdin:\n    print(line.strip().upper(), flush=True)"
SHORT_S = 0.5  # for a process that is meant to miss it
START_S = 20.0  # a Python process starts in ~50 ms; two loaded cores take longer


@pytest.fixture
def group(tmp_path: Path) -> Iterator[ProcessGroup]:
    procs = ProcessGroup(tmp_path / "logs", cwd=tmp_path)
    try:
        yield procs
    finally:
        procs.close()


def test_ready_only_once_the_process_wrote_its_own_runtime(
    group: ProcessGroup, tmp_path: Path
) -> None:
    # A predecessor killed with SIGKILL left its runtime.json behind.
    (tmp_path / "runtime.json").write_text(json.dumps({"pid": 1, "listen": "stale"}))
    proc = group.spawn("lane", tmp_path, ["-c", DAEMON, tmp_path])
    assert proc.read_runtime() is None
    info = proc.wait_ready(START_S)
    assert info["pid"] == proc.pid
    assert proc.runtime == info
    assert proc.alive()
    assert proc.describe().startswith("--- lane (running) lane.1.log ---\nstarting\nready")
    assert proc.stop() == -signal.SIGTERM
    assert proc.describe().startswith("--- lane (exited -15) lane.1.log ---")
    assert group.pids() == []


def test_a_process_that_exits_while_starting_fails_with_its_log(group: ProcessGroup) -> None:
    proc = group.spawn("lane", group.root, ["-c", FAIL])
    with pytest.raises(ProcessFailed, match="lane exited with 3 while starting") as failed:
        proc.wait_ready(START_S)
    assert "boom: no such directory" in str(failed.value)
    assert proc.returncode == 3


def test_a_process_that_does_not_start_in_time_fails_with_its_log(group: ProcessGroup) -> None:
    proc = group.spawn("lane", group.root, ["-c", SLEEP])
    with pytest.raises(ProcessFailed, match=r"lane did not start within 0 s\n--- lane \(running\)"):
        proc.wait_ready(SHORT_S)
    with pytest.raises(ProcessFailed, match="lane did not start within"):
        asyncio.run(proc.wait_ready_async(SHORT_S))


def test_waiting_in_an_event_loop(group: ProcessGroup, tmp_path: Path) -> None:
    proc = group.spawn("lane", tmp_path, ["-c", DAEMON, tmp_path])
    assert asyncio.run(proc.wait_ready_async(START_S))["pid"] == proc.pid


def test_a_process_ignoring_sigterm_is_killed_and_reported(
    group: ProcessGroup, tmp_path: Path
) -> None:
    proc = group.spawn("lane", tmp_path, ["-c", DAEMON, tmp_path, "ignore-term"])
    proc.wait_ready(START_S)
    with pytest.raises(
        ProcessFailed, match=r"lane ignored signal 15 for 0 s\n--- lane \(exited -9"
    ):
        proc.stop(timeout=SHORT_S)
    assert proc.returncode == -signal.SIGKILL


def test_restart_after_a_crash_or_a_stop_with_a_new_log_and_the_same_environment(
    group: ProcessGroup, tmp_path: Path
) -> None:
    env = child_env() | {"X": "skewed"}
    first = group.spawn("lane", tmp_path, ["-c", DAEMON, tmp_path], env=env)
    first.wait_ready(START_S)
    second = group.restart(first, kill=True)
    assert first.returncode == -signal.SIGKILL
    assert second.wait_ready(START_S)["x"] == "skewed"
    assert second.pid != first.pid
    assert second.args == first.args
    assert (second.log_path.name, first.log_path.name) == ("lane.2.log", "lane.1.log")
    third = group.restart(second, args=["-c", DAEMON, tmp_path, "again"])
    assert second.returncode == -signal.SIGTERM
    third.wait_ready(START_S)
    assert third.args[-1] == "again"
    assert group.pids() == [third.pid]


def test_close_ends_every_process_even_one_ignoring_sigterm(
    group: ProcessGroup, tmp_path: Path
) -> None:
    polite = group.spawn("polite", group.root, ["-c", SLEEP])
    deaf = group.spawn("deaf", tmp_path, ["-c", DAEMON, tmp_path, "ignore-term"])
    deaf.wait_ready(START_S)  # SIGTERM is ignored from now on
    started = time.monotonic()
    group.close(timeout=SHORT_S)
    assert time.monotonic() - started < SHORT_S + 5.0
    assert polite.returncode == -signal.SIGTERM
    assert deaf.returncode == -signal.SIGKILL
    assert group.pids() == []
    assert "--- deaf (exited -9) deaf.1.log ---\nstarting\nready" in group.describe()


def test_a_wrapped_command_keeps_its_pid(group: ProcessGroup, tmp_path: Path) -> None:
    # ``env`` execs its command, as ``ip netns exec`` does: the pid is still the daemon's.
    proc = group.spawn(
        "lane", tmp_path, ["-c", DAEMON, tmp_path], wrap=lambda argv: ["env", "X=wrapped", *argv]
    )
    assert proc.wait_ready(START_S)["x"] == "wrapped"
    assert proc.args == ("-c", DAEMON, str(tmp_path))


def test_a_helper_spoken_to_through_pipes(group: ProcessGroup) -> None:
    proc = group.spawn("helper", group.root, ["-u", "-c", ECHO], pipes=True)
    assert proc.process.stdin is not None
    assert proc.process.stdout is not None
    proc.process.stdin.write(b"ping\n")
    proc.process.stdin.flush()
    assert proc.process.stdout.readline() == b"PING\n"
    group.close()
    assert proc.process.stdin.closed
    assert proc.returncode is not None


def test_child_env_has_no_proxy_or_colour_and_a_fixed_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_COLOR", "1")
    env = child_env(columns=77)
    assert "HTTPS_PROXY" not in env
    assert "NO_COLOR" not in env
    assert env["COLUMNS"] == "77"
    assert env["PYTHONIOENCODING"] == "utf-8"


ORCHESTRATOR = """
import sys, time
from pathlib import Path
from lanesync.tools.procs import ProcessGroup
group = ProcessGroup(Path(sys.argv[1]), die_with_parent=True)
proc = group.spawn("child", Path(sys.argv[1]), ["-c", "import time; time.sleep(60)"])
print(proc.pid, flush=True)
time.sleep(60)
"""


def test_die_with_parent_ends_the_children_of_a_killed_orchestrator(tmp_path: Path) -> None:
    orchestrator = subprocess.Popen(
        [sys.executable, "-c", ORCHESTRATOR, str(tmp_path)],
        stdout=subprocess.PIPE,
        env=child_env(),
        text=True,
    )
    try:
        assert orchestrator.stdout is not None
        child = int(orchestrator.stdout.readline())
        orchestrator.kill()
        orchestrator.wait(START_S)
        deadline = time.monotonic() + START_S
        while _runs(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _runs(child), f"the child {child} outlived its orchestrator"
    finally:
        orchestrator.kill()
        orchestrator.wait(START_S)
        if orchestrator.stdout is not None:
            orchestrator.stdout.close()


def _runs(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie: init reaps an orphan's zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"
