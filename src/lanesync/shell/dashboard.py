"""The store dashboard: ``GET /`` of every lane's API, for a store manager in a browser.

The page, its script and its style sheet carry no store data and need no token: they are files
shipped inside the package (``lanesync/shell/dashboard_assets/``, package-data), served as they are,
with no CDN and no build step. Everything the page shows comes from the token-protected routes
of the API, which the script calls with ``Authorization: Bearer``; the token is typed into the
page's login form and kept in the tab's ``sessionStorage``, never in a URL.

The one route of its own, ``GET /v1/dashboard``, tells the page what it cannot know by itself:
the store's business day right now, in the store's time zone (a browser may run on another
clock or zone), so that "today's sales" means the store's day.

Every answer of the page's files forbids what the page does not need (``Content-Security-
Policy``): no script or style but these files, no frame around it, no connection but to this
lane. A script that put data into the page as HTML could not run anything it carried.
"""

from __future__ import annotations

import enum
from importlib import resources
from zoneinfo import ZoneInfo

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel, Field

from lanesync.core.hlc import Hlc
from lanesync.shell.http import RequireToken
from lanesync.shell.terminal import Terminal

ASSET_DIRECTORY = "dashboard_assets"  # beside this module; listed in pyproject's package-data
ASSET_PATH = "/dashboard/"

# The page's own files and nothing else; `data:` only for the empty favicon the page names
# (else the browser asks for /favicon.ico, a 404 in the lane's log on every load).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
)


class Asset(enum.Enum):
    """The dashboard's files: value = (file name in the package, media type)."""

    PAGE = ("index.html", "text/html; charset=utf-8")
    SCRIPT = ("dashboard.js", "text/javascript; charset=utf-8")
    STYLE = ("dashboard.css", "text/css; charset=utf-8")

    @property
    def file_name(self) -> str:
        return self.value[0]

    @property
    def media_type(self) -> str:
        return self.value[1]

    def read(self) -> bytes:
        here = resources.files("lanesync.shell")
        return here.joinpath(ASSET_DIRECTORY, self.file_name).read_bytes()


SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the installed version only; a reload after an upgrade must not
    # keep the old script beside a new page.
    "Cache-Control": "no-cache",
}


class DashboardOut(BaseModel):
    business_day: str = Field(
        description="The store-local day a record written now belongs to (YYYY-MM-DD).",
        examples=["2026-12-07"],
    )
    time_zone: str = Field(description="The store's time zone.", examples=["Europe/Paris"])
    now_ms: int = Field(description="The lane's clock (ms since the epoch).")


def business_day(terminal: Terminal) -> str:
    """The store-local day (``YYYY-MM-DD``) a record written now would belong to."""
    zone = ZoneInfo(terminal.directory.store.timezone)
    return Hlc(terminal.now_ms(), 0).business_day(zone)


def dashboard_router(terminal: Terminal) -> APIRouter:
    """``GET /``, its two files under ``/dashboard/``, and ``GET /v1/dashboard``."""
    router = APIRouter()
    # Read once: the files are part of the installed package and do not change under it.
    bodies = {asset: asset.read() for asset in Asset}

    def serve(asset: Asset) -> Response:
        return Response(bodies[asset], media_type=asset.media_type, headers=SECURITY_HEADERS)

    @router.get("/", include_in_schema=False)
    async def page() -> Response:
        return serve(Asset.PAGE)

    @router.get(ASSET_PATH + Asset.SCRIPT.file_name, include_in_schema=False)
    async def script() -> Response:
        return serve(Asset.SCRIPT)

    @router.get(ASSET_PATH + Asset.STYLE.file_name, include_in_schema=False)
    async def style() -> Response:
        return serve(Asset.STYLE)

    @router.get("/v1/dashboard", tags=["reads"], response_model=DashboardOut)
    async def get_dashboard(_: RequireToken) -> DashboardOut:
        """What the dashboard page cannot know by itself: the store's business day now, the
        store's time zone, and the lane's clock (to show "heard 3 s ago" right)."""
        return DashboardOut(
            business_day=business_day(terminal),
            time_zone=terminal.directory.store.timezone,
            now_ms=terminal.now_ms(),
        )

    return router
