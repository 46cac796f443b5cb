"""Running ``lanesync`` as a real process, judging its output, and forging hostile inputs.

Every command runs as ``python -m lanesync`` with the interpreter running the tests (so the
tests work from any virtual environment), in a working directory the test owns, with relative
paths: outputs stay short and never depend on where pytest put its temporary directory.

The forging helpers use the library in the test process. They open a terminal directory only
while no ``lanesync`` process runs on it (the directory lock would otherwise make them wait).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pycrdt

from lanesync.core import bodies
from lanesync.core.bundle import encode_bundle
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Role
from lanesync.core.ids import RecordId, Sku
from lanesync.core.records import Receipt, make_record
from lanesync.shell.directories import StoreDirectory, TerminalDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

# A command waits at most 10-15 s for a busy directory or a starting daemon: a run that takes
# a minute is hung.
TIMEOUT_S = 60
ENV = {
    **os.environ,
    "COLUMNS": "80",  # rich wraps text output at the width it finds; errors must not wrap
    "PYTHONIOENCODING": "utf-8",
}
for _name in (
    "FORCE_COLOR",
    "NO_COLOR",
    "CLICOLOR_FORCE",
    "TTY_COMPATIBLE",
    "PYTHONDONTWRITEBYTECODE",
):
    ENV.pop(_name, None)


@dataclass(frozen=True, slots=True)
class Run:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    elapsed_s: float

    def describe(self) -> str:
        command = " ".join(self.args)
        if len(command) > 200:
            command = f"{command[:200]}... ({len(command)} characters)"
        return (
            f"lanesync {command} -> exit {self.returncode} "
            f"after {self.elapsed_s:.1f} s\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout is not JSON: {exc}\n{self.describe()}") from None

    @property
    def text(self) -> str:
        """stdout with runs of whitespace (rich's line wrapping included) folded to one space."""
        return " ".join(self.stdout.split())


@dataclass(frozen=True, slots=True)
class Cli:
    """``lanesync`` run in ``cwd``; paths passed to it are best given relative to ``cwd``."""

    cwd: Path

    def run(self, *args: str | Path, timeout_s: float = TIMEOUT_S) -> Run:
        argv = tuple(str(a) for a in args)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "lanesync", *argv],
            cwd=self.cwd,
            env=ENV,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout_s,
            check=False,
        )
        return Run(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def ok(self, *args: str | Path, timeout_s: float = TIMEOUT_S) -> Run:
        """Run a command that must succeed: exit 0, nothing on stderr."""
        result = self.run(*args, timeout_s=timeout_s)
        assert result.returncode == 0, result.describe()
        assert result.stderr == "", result.describe()
        return result

    def json(self, *args: str | Path) -> Any:
        """Run a command that must succeed with ``--json`` and return the parsed output."""
        return self.ok(*args, "--json").json()

    def digest(self, terminal_dir: str | Path) -> str:
        value = self.ok("digest", terminal_dir).stdout.strip()
        assert len(value) == 64, value
        assert int(value, 16) >= 0
        return value


def assert_error(result: Run, fragment: str | None = None) -> None:
    """A refused command: exit 1, exactly one stderr line starting with ``error: ``, nothing
    on stdout, no traceback. ``fragment`` must appear in that line."""
    assert "Traceback" not in result.stderr, result.describe()
    assert result.returncode == 1, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line\n{result.describe()}"
    assert lines[0].startswith("error: "), result.describe()
    assert result.stderr.endswith("\n"), result.describe()
    assert result.stdout == "", result.describe()
    if fragment is not None:
        assert fragment in lines[0], f"{fragment!r} not in the error line\n{result.describe()}"


def assert_usage_error(result: Run, fragment: str | None = None) -> None:
    """A malformed command line refused by click: exit 2 (click's status for it), exactly one
    stderr line starting with ``error: `` (no ``Usage:`` block, no ``Try ... --help`` hint),
    nothing on stdout, no traceback. ``fragment`` must appear in that line."""
    assert "Traceback" not in result.stderr, result.describe()
    assert result.returncode == 2, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected exactly one stderr line\n{result.describe()}"
    assert lines[0].startswith("error: "), result.describe()
    assert result.stdout == "", result.describe()
    if fragment is not None:
        assert fragment in lines[0], f"{fragment!r} not in the error line\n{result.describe()}"


def digest_of(terminal_dir: Path) -> str:
    """The digest ``lanesync digest`` prints, computed in the test process (no subprocess): the
    error tables check state with it, many times over."""
    with Terminal.open(terminal_dir, lock_wait_s=0) as terminal:
        return terminal.digest()


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a hash of its bytes; databases and locks only by name
    (every open of a terminal touches them), SQLite's transient WAL files not at all."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.name.endswith(("-wal", "-shm", "-journal")):
            continue
        if path.is_dir():
            out[rel + "/"] = "dir"
        elif path.name in ("lanesync.db", "lock"):
            out[rel] = "file"
        else:
            out[rel] = hashlib.blake2b(path.read_bytes(), digest_size=8).hexdigest()
    return out


# -- forging, in the test process ------------------------------------------------------------


def business_day(wall_ms: int) -> str:
    """The ledger document day of a timestamp in a UTC store."""
    return datetime.fromtimestamp(wall_ms / 1000, tz=UTC).date().isoformat()


def map_update(root: str, key: str, value: object) -> bytes:
    """A CRDT update (from a fresh client) setting ``root[key] = value``; ``value`` "map" puts a
    nested map there."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    target: pycrdt.Map[Any] = doc.get(root, type=pycrdt.Map)
    target[key] = pycrdt.Map({"nested": "map"}) if value == "map" else value
    return bytes(doc.get_update())


def signed_bundle(terminal_dir: Path, updates: dict[str, bytes]) -> bytes:
    """A bundle signed by an enrolled terminal of the store, carrying whatever updates."""
    directory = TerminalDirectory.open(terminal_dir)
    return encode_bundle(directory.me, directory.store.store_id, updates, wall_clock_ms())


def forge_fork(terminal_dir: Path, seq: int, *, shift_ms: int) -> str:
    """Merge into the terminal a second, different record for its already used ``seq``, signed
    with the terminal's own key (what a cloned or restored lane would produce), and commit it.

    The forged record links to the same predecessor as the genuine one, is ``shift_ms`` later,
    and is stored as a sender would store it: under its id, in the ledger document of its day.
    Returns that document's name.
    """
    with Terminal.open(terminal_dir) as terminal:
        me = terminal.directory.me
        tid = me.certificate.terminal_id
        genuine = terminal.replica.find_record(RecordId(tid, seq))
        assert genuine is not None, f"{tid}:{seq} is not an accepted record"
        hlc = Hlc(genuine.hlc.wall_ms + shift_ms, genuine.hlc.counter + 1)
        fork = make_record(me.key, tid, seq, genuine.prev_hash, hlc, Receipt(Sku("milk"), 999))
        assert fork.hash != genuine.hash
        doc_name = f"ledger/{business_day(hlc.wall_ms)}"
        update = map_update("records", fork.key, fork.encoded)
        change = terminal.replica.merge([(doc_name, update)], terminal.now_ms())
        terminal.commit([change])
        return doc_name


@dataclass(frozen=True, slots=True)
class Outsider:
    bundle: bytes
    state: bytes


def outsider(root: Path, store_id: str, terminal_id: str) -> Outsider:
    """A store made apart from the one under test (its own authority key), one terminal that
    received stock, and that terminal's full bundle and state file."""
    store = StoreDirectory.init(root / "store", store_id)
    store.enroll(root / terminal_id, terminal_id, Role.MANAGER, wall_clock_ms(), 30)
    with Terminal.open(root / terminal_id) as terminal:
        terminal.write(lambda _: bodies.build_receipt("milk", 5))
        return Outsider(terminal.export_bundle(), terminal.state_file())
