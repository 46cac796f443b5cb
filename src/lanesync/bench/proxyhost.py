"""Every fault proxy of a benchmark run, in one process of its own (``lanesync.tools.faultproxy``).

The proxies forward every byte between the benchmarked processes; in a process of their own
they do not steal event-loop time from the load generator. Commands arrive as JSON lines on
stdin, one JSON line answers each on stdout; end of input stops every proxy and exits, so a
crashed orchestrator leaves nothing behind.

    {"cmd": "add", "target": PORT, "latency_ms": .., "jitter_ms": .., "loss_pct": .., "seed": ..}
    {"cmd": "target", "id": ID, "port": PORT}
    {"cmd": "partition" | "heal", "ids": [ID, ...]}
    {"cmd": "stats"}
    {"cmd": "quit"}
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from lanesync.tools.faultproxy import FaultLink

LOOPBACK = "127.0.0.1"
LINE_LIMIT = 1 << 20


@dataclass
class TimedLink(FaultLink):
    """A FaultLink that notes when it let a connection through (reconnect times after a heal)."""

    accepts: list[int] = field(default_factory=list)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        before = self.stats.connections
        await super()._accept(reader, writer)
        if self.stats.connections > before:
            self.accepts.append(time.time_ns())


class ProxyHost:
    def __init__(self) -> None:
        self.links: dict[int, TimedLink] = {}

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request.get("cmd"):
            case "add":
                link = TimedLink(
                    LOOPBACK,
                    int(request.get("target", 0)),
                    latency_ms=float(request.get("latency_ms", 0.0)),
                    jitter_ms=float(request.get("jitter_ms", 0.0)),
                    seed=request.get("seed"),
                    loss_pct=float(request.get("loss_pct", 0.0)),
                )
                await link.start(LOOPBACK, 0)
                if request.get("partitioned"):
                    link.partition()
                link_id = len(self.links) + 1
                self.links[link_id] = link
                return {"id": link_id, "port": link.port}
            case "target":
                self.links[int(request["id"])].target_port = int(request["port"])
                return {"ok": True}
            case "partition" | "heal" as what:
                for link_id in request["ids"]:
                    link = self.links[int(link_id)]
                    link.partition() if what == "partition" else link.heal()
                return {"at_ns": time.time_ns()}
            case "stats":
                return {
                    "links": {
                        str(i): {
                            "bytes": link.stats.bytes_forwarded,
                            "connections": link.stats.connections,
                            "refused": link.stats.refused,
                            "stalls": link.stats.stalls,
                            "accepts": link.accepts[-20:],
                        }
                        for i, link in self.links.items()
                    },
                    "cpu_s": time.process_time(),
                }
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        out = os.dup(sys.stdout.fileno())
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints never reach the pipe
        try:
            while line := await reader.readline():
                request = json.loads(line)
                try:
                    reply = await self.handle(request)
                except (KeyError, ValueError, OSError, RuntimeError) as exc:
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                data = (json.dumps({"id": request.get("id"), **reply}) + "\n").encode()
                while data:
                    data = data[os.write(out, data) :]
                if request.get("cmd") == "quit":
                    break
        finally:
            await asyncio.gather(*(link.stop() for link in self.links.values()))


def main() -> None:
    asyncio.run(ProxyHost().serve())


if __name__ == "__main__":
    main()
