"""The local HTTP API under hypothesis-generated requests (the schemathesis idea, without it:
its pytest plugin loads into every session, where ``filterwarnings = error`` makes any warning
it raises fail the whole suite).

Every ``/v1`` route of the app's own OpenAPI document is called with generated JSON bodies,
raw bodies, path parameters and with or without the bearer token. Properties: never a 5xx;
every error is the documented JSON shape; a refused request changes nothing (digest
unchanged); the app keeps serving afterwards.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        committer = GroupCommitter(terminal, on_commit=mesh.committed)
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
            assert response.status_code < 500, (method, path, body, response.text)
            if response.status_code >= 400:
                assert terminal.digest() == before, (method, path, body, response.text)
                error = response.json()["error"]
                assert error["code"]
                assert isinstance(error["message"], str)

        call()
        assert seen == set(routes)
        status = loop.run_until_complete(client.get("/v1/status"))
        assert status.status_code == 200
        verify = loop.run_until_complete(client.get("/v1/verify")).json()
        assert verify["ok"], json.dumps(verify)[:500]
