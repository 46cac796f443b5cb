"""One writer per terminal directory: a second open is refused while the first holds it, in
this process or another, and a holder killed with SIGKILL leaves no stale lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lanesync.errors import DirectoryBusy
from lanesync.shell.terminal import Terminal

from .conftest import Lanes
from .helpers import on_hand, receipt

HOLDER = """
import sys, time
from pathlib import Path
from lanesync.core import bodies
from lanesync.shell.terminal import Terminal

terminal = Terminal.open(Path(sys.argv[1]), lock_wait_s=0)
terminal.write(lambda views: bodies.build_receipt("milk", 5))
print("ready", flush=True)
time.sleep(120)
"""


def test_second_open_in_the_same_process_is_busy(lanes: Lanes) -> None:
    first = lanes.new("lane1")
    with pytest.raises(DirectoryBusy) as caught:
        Terminal.open(first.directory.path, lock_wait_s=0.2)
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message
    assert "\n" not in message
    # The refused open disturbed nothing: the holder keeps writing.
    first.write(receipt("milk", 2))
    lanes.close(first)
    second = lanes.open(first.directory.path, lock_wait_s=0)
    assert on_hand(second, "milk") == 2


def test_open_waits_for_the_holder_to_close(lanes: Lanes) -> None:
    first = lanes.new("lane1")
    first.write(receipt("milk", 4))
    path = first.directory.path
    closer = threading.Timer(0.3, lanes.close, args=(first,))
    closer.start()
    try:
        second = lanes.open(path, lock_wait_s=30)
    finally:
        closer.join()
    assert on_hand(second, "milk") == 4


def test_holder_in_another_process_makes_the_directory_busy_until_killed(
    lanes: Lanes, tmp_path: Path
) -> None:
    path = lanes.enroll("lane1")
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            line = holder.stdout.readline()
            assert line == "ready\n", holder.stderr.read() if holder.stderr else line
            with pytest.raises(DirectoryBusy, match=f"pid {holder.pid}"):
                Terminal.open(path, lock_wait_s=0.2)
            with pytest.raises(DirectoryBusy):
                Terminal.open(path, lock_wait_s=0)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
        assert holder.returncode == -signal.SIGKILL
    # The kernel dropped the flock with the process: no stale lock.
    started = time.monotonic()
    terminal = lanes.open(path, lock_wait_s=0)
    assert time.monotonic() - started < 5
    assert on_hand(terminal, "milk") == 5
    assert terminal.verify()["ok"] is True
