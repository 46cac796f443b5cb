"""The local HTTP API under hypothesis-generated requests (the schemathesis idea, without it:
its pytest plugin loads into every session, where ``filterwarnings = error`` makes any warning
it raises fail the whole suite).

Every ``/v1`` route of the app's own OpenAPI document is called with generated JSON bodies,
raw bodies, path parameters and with or without the bearer token. Properties: never a 5xx;
every error is the documented JSON shape; a refused request changes nothing (digest
unchanged); the app keeps serving afterwards.

Header bytes go through the real server too: a ``lanesync run`` daemon on 127.0.0.1 gets raw
requests over sockets with generated ``Authorization``, ``Idempotency-Key``, ``Content-Type``
and ``Content-Length`` values (any byte the HTTP parser hands to the app, latin-1 and UTF-8
included). Properties: never a 5xx; every 4xx the app answers is the JSON error shape (the
parser's own 400 for a Content-Length that is not a number is uvicorn's, before the app);
nothing is logged as an exception; the daemon still serves afterwards.
``LANESYNC_HEADER_FUZZ_EXAMPLES`` sets the number of requests (docs/how-to/simulate-and-fuzz.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mesh.cluster import Cluster, Daemon  # tests/mesh: the real-daemon harness

from lanesync.core.bundle import MAX_BUNDLE_SIZE
from lanesync.core.election import Election
from lanesync.core.identity import Role
from lanesync.core.node import Node
from lanesync.shell.api import DaemonState, create_app
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .fuzzcount import TRIED

TOKEN = "fuzz-token"  # noqa: S105 - a test token
JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=30),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
FIELDS = ("sku", "qty", "lines", "unit_price", "delta", "reason")
PLAUSIBLE = st.dictionaries(
    st.sampled_from(FIELDS),
    st.one_of(
        JSON_VALUES,
        st.sampled_from(["milk", "", "a" * 65, "x:y", "milk/2", "ß"]),
        st.integers(-5, 2_000_000),
        st.lists(
            st.dictionaries(
                st.sampled_from(("sku", "qty", "unit_price")),
                st.one_of(st.sampled_from(["milk", "bread"]), st.integers(-2, 10**12)),
            ),
            max_size=3,
        ),
    ),
    max_size=4,
)
PATH_VALUES = st.one_of(
    st.sampled_from(["milk", "lane1:1", "lane1:0", "nobody:9", "%00", "..", "a" * 200]),
    st.text(
        alphabet=st.characters(
            codec="ascii", categories=("L", "N", "P", "S", "Zs"), exclude_characters="/?#%\\"
        ),
        min_size=1,
    ),
)


@contextmanager
def api(tmp_path: Path) -> Iterator[tuple[asyncio.AbstractEventLoop, httpx.AsyncClient, Terminal]]:
    """The real app on a real terminal directory, called in-process (ASGI), with its group
    committer running on the same event loop."""
    store = StoreDirectory.init(tmp_path / "store", "fuzzstore")
    store.enroll(tmp_path / "lane1", "lane1", Role.MANAGER, wall_clock_ms(), 30)
    terminal = Terminal.open(tmp_path / "lane1", lock_wait_s=0)
    loop = asyncio.new_event_loop()
    try:
        node = Node(terminal.replica, election=Election("lane1"))
        mesh = Mesh(node, terminal)
        committer = GroupCommitter(terminal, publish=mesh.write)
        state = DaemonState(terminal, committer, mesh, TOKEN, election=node.election)
        app = create_app(state)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://lane1.test"
        )
        task = loop.create_task(committer.run())
        try:
            yield loop, client, terminal
        finally:
            task.cancel()
            loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            loop.run_until_complete(client.aclose())
    finally:
        loop.close()
        terminal.close()


def _routes(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> list[tuple[str, str]]:
    spec = loop.run_until_complete(client.get("/openapi.json")).json()
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/v1")
        for method in item
    )


def test_every_v1_route_survives_generated_requests(tmp_path: Path) -> None:
    with api(tmp_path) as (loop, client, terminal):
        routes = _routes(loop, client)
        assert len(routes) >= 15, routes
        seen: set[tuple[str, str]] = set()

        @settings(
            max_examples=600,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(
            route=st.sampled_from(routes),
            params=st.lists(PATH_VALUES, min_size=2, max_size=2),
            body=st.one_of(JSON_VALUES, PLAUSIBLE, st.binary(max_size=300), st.none()),
            token=st.sampled_from([TOKEN, TOKEN, "", "wrong"]),
        )
        def call(route: tuple[str, str], params: list[str], body: object, token: str) -> None:
            check(route, params, body, token)

        def check(route: tuple[str, str], params: list[str], body: object, token: str) -> None:
            TRIED["http.local-api"] += 1
            method, template = route
            seen.add(route)
            values = iter(params)
            path = re.sub(r"\{[^}]+\}", lambda _: next(values), template)
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(body, bytes):
                kwargs["content"] = body
            elif body is not None:
                kwargs["json"] = body
            before = terminal.digest()
            response = loop.run_until_complete(client.request(method, path, **kwargs))
            if route == ("GET", "/v1/events") and token == TOKEN:
                # This in-process app has no feed hub (a daemon starts one): the feed's
                # documented 503, never a stream that would not end.
                assert response.status_code == 503, (path, response.text)
                assert response.json()["error"]["code"] == "unavailable", response.text
                return
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert terminal.digest() == before, (method, path, body, response.text)
                error = response.json()["error"]
                assert error["code"]
                assert isinstance(error["message"], str)

        call()
        # Hypothesis draws routes unevenly (it mutates earlier inputs): with 30-odd routes, 600
        # examples missed one in about a third of the runs. Each one it missed is called here.
        for route in sorted(set(routes) - seen):
            for token in (TOKEN, "", "wrong"):
                check(route, ["m:1", "milk"], None, token)
        assert seen == set(routes)
        authorized = {"Authorization": f"Bearer {TOKEN}"}
        status = loop.run_until_complete(client.get("/v1/status", headers=authorized))
        assert status.status_code == 200
        verify = loop.run_until_complete(client.get("/v1/verify", headers=authorized)).json()
        assert verify["ok"], json.dumps(verify)[:500]


# -- header bytes through the real server ----------------------------------------------------------

# Measured 2026-12-07 on the 2-core machine, with `LANESYNC_HEADER_FUZZ_EXAMPLES=N pytest
# tests/sim/test_api_fuzz.py -k header --durations=1`: 500 requests 3.8 s of test call (daemon
# start included), 3,000 in 19 s, 20,000 in 147 s (~7 ms each), none failing.
HEADER_EXAMPLES = int(os.environ.get("LANESYNC_HEADER_FUZZ_EXAMPLES", "500"))
SOCKET_TIMEOUT_S = 15.0
# Every byte uvicorn's parser (h11) hands to the app inside a header value: all but NUL, CR, LF,
# VT and FF; SP and HTAB only between other bytes (it strips them at the ends). RFC 9110
# section 5.5 allows VCHAR, obs-text (0x80-0xFF), SP and HTAB; h11 also lets other controls by.
VALUE_BYTES = [b for b in range(1, 256) if b not in b"\n\r\x0b\x0c"]
FIELD = st.lists(st.sampled_from(VALUE_BYTES), max_size=40).map(bytes)
NOT_A_NUMBER = FIELD.filter(lambda v: any(b not in b"0123456789 \t," for b in v))
UVICORN_400 = b"Invalid HTTP request received."
VALID_SALE = b'{"lines": [{"sku": "milk", "qty": 1}]}'
ROUTES = [
    (b"POST", b"/v1/sales"),
    (b"POST", b"/v1/stock/receive"),
    (b"POST", b"/v1/import"),
    (b"POST", b"/v1/export"),
    (b"GET", b"/v1/state"),
    (b"GET", b"/v1/status"),
]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


def exchange(api: str, request: bytes) -> Answer:
    """Send ``request`` on a new connection and read the first response (the request says
    ``Connection: close``, so the server closes after it)."""
    host, port = api.removeprefix("http://").rsplit(":", 1)
    received = b""
    with socket.create_connection((host, int(port)), timeout=SOCKET_TIMEOUT_S) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 "), received[:300]
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get(b"content-length")
    body = rest if length is None else rest[: int(length)]
    return Answer(int(status_line.split()[1]), headers, body)


@st.composite
def raw_requests(draw: st.DrawFn, token: bytes, port: int) -> tuple[bytes, bool]:
    """A request with generated header values; and whether its Content-Length is not a number
    (uvicorn refuses those itself)."""
    method, path = draw(st.sampled_from(ROUTES))
    body = draw(
        st.sampled_from([VALID_SALE, b'{"lines": [', b"", b'{"sku": "milk", "qty": 2}'])
        | st.binary(max_size=64)
    )
    headers: list[tuple[bytes, bytes]] = [(b"Host", b"127.0.0.1:%d" % port)]
    auth = draw(
        st.none()
        | st.just(b"Bearer " + token)
        | st.builds(lambda v: b"Bearer " + token + v, FIELD)
        | st.builds(lambda v: b"Bearer " + v, FIELD)
        | st.builds(lambda v: v + token, FIELD)
        | FIELD
    )
    if auth is not None:
        headers.append((b"Authorization", auth))
    key = draw(st.none() | st.sampled_from([b"key-1", b"key-2"]) | FIELD)
    if key is not None:
        headers.append((b"Idempotency-Key", key))
    content_type = draw(
        st.none()
        | st.just(b"application/json")
        | st.builds(lambda v: b"application/json; charset=" + v, FIELD)
        | FIELD
    )
    if content_type is not None:
        headers.append((b"Content-Type", content_type))
    # Declared lengths the body matches, falls short of (the rest arrives as the next request,
    # which Connection: close drops) or that are over every limit (the largest is a bundle's),
    # refused before any body is read; a longer declared length is sent in full (padded), else
    # the server would wait for the missing bytes.
    length = draw(
        st.sampled_from(["exact", "absent"])
        | st.integers(0, 2 * len(body) + 16)
        | st.integers(MAX_BUNDLE_SIZE + 1, 10**19)
        | NOT_A_NUMBER
    )
    not_a_number = isinstance(length, bytes)
    if length == "exact":
        headers.append((b"Content-Length", b"%d" % len(body)))
    elif isinstance(length, int):
        if length <= 2 * len(body) + 16:
            body = body.ljust(length)
        headers.append((b"Content-Length", b"%d" % length))
    elif isinstance(length, bytes):
        headers.append((b"Content-Length", length))
    head = b"%s %s HTTP/1.1\r\n" % (method, path)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"Connection: close\r\n\r\n" + body, not_a_number


def assert_still_serves(daemon: Daemon) -> None:
    assert daemon.alive(), daemon.describe()
    assert daemon.status()["terminal_id"] == "lane1"
    daemon.sell("milk")
    assert daemon.verify()["ok"], daemon.describe()


@pytest.mark.slow
def test_header_bytes_through_the_real_server(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster")
    try:
        store = cluster.store(store_id="fuzzstore")
        daemon = cluster.start(cluster.enroll(store, "lane1", Role.MANAGER))
        daemon.set_price("milk", 100)
        daemon.receive("milk", 1_000_000)
        port = int(daemon.api.rsplit(":", 1)[1])

        @settings(
            max_examples=HEADER_EXAMPLES,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(generated=raw_requests(daemon.token.encode(), port))
        def send(generated: tuple[bytes, bool]) -> None:
            TRIED["http.raw-headers"] += 1
            request, not_a_number = generated
            answer = exchange(daemon.api, request)
            assert answer.status < 500, (request[:600], answer)
            if not_a_number:
                assert (answer.status, answer.body) == (400, UVICORN_400), (request[:600], answer)
            elif answer.status >= 400:
                assert answer.headers[b"content-type"] == b"application/json", (request, answer)
                error = json.loads(answer.body)["error"]
                assert isinstance(error["code"], str), (request[:600], answer)
                assert isinstance(error["message"], str), (request[:600], answer)

        send()
        assert_still_serves(daemon)
        assert "Exception" not in daemon.log_text(), daemon.describe()
    finally:
        cluster.close()
