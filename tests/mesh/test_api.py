"""The local HTTP API of a running daemon, and the CLI that routes through it.

One manager terminal ``m`` (milk priced 100, 1000 received) serves the API; a cashier terminal
``c`` dials it, so both have a peer. Every refusal is a 4xx JSON ``{"error": {"code",
"message"}}`` (never a 500) and changes nothing: the digest and the record count of ``m`` are
the same before and after.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from lanesync.core.identity import DOMAIN_REVOCATION, Role, sign
from lanesync.core.records import MAX_LINES, MAX_REASON
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.eventloop import LoopChoice, choose_loop, run_on
from lanesync.shell.http import MAX_JSON_BODY
from lanesync.shell.server import bind_socket

from .cluster import ENV, Cluster, Daemon, wait_connected, wait_until

pytestmark = pytest.mark.slow

MILK_PRICE = 100
# Longer than uvicorn's default keep-alive timeout (5 s), shorter than the daemon's.
API_IDLE_PROBE_S = 6.0
MILK_RECEIVED = 1000

V1_PATHS = {
    "/v1/sales",
    "/v1/sales/{sale_id}/void",
    "/v1/stock/receive",
    "/v1/stock/adjust",
    "/v1/prices",
    "/v1/stock",
    "/v1/stock/{sku}",
    "/v1/status",
    "/v1/alerts",
    "/v1/verify",
    "/v1/digest",
    "/v1/state",
    "/v1/export",
    "/v1/import",
    "/v1/revocations",
    "/v1/chains/{terminal}",
    "/v1/forks/{terminal}",
    "/v1/fork-resolutions",
    "/v1/certificates",
    "/v1/events",
    "/v1/health",
    "/v1/sales/{sale_id}",
    "/v1/prices/{sku}",
    "/v1/dashboard",
    "/v1/close",
    "/v1/reports",
    "/v1/reports/{day}",
    "/v1/days",
}


@dataclass(frozen=True, slots=True)
class Shop:
    cluster: Cluster
    store: StoreDirectory
    m: Daemon  # manager, serves the API under test
    c: Daemon  # cashier, dials m
    offline: Path  # an enrolled cashier directory no daemon ever runs on


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    cluster = Cluster(tmp_path_factory.mktemp("api"))
    try:
        store = cluster.store()
        m_dir = cluster.enroll(store, "m", Role.MANAGER)
        c_dir = cluster.enroll(store, "c")
        offline = cluster.enroll(store, "o")
        m = cluster.start(m_dir)
        c = cluster.start(c_dir, [m.listen])
        m.set_price("milk", MILK_PRICE)
        m.receive("milk", MILK_RECEIVED)
        wait_connected(m, {"c"})
        wait_connected(c, {"m"})
        yield Shop(cluster, store, m, c, offline)
    finally:
        cluster.close()


def observable_state(daemon: Daemon) -> tuple[str, int, int]:
    """What must not change when a request is refused: digest, record count, own chain head."""
    status = daemon.status()
    return status["digest"], status["records"], daemon.chain_head(daemon.terminal_id)


def assert_json_error(response: httpx.Response, status: int | None = None) -> dict[str, Any]:
    where = f"{response.request.method} {response.request.url.path}"
    detail = f"{where}: {response.status_code} {response.text[:300]}"
    assert 400 <= response.status_code < 500, detail
    if status is not None:
        assert response.status_code == status, detail
    assert response.headers["content-type"].startswith("application/json"), detail
    body = response.json()
    assert set(body) == {"error"}, detail
    error = body["error"]
    assert isinstance(error, dict), detail
    assert isinstance(error["code"], str), detail
    assert error["code"], detail
    assert isinstance(error["message"], str), detail
    assert error["message"], detail
    return error


# -- authentication --------------------------------------------------------------------------------

WRITES: list[tuple[str, str, Any]] = [
    ("POST", "/v1/sales", {"lines": [{"sku": "milk", "qty": 1}]}),
    ("POST", "/v1/sales/m:1/void", None),
    ("POST", "/v1/stock/receive", {"sku": "milk", "qty": 1}),
    ("POST", "/v1/stock/adjust", {"sku": "milk", "delta": -1, "reason": "count"}),
    ("POST", "/v1/prices", {"sku": "milk", "unit_price": 1}),
    ("POST", "/v1/revocations", None),
    ("POST", "/v1/fork-resolutions", None),
    ("POST", "/v1/certificates", None),
    ("POST", "/v1/import", None),
    ("POST", "/v1/export", None),
    ("GET", "/v1/state", None),
]

# Raw header bytes, as they go on the wire.
BAD_AUTH: dict[str, dict[bytes, bytes]] = {
    "no header": {},
    "wrong token": {b"Authorization": b"Bearer not-the-token"},
    "empty bearer": {b"Authorization": b"Bearer"},
    "token of nothing": {b"Authorization": b"Bearer x"},
    "basic scheme": {b"Authorization": b"Basic bTpt"},
    # Bytes above 0x7F are legal in a header value (obs-text, RFC 9110 section 5.5).
    "latin-1 token": {b"Authorization": b"Bearer caf\xe9"},
    "utf-8 token": {b"Authorization": b"Bearer caf\xc3\xa9"},
}


@pytest.mark.parametrize("auth", sorted(BAD_AUTH))
@pytest.mark.parametrize(("method", "path", "body"), WRITES, ids=[w[1] for w in WRITES])
def test_writes_need_the_token(shop: Shop, auth: str, method: str, path: str, body: Any) -> None:
    before = observable_state(shop.m)
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as anonymous:
        response = anonymous.request(method, path, json=body, headers=BAD_AUTH[auth])
    error = assert_json_error(response, 401)
    assert error["code"] == "unauthorized"
    assert response.headers.get("www-authenticate") == "Bearer"
    assert observable_state(shop.m) == before


def test_the_token_with_a_non_ascii_byte_added_is_refused(shop: Shop) -> None:
    before = observable_state(shop.m)
    headers = {b"Authorization": b"Bearer " + shop.m.token.encode() + b"\xff"}
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as other:
        response = other.post("/v1/stock/receive", json={"sku": "milk", "qty": 5}, headers=headers)
    assert assert_json_error(response, 401)["code"] == "unauthorized"
    assert observable_state(shop.m) == before


@pytest.mark.parametrize("auth", ["no header", "wrong token", "latin-1 token"])
@pytest.mark.parametrize("path", [w[1] for w in WRITES if w[0] == "POST" and w[2] is not None])
def test_without_the_token_a_malformed_body_is_still_401(shop: Shop, auth: str, path: str) -> None:
    """The token is checked before the body is read: a client without it learns nothing about
    what the route accepts."""
    headers = {**BAD_AUTH[auth], b"Content-Type": b"application/json"}
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as anonymous:
        response = anonymous.post(path, content=b'{"sku": ', headers=headers)
    assert assert_json_error(response, 401)["code"] == "unauthorized"


def test_without_the_token_the_body_is_not_waited_for(shop: Shop) -> None:
    """Headers that announce a body which never comes: 401 at once, not a wait for the body."""
    host, port = shop.m.api.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST /v1/sales HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)  # socket.timeout (the test fails) if nothing comes
            assert chunk, head
            head += chunk
    assert head.startswith(b"HTTP/1.1 401 "), head[:300]


def test_token_of_another_terminal_is_refused(shop: Shop) -> None:
    before = observable_state(shop.m)
    headers = {"Authorization": f"Bearer {shop.c.token}"}
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as other:
        response = other.post("/v1/stock/receive", json={"sku": "milk", "qty": 5}, headers=headers)
    assert_json_error(response, 401)
    assert observable_state(shop.m) == before


def test_token_file_is_private(shop: Shop) -> None:
    mode = (shop.m.path / "api.token").stat().st_mode & 0o777
    assert mode == 0o600


def test_terminal_directory_and_database_are_private(shop: Shop) -> None:
    """The database holds every sale: only its owner may read it, and the -wal file SQLite
    creates beside it (it exists while the daemon, which has written, runs). There is no -shm
    file: the daemon holds the database in exclusive locking mode."""
    assert shop.m.path.stat().st_mode & 0o777 == 0o700
    for name in ("lanesync.db", "lanesync.db-wal"):
        assert (shop.m.path / name).stat().st_mode & 0o777 == 0o600, name
    assert not (shop.m.path / "lanesync.db-shm").exists()


# A value for each path parameter of a read route, so every read is asked for something real.
PATH_EXAMPLES = {
    "{sku}": "milk",
    "{terminal}": "m",
    "{sale_id}": "m:1",
    "{day}": "2026-12-07",
}
TOKEN_FREE = {"/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}


def read_routes(shop: Shop) -> list[str]:
    """Every GET route of the app (from its OpenAPI document, so a new one is covered)."""
    paths = []
    for path, operations in shop.m.get("/openapi.json")["paths"].items():
        if "get" in operations:
            for name, value in PATH_EXAMPLES.items():
                path = path.replace(name, value)
            assert "{" not in path, f"no example for the parameter of {path}"
            paths.append(path)
    return paths


@pytest.mark.parametrize("auth", ["no header", "wrong token", "basic scheme", "latin-1 token"])
def test_every_read_needs_the_token_but_health(shop: Shop, auth: str) -> None:
    """Reads show the store's sales, stock and peers: 401 without the token, like writes.
    Health (and the API's own description) hold no store data and need none."""
    routes = read_routes(shop)
    assert {"/v1/stock", "/v1/sales", "/v1/prices", "/metrics", "/v1/health"} <= set(routes)
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as anonymous:
        for path in routes:
            response = anonymous.get(path, headers=BAD_AUTH[auth])
            if path in TOKEN_FREE:
                assert response.status_code == 200, path
                continue
            assert assert_json_error(response, 401)["code"] == "unauthorized", path
            assert response.headers.get("www-authenticate") == "Bearer"
            # Streamed, so the change feed's answer (a stream that does not end) is only begun.
            with shop.m.client.stream("GET", path) as answer:
                assert answer.status_code != 401, path
        assert anonymous.get("/v1/health").json() == {"ok": True}
        assert anonymous.get("/openapi.json").status_code == 200
        assert anonymous.get("/docs").status_code == 200


def test_head_answers_like_get_without_a_body(shop: Shop) -> None:
    """Uptime monitors probe with HEAD: the same status and headers as GET, no body; the
    token rule holds; the change feed (a stream) stays GET-only."""
    with httpx.Client(base_url=shop.m.api, trust_env=False, timeout=15) as anonymous:
        for path in ("/v1/health", "/"):
            got, head = anonymous.get(path), anonymous.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.content == b""
            assert head.headers["content-type"] == got.headers["content-type"]
        assert anonymous.head("/v1/sales").status_code == 401
    listed = shop.m.client.head("/v1/sales")
    assert (listed.status_code, listed.content) == (200, b"")
    assert shop.m.client.head("/v1/events").status_code == 405


# -- bad input -------------------------------------------------------------------------------------


def line(**fields: Any) -> bytes:
    base: dict[str, Any] = {"sku": "milk", "qty": 1}
    base.update(fields)
    return json.dumps({"lines": [{k: v for k, v in base.items() if v is not ...}]}).encode()


BAD_SALES: dict[str, bytes] = {
    "malformed json": b'{"lines": [',
    "not json at all": b"\xff\xfe garbage",
    "empty body": b"",
    "null": b"null",
    "array": b"[]",
    "string": b'"milk"',
    "no lines": b"{}",
    "empty lines": b'{"lines": []}',
    "lines not a list": b'{"lines": "milk:1"}',
    "line not an object": b'{"lines": ["milk:1"]}',
    "extra top-level field": b'{"lines": [{"sku": "milk", "qty": 1}], "discount": 5}',
    "extra line field": line(discount=5),
    "qty as string": line(qty="2"),
    "qty as float": line(qty=1.5),
    "qty as integral float": line(qty=2.0),
    "qty as bool": line(qty=True),
    "qty null": line(qty=None),
    "qty missing": line(qty=...),
    "qty zero": line(qty=0),
    "qty negative": line(qty=-1),
    "qty over the maximum": line(qty=10**7),
    "qty beyond 64 bits": line(qty=2**70),
    "qty infinite": b'{"lines": [{"sku": "milk", "qty": 1e400}]}',
    "qty NaN": b'{"lines": [{"sku": "milk", "qty": NaN}]}',
    "price as string": line(unit_price="100"),
    "price as float": line(unit_price=1.25),
    "price negative": line(unit_price=-1),
    "price beyond 64 bits": line(unit_price=2**70),
    "sku missing": line(sku=...),
    "sku as number": line(sku=5),
    "sku empty": line(sku=""),
    "sku with space": line(sku="mi lk"),
    "sku with colon": line(sku="milk:2"),
    "sku with pipe": line(sku="milk|x"),
    "sku too long": line(sku="x" * 65),
    "sku non-ascii": line(sku="m\u00fclk"),
    "sku with NUL": line(sku="milk\u0000"),
    "unknown sku without price": line(sku="caviar"),
    "too many lines": json.dumps({"lines": [{"sku": "milk", "qty": 1}] * (MAX_LINES + 1)}).encode(),
    "deeply nested": b"[" * 50_000 + b"]" * 50_000,
    "invalid utf-8 in a string": b'{"lines": [{"sku": "\xff\xff", "qty": 1}]}',
}


@pytest.mark.parametrize("body", BAD_SALES.values(), ids=BAD_SALES.keys())
def test_bad_sale_is_refused(shop: Shop, body: bytes) -> None:
    before = observable_state(shop.m)
    response = shop.m.client.post(
        "/v1/sales", content=body, headers={"Content-Type": "application/json"}
    )
    assert_json_error(response)
    assert observable_state(shop.m) == before


BAD_WRITES: list[tuple[str, str, Any]] = [
    ("receive qty as string", "/v1/stock/receive", {"sku": "milk", "qty": "5"}),
    ("receive qty zero", "/v1/stock/receive", {"sku": "milk", "qty": 0}),
    ("receive qty negative", "/v1/stock/receive", {"sku": "milk", "qty": -3}),
    ("receive qty huge", "/v1/stock/receive", {"sku": "milk", "qty": 2**64}),
    ("receive bad sku", "/v1/stock/receive", {"sku": "../etc", "qty": 1}),
    ("receive extra field", "/v1/stock/receive", {"sku": "milk", "qty": 1, "by": "x"}),
    ("receive missing qty", "/v1/stock/receive", {"sku": "milk"}),
    ("adjust zero", "/v1/stock/adjust", {"sku": "milk", "delta": 0, "reason": "count"}),
    ("adjust huge", "/v1/stock/adjust", {"sku": "milk", "delta": -(2**70), "reason": "x"}),
    ("adjust no reason", "/v1/stock/adjust", {"sku": "milk", "delta": 1}),
    ("adjust blank reason", "/v1/stock/adjust", {"sku": "milk", "delta": 1, "reason": "  "}),
    (
        "adjust long reason",
        "/v1/stock/adjust",
        {"sku": "milk", "delta": 1, "reason": "r" * (MAX_REASON + 1)},
    ),
    ("adjust delta float", "/v1/stock/adjust", {"sku": "milk", "delta": 1.0, "reason": "x"}),
    ("price negative", "/v1/prices", {"sku": "milk", "unit_price": -5}),
    ("price as string", "/v1/prices", {"sku": "milk", "unit_price": "5"}),
    ("price huge", "/v1/prices", {"sku": "milk", "unit_price": 2**70}),
    ("price bad sku", "/v1/prices", {"sku": "", "unit_price": 5}),
    ("void unknown sale", "/v1/sales/m:9999/void", None),
    ("void other terminal unknown", "/v1/sales/zz:1/void", None),
    ("void malformed id", "/v1/sales/nonsense/void", None),
    ("void seq zero", "/v1/sales/m:0/void", None),
    ("void superscript seq", "/v1/sales/m:\u00b2/void", None),
    ("void a receipt", "/v1/sales/m:2/void", None),
]


@pytest.mark.parametrize(
    ("path", "body"), [(p, b) for _, p, b in BAD_WRITES], ids=[n for n, _, _ in BAD_WRITES]
)
def test_bad_write_is_refused(shop: Shop, path: str, body: Any) -> None:
    before = observable_state(shop.m)
    assert_json_error(shop.m.post(path, body))
    assert observable_state(shop.m) == before


BAD_BYTES: list[tuple[str, str, bytes]] = [
    ("revocation garbage", "/v1/revocations", b"garbage"),
    ("revocation empty", "/v1/revocations", b""),
    ("revocation random", "/v1/revocations", bytes(range(256)) * 2),
    ("fork resolution garbage", "/v1/fork-resolutions", b"garbage"),
    ("fork resolution empty", "/v1/fork-resolutions", b""),
    ("fork resolution random", "/v1/fork-resolutions", bytes(range(256)) * 2),
    ("certificate garbage", "/v1/certificates", b"garbage"),
    ("certificate empty", "/v1/certificates", b""),
    ("import garbage", "/v1/import", b"not a bundle"),
    ("import empty", "/v1/import", b""),
    ("export garbage state", "/v1/export", b"not a state file"),
]


@pytest.mark.parametrize(
    ("path", "body"), [(p, b) for _, p, b in BAD_BYTES], ids=[n for n, _, _ in BAD_BYTES]
)
def test_bad_bytes_are_refused(shop: Shop, path: str, body: bytes) -> None:
    before = observable_state(shop.m)
    assert_json_error(shop.m.client.post(path, content=body))
    assert observable_state(shop.m) == before


def test_revocation_of_another_store_is_refused(shop: Shop, tmp_path: Path) -> None:
    other = StoreDirectory.init(tmp_path / "other", "s1")  # same id, another authority
    other.enroll(tmp_path / "intruder", "c", Role.CASHIER, 0, 1)
    revocation = other.revoke("c", 1)
    before = observable_state(shop.m)
    assert_json_error(shop.m.client.post("/v1/revocations", content=revocation.encoded), 400)
    assert observable_state(shop.m) == before
    assert "c" in shop.m.peers()


def test_revocation_by_time_is_no_longer_accepted(shop: Shop) -> None:
    """Format 1 (revoked from a time the signer's clock chose) is only read from old
    databases: a new one posted is refused, even signed by the store."""
    payload = msgpack.packb([1, shop.store.identity.store_id, "o", 0], use_bin_type=True)
    encoded = payload + sign(shop.store.authority(), DOMAIN_REVOCATION, payload)
    before = observable_state(shop.m)
    error = assert_json_error(shop.m.client.post("/v1/revocations", content=encoded), 400)
    assert "no longer issued" in error["message"]
    assert observable_state(shop.m) == before
    assert shop.m.status()["revocations"] == {}


def test_chain_route_shows_a_terminals_head_and_certificates(shop: Shop) -> None:
    own = shop.m.get("/v1/chains/m?seq=1")
    head = shop.m.chain_head("m")
    assert own["terminal_id"] == "m"
    assert own["head"]["seq"] == head
    assert own["record"]["seq"] == 1
    assert len(own["record"]["hash"]) == 64
    assert [c["role"] for c in own["certificates"]] == ["manager"]
    assert own["revocation"] is None
    unknown = shop.m.get("/v1/chains/nobody?seq=3")
    assert unknown["head"] == {"seq": 0, "hash": None}
    assert unknown["record"] == {"seq": 3, "hash": None}
    assert unknown["certificates"] == []
    for bad in ("/v1/chains/m?seq=-1", "/v1/chains/m?seq=x", "/v1/chains/bad%20id"):
        assert_json_error(shop.m.client.get(bad))


def test_cashier_may_not_set_prices(shop: Shop) -> None:
    before = observable_state(shop.c)
    error = assert_json_error(shop.c.post("/v1/prices", {"sku": "milk", "unit_price": 1}), 403)
    assert error["code"] == "forbidden"
    assert "cashier" in error["message"]
    assert observable_state(shop.c) == before


def test_body_over_the_limit_is_413(shop: Shop) -> None:
    before = observable_state(shop.m)
    filler = "x" * (MAX_JSON_BODY + 1)
    body = json.dumps({"lines": [{"sku": "milk", "qty": 1}], "pad": filler}).encode()
    response = shop.m.client.post(
        "/v1/sales", content=body, headers={"Content-Type": "application/json"}
    )
    error = assert_json_error(response, 413)
    assert error["code"] == "too_large"
    assert observable_state(shop.m) == before


def test_streamed_body_over_the_limit_is_413(shop: Shop) -> None:
    """No Content-Length (chunked): the limit still holds while the body is read."""
    before = observable_state(shop.m)
    chunk = b" " * 65536

    def stream() -> Iterator[bytes]:
        yield b'{"lines": [{"sku": "milk", "qty": 1}]'
        for _ in range(MAX_JSON_BODY // len(chunk) + 2):
            yield chunk
        yield b"}"

    response = shop.m.client.post(
        "/v1/sales", content=stream(), headers={"Content-Type": "application/json"}
    )
    error = assert_json_error(response, 413)
    assert error["code"] == "too_large"
    assert observable_state(shop.m) == before


def test_bogus_content_length_is_refused(shop: Shop) -> None:
    """A declared length far over the limit is refused before any body is read."""
    before = observable_state(shop.m)
    host, port = shop.m.api.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST /v1/sales HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {shop.m.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**12}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert json.loads(body)["error"]["code"] == "too_large"
    assert observable_state(shop.m) == before


@pytest.mark.parametrize("path", ["/v1/import", "/v1/export", "/v1/revocations"])
def test_a_client_hanging_up_mid_body_changes_nothing_and_logs_no_error(
    shop: Shop, path: str
) -> None:
    before = observable_state(shop.m)
    host, port = shop.m.api.removeprefix("http://").rsplit(":", 1)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {shop.m.token}\r\n"
        "Content-Length: 100\r\n\r\nabc"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    assert shop.m.status()["terminal_id"] == "m"  # still serving
    assert observable_state(shop.m) == before
    log = shop.m.log_text()
    assert "Traceback" not in log, log[-2000:]
    assert "Exception in ASGI application" not in log, log[-2000:]


def test_an_idle_keep_alive_connection_outlives_common_client_expiry(shop: Shop) -> None:
    """A POS client's pooled connection, idle for longer than uvicorn's default 5 s keep-alive,
    still answers: the server must not be the side that closes it (docs/how-to/operations.md)."""
    host, port = shop.m.api.removeprefix("http://").rsplit(":", 1)
    request = (
        f"GET /v1/digest HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {shop.m.token}\r\n\r\n"
    ).encode()
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        for idle_s in (API_IDLE_PROBE_S, 0):
            sock.sendall(request)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                assert chunk, "the server closed the keep-alive connection"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200 "), head[:200]
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = head.partition(b"\r\n\r\n")[2]
            while len(body) < length:
                body += sock.recv(65536)
            time.sleep(idle_s)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing-here", 404),
        ("DELETE", "/v1/sales", 405),
        ("PUT", "/v1/prices", 405),
        ("GET", "/v1/stock/not%20a%20sku", 400),
    ],
)
def test_unknown_routes_and_reads_are_json_errors(
    shop: Shop, method: str, path: str, status: int
) -> None:
    assert_json_error(shop.m.client.request(method, path), status)


# -- happy paths -----------------------------------------------------------------------------------


def test_sale_void_receive_adjust(shop: Shop) -> None:
    m = shop.m
    start = m.on_hand("milk")
    assert start is not None
    sale = m.write("/v1/sales", {"lines": [{"sku": "milk", "qty": 3}]})
    assert set(sale) == {"sale_id", "total"}
    assert sale["total"] == 3 * MILK_PRICE
    assert sale["sale_id"] == f"m:{m.chain_head('m')}"
    assert m.on_hand("milk") == start - 3
    mixed = m.write(
        "/v1/sales",
        {"lines": [{"sku": "milk", "qty": 2, "unit_price": 75}, {"sku": "milk", "qty": 1}]},
    )
    assert mixed["total"] == 2 * 75 + MILK_PRICE
    assert m.on_hand("milk") == start - 6
    void = m.write(f"/v1/sales/{sale['sale_id']}/void")
    assert set(void) == {"record_id"}
    assert m.on_hand("milk") == start - 3
    before = observable_state(m)
    assert_json_error(m.post(f"/v1/sales/{sale['sale_id']}/void"), 400)  # already voided
    unknown = m.post("/v1/sales/m:999/void")
    assert_json_error(unknown, 404)  # as GET /v1/sales/m:999 answers
    assert unknown.json()["error"]["code"] == "not_found"
    assert observable_state(m) == before
    assert set(m.write("/v1/stock/receive", {"sku": "milk", "qty": 10})) == {"record_id"}
    assert m.on_hand("milk") == start + 7
    adjust = {"sku": "milk", "delta": -4, "reason": "damaged"}
    assert set(m.write("/v1/stock/adjust", adjust)) == {"record_id"}
    assert m.on_hand("milk") == start + 3
    assert m.verify()["ok"]


# -- idempotency keys ------------------------------------------------------------------------------


def keyed(daemon: Daemon, path: str, body: Any, key: str) -> httpx.Response:
    return daemon.client.post(path, json=body, headers={"Idempotency-Key": key})


def test_a_retried_keyed_sale_is_answered_again_and_counted_once(shop: Shop) -> None:
    m = shop.m
    start = m.on_hand("milk")
    assert start is not None
    body = {"lines": [{"sku": "milk", "qty": 2}]}
    first = keyed(m, "/v1/sales", body, "pos-7f3a-0001")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    records = m.status()["records"]
    again = keyed(m, "/v1/sales", body, "pos-7f3a-0001")
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert m.status()["records"] == records
    assert m.on_hand("milk") == start - 2
    # Every write route honours keys, a void's included (its key covers the path).
    void = keyed(m, f"/v1/sales/{first.json()['sale_id']}/void", None, "pos-7f3a-0002")
    assert void.status_code == 201, void.text
    void_again = keyed(m, f"/v1/sales/{first.json()['sale_id']}/void", None, "pos-7f3a-0002")
    assert void_again.json() == void.json()
    assert m.on_hand("milk") == start


def test_a_key_reused_for_another_request_is_refused_and_changes_nothing(shop: Shop) -> None:
    m = shop.m
    sale = {"lines": [{"sku": "milk", "qty": 1}]}
    assert keyed(m, "/v1/sales", sale, "pos-reuse").status_code == 201
    before = observable_state(m)
    other_sale = {"lines": [{"sku": "milk", "qty": 5}]}
    error = assert_json_error(keyed(m, "/v1/sales", other_sale, "pos-reuse"), 422)
    assert error["code"] == "idempotency_key_reused"
    receipt = {"sku": "milk", "qty": 1}
    assert_json_error(keyed(m, "/v1/stock/receive", receipt, "pos-reuse"), 422)
    assert observable_state(m) == before


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "two words", "tab\tkey"])
def test_a_malformed_key_is_refused_and_changes_nothing(shop: Shop, key: str) -> None:
    before = observable_state(shop.m)
    response = shop.m.client.post(
        "/v1/sales",
        json={"lines": [{"sku": "milk", "qty": 1}]},
        headers={"Idempotency-Key": key.encode()},  # UTF-8 bytes: httpx sends them as they are
    )
    assert_json_error(response, 400)
    assert observable_state(shop.m) == before


def test_concurrent_retries_with_one_key_write_once(shop: Shop) -> None:
    m = shop.m
    start = m.on_hand("milk")
    body = {"lines": [{"sku": "milk", "qty": 1}]}
    headers = {"Authorization": f"Bearer {m.token}", "Idempotency-Key": "pos-burst"}

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=m.api, trust_env=False) as client:
            return list(
                await asyncio.gather(
                    *(client.post("/v1/sales", json=body, headers=headers) for _ in range(8))
                )
            )

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["sale_id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    assert m.on_hand("milk") == start - 1


def test_price_change_applies_to_later_sales(shop: Shop) -> None:
    m = shop.m
    m.set_price("tea", 250)
    assert m.write("/v1/sales", {"lines": [{"sku": "tea", "qty": 2}]})["total"] == 500
    m.set_price("tea", 300)
    assert m.write("/v1/sales", {"lines": [{"sku": "tea", "qty": 1}]})["total"] == 300


def test_stock_reads(shop: Shop) -> None:
    m = shop.m
    m.receive("bread", 5)
    items = m.get("/v1/stock")["items"]
    assert items == sorted(items, key=lambda i: i["sku"])
    assert all(set(i) == {"sku", "on_hand"} for i in items)
    assert {"sku": "bread", "on_hand": 5} in items
    assert m.get("/v1/stock/bread") == {"items": [{"sku": "bread", "on_hand": 5}]}
    # Never received, sold nor priced: nothing on hand (not an error: issue 18).
    assert m.get("/v1/stock/never-seen") == {"items": [{"sku": "never-seen", "on_hand": 0}]}


def test_status(shop: Shop) -> None:
    status = shop.m.status()
    assert status["terminal_id"] == "m"
    assert status["store_id"] == "s1"
    assert status["role"] == "manager"
    assert status["digest"] == shop.m.digest()
    assert status["api"] == shop.m.api
    assert status["listen"] == shop.m.listen
    assert isinstance(status["records"], int)
    peers = status["peers"]
    assert [p["terminal_id"] for p in peers] == ["c"]
    for peer in peers:
        assert peer["connected"] is True
        assert peer["unacked_bytes"] is None or isinstance(peer["unacked_bytes"], int)
    c_peers = shop.c.status()["peers"]
    assert [(p["terminal_id"], p["connected"]) for p in c_peers] == [("m", True)]


def test_peer_acknowledges_everything(shop: Shop) -> None:
    shop.m.sell("milk")
    wait_until(
        lambda: (
            shop.c.digest() == shop.m.digest()
            and all(p["unacked_bytes"] == 0 for p in shop.m.status()["peers"])
        ),
        15,
        lambda: f"c acknowledged all of m: {shop.m.status()['peers']}",
    )


def test_alerts_report_oversold(shop: Shop) -> None:
    m = shop.m
    assert set(m.get("/v1/alerts")) == {"oversold", "integrity"}
    m.receive("gum", 1)
    sale = m.write("/v1/sales", {"lines": [{"sku": "gum", "qty": 3, "unit_price": 50}]})
    alerts = m.get("/v1/alerts")
    assert alerts["integrity"] == {}
    gum = [item for item in alerts["oversold"] if item["sku"] == "gum"]
    assert gum == [{"sku": "gum", "on_hand": -2, "sales": [sale["sale_id"]]}]


def test_metrics(shop: Shop) -> None:
    response = shop.m.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["lanesync_records"] == shop.m.status()["records"]
    assert values["lanesync_peers_connected"] == 1
    assert 'lanesync_peer_unacked_bytes{peer="c"}' in values
    assert "lanesync_write_seconds_count" in values


def test_openapi_lists_every_v1_path(shop: Shop) -> None:
    spec = shop.m.get("/openapi.json")
    missing = V1_PATHS - set(spec["paths"])
    assert not missing, sorted(missing)


# -- the CLI through the daemon --------------------------------------------------------------------


def test_cli_sell_goes_through_the_daemon(shop: Shop) -> None:
    m = shop.m
    before = m.on_hand("milk")
    assert before is not None
    result = shop.cluster.cli_json("sell", m.path, "milk:1:100")
    assert set(result) == {"sale_id", "total"}
    assert result["total"] == 100
    assert result["sale_id"] == f"m:{m.chain_head('m')}"  # the daemon wrote it
    assert m.on_hand("milk") == before - 1
    offline = shop.cluster.cli_json("sell", shop.offline, "milk:1:100")
    assert {k: type(v) for k, v in offline.items()} == {k: type(v) for k, v in result.items()}
    assert offline == {"sale_id": "o:1", "total": 100}
    # Reads too: the CLI shows what the API shows.
    assert shop.cluster.cli_json("stock", m.path) == m.get("/v1/stock")


def test_cli_errors_through_the_daemon_match_offline(shop: Shop) -> None:
    before = observable_state(shop.m)
    online = shop.cluster.cli("sell", shop.m.path, "caviar:1")
    offline = shop.cluster.cli("sell", shop.offline, "caviar:1")
    for result in (online, offline):
        assert result.returncode == 1, result.describe()
        assert result.stdout == "", result.describe()
        assert len(result.stderr.splitlines()) == 1, result.describe()
        assert result.stderr.startswith("error: "), result.describe()
    assert online.stderr == offline.stderr
    assert observable_state(shop.m) == before
    refused = shop.cluster.cli("price", shop.c.path, "milk", "1")
    assert refused.returncode == 1, refused.describe()
    assert refused.stderr.startswith("error: a cashier terminal may not set prices")


def test_cli_reaches_the_daemon_despite_a_proxy_in_the_environment(shop: Shop) -> None:
    """POS machines often have HTTP_PROXY set; the daemon is on 127.0.0.1 and must be reached
    directly (a dead loopback port stands in for the proxy)."""
    env = {**ENV, "http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    result = shop.cluster.cli("digest", shop.m.path, "--json", env=env)
    assert result.returncode == 0, result.describe()
    assert result.json() == {"digest": shop.m.digest()}


def test_cli_status_shows_the_running_daemon(shop: Shop) -> None:
    status = shop.cluster.cli_json("status", shop.c.path)
    assert status["running"] is True
    assert status["terminal_id"] == "c"
    assert status["api"] == shop.c.api
    assert status["listen"] == shop.c.listen
    assert [p["terminal_id"] for p in status["peers"]] == ["m"]
    assert status["peers"][0]["connected"] is True


def test_second_daemon_on_the_same_directory_is_refused(shop: Shop) -> None:
    runtime = (shop.m.path / "runtime.json").read_text()
    result = shop.cluster.cli(
        "run", shop.m.path, "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0", "--no-discovery"
    )
    assert result.returncode == 1, result.describe()
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("error: "), result.describe()
    assert f"pid {shop.m.process.pid}" in lines[0], result.describe()
    assert "Traceback" not in result.stderr + result.stdout
    # The refused second daemon left the first one's files and service alone.
    assert (shop.m.path / "runtime.json").read_text() == runtime
    assert shop.m.alive()
    assert shop.m.status()["terminal_id"] == "m"


# Both event loops (shell.eventloop) serve, sync, take signals and stop the same way.
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_sigterm_stops_cleanly(cluster: Cluster, loop: str) -> None:
    store = cluster.store()
    a_dir = cluster.enroll(store, "a", Role.MANAGER)
    b_dir = cluster.enroll(store, "b")
    a = cluster.start(a_dir, extra=["--loop", loop])
    b = cluster.start(b_dir, [a.listen], extra=["--loop", loop])
    for daemon in (a, b):
        assert f"loop={loop}" in daemon.log_text(), daemon.log_text()
    wait_connected(a, {"b"})
    sale = b.sell("milk", 2, 150)
    wait_until(lambda: a.digest() == b.digest(), 15, "a holds b's sale")
    assert cluster.stop(b, signal.SIGTERM) == 0
    assert not (b_dir / "runtime.json").exists()
    assert '"stopping terminal=b' in b.log_text() or "stopping terminal=b" in b.log_text()
    # a noticed at once (b told it), and keeps serving.
    wait_until(lambda: "b" not in a.peers(), 10, "a noticed b left")
    # The directory is free again: the CLI works offline and sees the sale.
    status = cluster.cli_json("status", b_dir)
    assert status["running"] is False
    assert status["digest"] == a.digest()
    assert a.chain_head("b") == int(sale.split(":")[1])
    assert cluster.stop(a, signal.SIGINT) == 0
    assert not (a_dir / "runtime.json").exists()


@pytest.mark.parametrize("loop", [LoopChoice.ASYNCIO, LoopChoice.UVLOOP])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_daemon_sockets_disable_nagle(host: str, loop: LoopChoice) -> None:
    """The daemon binds its API and peer sockets itself (``bind_socket``) and hands them to
    uvicorn and websockets. Connections accepted on them must have TCP_NODELAY, as asyncio gives
    every TCP connection it creates: without it a keep-alive API response (headers, then body)
    or a second websocket frame waits for the peer's delayed ACK, ~40 ms on Linux."""

    async def main() -> int:
        sock = bind_socket(host, 0)
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def on_connection(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw = writer.get_extra_info("socket")
            accepted.set_result(raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_connection, sock=sock)
        try:
            _, writer = await asyncio.open_connection(host, sock.getsockname()[1])
            try:
                return await asyncio.wait_for(accepted, 5)
            finally:
                writer.close()
                await writer.wait_closed()
        finally:
            server.close()
            await server.wait_closed()

    assert run_on(choose_loop(loop), main()) != 0
