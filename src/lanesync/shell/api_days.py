"""The local API's business-day routes: closing days, the store's Z-report, the list of days,
one day's check and bundle.

``POST /v1/close`` signs the day-ends of this lane's open days (``core.dayclose``) through the
group committer, like any write (403 ``terminal_revoked`` on a revoked lane); the reads fold the
replica's records (``core.zreport``), or answer a sealed day from what was stored when it was
sealed (its report, its archive: ``core.sealcheck``). Shapes are in docs/reference/http.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from lanesync.core import zreport
from lanesync.core.records import DayEnd
from lanesync.shell.apidoc import raw_body
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.http import RequireToken
from lanesync.shell.terminal import Terminal


class CloseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    day: StrictStr | None = Field(
        default=None, description="Close up to this day (YYYY-MM-DD); omitted: today, store time."
    )


class CloseOut(BaseModel):
    closed: list[str] = Field(description="The days this call closed (none: all were closed).")


DAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "Not a day, YYYY-MM-DD (error code bad_request)"},
    404: {"description": "This lane holds no ledger of the day (error code not_found)"},
}
CLOSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "This terminal is revoked (error code terminal_revoked)"}
}


def days_router(terminal: Terminal, committer: GroupCommitter) -> APIRouter:
    """The routes over ``terminal``, whose writes go through ``committer`` (and from its
    publisher to the peers)."""
    router = APIRouter()

    @router.post(
        "/v1/close",
        status_code=201,
        response_model=CloseOut,
        tags=["writes"],
        responses=CLOSE_RESPONSES,
    )
    async def post_close(_: RequireToken, body: CloseIn | None = None) -> CloseOut:
        """Close this lane's open business days up to ``day`` (default today, store time):
        one signed day-end record each, empty days included. Closing again is a no-op."""
        until = None if body is None else body.day
        if until is not None:
            zreport.check_day(until)
        records = await committer.close_days(until)
        return CloseOut(closed=[r.body.day for r in records if isinstance(r.body, DayEnd)])

    @router.get("/v1/reports", tags=["reads"])
    async def get_last_report(_: RequireToken) -> dict[str, Any]:
        """The store's Z-report of the last day this lane closed (400 when it closed none)."""
        return terminal.z_report(zreport.default_day(terminal.replica))

    @router.get("/v1/reports/{day}", tags=["reads"])
    async def get_report(day: str, _: RequireToken) -> dict[str, Any]:
        """The store's Z-report of ``day`` (YYYY-MM-DD) from the records this lane holds; of
        a sealed day, the report stored when it was sealed (``sealed`` true, and ``amended``
        with ``amended_from`` when a late record opened it again before)."""
        day = zreport.check_begun(terminal.replica, day, terminal.now_ms())
        return terminal.z_report(day)

    @router.get("/v1/days", tags=["reads"])
    async def get_days(_: RequireToken) -> dict[str, Any]:
        """Every business day this lane holds, open, closed or sealed, with its report's
        hash."""
        return zreport.days(terminal.replica)

    @router.get("/v1/days/{day}/verify", tags=["reads"], responses=DAY_RESPONSES)
    async def get_day_verify(day: str, _: RequireToken) -> dict[str, Any]:
        """Check one day (``lanesync verify --day``): a sealed day's archive against its
        signature and description, its records' signatures and its report; every day's
        day-end findings. ``ok`` false lists the ``problems``."""
        return terminal.verify_day(zreport.check_day(day))

    @router.post(
        "/v1/days/{day}/export",
        tags=["bundles"],
        response_class=Response,
        responses=DAY_RESPONSES,
        openapi_extra=raw_body(
            "The state vector of what the caller holds (none: the whole day)", required=False
        ),
    )
    async def post_day_export(day: str, request: Request, _: RequireToken) -> Response:
        """A signed bundle of one day's ledger document (from its archive when sealed), as
        ``POST /v1/export`` makes of everything (``lanesync export --day``)."""
        since = await request.body()
        bundle = terminal.export_day(zreport.check_day(day), since or None)
        return Response(bundle, media_type="application/octet-stream")

    return router
