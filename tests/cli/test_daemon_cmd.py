"""``run``, ``cloud serve`` and ``status`` (cli/daemon_cmd.py, cli/cloud_cmd.py) as people meet
them: a busy port named with its address, ``--cloud`` mistakes called what they are,
``--log-level``, and ``status`` text with readable times."""

from __future__ import annotations

import json
import re
import socket
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from mesh.cluster import Cluster, wait_until  # tests/mesh

from lanesync.cli.main import cli

from .conftest import Shop
from .helpers import Run, assert_error

LOOPBACK = "127.0.0.1"
EPOCH_MS = re.compile(r"\b1\d{12}\b")  # a wall-clock time in ms (2001-2286)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind((LOOPBACK, 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


def assert_logged_then_error(result: Run, error: str) -> None:
    """At the default log level: the log lines (JSON) the start wrote, then the one error."""
    assert result.returncode == 1, result.describe()
    *logged, last = result.stderr.splitlines()
    assert last == error, result.describe()
    for line in logged:
        assert {"ts", "level", "logger", "msg"} <= set(json.loads(line)), result.describe()


@pytest.mark.parametrize("option", ["--listen", "--api"])
def test_run_on_a_busy_port_names_the_address(shop: Shop, busy_port: int, option: str) -> None:
    args = ("run", "lane1", "--no-discovery", option, f"{LOOPBACK}:{busy_port}")
    error = f"error: cannot listen on {LOOPBACK}:{busy_port}: address already in use"
    quiet = shop.cli.run(*args, "--log-level", "warning")
    assert_error(quiet, error)
    assert quiet.stderr == error + "\n"
    assert_logged_then_error(shop.cli.run(*args), error)


def test_cloud_serve_on_a_busy_port_names_the_address(shop: Shop, busy_port: int) -> None:
    shop.cli.ok("cloud", "init", "cloud")
    for option in ("--listen", "--api"):
        result = shop.cli.run(
            "cloud", "serve", "cloud", option, f"{LOOPBACK}:{busy_port}", "--log-level", "error"
        )
        assert result.stderr == (
            f"error: cannot listen on {LOOPBACK}:{busy_port}: address already in use\n"
        ), result.describe()
        assert result.returncode == 1


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--cloud", "wss://", "invalid cloud URL 'wss://': expected ws://HOST:PORT or wss://"),
        ("--cloud", "http://x", "invalid cloud URL 'http://x': expected ws://HOST:PORT"),
        ("--cloud", "wss://head-office:443/up", "invalid cloud URL 'wss://head-office:443/up'"),
        ("--peer", "http://x", "invalid peer 'http://x': expected ws://HOST:PORT"),
        # a user name or password in the URL is not used, and would be logged with the URL
        ("--cloud", "wss://ho:secret@h:443", "invalid cloud URL 'wss://ho:secret@h:443': no user"),
        ("--peer", "ws://me@127.0.0.1:7001", "invalid peer 'ws://me@127.0.0.1:7001': no user"),
        (
            "--cloud",
            "wss://h:443?x=1",
            "invalid cloud URL 'wss://h:443?x=1': an address has no path, query",
        ),
    ],
)
def test_address_mistakes_are_called_what_they_are(
    shop: Shop, option: str, value: str, says: str
) -> None:
    assert_error(shop.cli.run("run", "lane1", "--no-discovery", option, value), says)


def test_log_level_is_one_of_four(shop: Shop) -> None:
    result = shop.cli.run("run", "lane1", "--log-level", "verbose")
    assert result.returncode == 2, result.describe()
    assert result.stderr.startswith("error: invalid value for '--log-level': 'verbose'")


@pytest.mark.parametrize("command", [["run"], ["cloud", "serve"]])
def test_loop_uvloop_without_uvloop_is_one_line_and_exit_1(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process (CliRunner), so uvloop can be made absent: ``import uvloop`` fails.
    monkeypatch.setitem(sys.modules, "uvloop", None)
    result = CliRunner().invoke(cli, [*command, str(tmp_path), "--loop", "uvloop"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "error: event loop uvloop (--loop or LANESYNC_LOOP) is not installed: pip install "
        "uvloop, or use auto or asyncio"
    ]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(tmp_path / "cluster")
    try:
        yield group
    finally:
        group.close()


def _local(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000).astimezone().strftime("%H:%M:%S")


def test_status_text_labels_addresses_and_shows_times_for_people(
    cluster: Cluster, busy_port: int
) -> None:
    store = cluster.store()
    # the "cloud" is a port nobody serves the protocol on: the link never comes up
    lane = cluster.start(
        cluster.enroll(store, "lane1"),
        extra=["--cloud", f"ws://{LOOPBACK}:{busy_port}", "--isolated-after", "1"],
    )
    alone = wait_until(lambda: lane.status()["isolated_since"], 15, "lane1 alone is isolated")
    report = lane.status()
    shown = cluster.cli("status", lane.path)
    assert shown.returncode == 0, shown.describe()
    text = shown.stdout
    assert f"  local API: {report['api']}\n" in text, text
    assert f"  listening for peers on: {report['listen']}\n" in text, text
    assert "peers ws://" not in text  # the lane's own address is not a peer
    # every moment as local time and age, never as epoch milliseconds
    assert re.search(rf"running since [-0-9 ]*{_local(report['started_ms'])}, \d+ s ago", text)
    assert re.search(rf"ISOLATED since [-0-9 ]*{_local(alone)}, \d+ s ago", text), text
    assert f"cloud ws://{LOOPBACK}:{busy_port}: not connected, last acknowledged never" in text
    assert not EPOCH_MS.search(text), text
