"""``shell/daemon.py`` in this process: what the benchmark hands it runs with it (the other
daemon behaviour is checked through the CLI, in a subprocess, by tests/cli and tests/mesh)."""

from __future__ import annotations

import asyncio
import signal

from lanesync.shell.api import DaemonState
from lanesync.shell.daemon import DaemonConfig, run_daemon

from .conftest import Lanes
from .helpers import sale


def test_alongside_runs_with_the_state_of_the_serving_daemon(lanes: Lanes) -> None:
    path = lanes.enroll("lane")
    seen: list[object] = []

    async def alongside(state: DaemonState) -> None:
        seen.append((state.terminal.terminal_id, (path / "runtime.json").is_file()))
        record = await state.committer.write(sale("milk:1:100"))  # the daemon's own committer
        seen.append((record.seq, state.committer.commits))
        signal.raise_signal(signal.SIGTERM)  # stops the daemon as ``lanesync run`` stops

    asyncio.run(run_daemon(DaemonConfig(path, discovery=False, alongside=alongside)))
    assert seen == [("lane", True), (1, 1)]
    assert not (path / "runtime.json").exists()
