"""The studies' sales workload: 1-3 lines over 500 SKUs, integer quantities (1-5) and prices
(50-4999 cents), drawn from ``random.Random(42)``; the same for lanesync and its baseline."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from lanesync.bench.load import seeded
from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.ids import Sku
from lanesync.shell.terminal import BodyBuilder

SEED = 42
SKU_COUNT = 500
TERMINAL = "lane1"  # raw pycrdt keys its sales like lanesync's record ids: "lane1:<seq>"

Line = tuple[str, int, int]  # sku, qty, unit price in cents
SaleLines = tuple[Line, ...]


def make_workload(count: int) -> list[SaleLines]:
    """``count`` sales of 1-3 lines over ~500 SKUs, integer quantities and prices, seeded."""
    rng = seeded(SEED)
    skus = [f"sku-{i:03d}" for i in range(SKU_COUNT)]
    prices = {sku: rng.randrange(50, 5_000) for sku in skus}
    sales: list[SaleLines] = []
    for _ in range(count):
        picked = rng.sample(skus, rng.randint(1, 3))
        sales.append(tuple((sku, rng.randint(1, 5), prices[sku]) for sku in picked))
    return sales


def sale_builders(workload: Sequence[SaleLines]) -> list[BodyBuilder]:
    """The lanesync path a cashier's request takes: explicit prices, checked by build_sale."""
    return [
        partial(build_sale, requests=[LineRequest(Sku(s), q, u) for s, q, u in lines])
        for lines in workload
    ]
