"""What every process-level test harness shares (tests/mesh, tests/cloud, tests/discovery).

Importable as ``support``: pytest puts tests/ on sys.path for the test packages below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
from nacl.signing import SigningKey

from lanesync.core.connection import PeerConnection
from lanesync.core.crypto import SODIUM, FrameCipher
from lanesync.core.identity import Certificate
from lanesync.shell.directories import TerminalDirectory
from lanesync.tools.faultproxy import FaultLink

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 80
# A new connection per request, so that no test depends on the API's keep-alive policy (which
# test_an_idle_keep_alive_connection_outlives_common_client_expiry checks on its own).
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


class AcceptAll:
    """The refusal policy of a test's own peer: it accepts whoever the lane is."""

    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        return None


class CountingCrypto:
    """The real crypto, remembering the payload of every record signature it checks: how a
    test sees which records were verified (handed to what it opens as ``crypto``)."""

    def __init__(self) -> None:
        self.verified: list[bytes] = []

    def sign_record(self, key: SigningKey, payload: bytes) -> bytes:
        return SODIUM.sign_record(key, payload)

    def verify_record(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        self.verified.append(payload)
        return SODIUM.verify_record(public_key, payload, signature)

    def frame_cipher(self, key: bytes) -> FrameCipher:
        return SODIUM.frame_cipher(key)


def peer_connection(directory: TerminalDirectory) -> PeerConnection:
    """A pure-core connection speaking as ``directory``'s enrolled terminal (a test's peer)."""
    return PeerConnection(directory.me, directory.store, AcceptAll())


def process_env(columns: int) -> dict[str, str]:
    """The environment for processes under test: no proxy variables (they talk to loopback or
    test namespaces only; a test that wants a proxy sets one itself), no colour switches, and a
    fixed terminal width so rich output wraps the same everywhere."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "ws_proxy")
    }
    env.update(
        {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8", "COLUMNS": str(columns)}
    )
    for name in ("FORCE_COLOR", "NO_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE"):
        env.pop(name, None)
    return env


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    describe: Callable[[], str] | str = "condition",
    *,
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns something truthy (returned), else AssertionError
    after ``timeout`` seconds naming ``describe`` (evaluated only then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = describe() if callable(describe) else describe
            raise AssertionError(f"not true within {timeout:.0f} s: {what}")
        time.sleep(interval)


def parallel(calls: Sequence[Callable[[], T]]) -> list[T]:
    """Run the calls at the same time (one thread each); results in order, errors re-raised."""
    with ThreadPoolExecutor(max_workers=max(1, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a process log, for failure reports."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@dataclass(frozen=True, slots=True)
class Cli:
    """One finished ``lanesync`` command."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (
            f"lanesync {' '.join(self.args)} -> exit {self.returncode}\n"
            f"--- stdout ---\n{self.stdout}--- stderr ---\n{self.stderr}"
        )

    def json(self) -> Any:
        try:
            return json.loads(self.stdout)
        except ValueError as exc:
            raise AssertionError(f"stdout is not JSON: {exc}\n{self.describe()}") from None


class ProxyLoop:
    """An asyncio event loop in a thread of the test, running ``faultproxy.FaultLink`` proxies.

    Links are only touched from their loop: ``partition``/``heal`` hop onto it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: list[FaultLink] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxies", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Callable[[], T]) -> T:
        async def hop() -> T:
            return func()

        return self.run(hop())

    def link(self, target_port: int = 0, **options: Any) -> FaultLink:
        """A started proxy to 127.0.0.1:target_port (0: refuse until the port is set)."""
        link = FaultLink(LOOPBACK, target_port, **options)
        self.run(link.start(LOOPBACK))
        self.links.append(link)
        return link

    def retarget(self, link: FaultLink, port: int) -> None:
        """Point a proxy at another port (a process restarted on a new one)."""

        def point() -> None:
            link.target_port = port

        self.call(point)

    def partition(self, *links: FaultLink) -> None:
        def cut() -> None:
            for link in links:
                link.partition()

        self.call(cut)

    def heal(self, *links: FaultLink) -> None:
        def mend() -> None:
            for link in links:
                link.heal()

        self.call(mend)

    def close(self) -> None:
        async def stop_all() -> None:
            for link in self.links:
                await link.stop()
            await self.loop.shutdown_asyncgens()

        try:
            self.run(stop_all())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(STOP_TIMEOUT_S)
            self.loop.close()


# -- processes under test ---------------------------------------------------------------------


def signal_and_wait(process: subprocess.Popen[Any], sig: int, describe: Callable[[], str]) -> int:
    """Send ``sig`` and wait for the exit code; a process that ignores it for STOP_TIMEOUT_S is
    killed and the test fails with ``describe()`` (its name and log tail)."""
    if process.poll() is None:
        process.send_signal(sig)
    try:
        return process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
        raise AssertionError(f"ignored signal {sig} for {STOP_TIMEOUT_S} s\n{describe()}") from None


def kill_and_wait(process: subprocess.Popen[Any]) -> None:
    """SIGKILL: nothing in the process gets to run."""
    process.kill()
    process.wait(STOP_TIMEOUT_S)


def end_all(processes: Iterable[subprocess.Popen[Any]]) -> None:
    """SIGTERM every process still running, then SIGKILL whatever is not gone by one shared
    deadline (teardown: whatever the test did, nothing outlives it)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it exited just now
                process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill_and_wait(process)


class Describes(Protocol):
    """A harness of processes: ``describe()`` gives the tails of their logs."""

    def describe(self) -> str: ...


def attach_logs(
    report: pytest.TestReport,
    call: pytest.CallInfo[None],
    groups: Iterable[Describes],
    title: str,
) -> None:
    """When setup or the test failed, add the log tails of ``groups`` to its report."""
    if report.failed and call.when in ("setup", "call"):
        logs = "\n".join(group.describe() for group in groups)
        if logs:
            report.sections.append((title, logs))


@dataclass(eq=False)
class ApiProcess:
    """One running lanesync process (a lane daemon or a cloud) and a client for its HTTP API."""

    name: str
    path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    runtime: dict[str, Any] = field(default_factory=dict)
    token: str = ""
    _client: httpx.Client | None = None

    @property
    def listen(self) -> str:
        return str(self.runtime["listen"])

    @property
    def api(self) -> str:
        return str(self.runtime["api"])

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise AssertionError(f"{self.name} has no API client (not started, or stopped)")
        return self._client

    def alive(self) -> bool:
        return self.process.poll() is None

    def describe(self) -> str:
        state = "running" if self.alive() else f"exited {self.process.returncode}"
        return f"--- {self.name} ({state}) {self.log_path.name} ---\n{tail(self.log_path)}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_ready(self, timeout: float, http_timeout: float) -> None:
        """Wait until the process wrote its runtime.json (its own: the pid must match, a file
        left behind by a killed predecessor does not count), then open an API client."""
        runtime_path = self.path / "runtime.json"

        def runtime() -> dict[str, Any] | None:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode} while starting\n"
                    + self.describe()
                )
            try:
                info = json.loads(runtime_path.read_text())
            except (OSError, ValueError):
                return None
            return info if isinstance(info, dict) and info.get("pid") == self.pid else None

        self.runtime = wait_until(
            runtime, timeout, lambda: f"{self.name} started\n{self.describe()}"
        )
        self.token = (self.path / "api.token").read_text().strip()
        self._client = httpx.Client(
            base_url=self.api,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=http_timeout,
            trust_env=False,
            limits=FRESH_CONNECTIONS,
        )

    def close_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
