"""One process of benchmarks/mesh.py: a lanesync lane, or a pycrdt-websocket server or client.

Not meant to be run by hand. The orchestrator (benchmarks/mesh.py) starts one process per lane
and drives it with JSON lines on stdin; every command gets one JSON line back on stdout, the
only thing ever written there. Stdin closing means "quit", so a crashed orchestrator leaves no
process behind.

Modes:

* ``lanesync TERMINAL_DIR``: runs ``lanesync run TERMINAL_DIR --listen 127.0.0.1:0 --api
  127.0.0.1:0 --no-discovery`` in this process, through the real CLI and daemon code (durable
  SQLite commit, record verification, frame encryption: everything on). Two daemon classes are
  swapped for subclasses that only observe: ``TimedMesh`` (a ``Mesh`` that timestamps every
  record it accepts and counts the bytes it writes to its sockets) and ``CapturingCommitter``
  (a ``GroupCommitter`` the load generator writes through, like the HTTP API does).
* ``pycrdt-server``: a pycrdt-websocket ``WebsocketServer`` (the star relay) on 127.0.0.1.
* ``pycrdt-client NAME``: a pycrdt ``Provider`` client of that server, writing sales as bytes
  values of the same shape and size as lanesync records (not signed) into a Map.

Commands (``{"id": N, "cmd": ...}``): ``connect`` (``urls``), ``status``, ``load`` (``rate``,
``count``, ``start_ns``, ``phase``), ``collect`` (``path``), ``profile`` (``on``, ``path``),
``quit``. Times are ``time.time_ns()``: one clock shared by every process on the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import hashlib
import json
import os
import random
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.ids import Sku, TerminalId
from lanesync.core.output import Output
from lanesync.core.records import Body
from lanesync.core.replica import Change
from lanesync.core.views import Views
from lanesync.core.wire import MAX_FRAME_SIZE
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal

LOOPBACK = "127.0.0.1"
CONTROL_LINE_LIMIT = 1 << 20
RUNTIME_POLL_S = 0.02
ROOM = "/bench"  # the pycrdt-websocket room every client joins
# The same sale workload as benchmarks/foundation.py: 1-3 lines over 500 SKUs, integer
# quantities 1-5 and prices 50-4999 cents.
SKU_COUNT = 500
SIGNATURE_STANDIN = 64  # bytes: an Ed25519 signature's size, so baseline values match records

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


# -- shared pieces -------------------------------------------------------------------------------


def now_ns() -> int:
    return time.time_ns()


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
    transport = ws.transport
    write = transport.write

    def counting_write(data: bytes | bytearray | memoryview) -> None:
        add(len(data))
        write(data)

    transport.write = counting_write  # type: ignore[method-assign]


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


# -- lanesync ------------------------------------------------------------------------------------


class TimedMesh(Mesh):
    """The daemon's Mesh, plus observation: when each record was accepted (verified, chained,
    counted in the views) and when it became durable here, and the bytes written to sockets."""

    current: ClassVar[TimedMesh | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wire_out = 0
        views = self.terminal.replica.views
        self._views = views
        self._me = str(self.terminal.terminal_id)
        self.accepted = Arrivals()  # in memory, in the views: what a query sees
        self.durable = Arrivals()  # after this lane's own durable commit of the update
        self._accepted_count = views.accepted_count()
        self._durable_count = self._accepted_count
        self._committed_seq = views.head(TerminalId(self._me)).seq
        self.commits: list[list[int]] = []  # [first_seq, last_seq, time_ns] of local commits
        take_output = self.node.take_output

        def taken() -> Output:
            # The node merges what it received in take_output (all frames of one event-loop
            # iteration together): records become accepted there.
            out = take_output()
            if views.accepted_count() != self._accepted_count:
                self._accepted_count = views.accepted_count()
                self._scan(self.accepted)
            return out

        self.node.take_output = taken  # type: ignore[method-assign]
        # Wall time the event loop spends inside SQLite (commit with its fsync, compaction):
        # the loop serves nothing else meanwhile.
        self.storage_s: dict[str, float] = defaultdict(float)
        self.storage_calls: dict[str, int] = defaultdict(int)
        storage = self.terminal.storage
        commit = self._timed("commit", storage.commit)

        def durable_commit(*args: Any) -> None:
            commit(*args)  # peers' updates become durable here, not when they are merged
            if views.accepted_count() != self._durable_count:
                self._durable_count = views.accepted_count()
                self._scan(self.durable)

        storage.commit = durable_commit  # type: ignore[method-assign]
        storage.compact = self._timed("compact", storage.compact)  # type: ignore[method-assign]
        TimedMesh.current = self
        lane = LanesyncLane(self)
        self._lane_task = asyncio.get_running_loop().create_task(lane.run(), name="bench-control")

    def _timed(self, what: str, call: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any) -> None:
            started = time.perf_counter()
            try:
                call(*args)
            finally:
                self.storage_s[what] += time.perf_counter() - started
                self.storage_calls[what] += 1

        return timed

    def _scan(self, into: Arrivals) -> None:
        at = now_ns()
        # Benchmark-only peek at the views' chains: ``heads()`` builds a ChainHead per
        # terminal, which would make this observer cost more than it needs to per frame.
        chains = getattr(getattr(self._views, "_chains", None), "_chains", None)
        if isinstance(chains, dict):
            heads = [(terminal, chain.head_seq) for terminal, chain in chains.items()]
        else:
            heads = [(head.terminal, head.seq) for head in self._views.heads()]
        for terminal, seq in heads:
            if terminal != self._me and seq:
                into.advance(terminal, seq, at)

    async def _run_connection(self, ws: Connection, *args: Any, **kwargs: Any) -> str:
        count_writes(ws, self._add_wire)
        return await super()._run_connection(ws, *args, **kwargs)

    def _add_wire(self, size: int) -> None:
        self.wire_out += size

    def committed(self, changes: list[Change]) -> None:
        at = now_ns()
        head = self._views.head(TerminalId(self._me)).seq
        if head > self._committed_seq:
            self.commits.append([self._committed_seq + 1, head, at])
            self._committed_seq = head
        super().committed(changes)

    def open_links(self) -> int:
        return sum(1 for link in self.node.links.values() if link.is_open)


class CapturingCommitter(GroupCommitter):
    current: ClassVar[CapturingCommitter | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        CapturingCommitter.current = self


class LanesyncLane:
    def __init__(self, mesh: TimedMesh) -> None:
        self.mesh = mesh
        self.terminal: Terminal = mesh.terminal
        self.control = Control()
        self.profiler = Profiler()
        self.sends: list[list[int]] = []  # [seq, issue_ns, ack_ns]
        self.errors: list[str] = []
        self.rng = random.Random(str(self.terminal.terminal_id))

    async def run(self) -> None:
        directory = self.terminal.directory.path
        runtime = directory / "runtime.json"
        # The daemon writes it once the peer server and the API are bound; nothing to await.
        while not runtime.exists():  # noqa: ASYNC110
            await asyncio.sleep(RUNTIME_POLL_S)
        info = json.loads(runtime.read_text())
        self.control.send({"event": "ready", "pid": os.getpid(), **info})
        await self.control.serve(self.handle)
        # quit or end of input: stop the daemon the way SIGTERM does.
        signal.raise_signal(signal.SIGTERM)

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        match request["cmd"]:
            case "connect":
                for url in request["urls"]:
                    self.mesh.add_static(url)
                return {"ok": True}
            case "status":
                return self.status()
            case "load":
                return await self.load(request)
            case "collect":
                write_json(
                    request["path"],
                    {
                        "sends": self.sends,
                        "commits": self.mesh.commits,
                        "accepted": self.mesh.accepted.take(),
                        "durable": self.mesh.durable.take(),
                    },
                )
                self.sends, self.mesh.commits = [], []
                return {"ok": True}
            case "profile":
                return self.profiler.command(request)
            case "quit":
                return {"ok": True}
            case other:
                return {"error": f"unknown command {other!r}"}

    def status(self) -> dict[str, Any]:
        committer = CapturingCommitter.current
        return {
            "have": dict(self.mesh.accepted.seen),
            "durable": dict(self.mesh.durable.seen),
            "sent": self.terminal.replica.views.head(self.terminal.terminal_id).seq,
            "links": self.mesh.open_links(),
            "wire_out": self.mesh.wire_out,
            "payload_out": self.mesh.bytes_out,
            "frames_out": self.mesh.frames_out,
            "commits": committer.commits if committer else 0,
            "storage_s": dict(self.mesh.storage_s),
            "storage_calls": dict(self.mesh.storage_calls),
            "cpu_s": time.process_time(),
            "runq_s": runqueue_wait_s(),
            "errors": len(self.errors),
        }

    async def load(self, request: dict[str, Any]) -> dict[str, Any]:
        committer = CapturingCommitter.current
        if committer is None:
            return {"error": "the daemon has no committer yet"}
        loop = asyncio.get_running_loop()
        tasks: list[asyncio.Task[None]] = []

        async def one(lines: list[tuple[str, int, int]]) -> None:
            requests = [LineRequest(Sku(sku), qty, unit) for sku, qty, unit in lines]

            def build(views: Views) -> Body:
                return build_sale(views, requests)

            issued = now_ns()
            record = await committer.write(build)
            self.sends.append([record.seq, issued, now_ns()])

        def fire(_: int) -> None:
            tasks.append(loop.create_task(one(sale_lines(self.rng))))

        worst = await paced(
            request["rate"], request["count"], request["start_ns"], request["phase"], fire
        )
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failed = [repr(r) for r in results if isinstance(r, BaseException)]
        self.errors.extend(failed)
        return {"issued": len(tasks), "failed": len(failed), "late_s": worst, "errors": failed[:3]}


def run_lanesync(directory: str) -> None:
    from lanesync.cli import main as cli_main
    from lanesync.shell import daemon

    # The daemon builds its Mesh and GroupCommitter by these module-level names.
    daemon.Mesh = TimedMesh  # type: ignore[attr-defined]
    daemon.GroupCommitter = CapturingCommitter  # type: ignore[attr-defined]
    args = ["run", directory, "--listen", f"{LOOPBACK}:0", "--api", f"{LOOPBACK}:0"]
    cli_main.cli.main(args=[*args, "--no-discovery"], prog_name="lanesync", standalone_mode=False)


# -- pycrdt-websocket (the baseline) -------------------------------------------------------------


class WsChannel:
    """A websockets connection as a pycrdt ``Channel``."""

    def __init__(self, ws: Connection, path: str) -> None:
        self._ws = ws
        self._path = path
        self.bytes_out = 0

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
        self.rng = random.Random(name)
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


# -- entry point ---------------------------------------------------------------------------------


def main(argv: Iterable[str]) -> None:
    args = list(argv)
    if not args:
        raise SystemExit("usage: lane_driver.py lanesync DIR | pycrdt-server | pycrdt-client NAME")
    match args:
        case ["lanesync", directory]:
            run_lanesync(directory)
        case ["pycrdt-server"]:
            asyncio.run(PycrdtServer().run())
        case ["pycrdt-client", name]:
            asyncio.run(PycrdtClient(name).run())
        case _:
            raise SystemExit(f"unknown mode {args!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
