"""Fixtures of the shell tests: a store directory on disk and a factory of terminals in it.

Everything is real: key files, SQLite databases in ``tmp_path``, flock'ed directories. Every
terminal the factory opens is closed at teardown (``filterwarnings = error`` turns an unclosed
SQLite connection into a failure).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

VALID_DAYS = 30


@pytest.fixture
def store(tmp_path: Path) -> StoreDirectory:
    return StoreDirectory.init(tmp_path / "store", "s1")


class Lanes:
    """Enrolls terminals into one store and opens them; remembers what to close."""

    def __init__(self, store: StoreDirectory, root: Path) -> None:
        self.store = store
        self.root = root
        self._open: list[Terminal] = []
        self.crypto: Crypto = SODIUM  # what every terminal opened from now on is handed

    def enroll(
        self,
        tid: str,
        role: Role = Role.CASHIER,
        *,
        now_ms: int | None = None,
        valid_days: int = VALID_DAYS,
    ) -> Path:
        path = self.root / tid
        self.store.enroll(
            path, tid, role, wall_clock_ms() if now_ms is None else now_ms, valid_days
        )
        return path

    def open(self, path: Path, *, lock_wait_s: float = 1.0) -> Terminal:
        terminal = Terminal.open(path, lock_wait_s=lock_wait_s, crypto=self.crypto)
        self._open.append(terminal)
        return terminal

    def new(self, tid: str, role: Role = Role.CASHIER) -> Terminal:
        return self.open(self.enroll(tid, role))

    def close(self, terminal: Terminal) -> None:
        if terminal in self._open:
            self._open.remove(terminal)
        terminal.close()

    def reopen(self, terminal: Terminal) -> Terminal:
        self.close(terminal)
        return self.open(terminal.directory.path)

    def close_all(self) -> None:
        while self._open:
            self._open.pop().close()


@pytest.fixture
def lanes(store: StoreDirectory, tmp_path: Path) -> Iterator[Lanes]:
    factory = Lanes(store, tmp_path / "lanes")
    yield factory
    factory.close_all()
