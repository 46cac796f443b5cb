"""A TCP proxy on loopback that injects faults between two lanes, in user space.

This kernel has no netem (`tc qdisc ... netem` fails on the test machines), so latency and
partitions are added here. Each ``FaultLink``
forwards one listening port to one target; it can add a one-way delay (with jitter) to every
chunk, and ``partition()`` cuts it: open connections are reset and new ones refused until
``heal()``. Delivery order within a connection is kept (TCP semantics), so jitter never
reorders bytes.

Loss: TCP never loses bytes, it retransmits them, so ``loss_pct`` models what a lost segment
costs a TCP stream: with that probability a chunk is held back for a retransmission timeout
(``loss_stall_ms``, 200 ms = Linux's minimum RTO) on top of its delay, and everything behind it
on that connection waits too (head-of-line blocking). Connections are never reset for loss.

Only loopback targets are allowed: this tool must never send traffic anywhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
from dataclasses import dataclass, field


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"fault proxy targets must be loopback addresses, not {host!r}")


@dataclass
class LinkStats:
    connections: int = 0
    refused: int = 0
    bytes_forwarded: int = 0
    stalls: int = 0  # chunks held back for a retransmission timeout (``loss_pct``)


@dataclass
class FaultLink:
    target_host: str
    target_port: int  # may be set after start(); connections are refused while it is 0
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    seed: int | None = None
    loss_pct: float = 0.0
    loss_stall_ms: float = 200.0
    stats: LinkStats = field(default_factory=LinkStats)
    _partitioned: bool = False
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)  # accepts and pipes
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    def __post_init__(self) -> None:
        _check_loopback(self.target_host)
        if not 0.0 <= self.loss_pct <= 100.0:
            raise ValueError(f"loss_pct must be between 0 and 100, not {self.loss_pct}")
        self._rng = random.Random(self.seed)  # noqa: S311 - fault schedule, not crypto

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("link not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        _check_loopback(host)
        self._server = await asyncio.start_server(self._accept, host, port)

    async def stop(self) -> None:
        """Close the listener and every connection, including one still being accepted."""
        self.partition()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # An aborted transport closes its socket in a callback on the next loop turn: give it
        # that turn, or a loop stopped right after this leaves the socket to the GC.
        await asyncio.sleep(0)

    @property
    def partitioned(self) -> bool:
        return self._partitioned

    def partition(self) -> None:
        """Cut the link both ways: reset open connections, refuse new ones."""
        self._partitioned = True
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def heal(self) -> None:
        self._partitioned = False

    def _delay_s(self) -> float:
        delay = self.latency_ms + (
            self._rng.uniform(-1, 1) * self.jitter_ms if self.jitter_ms else 0
        )
        if self.loss_pct and self._rng.random() * 100 < self.loss_pct:
            self.stats.stalls += 1
            delay += self.loss_stall_ms
        return max(0.0, delay) / 1000

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Tracked from the start, so stop() also closes a connection whose upstream dial is
        # still in flight (the server does not cancel its handlers).
        current = asyncio.current_task()
        assert current is not None
        self._track(current)
        self._writers.add(writer)
        try:
            if self._partitioned:
                raise ConnectionRefusedError
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self.stats.refused += 1
            self._writers.discard(writer)
            writer.transport.abort()
            return
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
        if self.partitioned:  # cut while dialling (mypy narrowed the attribute above)
            self.stats.refused += 1
            up_writer.transport.abort()
            return
        self.stats.connections += 1
        self._writers.add(up_writer)
        loop = asyncio.get_running_loop()
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            self._track(loop.create_task(self._pipe(src, dst)))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A delivery queue per direction keeps order while each chunk waits out its own delay.
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def deliver() -> None:
            last = 0.0
            while (item := await queue.get()) is not None:
                due, data = item
                due = max(due, last)
                last = due
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                self.stats.bytes_forwarded += len(data)
                await writer.drain()

        deliverer = loop.create_task(deliver())
        try:
            while data := await reader.read(65536):
                if self._partitioned:
                    break
                queue.put_nowait((loop.time() + self._delay_s(), data))
            queue.put_nowait(None)
            await deliverer
        except ConnectionError:
            deliverer.cancel()  # one side reset the connection: this pipe is simply over
        except asyncio.CancelledError:
            deliverer.cancel()
            raise
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()
