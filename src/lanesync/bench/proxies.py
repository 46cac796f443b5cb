"""The fault proxies of a benchmark run: the client of the ``lanesync.bench.proxyhost`` process.

Every link between the members of a ``Cluster`` goes through one proxy of that process, so
latency, jitter, loss and partitions apply to every system alike. The process is started in
the cluster's ``ProcessGroup`` (``lanesync.tools.procs``), which ends it with everything else.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanesync.tools.procs import Proc, ProcessGroup

# The proxy host answers a command in well under a millisecond; 30 s without an answer means
# it hangs (or the machine does), not that it is slow.
CALL_TIMEOUT_S = 30.0


class BenchError(Exception):
    """The benchmark could not run what it was asked to (not a slow result: a broken run)."""


@dataclass(frozen=True, slots=True)
class Faults:
    """What every proxy adds to every chunk it forwards (one way)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    seed: int = 0


@dataclass
class ProxyLink:
    id: int
    port: int
    dialer: str
    target: str  # a member name, "hub" or "cloud"
    target_port: int = 0  # the port the proxy forwards to; 0: not yet known (refused)


class ProxyHost:
    """Client of one ``lanesync.bench.proxyhost`` process (JSON lines on its stdin and stdout)."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        self.proc: Proc | None = None
        self._ids = itertools.count(1)
        self._seeds = itertools.count(faults.seed * 1000 + 1)
        self._lock = asyncio.Lock()

    def start(self, group: ProcessGroup, root: Path) -> None:
        self.proc = group.spawn("proxyhost", root, ["-m", "lanesync.bench.proxyhost"], pipes=True)

    @property
    def log(self) -> Path | None:
        return None if self.proc is None else self.proc.log_path

    def _exchange(self, request: bytes) -> bytes:
        """One request and its answer line; blocking (runs in a worker thread)."""
        assert self.proc is not None
        stdin, stdout = self.proc.process.stdin, self.proc.process.stdout
        if stdin is None or stdout is None:
            raise BenchError("the proxy host has no pipes")
        stdin.write(request)
        stdin.flush()
        line: bytes = stdout.readline()
        return line

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        if self.proc is None or not self.proc.alive():
            raise BenchError(f"the proxy host is not running; see {self.log}")
        async with self._lock:
            request = json.dumps({"id": next(self._ids), "cmd": cmd, **fields}).encode() + b"\n"
            try:
                line = await asyncio.wait_for(
                    asyncio.to_thread(self._exchange, request), CALL_TIMEOUT_S
                )
            except (OSError, TimeoutError) as exc:
                raise BenchError(f"proxy host: {cmd} failed ({exc!r}); see {self.log}") from None
        if not line:
            raise BenchError(f"the proxy host exited; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"proxy host: {cmd}: {reply['error']}")
        return reply

    async def add(self, target_port: int = 0, *, partitioned: bool = False) -> tuple[int, int]:
        f = self.faults
        reply = await self.call(
            "add",
            target=target_port,
            latency_ms=f.latency_ms,
            jitter_ms=f.jitter_ms,
            loss_pct=f.loss_pct,
            seed=next(self._seeds),
            partitioned=partitioned,
        )
        return int(reply["id"]), int(reply["port"])

    async def stats(self) -> dict[str, Any]:
        return await self.call("stats")

    async def stop(self) -> None:
        """Ask it to stop every proxy and exit (the process group ends it if it does not)."""
        if self.proc is None or not self.proc.alive():
            return
        try:
            await self.call("quit")
        except BenchError:
            return  # it is gone or hangs: the group's close() ends it either way
