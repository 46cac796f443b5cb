"""The read routes of the local HTTP API: health, the sales journal, the price catalog.

Every route here but ``GET /v1/health`` needs the bearer token, like every other route of the
API (``RequireToken``): the journal and the catalog are the store's data. Health says only
that the process answers, so a supervisor or a load balancer may ask it without the token; it
reads no state, so it stays cheap however busy the lane is.

The answers are the pure core's (``core.journal``, ``core.reports``); bad parameters are 400
``bad_request`` (or ``invalid_request`` when they are not even of the right type), an unknown
sale or SKU is 404 ``not_found``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lanesync.core import reports
from lanesync.core.ids import sku as parse_sku
from lanesync.core.journal import MAX_LIMIT, SalesJournal, SalesQuery, check_limit
from lanesync.shell.http import RequireToken
from lanesync.shell.terminal import Terminal

# -- what the routes answer (the OpenAPI document shows these shapes) ----------------------------


class SoldLine(BaseModel):
    sku: str
    qty: int
    unit_cents: int = Field(description="Integer minor units (cents)")


class SaleRead(BaseModel):
    id: str = Field(description="TERMINAL:SEQ, e.g. lane1:5")
    terminal: str
    seq: int
    at_ms: int = Field(description="The sale's timestamp: HLC wall ms since the epoch")
    day: str = Field(description="Store-local business day, YYYY-MM-DD")
    lines: list[SoldLine]
    total_cents: int
    voided: bool
    void_id: str | None = Field(description="The void that credited it back, if any")


class SalesPage(BaseModel):
    sales: list[SaleRead] = Field(description="Oldest first, newest last")
    next_cursor: str | None = Field(description="null: the listing is complete")


class PriceRead(BaseModel):
    sku: str
    unit_cents: int
    set_by: str = Field(description="The terminal that set it")
    at_ms: int = Field(description="When (HLC wall ms)")


class Catalog(BaseModel):
    prices: list[PriceRead]


class Health(BaseModel):
    ok: bool


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "Not held on this terminal (error code not_found)"}
}


def reads_router(terminal: Terminal) -> APIRouter:
    router = APIRouter(tags=["reads"])
    reading = asyncio.Lock()

    async def journal() -> SalesJournal:
        """The journal, read a slice at a time on first use, letting the loop answer sales
        and peers in between (the first listing of 100k sales reads for up to 2 s)."""
        async with reading:
            for _ in terminal.journal_scan():
                await asyncio.sleep(0)
        return terminal.journal

    @router.get("/v1/health", response_model=Health)
    async def get_health() -> dict[str, bool]:
        """Token-free: the process answers. Reads nothing."""
        return {"ok": True}

    @router.get("/v1/sales", response_model=SalesPage)
    async def get_sales(
        _: RequireToken,
        since: Annotated[
            int | None, Query(description="Only sales stamped after this (HLC wall ms)")
        ] = None,
        day: Annotated[str | None, Query(description="Store-local day, YYYY-MM-DD")] = None,
        terminal_id: Annotated[
            str | None, Query(alias="terminal", description="Only sales of this terminal")
        ] = None,
        limit: Annotated[
            int | None, Query(description=f"Sales per page, 1-{MAX_LIMIT}; default 100")
        ] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    ) -> JSONResponse:
        """Sales that count here, oldest first (newest last), a page at a time: follow
        ``next_cursor`` until it is null to see every sale exactly once, even while sales
        arrive (those arriving meanwhile come after the ones held when the listing started)."""
        query = SalesQuery.of(since, day, terminal_id)
        # Built from plain values by the core: sent as they are (FastAPI's validation of a
        # page against SalesPage cost more than building it).
        page = (await journal()).page(query, check_limit(limit), cursor)
        return JSONResponse(page)

    @router.get("/v1/sales/{sale_id}", response_model=SaleRead, responses=NOT_FOUND)
    async def get_sale(sale_id: str, _: RequireToken) -> dict[str, Any]:
        """One sale: its lines, total, and whether (and by which record) it was voided."""
        return (await journal()).sale(sale_id)

    @router.get("/v1/prices", response_model=Catalog)
    async def get_prices(_: RequireToken) -> dict[str, Any]:
        """The catalog: each SKU's price in force, who set it and when."""
        return reports.prices(terminal.replica)

    # {sku:path}: a SKU may hold "/", which a client sends as %2F
    @router.get("/v1/prices/{sku:path}", response_model=PriceRead, responses=NOT_FOUND)
    async def get_price(sku: str, _: RequireToken) -> dict[str, Any]:
        return reports.price(terminal.replica, parse_sku(sku))

    return router
