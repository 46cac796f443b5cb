"""The local API's business-day routes: closing days, the store's Z-report, the list of days.

``POST /v1/close`` signs the day-ends of this lane's open days (``core.dayclose``) through the
group committer, like any write (403 ``terminal_revoked`` on a revoked lane); the reads fold the
replica's records (``core.zreport``). Shapes are in docs/reference/http-api.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from lanesync.core import zreport
from lanesync.core.records import DayEnd
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
        return zreport.z_report(terminal.replica, zreport.default_day(terminal.replica))

    @router.get("/v1/reports/{day}", tags=["reads"])
    async def get_report(day: str, _: RequireToken) -> dict[str, Any]:
        """The store's Z-report of ``day`` (YYYY-MM-DD) from the records this lane holds."""
        return zreport.z_report(terminal.replica, zreport.check_day(day))

    @router.get("/v1/days", tags=["reads"])
    async def get_days(_: RequireToken) -> dict[str, Any]:
        """Every business day this lane holds, open or closed, with its report's hash."""
        return zreport.days(terminal.replica)

    return router
