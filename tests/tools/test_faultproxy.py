"""The fault proxy itself (``lanesync.tools.faultproxy.FaultLink``), against a tiny echo server on
127.0.0.1: configured latency is observed, order survives jitter, a partition cuts both ways
and refuses new connections until healed, and nothing but loopback is ever a target."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from lanesync.tools.faultproxy import FaultLink

LATENCY_MS = 50.0
# Generous: two vCPUs shared with whatever else runs; the lower bound is what matters.
SLACK_S = 0.4
IO_TIMEOUT_S = 5.0
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - only ever passed to be refused


class EchoServer:
    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.connections = 0
        self.closed = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.closed += 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    @property
    def port(self) -> int:
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def echo_and_link(
    latency_ms: float = 0.0, jitter_ms: float = 0.0, seed: int | None = None
) -> AsyncIterator[tuple[EchoServer, FaultLink]]:
    echo = EchoServer()
    echo.server = await asyncio.start_server(echo._handle, "127.0.0.1", 0)
    link = FaultLink("127.0.0.1", echo.port, latency_ms=latency_ms, jitter_ms=jitter_ms, seed=seed)
    await link.start()
    try:
        yield echo, link
    finally:
        await link.stop()
        echo.server.close()
        await echo.server.wait_closed()


async def open_client(link: FaultLink) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", link.port)


async def close_client(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def round_trip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, payload: bytes
) -> float:
    started = time.monotonic()
    writer.write(payload)
    await writer.drain()
    echoed = await asyncio.wait_for(reader.readexactly(len(payload)), IO_TIMEOUT_S)
    assert echoed == payload
    return time.monotonic() - started


async def is_cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """True when the connection is dead: EOF or reset instead of an echo."""
    try:
        writer.write(b"ping")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4), IO_TIMEOUT_S)
    except ConnectionError:
        return True
    return data == b""


def is_partitioned(link: FaultLink) -> bool:
    return link.partitioned


def test_latency_is_added_each_way() -> None:
    async def main() -> None:
        async with echo_and_link(latency_ms=LATENCY_MS) as (_, link):
            reader, writer = await open_client(link)
            try:
                times = [await round_trip(reader, writer, b"x" * 100) for _ in range(5)]
            finally:
                await close_client(writer)
        expected = 2 * LATENCY_MS / 1000
        assert min(times) >= expected * 0.98, times  # timer granularity, never earlier
        assert max(times) < expected + SLACK_S, times

    asyncio.run(main())


def test_jitter_never_reorders_bytes() -> None:
    async def main() -> None:
        async with echo_and_link(latency_ms=10, jitter_ms=9, seed=3) as (_, link):
            reader, writer = await open_client(link)
            try:
                chunks = [f"<{i:04d}>".encode() for i in range(200)]
                for chunk in chunks:
                    writer.write(chunk)
                    await writer.drain()
                    await asyncio.sleep(0)
                expected = b"".join(chunks)
                echoed = await asyncio.wait_for(reader.readexactly(len(expected)), IO_TIMEOUT_S)
            finally:
                await close_client(writer)
        assert echoed == expected

    asyncio.run(main())


def test_partition_cuts_both_ways_and_heal_restores() -> None:
    async def main() -> None:
        async with echo_and_link() as (echo, link):
            reader, writer = await open_client(link)
            try:
                await round_trip(reader, writer, b"before")
                link.partition()
                assert is_partitioned(link)
                # The client's side is cut ...
                assert await is_cut(reader, writer)
            finally:
                await close_client(writer)
            # ... and so is the server's: its connection ended too.
            for _ in range(100):
                if echo.closed == 1:
                    break
                await asyncio.sleep(0.02)
            assert echo.closed == 1
            # New connections are refused while partitioned and never reach the server.
            refused_before = link.stats.refused
            reader, writer = await open_client(link)
            try:
                assert await is_cut(reader, writer)
            finally:
                await close_client(writer)
            assert link.stats.refused == refused_before + 1
            assert echo.connections == 1
            link.heal()
            assert not is_partitioned(link)
            reader, writer = await open_client(link)
            try:
                await round_trip(reader, writer, b"after the heal")
            finally:
                await close_client(writer)
            assert echo.connections == 2
            assert link.stats.connections == 2

    asyncio.run(main())


def test_unset_or_dead_target_is_refused() -> None:
    async def main() -> None:
        async with echo_and_link() as (echo, link):
            link.target_port = 0  # not known yet: refuse
            reader, writer = await open_client(link)
            try:
                assert await is_cut(reader, writer)
            finally:
                await close_client(writer)
            assert link.stats.refused == 1
            link.target_port = echo.port
            reader, writer = await open_client(link)
            try:
                await round_trip(reader, writer, b"now it is set")
            finally:
                await close_client(writer)

    asyncio.run(main())


def test_stats_count_forwarded_bytes() -> None:
    async def main() -> None:
        async with echo_and_link() as (_, link):
            reader, writer = await open_client(link)
            try:
                await round_trip(reader, writer, b"z" * 1000)
            finally:
                await close_client(writer)
            assert link.stats.bytes_forwarded == 2000

    asyncio.run(main())


@pytest.mark.parametrize(
    "host", ["10.0.0.1", "192.168.1.10", "8.8.8.8", ALL_INTERFACES, "::", "example.com", ""]
)
def test_non_loopback_target_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultLink(host, 80)


@pytest.mark.parametrize("host", [ALL_INTERFACES, "192.168.1.10", "::"])
def test_non_loopback_listen_address_is_refused(host: str) -> None:
    async def main() -> None:
        link = FaultLink("127.0.0.1", 80)
        with pytest.raises(ValueError, match="loopback"):
            await link.start(host)

    asyncio.run(main())


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost"])
def test_loopback_targets_are_accepted(host: str) -> None:
    assert FaultLink(host, 80).target_host == host


def test_stop_closes_a_connection_whose_upstream_dial_is_in_flight() -> None:
    """A target whose accept queue is full never answers the SYN, so the link's upstream dial
    hangs; stop() must still close the client's connection (it used to be left to the GC)."""

    async def main() -> None:
        with socket.socket() as stuck, contextlib.ExitStack() as queued:
            stuck.bind(("127.0.0.1", 0))
            stuck.listen(0)
            while True:  # fill the accept queue until a connect gets no answer
                filler = queued.enter_context(socket.socket())
                filler.settimeout(0.2)
                try:
                    filler.connect(stuck.getsockname())
                except TimeoutError:
                    break
            link = FaultLink("127.0.0.1", stuck.getsockname()[1])
            await link.start()
            reader, writer = await open_client(link)
            try:
                await asyncio.sleep(0.2)  # the link has accepted and is dialling
                assert link.stats.connections == 0
                assert link.stats.refused == 0
                await asyncio.wait_for(link.stop(), IO_TIMEOUT_S)
                assert await is_cut(reader, writer)
            finally:
                await close_client(writer)

    asyncio.run(main())
