"""One writer per terminal directory: a second open is refused while the first holds it, in
this process or another, and a holder killed with SIGKILL leaves no stale lock behind.

The first tests use ``lanesync.shell.lock.DirectoryLock`` alone, on a real file with a real
``flock``; the others go through ``Terminal.open``, as every command does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lanesync.errors import ConfigError, DirectoryBusy
from lanesync.shell.lock import DirectoryLock
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


# -- DirectoryLock on its own ---------------------------------------------------------------------


def test_the_holder_writes_its_pid_and_a_second_lock_is_refused_until_release(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock"
    first, second = DirectoryLock(path), DirectoryLock(path)
    first.acquire(wait_s=0)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
        assert DirectoryLock.is_held(path)
        started = time.monotonic()
        with pytest.raises(DirectoryBusy) as caught:
            second.acquire(wait_s=0.3)
        assert time.monotonic() - started >= 0.3  # it waited before giving up
        assert str(caught.value) == (
            f"{tmp_path} is in use by another lanesync process (pid {os.getpid()})"
        )
    finally:
        first.release()
    assert not DirectoryLock.is_held(path)
    second.acquire(wait_s=0)
    try:
        assert DirectoryLock.is_held(path)
    finally:
        second.release()
        second.release()  # a second release is harmless


def test_a_stale_pid_left_in_the_file_is_overwritten_not_trusted(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    path.write_text("999999999 and more text than a pid\n")
    assert not DirectoryLock.is_held(path)  # the text is not the lock: the flock is
    lock = DirectoryLock(path)
    lock.acquire(wait_s=0)
    try:
        assert path.read_text() == f"{os.getpid()}\n"
    finally:
        lock.release()


def test_is_held_never_creates_the_lock_file(tmp_path: Path) -> None:
    assert not DirectoryLock.is_held(tmp_path / "lock")
    assert not DirectoryLock.is_held(tmp_path / "missing" / "lock")
    assert list(tmp_path.iterdir()) == []


def test_a_lock_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot open lock file .*No such file or directory"):
        DirectoryLock(tmp_path / "missing" / "lock").acquire(wait_s=0)


def test_a_lock_held_by_another_process_is_reported_with_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder_code = (
        "import sys, time; from pathlib import Path; from lanesync.shell.lock import "
        "DirectoryLock; DirectoryLock(Path(sys.argv[1])).acquire(0); print('held', flush=True); "
        "time.sleep(120)"
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder_code, str(path)], stdout=subprocess.PIPE, text=True
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "held\n"
            assert DirectoryLock.is_held(path)
            with pytest.raises(DirectoryBusy, match=f"\\(pid {holder.pid}\\)$"):
                DirectoryLock(path).acquire(wait_s=0)
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
    assert not DirectoryLock.is_held(path)  # the kernel dropped it with the process


# -- through Terminal.open ------------------------------------------------------------------------


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
    assert terminal.integrity()["ok"] is True
