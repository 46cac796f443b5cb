"""The throwaway PostgreSQL server (``lanesync.tools.pgserver``): the machine's own binaries, a
cluster in a temporary directory on 127.0.0.1, deleted by ``stop()`` or, when its owner dies
without stopping it, by the watchdog. Skipped (saying why) where PostgreSQL is not installed."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from lanesync.tools.pgserver import (
    PostgresServer,
    find_binaries,
    server_user,
    unavailable_reason,
    watch,
)

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"PostgreSQL not installed: {REASON}")

GONE_TIMEOUT_S = 30.0  # the watchdog polls every second, then pg_ctl stops the server

OWNER = """
from lanesync.tools.pgserver import PostgresServer
server = PostgresServer.start()
print(server.root, server.port, flush=True)
import time
time.sleep(120)
"""


def accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def stop_leftover(root: Path) -> None:
    """Whatever the test saw, never leave a server of ours behind."""
    bindir = find_binaries()
    if root.exists() and bindir is not None:
        PostgresServer(root, 0, bindir, server_user()).stop()


def test_a_server_serves_databases_on_loopback_and_stop_removes_everything() -> None:
    server = PostgresServer.start()
    try:
        url = server.create_database("things")
        assert url == f"postgresql://lanesync@127.0.0.1:{server.port}/things"
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT current_database(), inet_server_addr()::text").fetchone()
        assert row == ("things", "127.0.0.1/32")
        assert accepts(server.port)
        assert "database system is ready to accept connections" in server.log_tail()
    finally:
        server.stop()
    assert not server.root.exists()
    assert not accepts(server.port)
    assert server.log_tail() == ""
    server.stop()  # a second stop is harmless


def test_the_watchdog_removes_the_server_of_an_owner_killed_without_stopping_it() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True
    ) as owner:
        root = None
        try:
            assert owner.stdout is not None
            root_text, port_text = owner.stdout.readline().split()
            root, port = Path(root_text), int(port_text)
            assert accepts(port)
            owner.send_signal(signal.SIGKILL)
            owner.wait(timeout=10)
            deadline = time.monotonic() + GONE_TIMEOUT_S
            while (root.exists() or accepts(port)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not root.exists(), "the watchdog left the cluster's directory"
            assert not accepts(port), "the watchdog left the server running"
        finally:
            with contextlib.suppress(ProcessLookupError):
                owner.kill()
            if root is not None:
                stop_leftover(root)


def test_the_watchdog_returns_at_once_when_the_owner_stopped_the_server(tmp_path: Path) -> None:
    started = time.monotonic()
    watch(owner=os.getpid(), root=tmp_path / "deleted by stop()")  # the owner (us) lives on
    assert time.monotonic() - started < 1
