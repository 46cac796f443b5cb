"""What every process-level test harness shares (tests/mesh, tests/cloud, tests/discovery).

Importable as ``support``: pytest puts tests/ on sys.path for the test packages below it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from lanesync.tools.faultproxy import Link

T = TypeVar("T")

LOOPBACK = "127.0.0.1"
STOP_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 80
# A new connection per request, so that no test depends on the API's keep-alive policy (which
# test_an_idle_keep_alive_connection_outlives_common_client_expiry checks on its own).
FRESH_CONNECTIONS = httpx.Limits(max_keepalive_connections=0)


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
    """An asyncio event loop in a thread of the test, running ``faultproxy.Link`` proxies.

    Links are only touched from their loop: ``partition``/``heal`` hop onto it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.links: list[Link] = []
        self._thread = threading.Thread(target=self.loop.run_forever, name="proxies", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, func: Callable[[], T]) -> T:
        async def hop() -> T:
            return func()

        return self.run(hop())

    def link(self, target_port: int = 0, **options: Any) -> Link:
        """A started proxy to 127.0.0.1:target_port (0: refuse until the port is set)."""
        link = Link(LOOPBACK, target_port, **options)
        self.run(link.start(LOOPBACK))
        self.links.append(link)
        return link

    def retarget(self, link: Link, port: int) -> None:
        """Point a proxy at another port (a process restarted on a new one)."""

        def point() -> None:
            link.target_port = port

        self.call(point)

    def partition(self, *links: Link) -> None:
        def cut() -> None:
            for link in links:
                link.partition()

        self.call(cut)

    def heal(self, *links: Link) -> None:
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
