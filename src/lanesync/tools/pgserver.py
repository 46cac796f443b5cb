"""A throwaway PostgreSQL server on loopback, for the test suite and the cloud benchmarks.

It runs the machine's own PostgreSQL binaries (Debian's ``postgresql`` package puts them in
``/usr/lib/postgresql/<version>/bin``) on a cluster in a fresh temporary directory, listening on
127.0.0.1 only, and deletes the cluster when stopped.

The process that started the server owns it. A watchdog process (``python -m
lanesync.tools.pgserver watch OWNER_PID ROOT``) stops and deletes it when the owner dies without
stopping it: a test run killed with SIGKILL or SIGTERM leaves no PostgreSQL behind.

Why not pytest-postgresql: PostgreSQL refuses to start as root ("pg_ctl: cannot be run as
root"), CI runs as root, and that plugin has no way to run the server as another user
(dbfixtures/pytest-postgresql#341 and #455, both closed without one). Here, when we are root,
the server runs as the ``postgres`` system user that the Debian package creates.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from lanesync.errors import ConfigError

SUPERUSER = "lanesync"
# Debian's package installs the binaries in <root>/<major version>/bin, outside PATH.
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 30.0
# How often the watchdog checks that the server was not stopped by its owner already.
WATCH_POLL_S = 1.0


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    on_path = shutil.which("pg_ctl")
    candidates = [Path(on_path).resolve().parent] if on_path else []
    versions = [p for p in _DEBIAN_ROOT.glob("*/bin") if p.parent.name.isdigit()]
    candidates += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    for candidate in candidates:
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    return None


def server_user() -> str | None:
    """Whom the server runs as: the ``postgres`` system user when we are root (PostgreSQL
    refuses root), else ourselves (None)."""
    return "postgres" if os.geteuid() == 0 else None


def unavailable_reason() -> str | None:
    """Why a throwaway server cannot run here, or None when it can."""
    if find_binaries() is None:
        return (
            "PostgreSQL server binaries not found (install Debian's postgresql package; "
            ".ci/run does)"
        )
    user = server_user()
    if user is not None:
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"running as root and there is no {user!r} user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PostgresServer:
    """``start()``, then ``create_database(name)`` for a URL per test; ``stop()`` removes all."""

    root: Path
    port: int
    bindir: Path
    _user: str | None = None
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def start(cls) -> PostgresServer:
        reason = unavailable_reason()
        bindir = find_binaries()
        if reason is not None or bindir is None:
            raise ConfigError(reason or "PostgreSQL not found")
        root = Path(tempfile.mkdtemp(prefix="lanesync-pg-"))
        user = server_user()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        server = cls(root, _free_port(), bindir, user)
        try:
            server._run(
                "initdb",
                "-D",
                str(root / "data"),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            )
            options = (
                f"-c listen_addresses=127.0.0.1 -c port={server.port} "
                f"-c unix_socket_directories={root} -c max_connections=200"
            )
            server._run(
                "pg_ctl",
                "start",
                "-D",
                str(root / "data"),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "-t",
                str(int(START_TIMEOUT_S)),
            )
            server._watch(os.getpid())
        except BaseException:
            server.stop()
            raise
        return server

    def _watch(self, owner: int) -> None:
        # A session of its own: a Ctrl-C to the owner's process group must not stop the
        # watchdog before the owner's own teardown has run.
        self._watchdog = subprocess.Popen(
            [sys.executable, "-m", "lanesync.tools.pgserver", "watch", str(owner), str(self.root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bindir / program), *args]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=self.root)
        if result.returncode != 0:
            raise ConfigError(
                f"{program} failed ({result.returncode}): {result.stderr.strip()[-500:]}"
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name is ours, never user input
        return self.url(name)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.root / "server.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if (self.root / "data" / "postmaster.pid").exists():
            with contextlib.suppress(ConfigError):
                self._run("pg_ctl", "stop", "-D", str(self.root / "data"), "-m", "immediate")
            # pg_ctl -m immediate returns once the postmaster is gone; give its children a beat.
            time.sleep(0.05)
        shutil.rmtree(self.root, ignore_errors=True)
        if self._watchdog is not None:  # nothing left for it to do
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None


def watch(owner: int, root: Path) -> None:
    """Wait until the ``owner`` process exits, then stop the server at ``root`` unless the owner
    already did (its ``stop`` deletes ``root``)."""
    with contextlib.suppress(ProcessLookupError):
        pidfd = os.pidfd_open(owner)
        try:
            while root.exists() and not select.select([pidfd], [], [], WATCH_POLL_S)[0]:
                pass
        finally:
            os.close(pidfd)
    if root.exists():
        bindir = find_binaries()
        if bindir is None:  # uninstalled meanwhile: nothing can stop the server, delete its files
            shutil.rmtree(root, ignore_errors=True)
        else:
            PostgresServer(root, 0, bindir, server_user()).stop()


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "watch":
        raise SystemExit("usage: python -m lanesync.tools.pgserver watch OWNER_PID ROOT")
    watch(int(sys.argv[2]), Path(sys.argv[3]))
