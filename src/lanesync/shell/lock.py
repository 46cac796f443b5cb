"""An exclusive lock on a terminal directory, so two processes never write one chain.

Two writers on one directory would both sign "the next" sequence number: a fork. The lock is an
``flock`` on a file in the directory, released by the kernel when the holder dies (even by
SIGKILL), so a crashed daemon never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from lanesync.errors import ConfigError, DirectoryBusy

POLL_S = 0.05


class DirectoryLock:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def acquire(self, wait_s: float) -> None:
        try:
            fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot open lock file {self._path}: {exc.strerror}") from exc
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise DirectoryBusy(
                        f"{self._path.parent} is in use by another lanesync process (pid {holder})"
                    ) from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @staticmethod
    def is_held(path: Path) -> bool:
        """Does some process hold this lock now? Never creates the lock file."""
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            return False  # no lock file (or no directory): nobody ever held it here
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing also drops the probe's own lock
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None
