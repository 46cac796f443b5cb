"""The dashboard's routes (``lanesync.shell.dashboard``) on a real terminal, called in-process.

The page and its two files need no token and carry no store data; ``GET /v1/dashboard`` needs
the token and answers the store's business day in the store's time zone. The files themselves
are checked for what the page promises: no resource from elsewhere (it works without internet),
no inline script (the Content-Security-Policy forbids it), no data put in as HTML, and every
element the script looks up is on the page. tests/mesh/test_dashboard.py runs it in Chromium.
"""

from __future__ import annotations

import asyncio
import re
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from lanesync.core.identity import Role
from lanesync.shell.dashboard import (
    ASSET_DIRECTORY,
    ASSET_PATH,
    CONTENT_SECURITY_POLICY,
    Asset,
    dashboard_router,
)
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.http import install_common
from lanesync.shell.terminal import Terminal

TOKEN = "the-token"  # noqa: S105 - a test token
# 11:30 UTC on 1 March 2026 is already 2 March in Auckland (UTC+13 in its summer).
NOW = datetime(2026, 3, 1, 11, 30, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "src" / "lanesync" / "shell" / ASSET_DIRECTORY


def make_app(terminal: Terminal) -> FastAPI:
    app = FastAPI()
    install_common(app, TOKEN)
    app.include_router(dashboard_router(terminal))
    return app


def serve(terminal: Terminal, method: str, path: str, **kwargs: Any) -> httpx.Response:
    app = make_app(terminal)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://lane.test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


@pytest.fixture(params=["UTC", "Pacific/Auckland"])
def terminal(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    store = StoreDirectory.init(tmp_path / "store", "s1", request.param)
    path = tmp_path / "lane1"
    store.enroll(path, "lane1", Role.MANAGER, NOW_MS, 30)
    opened = Terminal.open(path, lock_wait_s=1.0, clock=lambda: NOW_MS)
    try:
        yield opened
    finally:
        opened.close()


def test_the_page_and_its_files_need_no_token_and_forbid_other_sources(
    terminal: Terminal,
) -> None:
    for path, asset in [
        ("/", Asset.PAGE),
        (ASSET_PATH + "dashboard.js", Asset.SCRIPT),
        (ASSET_PATH + "dashboard.css", Asset.STYLE),
    ]:
        response = serve(terminal, "GET", path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == asset.media_type
        assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.content == (ASSETS / asset.file_name).read_bytes()
        # No store data in what anyone may fetch: not even which lane or store this is.
        assert b"lane1" not in response.content
        assert b"s1" not in response.content


def test_the_business_day_needs_the_token_and_follows_the_store_time_zone(
    terminal: Terminal,
) -> None:
    refused = serve(terminal, "GET", "/v1/dashboard")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    wrong = serve(terminal, "GET", "/v1/dashboard", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    answer = serve(terminal, "GET", "/v1/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    zone = terminal.directory.store.timezone
    expected = {"UTC": "2026-03-01", "Pacific/Auckland": "2026-03-02"}[zone]
    assert answer.json() == {"business_day": expected, "time_zone": zone, "now_ms": NOW_MS}


def test_the_openapi_document_lists_the_data_route_with_its_token_and_not_the_page(
    terminal: Terminal,
) -> None:
    paths = make_app(terminal).openapi()["paths"]
    assert paths["/v1/dashboard"]["get"]["security"] == [{"bearer": []}]
    assert "401" in paths["/v1/dashboard"]["get"]["responses"]
    assert not [p for p in paths if p == "/" or p.startswith(ASSET_PATH)]


def test_the_page_loads_nothing_from_elsewhere_and_runs_no_inline_script() -> None:
    page = (ASSETS / "index.html").read_text()
    for asset in Asset:
        text = (ASSETS / asset.file_name).read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), asset
    assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/dashboard/dashboard.js" defer>']
    assert re.findall(r"<link\b[^>]*stylesheet[^>]*>", page) == [
        '<link rel="stylesheet" href="/dashboard/dashboard.css">'
    ]
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", page, re.I), "an inline event handler"


def test_the_script_puts_data_in_as_text_and_finds_every_element_it_names() -> None:
    script = (ASSETS / "dashboard.js").read_text()
    page = (ASSETS / "index.html").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink
    # The token goes into a header, never into an address or a cookie.
    assert "localStorage" not in script
    assert "document.cookie" not in script
    assert not re.search(r"[?&]token=", script)
    ids_on_page = set(re.findall(r'\bid="([^"]+)"', page))
    named = set(re.findall(r'\$\("([^"]+)"\)', script))
    named |= set(re.findall(r'\b(?:text|note|fill)\(\s*"([^"]+)"', script))
    assert named, "the script names no element"
    assert named <= ids_on_page, named - ids_on_page


def test_the_files_are_package_data() -> None:
    """An installed lanesync (not this checkout) serves the page: pyproject ships the files."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    shipped = project["tool"]["setuptools"]["package-data"]["lanesync"]
    assert f"shell/{ASSET_DIRECTORY}/*" in shipped
    assert {p.name for p in ASSETS.iterdir()} == {a.file_name for a in Asset}
