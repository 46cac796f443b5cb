"""Many stores' work on one loop: in arrival order, the loop's other callbacks in between."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from lanesync.shell.turns import Turn, Turns


def test_work_runs_in_order_a_slice_per_iteration_with_the_loop_between() -> None:
    order: list[str] = []

    def work(name: str) -> None:
        order.append(name)
        time.sleep(0.02)  # a store's merge: ~20 ms each, 3 of them fill a 50 ms slice

    async def main() -> None:
        turns = Turns(slice_s=0.05)
        for n in range(8):
            turns.soon(lambda n=n: work(f"store{n}"), Turn.MERGE)
        # The network's callback, ready behind them: it must not wait for all eight (eight
        # callbacks of their own would all run first).
        asyncio.get_running_loop().call_soon(order.append, "network")
        for _ in range(20):
            await asyncio.sleep(0.02)

    asyncio.run(main())

    stores = [name for name in order if name != "network"]
    assert stores == [f"store{n}" for n in range(8)]
    assert 1 <= order.index("network") <= 4  # after a slice's worth, not after all eight


def test_work_that_raises_is_logged_and_the_rest_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    done: list[int] = []

    def broken() -> None:
        raise RuntimeError("a store's bug")

    async def main() -> None:
        turns = Turns()
        turns.soon(broken, Turn.MERGE)
        turns.soon(lambda: done.append(1), Turn.MERGE)
        await asyncio.sleep(0.01)
        turns.soon(lambda: done.append(2), Turn.QUICK)  # the pump starts again after it ran dry
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.ERROR, logger="lanesync.cloud"):
        asyncio.run(main())

    assert done == [1, 2]
    assert "turn.failed" in caplog.text


def test_quick_work_then_merges_then_catch_up_slices_one_of_them_every_iteration() -> None:
    order: list[str] = []

    async def main() -> None:
        turns = Turns(slice_s=0.0)  # the slice is over after each piece of work
        for n in range(2):
            turns.soon(lambda n=n: order.append(f"slice{n}"), Turn.CATCH_UP)
        for n in range(3):
            turns.soon(lambda n=n: order.append(f"merge{n}"), Turn.MERGE)
        turns.soon(lambda: order.append("handshake"), Turn.QUICK)
        for _ in range(10):
            await asyncio.sleep(0)

    asyncio.run(main())

    # Each iteration: the first piece by priority, then (the slice being over) one catch-up
    # slice if none ran yet: a large upload moves on every iteration, small ones go first.
    assert order == ["handshake", "slice0", "merge0", "slice1", "merge1", "merge2"]
