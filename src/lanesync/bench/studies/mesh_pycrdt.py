"""The baseline of ``lanesync bench mesh``: a pycrdt-websocket ``WebsocketServer`` (the star
relay: no auth, no signing, no durability) and its ``Provider`` clients, one process each,
writing sales as bytes values of the same shape and size as lanesync records into a Map.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections import defaultdict
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from lanesync.bench.baselines import ROOM, WsChannel
from lanesync.bench.studies.mesh_control import (
    LOOPBACK,
    Arrivals,
    Control,
    Profiler,
    count_writes,
    lane_rng,
    now_ns,
    paced,
    runqueue_wait_s,
    sale_lines,
    write_json,
)
from lanesync.core.wire import MAX_FRAME_SIZE

SIGNATURE_STANDIN = 64  # bytes: an Ed25519 signature's size, so baseline values match records


def ws_options() -> dict[str, Any]:
    # As lanesync's own options: no deflate (it nearly doubled small-frame latency), room for
    # a 10k-sale catch-up message.
    return {"compression": None, "max_size": MAX_FRAME_SIZE}


class PycrdtServer:
    def __init__(self) -> None:
        self.control = Control()
        self.profiler = Profiler()
        self.wire_out = 0
        self.payload_out = 0
        self.channels: list[WsChannel] = []
        self.relay: Any = None

    def _add_wire(self, size: int) -> None:
        self.wire_out += size

    def room_size(self) -> int:
        from pycrdt import Map

        room = self.relay.rooms.get(ROOM) if self.relay else None
        return 0 if room is None else len(room.ydoc.get("sales", type=Map))

    async def run(self) -> None:
        from pycrdt.websocket import WebsocketServer

        self.relay = relay = WebsocketServer(auto_clean_rooms=False)

        async def handler(ws: ServerConnection) -> None:
            count_writes(ws, self._add_wire)
            channel = WsChannel(ws, ws.request.path if ws.request else ROOM)
            self.channels.append(channel)
            await relay.serve(channel)

        async with relay, serve(handler, LOOPBACK, 0, **ws_options()) as server:
            port = server.sockets[0].getsockname()[1] if server.sockets else 0
            self.control.send(
                {"event": "ready", "pid": os.getpid(), "listen": f"ws://{LOOPBACK}:{port}"}
            )
            await self.control.serve(self.handle)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request["cmd"]:
            case "status":
                return {
                    "wire_out": self.wire_out,
                    "payload_out": sum(c.bytes_out for c in self.channels),
                    "cpu_s": time.process_time(),
                    "runq_s": runqueue_wait_s(),
                    "room_size": self.room_size(),
                }
            case "profile":
                return self.profiler.command(request)
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}


class PycrdtClient:
    def __init__(self, name: str) -> None:
        from pycrdt import Doc, Map, MapEvent

        self.name = name
        self.control = Control()
        self.profiler = Profiler()
        self.doc: Doc[Any] = Doc()
        self.sales: Map[bytes] = self.doc.get("sales", type=Map)
        self.arrivals = Arrivals()
        self.sends: list[list[int]] = []
        self.seq = 0
        self.prev = bytes(32)
        self.wire_out = 0
        self.channel: WsChannel | None = None
        self.rng = lane_rng(name)
        self.stop = asyncio.Event()
        self.provider_task: asyncio.Task[None] | None = None
        self.received: dict[str, set[int]] = defaultdict(set)

        def on_change(event: MapEvent) -> None:
            at = now_ns()
            keys: dict[str, dict[str, Any]] = getattr(event, "keys", {})
            for key, change in keys.items():
                if change.get("action") != "add":
                    continue
                sender, _, seq = key.partition("#")[0].rpartition(":")
                if sender != self.name:
                    self._arrived(sender, int(seq), at)

        self._subscription = self.sales.observe(on_change)

    def _arrived(self, sender: str, seq: int, at: int) -> None:
        # Updates may arrive out of order: log single seqs, count distinct ones.
        self.received[sender].add(seq)
        self.arrivals.log.append([sender, seq, seq, at])

    def _add_wire(self, size: int) -> None:
        self.wire_out += size

    async def run(self) -> None:
        self.control.send({"event": "ready", "pid": os.getpid()})
        await self.control.serve(self.handle)
        self.stop.set()
        if self.provider_task is not None:
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(self.provider_task, 5)

    async def _provide(self, url: str, synced: asyncio.Future[None]) -> None:
        from pycrdt import Provider

        ws: ClientConnection
        async with connect(url + ROOM, proxy=None, **ws_options()) as ws:
            count_writes(ws, self._add_wire)
            self.channel = WsChannel(ws, ROOM)
            async with Provider(self.doc, self.channel) as provider:
                await provider.synced.wait()
                synced.set_result(None)
                await self.stop.wait()

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request["cmd"]:
            case "connect":
                synced: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self.provider_task = asyncio.create_task(self._provide(request["urls"][0], synced))
                done, _ = await asyncio.wait(
                    [synced, self.provider_task], timeout=30, return_when=asyncio.FIRST_COMPLETED
                )
                if synced not in done:
                    return {"error": "did not sync with the pycrdt-websocket server"}
                return {"ok": True}
            case "status":
                return {
                    "have": {s: len(seqs) for s, seqs in self.received.items()},
                    "sent": self.seq,
                    "links": int(self.channel is not None and not self.stop.is_set()),
                    "wire_out": self.wire_out,
                    "payload_out": self.channel.bytes_out if self.channel else 0,
                    "cpu_s": time.process_time(),
                    "runq_s": runqueue_wait_s(),
                    "errors": 0,
                }
            case "load":
                worst = await paced(
                    request["rate"],
                    request["count"],
                    request["start_ns"],
                    request["phase"],
                    lambda _: self.write_sale(),
                )
                return {"issued": request["count"], "failed": 0, "late_s": worst, "errors": []}
            case "collect":
                write_json(
                    request["path"],
                    {"sends": self.sends, "commits": [], "accepted": self.arrivals.take()},
                )
                self.sends = []
                return {"ok": True}
            case "profile":
                return self.profiler.command(request)
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}

    def write_sale(self) -> None:
        """One sale, shaped like a lanesync record: the same msgpack payload layout and key
        shape, a 64 B stand-in for the signature (the baseline signs nothing)."""
        self.seq += 1
        lines = sale_lines(self.rng)
        total = sum(qty * unit for _, qty, unit in lines)
        issued = now_ns()
        payload = msgpack.packb(
            [1, self.name, self.seq, self.prev, issued // 1_000_000, 0, 1, [lines, total]],
            use_bin_type=True,
        )
        digest = hashlib.blake2b(payload, digest_size=32).digest()
        self.sales[f"{self.name}:{self.seq}#{digest[:16].hex()}"] = payload + os.urandom(
            SIGNATURE_STANDIN
        )
        self.prev = digest
        self.sends.append([self.seq, issued, now_ns()])
