"""The processes of ``lanesync bench mesh``: one ``mesh_driver`` process per lane (and the
pycrdt-websocket server), each driven over its command pipe, and a system's set of them (its
``Fleet``): status, load, logs, convergence.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lanesync.bench.cluster import BenchError
from lanesync.bench.studies.common import LinePipe
from lanesync.tools import procs
from lanesync.tools.procs import ProcessGroup

DRIVER = "lanesync.bench.studies.mesh_driver"
START_DELAY_S = 0.3  # every lane starts a step at the same instant, this far in the future
READY_TIMEOUT_S = 90.0
CALL_TIMEOUT_S = 120.0
POLL_S = 0.05
System = Literal["lanesync", "pycrdt"]

_GROUPS: list[ProcessGroup] = []  # every group of driver processes; closed on any exit path


@dataclass
class Proc:
    """One driver process and its command pipe."""

    name: str
    handle: procs.Proc
    pipe: LinePipe
    ready: dict[str, Any]
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def log(self) -> Path:
        log_path: Path = self.handle.log_path
        return log_path

    async def call(self, cmd: str, wait_s: float = CALL_TIMEOUT_S, **fields: Any) -> dict[str, Any]:
        async with self._lock:
            self.pipe.send(json.dumps({"id": next(self._ids), "cmd": cmd, **fields}))
            line = await self.pipe.readline(wait_s)
        if not line:
            raise BenchError(f"{self.name} did not answer {cmd}; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise BenchError(f"{self.name}: {cmd}: {reply['error']}; see {self.log}")
        return reply

    async def stop(self) -> None:
        """``quit`` (the driver stops its daemon as SIGTERM would), then SIGKILL after 20 s."""
        if self.handle.alive():
            with contextlib.suppress(BenchError):
                await self.call("quit", wait_s=10)
            try:  # it exits once its daemon has shut down
                await asyncio.to_thread(self.handle.process.wait, 20)
            except subprocess.TimeoutExpired:
                await asyncio.to_thread(self.handle.kill)


def group_for(logs: Path) -> ProcessGroup:
    for group in _GROUPS:
        if group.root == logs:
            return group
    group = ProcessGroup(logs, die_with_parent=True)
    _GROUPS.append(group)
    return group


async def spawn(name: str, args: Sequence[str], logs: Path) -> Proc:
    handle = group_for(logs).spawn(name, logs, ["-m", DRIVER, *args], pipes=True)
    proc = Proc(name, handle, await LinePipe.open(handle), {})
    line = await proc.pipe.readline(READY_TIMEOUT_S)
    if not line:
        await proc.stop()
        raise BenchError(f"{name} did not start; see {handle.log_path}")
    proc.ready = json.loads(line)
    return proc


async def stop_all(procs: Iterable[Proc]) -> None:
    await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)


def kill_leftovers() -> None:
    """End every driver not yet stopped (SIGTERM, then SIGKILL; after the event loop too)."""
    while _GROUPS:
        _GROUPS.pop().close()


# -- one system (a set of lanes and, for pycrdt, its server) -------------------------------------


@dataclass
class Fleet:
    system: System
    lanes: list[Proc]
    server: Proc | None = None

    @property
    def procs(self) -> list[Proc]:
        return [*self.lanes, *([self.server] if self.server else [])]

    async def statuses(self) -> dict[str, dict[str, Any]]:
        replies = await asyncio.gather(*(p.call("status") for p in self.procs))
        return {p.name: r for p, r in zip(self.procs, replies, strict=True)}

    def missing(self, statuses: dict[str, dict[str, Any]]) -> int:
        """Sales some lane has not yet received (sum over receiving lanes)."""
        sent = {lane.name: int(statuses[lane.name]["sent"]) for lane in self.lanes}
        return sum(
            max(0, count - int(statuses[lane.name]["have"].get(sender, 0)))
            for lane in self.lanes
            for sender, count in sent.items()
            if sender != lane.name
        )

    async def wait_converged(self, limit_s: float) -> bool:
        deadline = time.monotonic() + limit_s
        while True:
            if self.missing(await self.statuses()) == 0:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(POLL_S)

    async def wait_links(self, procs: Sequence[Proc], links: int, limit_s: float = 30) -> None:
        deadline = time.monotonic() + limit_s
        while True:
            replies = await asyncio.gather(*(p.call("status") for p in procs))
            if all(r["links"] == links for r in replies):
                return
            if time.monotonic() > deadline:
                got = {p.name: r["links"] for p, r in zip(procs, replies, strict=True)}
                raise BenchError(f"{self.system}: lanes did not reach {links} links: {got}")
            await asyncio.sleep(POLL_S)

    async def collect(self, where: Path) -> dict[str, dict[str, Any]]:
        paths = {lane.name: where / f"collect-{lane.name}.json" for lane in self.lanes}
        await asyncio.gather(
            *(lane.call("collect", path=str(paths[lane.name])) for lane in self.lanes)
        )
        out = {}
        for name, path in paths.items():
            out[name] = json.loads(path.read_text())
            path.unlink()
        return out

    async def load(
        self, rate: float, duration: float, lanes: Sequence[Proc] | None = None
    ) -> tuple[int, int, list[dict[str, Any]]]:
        """Every given lane sells at its share of ``rate`` for ``duration`` s, all starting
        together, evenly interleaved. Returns (start_ns, scheduled end_ns, replies)."""
        lanes = list(lanes or self.lanes)
        share = rate / len(lanes)
        count = max(1, round(share * duration))
        start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
        replies = await asyncio.gather(
            *(
                lane.call(
                    "load",
                    wait_s=duration + CALL_TIMEOUT_S,
                    rate=share,
                    count=count,
                    start_ns=start_ns,
                    phase=i / len(lanes),
                )
                for i, lane in enumerate(lanes)
            )
        )
        end_ns = start_ns + int((count - 1 + (len(lanes) - 1) / len(lanes)) / share * 1e9)
        return start_ns, end_ns, list(replies)
