"""The processes of ``lanesync bench cloud``: ``lanesync run`` lanes and ``lanesync cloud
serve``, started in one ``tools.procs.ProcessGroup`` on 127.0.0.1 (port 0, no mDNS), each
reached through its local API once its ``runtime.json`` names its pid; and a probe of the cloud
API's latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanesync.bench.cluster import LOOPBACK, BenchError
from lanesync.bench.httpio import HttpClient, HttpError
from lanesync.errors import ProcessFailed
from lanesync.tools import procs
from lanesync.tools.procs import ProcessGroup

START_TIMEOUT_S = 60.0
PROBE_EVERY_S = 0.2
PROBE_TIMEOUT_S = 300.0


@dataclass
class Proc:
    """A lane or the cloud: its process (``tools.procs``) and a client of its local API."""

    handle: procs.Proc
    client: HttpClient | None = None

    @property
    def name(self) -> str:
        return str(self.handle.name)

    @property
    def path(self) -> Path:
        return Path(self.handle.path)

    @property
    def log(self) -> Path:
        return Path(self.handle.log_path)

    @property
    def runtime(self) -> dict[str, Any]:
        return dict(self.handle.runtime)

    async def ready(self) -> Proc:
        """Wait until the process has written its runtime.json; then talk to its API."""
        try:
            info = await self.handle.wait_ready_async(START_TIMEOUT_S)
        except ProcessFailed as exc:
            raise BenchError(f"{str(exc).splitlines()[0]}; see {self.log}") from None
        self.client = HttpClient(info["api"], self.handle.read_token())
        return self

    async def get(self, path: str) -> Any:
        if self.client is None:
            raise BenchError(f"{self.name} is not running")
        try:
            response = await self.client.request("GET", path, timeout_s=120)
        except HttpError as exc:
            raise BenchError(f"{self.name}: {exc}") from None
        if response.status >= 400:
            raise BenchError(f"{self.name}: GET {path} answered {response.status}")
        return response.body

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if sig == signal.SIGKILL:
            await asyncio.to_thread(self.handle.kill)
        else:
            with contextlib.suppress(ProcessFailed):  # killed after ignoring it: gone either way
                await asyncio.to_thread(self.handle.stop, sig)


class Procs:
    def __init__(self, logs: Path) -> None:
        self.group = ProcessGroup(logs, die_with_parent=True)
        self.all: list[Proc] = []

    async def _start(self, name: str, path: Path, args: list[str]) -> Proc:
        proc = Proc(self.group.spawn(name, path, ["-m", "lanesync", *args]))
        self.all.append(proc)
        return await proc.ready()

    async def lane(
        self,
        path: Path,
        *,
        peers: Sequence[str] = (),
        cloud: str,
        priority: int = 0,
        extra: Sequence[str] = (),
    ) -> Proc:
        """``extra``: more ``lanesync run`` options (e.g. ``--close-at off``)."""
        args = ["run", str(path), "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
        args += ["--no-discovery", "--cloud", cloud, "--priority", str(priority)]
        for peer in peers:
            args += ["--peer", peer]
        return await self._start(path.name, path, [*args, *extra])

    async def cloud(self, path: Path) -> Proc:
        args = ["cloud", "serve", str(path), "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
        return await self._start("cloud", path, args)

    async def close(self) -> None:
        for proc in self.all:
            if proc.client is not None:
                proc.client.close()
        await asyncio.to_thread(self.group.close)


async def wait(
    predicate: Callable[[], Awaitable[Any]], limit_s: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``predicate`` until it answers something true (returned), at most ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise BenchError(f"timed out after {limit_s:.0f} s waiting for {what}")


class ApiProbe:
    """Polls an API's ``/v1/status`` every 0.2 s; ``stop()`` returns the slowest answer (s)."""

    def __init__(self, base_url: str, token: str) -> None:
        self._client = HttpClient(base_url, token)
        self.slowest = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            response = await self._client.request("GET", "/v1/status", timeout_s=PROBE_TIMEOUT_S)
            if response.status != 200:
                raise BenchError(f"the API probe got {response.status}")
            self.slowest = max(self.slowest, time.perf_counter() - started)
            await asyncio.sleep(PROBE_EVERY_S)

    async def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._client.close()
        return self.slowest
