"""The files a running daemon leaves in its directory and the client that reads them
(``lanesync.shell.runtime``): real files, the real directory lock, and a real HTTP server on
127.0.0.1 standing in for the daemon's API (the part under test is the client)."""

from __future__ import annotations

import json
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from lanesync.errors import (
    BundleRejected,
    ConfigError,
    LanesyncError,
    PermissionDenied,
    StorageError,
    UsageError,
)
from lanesync.shell import runtime
from lanesync.shell.lock import DirectoryLock

INFO = {"pid": 4242, "terminal_id": "lane1"}


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Path]:
    """A terminal directory whose lock is held, as by a running daemon."""
    lock = DirectoryLock(tmp_path / "lock")
    lock.acquire(wait_s=0)
    try:
        yield tmp_path
    finally:
        lock.release()


def test_the_token_is_created_once_private_and_then_reused(tmp_path: Path) -> None:
    (tmp_path / "api.token.tmp").write_text("half a token from a crash")
    token = runtime.load_or_create_token(tmp_path)
    assert len(token) >= 40
    path = tmp_path / runtime.TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == token + "\n"
    assert runtime.load_or_create_token(tmp_path) == token
    assert sorted(p.name for p in tmp_path.iterdir()) == [runtime.TOKEN_FILE]


def test_a_token_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"cannot write .*api\.token"):
        runtime.load_or_create_token(tmp_path / "missing")


def test_runtime_info_is_read_only_while_the_directory_lock_is_held(tmp_path: Path) -> None:
    runtime.write_runtime(tmp_path, INFO)
    assert json.loads((tmp_path / runtime.RUNTIME_FILE).read_text()) == INFO
    assert [p.name for p in tmp_path.iterdir()] == [runtime.RUNTIME_FILE]  # no .tmp left
    # Nobody holds the lock: the file is stale (a daemon killed with SIGKILL left it).
    assert runtime.read_runtime(tmp_path) is None
    lock = DirectoryLock(tmp_path / "lock")
    lock.acquire(wait_s=0)
    try:
        assert runtime.read_runtime(tmp_path) == INFO
    finally:
        lock.release()
    runtime.remove_runtime(tmp_path)
    runtime.remove_runtime(tmp_path)  # already gone: fine
    assert not (tmp_path / runtime.RUNTIME_FILE).exists()


def test_a_starting_daemon_is_waited_for_until_it_writes_its_runtime(held: Path) -> None:
    writer = threading.Timer(0.3, runtime.write_runtime, args=(held, INFO))
    writer.start()
    try:
        assert runtime.read_runtime(held) == INFO
    finally:
        writer.join()


def test_runtime_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"cannot write .*runtime\.json\.tmp"):
        runtime.write_runtime(tmp_path / "missing", INFO)


def test_no_client_without_a_daemon_or_its_api(tmp_path: Path) -> None:
    assert runtime.DaemonClient.for_directory(tmp_path) is None  # no daemon
    lock = DirectoryLock(tmp_path / "lock")
    lock.acquire(wait_s=0)
    try:
        runtime.write_runtime(tmp_path, INFO)  # a daemon without an API
        assert runtime.DaemonClient.for_directory(tmp_path) is None
        runtime.write_runtime(tmp_path, {**INFO, "api": "http://127.0.0.1:1"})
        with pytest.raises(ConfigError, match=r"cannot read .*api\.token"):
            runtime.DaemonClient.for_directory(tmp_path)
        token = runtime.load_or_create_token(tmp_path)
        client = runtime.DaemonClient.for_directory(tmp_path)
    finally:
        lock.release()
    assert client == runtime.DaemonClient("http://127.0.0.1:1", token)


# -- the client against a real HTTP server --------------------------------------------------------


class Daemon(BaseHTTPRequestHandler):
    """Answers ``/status/<code>/<kind>``: kind ``json`` (a payload), ``error-<code>`` (the
    daemon's JSON error shape), ``text``; records every request it got."""

    seen: ClassVar[list[tuple[str, str, str | None, str | None, bytes]]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.seen.append(
            (
                self.command,
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("Content-Type"),
                body,
            )
        )
        _, _, status, kind = self.path.split("/")
        if kind == "json":
            payload, content_type = json.dumps({"echo": body.decode()}).encode(), "application/json"
        elif kind.startswith("error-"):
            error = {"error": {"code": kind.removeprefix("error-"), "message": "told so"}}
            payload, content_type = json.dumps(error).encode(), "application/json"
        else:
            payload, content_type = b"plain bytes", "text/plain"
        self.send_response(int(status))
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def log_message(self, *args: object) -> None:
        pass  # quiet: the test reads ``seen``


@pytest.fixture
def daemon(monkeypatch: pytest.MonkeyPatch) -> Iterator[runtime.DaemonClient]:
    # A proxy in the environment must not be used for the daemon on this machine.
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    Daemon.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Daemon)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield runtime.DaemonClient(f"http://127.0.0.1:{server.server_address[1]}", "tok")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_the_client_sends_the_token_and_json_and_decodes_by_content_type(
    daemon: runtime.DaemonClient,
) -> None:
    assert daemon.call("POST", "/status/200/json", body={"qty": 2}) == {"echo": '{"qty": 2}'}
    assert daemon.call("POST", "/status/200/json", raw=b"\x00raw") == {"echo": "\x00raw"}
    assert daemon.call("GET", "/status/200/text") == b"plain bytes"
    json_post, raw_post, get = Daemon.seen
    assert json_post == (
        "POST",
        "/status/200/json",
        "Bearer tok",
        "application/json",
        b'{"qty": 2}',
    )
    assert raw_post[:3] == ("POST", "/status/200/json", "Bearer tok")
    assert raw_post[3] != "application/json"  # raw bytes are not claimed to be JSON
    assert raw_post[4] == b"\x00raw"
    assert get == ("GET", "/status/200/text", "Bearer tok", None, b"")


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/status/403/error-forbidden", PermissionDenied, "told so"),
        ("/status/503/error-storage", StorageError, "told so"),
        ("/status/400/error-rejected", BundleRejected, "told so"),
        ("/status/409/error-conflict", UsageError, "told so"),
        ("/status/500/text", LanesyncError, "the daemon answered HTTP 500"),
    ],
)
def test_the_daemons_errors_become_the_same_errors_as_without_a_daemon(
    daemon: runtime.DaemonClient, path: str, error: type[LanesyncError], message: str
) -> None:
    with pytest.raises(LanesyncError) as caught:
        daemon.call("GET", path)
    assert type(caught.value) is error
    assert str(caught.value) == message


def test_a_daemon_that_does_not_answer_is_a_config_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on any more
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = runtime.DaemonClient(f"http://127.0.0.1:{port}", "tok")
    with pytest.raises(ConfigError, match=f"the daemon at http://127.0.0.1:{port} does not"):
        client.call("GET", "/v1/status")
