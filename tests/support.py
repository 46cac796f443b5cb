"""What every process-level test harness shares (tests/mesh, tests/cloud, tests/discovery).

Processes are started, awaited, stopped and described by ``lanesync.tools.procs`` (the harness
the benchmarks and the demo use too); ``ApiProcess`` adds a client for a process's HTTP API.

Importable as ``support``: pytest puts tests/ on sys.path for the test packages below it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import httpx
import pytest
from nacl.signing import SigningKey

from lanesync.core.connection import PeerConnection
from lanesync.core.crypto import SODIUM, FrameCipher
from lanesync.core.identity import Certificate
from lanesync.shell.directories import TerminalDirectory
from lanesync.tools.faultproxy import FaultLink
from lanesync.tools.procs import STOP_TIMEOUT_S, Proc, ProcessGroup

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
CLI_TIMEOUT_S = 60.0  # a CLI command takes well under a second; this is for a loaded box
# A new connection per request, so that no test depends on the API's keep-alive policy (which
# test_an_idle_keep_alive_connection_outlives_common_client_expiry checks on its own).
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


class AcceptAll:
    """The refusal policy of a test's own peer: it accepts whoever the lane is."""

    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        return None


class CountingCrypto:
    """The real crypto, remembering the payload of every record signature it checks, and on
    which thread: how a test sees which records were verified, and where (handed to what it
    opens as ``crypto``)."""

    def __init__(self) -> None:
        self.verified: list[bytes] = []
        self.threads: list[int] = []

    def sign_record(self, key: SigningKey, payload: bytes) -> bytes:
        return SODIUM.sign_record(key, payload)

    def verify_record(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        self.verified.append(payload)
        self.threads.append(threading.get_ident())
        return SODIUM.verify_record(public_key, payload, signature)

    def frame_cipher(self, key: bytes) -> FrameCipher:
        return SODIUM.frame_cipher(key)


def peer_connection(directory: TerminalDirectory) -> PeerConnection:
    """A pure-core connection speaking as ``directory``'s enrolled terminal (a test's peer)."""
    return PeerConnection(directory.me, directory.store, AcceptAll())


def hold_for(predicate: Callable[[], bool], seconds: float, describe: str) -> None:
    """Assert ``predicate`` stays true for ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), describe
        time.sleep(0.05)


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


def run_cli(
    args: Sequence[str | Path],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    wrap: Callable[[list[str]], list[str]] | None = None,
) -> Cli:
    """Run ``python -m lanesync ARGS`` to its end (``wrap``: inside a namespace, say)."""
    argv = [sys.executable, "-m", "lanesync", *(str(a) for a in args)]
    proc = subprocess.run(
        argv if wrap is None else wrap(argv),
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    return Cli(tuple(str(a) for a in args), proc.returncode, proc.stdout, proc.stderr)


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
class ApiProcess(Proc):
    """A lanesync process (a lane daemon or a cloud, started by a ``ProcessGroup``) and a client
    for its HTTP API, opened by ``wait_api``."""

    token: str = ""
    _client: httpx.Client | None = None

    @property
    def listen(self) -> str:
        return str(self.runtime["listen"])

    @property
    def api(self) -> str:
        return str(self.runtime["api"])

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            raise AssertionError(f"{self.name} has no API client (not started, or stopped)")
        return self._client

    def get(self, path: str) -> Any:
        response = self.client.get(path)
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        return response.json()

    def wait_api(self, timeout: float, http_timeout: float) -> None:
        """Wait until the process wrote its own runtime.json (``Proc.wait_ready``), then open
        an API client."""
        self.wait_ready(timeout)
        self.token = self.read_token()
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

    def stop_api(self, sig: int = signal.SIGTERM) -> int:
        """Close the client, send ``sig`` and wait (``Proc.stop``: SIGKILL and a failure if the
        process ignores it)."""
        self.close_client()
        return self.stop(sig)

    def kill_api(self) -> None:
        """SIGKILL: nothing in the process gets to run."""
        self.kill()
        self.close_client()


A = TypeVar("A", bound=ApiProcess)


class ApiGroup:
    """A test's lanesync processes with HTTP APIs, all in one ``ProcessGroup``: ``ready`` waits
    for one and opens its client, ``close()`` closes every client and ends every process. An
    open group is listed in its class's ``live`` (each subclass has its own), which the
    failure-report hooks of the conftest files read."""

    live: ClassVar[list[ApiGroup]] = []

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str],
        start_timeout_s: float,
        http_timeout_s: float,
        cwd: Path | None = None,
    ) -> None:
        self.root = root
        self.group = ProcessGroup(root, env=env, cwd=cwd)
        self.start_timeout_s = start_timeout_s
        self.http_timeout_s = http_timeout_s
        type(self).live.append(self)

    def ready(self, proc: A, timeout: float | None = None) -> A:
        """Wait for the process's own runtime.json, then open its API client."""
        proc.wait_api(timeout or self.start_timeout_s, self.http_timeout_s)
        return proc

    def stop(self, proc: ApiProcess, sig: int = signal.SIGTERM) -> int:
        """Signal it and wait; SIGKILL and a failure if it does not exit in time."""
        return proc.stop_api(sig)

    def kill(self, proc: ApiProcess) -> None:
        """SIGKILL: no cleanup of any kind runs in the process."""
        proc.kill_api()

    def close(self) -> None:
        """End every process this group started: SIGTERM all, then SIGKILL stragglers."""
        for proc in self.group.procs:
            if isinstance(proc, ApiProcess):
                proc.close_client()
        self.group.close()
        with contextlib.suppress(ValueError):
            type(self).live.remove(self)

    def describe(self) -> str:
        return self.group.describe()
