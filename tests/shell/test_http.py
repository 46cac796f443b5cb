"""What every lanesync HTTP API shares (``lanesync.shell.http``): the bearer token, checked
before the body is read, and JSON errors whatever bytes the client sends.

The app under test is a real FastAPI app set up by ``install_common`` with one route that needs
the token and one that does not, called in-process (ASGI): through httpx's ASGI transport, or
directly with a ``receive`` that counts how often the app asked for the body.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, ConfigDict, StrictInt
from starlette.types import Message

from lanesync.shell.http import MAX_JSON_BODY, RequireToken, install_common

TOKEN = "the-token"  # noqa: S105 - a test token
MALFORMED = b'{"qty": '


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

    # Routes of included routers (each helper module of an API has its own), with and
    # without a prefix: FastAPI keeps them behind one entry of the app's routes.
    routed = APIRouter()

    @routed.post("/counts", status_code=201)
    async def post_routed(body: Count, _: RequireToken) -> dict[str, int]:
        return {"qty": body.qty}

    @routed.get("/open")
    async def get_routed_open() -> dict[str, bool]:
        return {"open": True}

    app.include_router(routed, prefix="/v2")
    plain = APIRouter()

    @plain.post("/v1/routed", status_code=201)
    async def post_plain(body: Count, _: RequireToken) -> dict[str, int]:
        return {"qty": body.qty}

    app.include_router(plain)
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


@pytest.mark.parametrize(
    ("what", "content"),
    [("malformed JSON", MALFORMED), ("over the body limit", b"x" * (MAX_JSON_BODY + 1))],
)
@pytest.mark.parametrize("headers", [{}, bearer("wrong")], ids=["no token", "wrong token"])
def test_without_the_token_the_body_does_not_matter(
    what: str, content: bytes, headers: dict[str, str]
) -> None:
    json_headers = {**headers, "Content-Type": "application/json"}
    response = request("POST", "/v1/counts", content=content, headers=json_headers)
    assert_unauthorized(response)


def test_with_the_token_the_body_is_judged() -> None:
    json_headers = {**bearer(TOKEN), "Content-Type": "application/json"}
    response = request("POST", "/v1/counts", content=MALFORMED, headers=json_headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_request"


async def call_raw(
    app: FastAPI, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes
) -> tuple[int, int]:
    """Call the app as a server would; the status it answered and how often it read the body."""
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"api.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return int(start["status"]), reads


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Bearer wrong")], [(b"authorization", b"Bearer \xe9")]],
    ids=["no token", "wrong token", "non-ascii token"],
)
@pytest.mark.parametrize("path", ["/v1/counts", "/v2/counts"])
def test_the_token_is_checked_before_the_body_is_read(
    headers: list[tuple[bytes, bytes]], path: str
) -> None:
    # A client without the token must not make the server read (or wait for) its body.
    length = [(b"content-type", b"application/json"), (b"content-length", b"8")]
    status, reads = asyncio.run(call_raw(make_app(), "POST", path, headers + length, MALFORMED))
    assert (status, reads) == (401, 0)


@pytest.mark.parametrize("path", ["/v1/routed", "/v2/counts"])
def test_a_route_of_an_included_router_is_checked_before_its_body_is_read(path: str) -> None:
    length = [(b"content-type", b"application/json"), (b"content-length", b"8")]
    status, reads = asyncio.run(call_raw(make_app(), "POST", path, length, MALFORMED))
    assert (status, reads) == (401, 0)
    token = [(b"authorization", f"Bearer {TOKEN}".encode())]
    status, reads = asyncio.run(call_raw(make_app(), "POST", path, token + length, MALFORMED))
    assert (status, reads) == (400, 1)
    response = request("POST", path, json={"qty": 2}, headers=bearer(TOKEN))
    assert (response.status_code, response.json()) == (201, {"qty": 2})
    assert request("GET", "/v2/open").json() == {"open": True}  # no token needed there


def test_the_openapi_document_says_which_routes_need_the_token() -> None:
    paths = make_app().openapi()["paths"]
    for path in ("/v1/counts", "/v1/workers", "/v1/routed", "/v2/counts"):
        (operation,) = paths[path].values()
        assert operation["security"] == [{"bearer": []}], path
        assert "401" in operation["responses"], path
    for path in ("/v1/echo", "/v1/open", "/v2/open"):
        (operation,) = paths[path].values()
        assert "security" not in operation, path
    assert "422" not in paths["/v2/counts"]["post"]["responses"]


def test_routes_without_the_token_dependency_read_the_body() -> None:
    # The dependency on the route decides; a route without it is not answered 401.
    length = [(b"content-type", b"application/json"), (b"content-length", b"8")]
    status, reads = asyncio.run(call_raw(make_app(), "POST", "/v1/echo", length, MALFORMED))
    assert (status, reads) == (400, 1)
    status, reads = asyncio.run(call_raw(make_app(), "GET", "/v1/open", [], b""))
    assert status == 200


def test_checking_the_token_starts_no_worker_thread() -> None:
    # FastAPI runs a synchronous dependency in an AnyIO worker thread; such threads are not
    # daemon threads and have kept a daemon that was failing from exiting. The route reports
    # the worker threads alive while it runs (one started for the dependency idles for 10 s).
    before = worker_threads()
    response = request("GET", "/v1/workers", headers=bearer(TOKEN))
    assert response.status_code == 200, response.text
    assert set(response.json()["workers"]) <= before
