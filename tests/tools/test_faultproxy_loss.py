"""``FaultLink.loss_pct``: the fault proxy models a lost TCP segment as a retransmission-timeout
stall of that chunk (and of what queues behind it); latency and partitions are covered by
tests/tools/test_faultproxy.py."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from lanesync.tools.faultproxy import FaultLink

ROUND_TRIPS = 120
LOSS_PCT = 20.0
STALL_MS = 60.0


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def round_trips(link_options: dict[str, float]) -> tuple[FaultLink, list[float]]:
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    link = FaultLink("127.0.0.1", port, seed=7, **link_options)  # type: ignore[arg-type]
    await link.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", link.port)
        times = []
        for i in range(ROUND_TRIPS):
            payload = f"{i:08d}".encode()
            started = time.monotonic()
            writer.write(payload)
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
            times.append((time.monotonic() - started) * 1000)
        writer.close()
        return link, times
    finally:
        await link.stop()
        server.close()
        await server.wait_closed()


def test_loss_stalls_about_the_configured_share_of_chunks() -> None:
    link, times = asyncio.run(round_trips({"loss_pct": LOSS_PCT, "loss_stall_ms": STALL_MS}))
    chunks = 2 * ROUND_TRIPS  # each round trip crosses the proxy once each way
    share = link.stats.stalls / chunks * 100
    # Binomial(240, 0.2): sd ~ 6 chunks = 2.6 %; four sd either way.
    assert abs(share - LOSS_PCT) < 10.5, share
    # Observed: a round trip is slow when either crossing stalled, 1 - 0.8^2 = 36 % of them.
    slow = [t for t in times if t >= STALL_MS]
    assert 0.18 < len(slow) / ROUND_TRIPS < 0.6
    # Every stall shows: at most two stalls share one round trip.
    assert len(slow) >= link.stats.stalls / 2


def test_no_loss_means_no_stall() -> None:
    link, times = asyncio.run(round_trips({}))
    assert link.stats.stalls == 0
    assert sorted(times)[len(times) // 2] < STALL_MS


@pytest.mark.parametrize("bad", [-1.0, 100.5])
def test_loss_out_of_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="loss_pct"):
        FaultLink("127.0.0.1", 1, loss_pct=bad)
