"""Files a running daemon leaves in its terminal directory, and the client that reads them.

``runtime.json`` holds the daemon's pid and the addresses it actually bound (port 0 picks a free
one); ``api.token`` (mode 0600) is the bearer token for writes. The CLI uses them to send
commands through a running daemon, so its output is the same whether or not a daemon runs.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanesync.errors import (
    BundleRejected,
    ConfigError,
    LanesyncError,
    NotFound,
    PermissionDenied,
    StorageError,
    TerminalRevoked,
    UsageError,
)
from lanesync.shell.lock import DirectoryLock

RUNTIME_FILE = "runtime.json"
TOKEN_FILE = "api.token"  # noqa: S105 - a file name, not a secret
CLIENT_TIMEOUT_S = 30.0
STARTUP_WAIT_S = 15.0  # a daemon on a busy 2-core lane imports and opens in a few seconds


def load_or_create_token(directory: Path) -> str:
    path = directory / TOKEN_FILE
    try:
        if not path.exists():
            tmp = directory / (TOKEN_FILE + ".tmp")
            tmp.unlink(missing_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
            tmp.replace(path)  # never a half-written token (a full disk) under the real name
        return path.read_text().strip()
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from exc


def write_runtime(directory: Path, info: dict[str, Any]) -> None:
    tmp = directory / (RUNTIME_FILE + ".tmp")
    try:
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        tmp.replace(directory / RUNTIME_FILE)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {tmp}: {exc.strerror or exc}") from exc


def remove_runtime(directory: Path) -> None:
    (directory / RUNTIME_FILE).unlink(missing_ok=True)


def read_runtime(directory: Path) -> dict[str, Any] | None:
    """The running daemon's runtime info, or None when no daemon holds the directory.

    A daemon that holds the directory but has not written its runtime file yet is starting:
    wait for it (up to ``STARTUP_WAIT_S``) rather than report the directory busy.
    """
    path = directory / RUNTIME_FILE
    deadline = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            info = None
        if not _daemon_alive(directory):
            return None
        if isinstance(info, dict):
            return info
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)


def _daemon_alive(directory: Path) -> bool:
    # The lock, not the pid, is the truth: the kernel drops it when the daemon dies, even by
    # SIGKILL, while a stale runtime.json and a recycled pid may linger.
    return DirectoryLock.is_held(directory / "lock")


@dataclass(frozen=True, slots=True)
class DaemonClient:
    base_url: str
    token: str

    @classmethod
    def for_directory(cls, directory: Path) -> DaemonClient | None:
        info = read_runtime(directory)
        if info is None or "api" not in info:
            return None
        try:
            token = (directory / TOKEN_FILE).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read {directory / TOKEN_FILE}: {exc.strerror}") from exc
        return cls(str(info["api"]), token)

    def call(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(  # noqa: S310 - the URL is the daemon's own http:// API
            self.base_url + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self.token}")
        if raw is not None:
            # urllib would label the bytes application/x-www-form-urlencoded
            request.add_header("Content-Type", "application/octet-stream")
        elif body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with _OPENER.open(request, timeout=CLIENT_TIMEOUT_S) as response:
                payload = response.read()
                kind = response.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raise _error_from(exc) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise ConfigError(f"the daemon at {self.base_url} does not answer: {exc}") from exc
        return json.loads(payload) if kind.startswith("application/json") else payload


# The daemon is always on this machine: never route its requests (and the bearer token) through
# a proxy named in http_proxy / HTTP_PROXY.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _error_from(exc: urllib.error.HTTPError) -> LanesyncError:
    try:
        error = json.loads(exc.read())["error"]
        message, code = str(error["message"]), str(error["code"])
    except (ValueError, KeyError, TypeError):
        return LanesyncError(f"the daemon answered HTTP {exc.code}")
    if code == "terminal_revoked":
        return TerminalRevoked(message)
    if exc.code == 403:
        return PermissionDenied(message)
    if exc.code == 503:
        return StorageError(message)
    if code == "rejected":
        return BundleRejected(message)
    if code == "not_found":
        return NotFound(message)
    return UsageError(message)
