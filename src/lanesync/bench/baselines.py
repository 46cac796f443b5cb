"""The baseline peers, one process each, on loopback (never imported by lanesync itself).

    python -m lanesync.bench.baselines pycrdt-server --runtime FILE
    python -m lanesync.bench.baselines pycrdt-client NAME --epoch K --server URL --runtime FILE
        --events FILE
    python -m lanesync.bench.baselines naive NAME --epoch K [--peer URL ...] --runtime FILE
        --events FILE

* ``pycrdt-server``: a pycrdt-websocket ``WebsocketServer``, the star relay (no auth, no
  signing, no durability).
* ``pycrdt-client``: a ``pycrdt.Provider`` client of that server; redials with the same
  jittered backoff as a lanesync lane when its link drops.
* ``naive``: a naive full-state broadcast peer: whenever its document changed by a local sale it
  sends the WHOLE document (``doc.get_update()``) to every connected peer, and the whole document
  to a peer that connects. Bursts within one event-loop iteration share one send, and a peer
  that is still busy receiving gets only the latest state (a newer full state makes older ones
  useless), so memory stays bounded. Received states are applied, never forwarded (full mesh).

Each client serves the same small HTTP API as a lane for the load generator (``POST /v1/sales``
answers 201 with a ``sale_id``), and keeps the same event log (``lanesync.bench.events``).
A sale is one Map entry shaped like a lanesync record: the same msgpack payload layout and key
shape, with 64 random bytes in place of the Ed25519 signature. Nothing is durable: a restarted
client starts empty under a new sender name (``NAME.EPOCH``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import importlib
import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
from pycrdt import Doc, Map, MapEvent, Provider
from websockets.asyncio.client import connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from lanesync.bench.events import EventLog
from lanesync.bench.httpio import serve_http
from lanesync.core.redial import Attempt, Redial

LOOPBACK = "127.0.0.1"
ROOM = "/bench"
SIGNATURE_STANDIN = 64
MAX_FRAME = 64 * 1024 * 1024


def ws_options() -> dict[str, Any]:
    return {"compression": None, "max_size": MAX_FRAME, "ping_interval": 2.0, "ping_timeout": 2.0}


def write_runtime(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


class WsChannel:
    """A websockets connection as a pycrdt ``Channel``."""

    def __init__(self, ws: Connection, path: str) -> None:
        self._ws = ws
        self._path = path
        self.bytes_out = 0  # message payloads sent (``lanesync bench mesh`` reports them)

    @property
    def path(self) -> str:
        return self._path

    def __aiter__(self) -> WsChannel:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self.recv()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: bytes) -> None:
        self.bytes_out += len(message)
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(message)

    async def recv(self) -> bytes:
        message = await self._ws.recv()
        return message if isinstance(message, bytes) else message.encode()


def stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


# -- the star relay -------------------------------------------------------------------------------


async def run_server(runtime: Path) -> None:
    websocket = importlib.import_module("pycrdt.websocket")
    relay: Any = websocket.WebsocketServer(auto_clean_rooms=False)
    stop = asyncio.Event()
    stop_on_signals(stop)

    async def handler(ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else ROOM
        await relay.serve(WsChannel(ws, path))

    async with relay, serve(handler, LOOPBACK, 0, **ws_options()) as server:
        port = server.sockets[0].getsockname()[1] if server.sockets else 0
        write_runtime(runtime, {"listen": f"ws://{LOOPBACK}:{port}", "pid": os.getpid()})
        await stop.wait()
        server.close()


# -- a client (pycrdt-websocket or naive) ---------------------------------------------------------


class SalesPeer:
    """A document of sales, the bench HTTP API and the event log; subclasses sync it."""

    def __init__(self, name: str, epoch: int, events: Path) -> None:
        self.sender = f"{name}.{epoch}"
        self.doc: Doc[Any] = Doc()
        self.sales: Map[bytes] = self.doc.get("sales", type=Map)
        self.events = EventLog(events)
        self.seq = 0
        self.prev = bytes(32)
        self.stop = asyncio.Event()
        self.on_local_change: Callable[[], None] = lambda: None
        self._subscription = self.sales.observe(self._observed)

    def _observed(self, event: MapEvent) -> None:
        now = time.time_ns()
        keys: dict[str, dict[str, Any]] = getattr(event, "keys", {})
        for key, change in keys.items():
            if change.get("action") != "add":
                continue
            sender, _, seq = key.partition("#")[0].rpartition(":")
            if sender != self.sender and seq.isdigit():
                self.events.arrived(sender, int(seq), int(seq), now)

    def links(self) -> int:
        raise NotImplementedError

    def sell(self, lines: list[dict[str, Any]]) -> tuple[str, int]:
        self.seq += 1
        rows = [(str(x["sku"]), int(x["qty"]), int(x.get("unit_price") or 0)) for x in lines]
        total = sum(qty * unit for _, qty, unit in rows)
        payload = msgpack.packb(
            [1, self.sender, self.seq, self.prev, time.time_ns() // 1_000_000, 0, 1, [rows, total]],
            use_bin_type=True,
        )
        digest = hashlib.blake2b(payload, digest_size=32).digest()
        value = payload + os.urandom(SIGNATURE_STANDIN)
        self.sales[f"{self.sender}:{self.seq}#{digest[:16].hex()}"] = value
        self.prev = digest
        self.events.acked(self.sender, self.seq, self.seq, time.time_ns())
        self.on_local_change()
        return f"{self.sender}:{self.seq}", total

    def have(self) -> dict[str, list[int]]:
        held: dict[str, list[int]] = {}
        for key in list(self.sales.keys()):
            sender, _, seq = key.partition("#")[0].rpartition(":")
            if seq.isdigit():
                held.setdefault(sender, []).append(int(seq))
        return {sender: sorted(seqs) for sender, seqs in held.items()}

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=32)
        for key in sorted(self.sales.keys()):
            h.update(key.encode() + b"\x00")
        return h.hexdigest()

    async def handle(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/v1/sales" and isinstance(body, dict):
            sale_id, total = self.sell(list(body.get("lines", [])))
            return 201, {"sale_id": sale_id, "total": total}
        if method == "GET" and path == "/v1/status":
            return 200, {"links": self.links(), "sender": self.sender, "sales": len(self.sales)}
        if method == "GET" and path == "/v1/have":
            return 200, {"have": self.have()}
        if method == "GET" and path == "/v1/digest":
            return 200, {"digest": self.digest()}
        return 404, {"error": {"code": "not-found", "message": path}}

    async def run(self, runtime: Path, extra: dict[str, Any]) -> None:
        stop_on_signals(self.stop)
        api = await serve_http(self.handle)
        port = api.sockets[0].getsockname()[1]
        write_runtime(runtime, {"api": f"http://{LOOPBACK}:{port}", "pid": os.getpid(), **extra})
        try:
            await self.stop.wait()
        finally:
            api.close()
            self.events.close()


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


async def redial_wait(redial: Redial, attempt: Attempt) -> None:
    """Wait as a lane's dialler does (core/redial.py), so reconnects cost every system the same."""
    window_ms = redial.ended(attempt, _monotonic_ms())
    await asyncio.sleep(random.uniform(0, window_ms / 1000))  # noqa: S311 - jitter, not crypto


class PycrdtClient(SalesPeer):
    def __init__(self, name: str, epoch: int, events: Path, server: str) -> None:
        super().__init__(name, epoch, events)
        self.server = server
        self._links = 0

    def links(self) -> int:
        return self._links

    async def link_forever(self) -> None:
        redial = Redial()
        while not self.stop.is_set():
            redial.started(_monotonic_ms())
            attempt = Attempt.UNREACHED
            try:
                async with connect(self.server + ROOM, proxy=None, **ws_options()) as ws:
                    attempt = Attempt.ENDED
                    async with Provider(self.doc, WsChannel(ws, ROOM)) as provider:
                        await provider.synced.wait()
                        self._links = 1
                        await ws.wait_closed()
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed):
                pass
            finally:
                self._links = 0
            await redial_wait(redial, attempt)

    async def main(self, runtime: Path) -> None:
        task = asyncio.create_task(self.link_forever())
        try:
            await self.run(runtime, {})
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class NaivePeer(SalesPeer):
    def __init__(self, name: str, epoch: int, events: Path, peers: list[str]) -> None:
        super().__init__(name, epoch, events)
        self.peers = peers
        self._wakes: dict[int, asyncio.Event] = {}
        self._ids = 0
        self._scheduled = False
        self.on_local_change = self._changed

    def links(self) -> int:
        return len(self._wakes)

    def _changed(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._broadcast)

    def _broadcast(self) -> None:
        self._scheduled = False
        for wake in self._wakes.values():
            wake.set()

    async def connection(self, ws: Connection) -> None:
        self._ids += 1
        conn_id = self._ids
        wake = asyncio.Event()
        wake.set()  # a peer that connects gets the whole document at once
        self._wakes[conn_id] = wake

        async def writer() -> None:
            while True:
                await wake.wait()
                wake.clear()
                await ws.send(bytes(self.doc.get_update()))

        sending = asyncio.create_task(writer())
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self.doc.apply_update(message)
        except ConnectionClosed:
            pass
        finally:
            del self._wakes[conn_id]
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await sending

    async def dial_forever(self, url: str) -> None:
        redial = Redial()
        while not self.stop.is_set():
            redial.started(_monotonic_ms())
            attempt = Attempt.UNREACHED
            try:
                async with connect(url, proxy=None, **ws_options()) as ws:
                    attempt = Attempt.ENDED
                    await self.connection(ws)
            except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ConnectionClosed):
                pass
            await redial_wait(redial, attempt)

    async def main(self, runtime: Path) -> None:
        async with serve(self.connection, LOOPBACK, 0, **ws_options()) as server:
            port = server.sockets[0].getsockname()[1] if server.sockets else 0
            dialers = [asyncio.create_task(self.dial_forever(url)) for url in self.peers]
            try:
                await self.run(runtime, {"listen": f"ws://{LOOPBACK}:{port}"})
            finally:
                for task in dialers:
                    task.cancel()
                await asyncio.gather(*dialers, return_exceptions=True)
                server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lanesync.bench.baselines")
    parser.add_argument("mode", choices=["pycrdt-server", "pycrdt-client", "naive"])
    parser.add_argument("name", nargs="?", default="server")
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--server", default="")
    parser.add_argument("--peer", dest="peers", action="append", default=[])
    parser.add_argument("--runtime", type=Path, required=True)
    parser.add_argument("--events", type=Path)
    args = parser.parse_args(argv)
    for url in [args.server, *args.peers]:
        if url and not url.startswith(f"ws://{LOOPBACK}:"):
            parser.error(f"benchmark peers must be ws://{LOOPBACK}:PORT, not {url!r}")
    if args.mode == "pycrdt-server":
        asyncio.run(run_server(args.runtime))
        return
    if args.events is None:
        parser.error("--events is required for a client")
    if args.mode == "pycrdt-client":
        client = PycrdtClient(args.name, args.epoch, args.events, args.server)
        asyncio.run(client.main(args.runtime))
    else:
        asyncio.run(NaivePeer(args.name, args.epoch, args.events, args.peers).main(args.runtime))


if __name__ == "__main__":
    main()
