"""The command pipe of ``lanesync bench mesh``'s lane processes, and what every kind of lane
shares: the sale workload, open-loop pacing, counting bytes on the wire, arrival logs.

A lane process (``mesh_driver``) answers JSON lines on stdin with one JSON line each on stdout,
the only thing ever written there; stdin closing means "quit", so a crashed orchestrator leaves
no process behind. Times are ``time.time_ns()``: one clock shared by every process on the
machine.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import random
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from websockets.asyncio.connection import Connection

LOOPBACK = "127.0.0.1"
CONTROL_LINE_LIMIT = 1 << 20
# The sale workload of ``lanesync bench foundation``: 1-3 lines over 500 SKUs, integer
# quantities 1-5 and prices 50-4999 cents.
SKU_COUNT = 500

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def now_ns() -> int:
    return time.time_ns()


def lane_rng(name: str) -> random.Random:
    """Each lane's own reproducible workload generator (not crypto)."""
    return random.Random(name)  # noqa: S311


def sale_lines(rng: random.Random) -> list[tuple[str, int, int]]:
    return [
        (f"sku-{rng.randrange(SKU_COUNT):03d}", rng.randint(1, 5), rng.randint(50, 4999))
        for _ in range(rng.randint(1, 3))
    ]


async def paced(
    rate: float, count: int, start_ns: int, phase: float, fire: Callable[[int], None]
) -> float:
    """Call ``fire(i)`` for ``i`` in ``range(count)`` at ``start + (i + phase) / rate`` (open
    loop: a slow system does not slow the customers down). Returns the worst lateness in s."""
    loop = asyncio.get_running_loop()
    t0 = loop.time() + (start_ns - now_ns()) / 1e9 + phase / rate
    worst = 0.0
    i = 0
    while i < count:
        now = loop.time()
        due = min(count, int((now - t0) * rate) + 1) if now >= t0 else 0
        while i < due:
            worst = max(worst, now - (t0 + i / rate))
            fire(i)
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
    return worst


def count_writes(ws: Connection, add: Callable[[int], None]) -> None:
    """Count every byte websockets writes to this connection's socket (frames with their
    headers and masks, pings, closes): the bytes on the wire above TCP."""
    # A wrapper in the connection's place, not a replaced ``write``: uvloop's transports are
    # extension types whose methods cannot be reassigned (found with --loop uvloop, 2026-12-07).
    ws.transport = cast(asyncio.Transport, CountingTransport(ws.transport, add))


class CountingTransport:
    """A transport whose writes are counted; everything else is the wrapped transport's."""

    def __init__(self, transport: asyncio.Transport, add: Callable[[int], None]) -> None:
        self._transport = transport
        self._add = add

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._add(len(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class Control:
    """JSON lines in on stdin, JSON lines out on a private copy of stdout."""

    def __init__(self) -> None:
        self._out = os.dup(sys.stdout.fileno())
        # Whatever else prints goes to stderr (the orchestrator's log file), never to the pipe.
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(self._out, data) :]

    async def serve(self, handler: Handler) -> None:
        """Answer commands until ``quit`` or end of input."""
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=CONTROL_LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            request = json.loads(line)
            try:
                reply = await handler(request)
            except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
                reply = {"error": f"{type(exc).__name__}: {exc}"}
            self.send({"id": request.get("id"), **reply})
            if request.get("cmd") == "quit":
                return


class Profiler:
    def __init__(self) -> None:
        self._profile: cProfile.Profile | None = None

    def command(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["on"]:
            # CPU time, not wall time: on a shared machine wall time also counts the time this
            # process waited for a core, which says nothing about what lanesync costs.
            self._profile = cProfile.Profile(time.process_time)
            self._profile.enable()
        elif self._profile is not None:
            self._profile.disable()
            self._profile.dump_stats(request["path"])
            self._profile = None
        return {"ok": True}


class Arrivals:
    """Per sender, the records seen so far; ranges of seqs that appeared at one instant."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = defaultdict(int)
        self.log: list[list[Any]] = []  # [sender, first_seq, last_seq, time_ns]

    def advance(self, sender: str, seq: int, at_ns: int) -> None:
        last = self.seen[sender]
        if seq > last:
            self.log.append([sender, last + 1, seq, at_ns])
            self.seen[sender] = seq

    def take(self) -> list[list[Any]]:
        out, self.log = self.log, []
        return out


def runqueue_wait_s() -> float:
    """Time this process's main thread (the event loop) has waited for a CPU while runnable
    (Linux schedstat): high when the machine has more runnable work than cores."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def write_json(path: str, data: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(data))
