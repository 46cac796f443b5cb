"""What every lanesync HTTP API shares (``lanesync.shell.http``): the bearer token, and JSON
errors whatever bytes the client sends.

The app under test is a real FastAPI app set up by ``install_common`` with routes that need the
token and one that does not, called in-process through httpx's ASGI transport.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, StrictInt

from lanesync.shell.http import RequireToken, install_common

TOKEN = "the-token"  # noqa: S105 - a test token


class Count(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    qty: StrictInt


def worker_threads() -> set[int]:
    return {t.ident or 0 for t in threading.enumerate() if t.name.startswith("AnyIO worker")}


def make_app() -> FastAPI:
    app = FastAPI()
    install_common(app, TOKEN)

    @app.post("/v1/counts", status_code=201)
    async def post_count(body: Count, _: RequireToken) -> dict[str, int]:
        return {"qty": body.qty}

    @app.post("/v1/echo")
    async def post_echo(body: Count) -> dict[str, int]:  # no token: the body decides
        return {"qty": body.qty}

    @app.get("/v1/open")
    async def get_open() -> dict[str, bool]:
        return {"open": True}

    @app.get("/v1/workers")
    async def get_workers(_: RequireToken) -> dict[str, list[int]]:
        return {"workers": sorted(worker_threads())}

    return app


def request(method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to a fresh app; an exception escaping the app comes back as the 500 a
    server would send, not raised, so a test sees what a client would see."""

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=make_app(), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(call())


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


# Header values as a server hands them to the app: any byte but CR, LF and NUL may occur (RFC
# 9110 section 5.5 allows obs-text, 0x80-0xFF); Starlette decodes them as latin-1.
NON_ASCII_AUTH = [
    b"Bearer caf\xe9",
    b"Bearer " + "caf\u00e9".encode(),
    b"Bearer " + TOKEN.encode() + b"\xff",
    b"B\xe9arer " + TOKEN.encode(),
    b"\xff",
]


@pytest.mark.parametrize("value", NON_ASCII_AUTH)
def test_a_non_ascii_authorization_header_is_a_json_401(value: bytes) -> None:
    response = request("POST", "/v1/counts", json={"qty": 1}, headers={"Authorization": value})
    assert_unauthorized(response)


def test_the_token_still_opens_the_route() -> None:
    response = request("POST", "/v1/counts", json={"qty": 3}, headers=bearer(TOKEN))
    assert response.status_code == 201, response.text
    assert response.json() == {"qty": 3}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_checking_the_token_starts_no_worker_thread() -> None:
    # FastAPI runs a synchronous dependency in an AnyIO worker thread; such threads are not
    # daemon threads and have kept a daemon that was failing from exiting. The route reports
    # the worker threads alive while it runs (one started for the dependency idles for 10 s).
    before = worker_threads()
    response = request("GET", "/v1/workers", headers=bearer(TOKEN))
    assert response.status_code == 200, response.text
    assert set(response.json()["workers"]) <= before
