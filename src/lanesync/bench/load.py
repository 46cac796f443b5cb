"""The load generator: sales rung on the members through their HTTP API.

Open loop (``ring``): sale i is due at ``start + i / rate`` on member ``i mod n``, whether or not
earlier sales were answered, as customers keep coming whatever the store's computers do. A member
that is down refuses the sale (counted, never retried). Closed loop (``fill``): as fast as the
members answer, a few requests in flight per member, to build a day of sales before a scenario.

Baskets: 1-3 lines over 500 SKUs, quantities 1-5, explicit unit prices 50-4999 cents (integers),
drawn from a seeded ``random.Random`` (the same basket sequence for every system).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lanesync.bench.cluster import Cluster, Member
from lanesync.bench.httpio import HttpError

SKU_COUNT = 500
START_DELAY_S = 0.2
FILL_IN_FLIGHT = 4


@dataclass(slots=True)
class ScheduledSale:
    member: str
    scheduled_ns: int
    issued_ns: int = 0
    done_ns: int = 0
    sender: str = ""
    seq: int = 0
    error: str | None = None

    @property
    def acked(self) -> bool:
        return self.error is None and self.seq > 0


def seeded(seed: int) -> random.Random:
    """The workload's generator (baskets, restart schedules): reproducible, not crypto."""
    return random.Random(seed)  # noqa: S311


def basket(rng: random.Random) -> dict[str, Any]:
    return {
        "lines": [
            {
                "sku": f"sku-{rng.randrange(SKU_COUNT):03d}",
                "qty": rng.randint(1, 5),
                "unit_price": rng.randint(50, 4999),
            }
            for _ in range(rng.randint(1, 3))
        ]
    }


async def _post(member: Member | None, sale: ScheduledSale, body: dict[str, Any]) -> None:
    sale.issued_ns = time.time_ns()
    if member is None or member.api is None:
        sale.error = "member down"
        sale.done_ns = sale.issued_ns
        return
    try:
        reply = await member.api.request("POST", "/v1/sales", body, timeout_s=30)
    except HttpError as exc:
        sale.error = str(exc)
    else:
        if reply.status == 201 and isinstance(reply.body, dict):
            sender, _, seq = str(reply.body.get("sale_id", "")).rpartition(":")
            if seq.isdigit():
                sale.sender, sale.seq = sender, int(seq)
            else:
                sale.error = f"no sale id in {reply.body!r}"
        else:
            sale.error = f"HTTP {reply.status}: {str(reply.body)[:200]}"
    sale.done_ns = time.time_ns()


async def ring(
    cluster: Cluster,
    names: Sequence[str],
    rate: float,
    count: int,
    rng: random.Random,
    on_done: Callable[[ScheduledSale], None] | None = None,
) -> list[ScheduledSale]:
    """``count`` sales at ``rate`` per second in total, round-robin over ``names``."""
    loop = asyncio.get_running_loop()
    start_ns = time.time_ns() + int(START_DELAY_S * 1e9)
    t0 = loop.time() + START_DELAY_S
    sales: list[ScheduledSale] = []
    tasks: list[asyncio.Task[None]] = []

    async def one(sale: ScheduledSale, body: dict[str, Any]) -> None:
        await _post(cluster.members.get(sale.member), sale, body)
        if on_done is not None:
            on_done(sale)

    i = 0
    while i < count:
        now = loop.time()
        due = min(count, int((now - t0) * rate) + 1) if now >= t0 else 0
        while i < due:
            sale = ScheduledSale(names[i % len(names)], start_ns + int(i / rate * 1e9))
            sales.append(sale)
            tasks.append(loop.create_task(one(sale, basket(rng))))
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
    await asyncio.gather(*tasks)
    return sales


async def fill(
    cluster: Cluster,
    names: Sequence[str],
    count: int,
    rng: random.Random,
    on_done: Callable[[ScheduledSale], None] | None = None,
) -> list[ScheduledSale]:
    """``count`` sales as fast as the members answer (closed loop)."""
    sales: list[ScheduledSale] = []
    queue = iter(range(count))

    async def worker(name: str) -> None:
        for _ in queue:
            sale = ScheduledSale(name, time.time_ns())
            sales.append(sale)
            await _post(cluster.members.get(name), sale, basket(rng))
            if on_done is not None:
                on_done(sale)

    await asyncio.gather(*(worker(n) for n in names for _ in range(FILL_IN_FLIGHT)))
    return sales
