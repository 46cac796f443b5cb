"""The local HTTP API for the POS app (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Bound to 127.0.0.1 by default. Every route needs ``Authorization: Bearer <token>`` (the token
is in TERMINAL_DIR/api.token, mode 0600), reads and ``/metrics`` included: they show the
store's sales, stock and peers. Only ``GET /v1/health`` does not, and ``/docs`` and
``/openapi.json``, which describe the API and hold no store data. Writes return only after the
record is durably committed. The read routes of the sales journal and the catalog live in
``shell.api_reads``.

A write may carry an ``Idempotency-Key`` header (1-255 visible ASCII characters, unique per
write, e.g. a UUID): the key is committed with the record, in the same transaction, so a retry
with the same key and the same request (the answer was lost, the daemon restarted) gets the
first answer again, with ``Idempotent-Replayed: true``, and writes nothing. The same key with a
different request is refused (422). Keys are kept 7 days.

Errors are JSON ``{"error": {"code": ..., "message": ...}}``: 4xx for anything the client can
fix, 503 when storage failed; a 500 means a lanesync bug.

A terminal the store revoked (it holds the store-signed revocation of itself) refuses every
write that would sign a record (sales, voids, receipts, adjustments, prices) with 403
``terminal_revoked``, whose message says what to do. A retry of a write acknowledged before
the revocation still gets its first answer, as long as the record still counts. Bundles and
revocations are still taken and exports still given: they sign nothing, and they are how the
lane's records reach the store. ``GET /v1/status`` says ``"revoked": true`` then.

``GET /v1/status`` also has ``"isolated_since"``: null, or the time (ms since the epoch) since
when the lane's sales reach nobody: a peer refused it as revoked (from the first refusal on),
or no peer or cloud connection has been open for longer than ``lanesync run --isolated-after``
(default 60 s; then it is the time the last connection closed, or the daemon's start). A POS
should warn its cashier while it is not null.

The first write after the daemon starts waits until a peer (or the cloud) has answered the
lane's catch-up, at most ``lanesync run --head-wait`` (default 3 s; 0: no wait), so that a lane
restored from a backup continues its own chain from the head its peers hold. When a write went
through before anyone answered, ``GET /v1/status`` says when in ``"first_write_unheard_ms"``
(null otherwise): such a lane may have forked its chain if it was restored from a backup.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from lanesync import __version__
from lanesync.core import bodies, reports
from lanesync.core.election import Election
from lanesync.core.forks import parse_fork_resolution
from lanesync.core.identity import TimeRevocation, parse_certificate, parse_revocation
from lanesync.core.ids import RecordId, terminal_id
from lanesync.core.ids import sku as parse_sku
from lanesync.core.records import Body, Record, Sale
from lanesync.core.views import Views
from lanesync.errors import IdempotencyConflict, RemoteError, TerminalRevoked, UsageError
from lanesync.shell.api_days import days_router
from lanesync.shell.api_feed import add_feed_routes
from lanesync.shell.api_reads import reads_router
from lanesync.shell.apidoc import (
    CENTS_FIELD,
    DELTA_FIELD,
    IDEMPOTENCY_HEADER,
    IDEMPOTENT,
    LANE_DOC,
    LINES_FIELD,
    MAX_IDEMPOTENCY_KEY,
    QTY_FIELD,
    REASON_FIELD,
    SKU_FIELD,
    raw_body,
)
from lanesync.shell.committer import FirstWrite, GroupCommitter, RequestKey
from lanesync.shell.dashboard import dashboard_router
from lanesync.shell.feed import FeedHub
from lanesync.shell.http import RequireToken, install_common
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal
from lanesync.shell.uplink import Uplink

MAX_JSON_BODY = 256 * 1024  # a 200-line sale is ~10 KiB of JSON
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(slots=True)
class DaemonState:
    terminal: Terminal
    committer: GroupCommitter
    mesh: Mesh
    token: str
    listen: str = ""
    api: str = ""
    started_ms: int = 0
    election: Election | None = None
    uplink: Uplink | None = None
    first_write: FirstWrite | None = None
    feed: FeedHub | None = None


# -- request bodies --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SaleLineIn(_Strict):
    sku: StrictStr = Field(json_schema_extra=SKU_FIELD)
    qty: StrictInt = Field(json_schema_extra=QTY_FIELD)
    unit_price: StrictInt | None = Field(
        default=None,
        description="Integer minor units (cents); omitted: the catalog price.",
        json_schema_extra=CENTS_FIELD,
    )


class SaleIn(_Strict):
    lines: list[SaleLineIn] = Field(min_length=1, json_schema_extra=LINES_FIELD)


class ReceiveIn(_Strict):
    sku: StrictStr = Field(json_schema_extra=SKU_FIELD)
    qty: StrictInt = Field(json_schema_extra=QTY_FIELD)


class AdjustIn(_Strict):
    sku: StrictStr = Field(json_schema_extra=SKU_FIELD)
    delta: StrictInt = Field(
        description="Not zero; negative: units lost", json_schema_extra=DELTA_FIELD
    )
    reason: StrictStr = Field(json_schema_extra=REASON_FIELD)


class PriceIn(_Strict):
    sku: StrictStr = Field(json_schema_extra=SKU_FIELD)
    unit_price: StrictInt = Field(
        description="Integer minor units (cents)", json_schema_extra=CENTS_FIELD
    )


class SaleOut(BaseModel):
    sale_id: str
    total: int


class RecordOut(BaseModel):
    record_id: str


# The answers a write route may give besides its own (the OpenAPI document lists them).
KEY_REUSED = {
    "description": f"{IDEMPOTENCY_HEADER} reused for another request (error code "
    "idempotency_key_reused)"
}
WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {"description": "This terminal is revoked (error code terminal_revoked)"},
    422: KEY_REUSED,
}
PRICE_RESPONSES: dict[int | str, dict[str, Any]] = {
    403: {
        "description": "This terminal is revoked (error code terminal_revoked), or its role may "
        "not set prices (error code forbidden)"
    },
    422: KEY_REUSED,
}


# -- metrics ---------------------------------------------------------------------------------------


class _StateCollector(Collector):
    """Read the daemon's state at scrape time (no bookkeeping to drift from the truth)."""

    def __init__(self, state: DaemonState) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        views = self._state.terminal.replica.views
        yield GaugeMetricFamily(
            "lanesync_records", "Records counted in the views", value=views.accepted_count()
        )
        peers = self._state.mesh.node.peer_status()
        yield GaugeMetricFamily("lanesync_peers_connected", "Open peer connections", len(peers))
        unacked = GaugeMetricFamily(
            "lanesync_peer_unacked_bytes",
            "Update bytes a peer has not acknowledged",
            labels=["peer"],
        )
        for peer in peers:
            unacked.add_metric([str(peer["terminal_id"])], float(peer["unacked_bytes"] or 0))
        yield unacked
        yield CounterMetricFamily(
            "lanesync_commits", "Group commits of local writes", value=self._state.committer.commits
        )
        yield CounterMetricFamily(
            "lanesync_local_records", "Records written here", value=self._state.committer.records
        )
        yield CounterMetricFamily(
            "lanesync_frames_sent", "Peer frames sent", value=self._state.mesh.frames_out
        )
        yield CounterMetricFamily(
            "lanesync_bytes_sent", "Peer frame bytes sent", value=self._state.mesh.bytes_out
        )
        oversold = sum(1 for n in views.on_hand().values() if n < 0)
        yield GaugeMetricFamily("lanesync_oversold_skus", "SKUs with negative stock", oversold)
        yield GaugeMetricFamily(
            "lanesync_terminal_revoked",
            "1 when the store revoked this terminal (every write is refused)",
            value=int(self._state.terminal.revoked),
        )
        isolation = self._state.mesh.isolation
        isolated = isolation is not None and (
            isolation.isolated_since(self._state.terminal.now_ms()) is not None
        )
        yield GaugeMetricFamily(
            "lanesync_isolated",
            "1 while the status has an isolated_since (refused as revoked, or nobody heard)",
            value=int(isolated),
        )


# -- idempotency -----------------------------------------------------------------------------------


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (
        1 <= len(key) <= MAX_IDEMPOTENCY_KEY and all("!" <= c <= "~" for c in key)
    ):
        raise UsageError(
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )
    return key


def request_digest(request: Request, body: BaseModel | None) -> bytes:
    """What makes two requests the same: the route (with its path parameters) and the body."""
    text = f"{request.url.path}\n{body.model_dump_json() if body is not None else ''}"
    return hashlib.sha256(text.encode()).digest()


# -- the app ---------------------------------------------------------------------------------------


def status_report(state: DaemonState) -> dict[str, Any]:
    terminal = state.terminal
    mesh = state.mesh
    return {
        "terminal_id": terminal.terminal_id,
        "store_id": terminal.store_id,
        "role": terminal.role.value,
        "digest": terminal.digest(),
        "records": terminal.replica.views.accepted_count(),
        "api": state.api,
        "listen": state.listen,
        "started_ms": state.started_ms,
        "version": __version__,
        "leader": state.election.leader if state.election else None,
        "term": state.election.leader_term if state.election else None,
        "cloud": state.uplink.status() if state.uplink else None,
        "peers": mesh.peers_report(),
        "connections": mesh.node.peer_status(),
        "revocations": reports.revocations(terminal.replica),
        "revoked": terminal.revoked,
        "isolated_since": (
            None if mesh.isolation is None else mesh.isolation.isolated_since(terminal.now_ms())
        ),
        "first_write_unheard_ms": (
            None if state.first_write is None else state.first_write.check.unheard_write_ms
        ),
        "succeeds": terminal.succession(),
        # A change-feed client that wants only what happens from now on starts after this id
        # (``Last-Event-ID``); without it the feed first replays every record held.
        "last_event_id": None if terminal.feed is None else terminal.feed.last_id,
    }


def create_app(state: DaemonState) -> FastAPI:
    app = FastAPI(
        title="lanesync terminal API",
        version=__version__,
        description=__doc__,
    )
    registry = CollectorRegistry()
    registry.register(_StateCollector(state))
    write_latency = Histogram(
        "lanesync_write_seconds",
        "Time from request to durable acknowledgement",
        registry=registry,
        buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    )

    install_common(app, state.token, LANE_DOC)
    app.include_router(reads_router(state.terminal))
    app.include_router(days_router(state.terminal, state.committer))

    # Keyed writes still in flight: a retry with the same key waits for the first's outcome.
    in_flight: dict[str, asyncio.Future[None]] = {}

    async def write(
        build: Callable[[Views], Body],
        request: Request,
        response: Response,
        body: BaseModel | None = None,
    ) -> Record:
        key = idempotency_key(request)
        if key is None:
            return await timed_write(build, None)
        digest = request_digest(request, body)
        while (pending := in_flight.get(key)) is not None:
            await asyncio.shield(pending)
        found = state.terminal.find_request(key)
        if found is not None:
            if found.request_digest != digest:
                raise IdempotencyConflict(
                    f"{IDEMPOTENCY_HEADER} {key!r} was used for a different request"
                )
            # A write acknowledged before the terminal was revoked is answered again as it was
            # (it writes nothing). One the revocation withdrew is not: that would confirm a
            # sale the store does not count.
            record = state.terminal.replica.find_record(RecordId.parse(found.record_id))
            if record is None and state.terminal.revoked:
                raise TerminalRevoked(
                    f"the write made with {key!r} ({found.record_id}) does not count: terminal "
                    f"{state.terminal.terminal_id} is revoked by the store; enroll a "
                    "replacement terminal (lanesync enroll --replaces) and contact the store "
                    "authority"
                )
            if record is None:  # only if this terminal's own records stopped counting
                raise IdempotencyConflict(f"the write made with {key!r} is no longer held")
            response.headers[REPLAYED_HEADER] = "true"
            return record
        done = asyncio.get_running_loop().create_future()
        in_flight[key] = done
        try:
            return await timed_write(build, (key, digest))
        finally:
            del in_flight[key]
            done.set_result(None)

    async def timed_write(build: Callable[[Views], Body], key: RequestKey | None) -> Record:
        started = time.perf_counter()
        record = await state.committer.write(build, key)
        write_latency.observe(time.perf_counter() - started)
        return record

    @app.post(
        "/v1/sales",
        status_code=201,
        response_model=SaleOut,
        tags=["writes"],
        responses=WRITE_RESPONSES,
        openapi_extra=IDEMPOTENT,
    )
    async def post_sale(
        body: SaleIn, request: Request, response: Response, _: RequireToken
    ) -> SaleOut:
        lines = [
            bodies.LineRequest(parse_sku(line.sku), line.qty, line.unit_price)
            for line in body.lines
        ]
        record = await write(lambda views: bodies.build_sale(views, lines), request, response, body)
        total = record.body.total_cents if isinstance(record.body, Sale) else 0
        return SaleOut(sale_id=str(record.id), total=total)

    @app.post(
        "/v1/sales/{sale_id}/void",
        status_code=201,
        response_model=RecordOut,
        tags=["writes"],
        responses={
            **WRITE_RESPONSES,
            404: {"description": "No such sale on this terminal (error code not_found)"},
        },
        openapi_extra=IDEMPOTENT,
    )
    async def post_void(
        sale_id: str, request: Request, response: Response, _: RequireToken
    ) -> RecordOut:
        record = await write(lambda views: bodies.build_void(views, sale_id), request, response)
        return RecordOut(record_id=str(record.id))

    @app.post(
        "/v1/stock/receive",
        status_code=201,
        response_model=RecordOut,
        tags=["writes"],
        responses=WRITE_RESPONSES,
        openapi_extra=IDEMPOTENT,
    )
    async def post_receive(
        body: ReceiveIn, request: Request, response: Response, _: RequireToken
    ) -> RecordOut:
        record = await write(
            lambda _: bodies.build_receipt(body.sku, body.qty), request, response, body
        )
        return RecordOut(record_id=str(record.id))

    @app.post(
        "/v1/stock/adjust",
        status_code=201,
        response_model=RecordOut,
        tags=["writes"],
        responses=WRITE_RESPONSES,
        openapi_extra=IDEMPOTENT,
    )
    async def post_adjust(
        body: AdjustIn, request: Request, response: Response, _: RequireToken
    ) -> RecordOut:
        record = await write(
            lambda _: bodies.build_adjustment(body.sku, body.delta, body.reason),
            request,
            response,
            body,
        )
        return RecordOut(record_id=str(record.id))

    @app.post(
        "/v1/prices",
        status_code=201,
        response_model=RecordOut,
        tags=["writes"],
        responses=PRICE_RESPONSES,
        openapi_extra=IDEMPOTENT,
    )
    async def post_price(
        body: PriceIn, request: Request, response: Response, _: RequireToken
    ) -> RecordOut:
        role = state.terminal.role
        record = await write(
            lambda _: bodies.build_price_change(role, body.sku, body.unit_price),
            request,
            response,
            body,
        )
        return RecordOut(record_id=str(record.id))

    @app.get("/v1/stock", tags=["reads"])
    async def get_stock(_: RequireToken) -> dict[str, Any]:
        return reports.stock(state.terminal.replica)

    @app.get("/v1/stock/{sku:path}", tags=["reads"])  # a SKU may hold "/"
    async def get_stock_of(sku: str, _: RequireToken) -> dict[str, Any]:
        return reports.stock(state.terminal.replica, parse_sku(sku))

    @app.get("/v1/status", tags=["reads"])
    async def get_status(_: RequireToken) -> dict[str, Any]:
        return status_report(state)

    @app.get("/v1/peers", tags=["reads"])
    async def get_peers(_: RequireToken) -> dict[str, Any]:
        return {"peers": state.mesh.peers_report()}

    @app.get("/v1/alerts", tags=["reads"])
    async def get_alerts(_: RequireToken) -> dict[str, Any]:
        report = reports.integrity(state.terminal.replica)
        problems = {
            k: report[k]
            for k in (
                "rejected",
                "unverified",
                "revoked",
                "unauthorized",
                "broken_chains",
                "gaps",
                "closed_chains",
            )
            if report[k]
        }
        return {"oversold": report["oversold"], "integrity": problems}

    @app.get("/v1/verify", tags=["reads"])
    async def get_verify(_: RequireToken) -> dict[str, Any]:
        return state.terminal.integrity()

    @app.get("/v1/chains/{terminal}", tags=["reads"])
    async def get_chain(terminal: str, _: RequireToken, seq: int | None = None) -> dict[str, Any]:
        """A terminal's accepted head, certificates and revocation; with ``?seq=N`` also the
        hash of its accepted record at N (what ``lanesync revoke`` cuts at)."""
        if seq is not None and seq < 0:
            raise UsageError("seq must be 0 or more")
        return reports.chain(state.terminal.replica, terminal_id(terminal), seq)

    @app.get("/v1/digest", tags=["reads"])
    async def get_digest(_: RequireToken) -> dict[str, str]:
        return {"digest": state.terminal.digest()}

    @app.get("/v1/state", tags=["bundles"], response_class=Response)
    async def get_state(_: RequireToken) -> Response:
        return Response(state.terminal.state_file(), media_type="application/octet-stream")

    @app.post(
        "/v1/export",
        tags=["bundles"],
        response_class=Response,
        openapi_extra=raw_body(
            "The state vector of what the caller holds (none: everything)", required=False
        ),
    )
    async def post_export(request: Request, _: RequireToken) -> Response:
        since = await request.body()
        bundle = state.terminal.export_bundle(since or None)
        return Response(bundle, media_type="application/octet-stream")

    @app.post(
        "/v1/import",
        tags=["bundles"],
        openapi_extra=raw_body("A bundle (lanesync export)"),
    )
    async def post_import(request: Request, _: RequireToken) -> dict[str, Any]:
        result = state.terminal.import_bundle(await request.body())
        state.mesh.bundle_imported()
        delta = result.records_after - result.records_before
        return {
            "documents": result.documents,
            "new_records": max(0, delta),
            "withdrawn_records": max(0, -delta),
            "digest": result.digest,
        }

    @app.post(
        "/v1/revocations",
        status_code=201,
        tags=["writes"],
        openapi_extra=raw_body("A store-signed revocation (lanesync revoke)"),
    )
    async def post_revocation(request: Request, _: RequireToken) -> dict[str, Any]:
        data = await request.body()
        revocation = parse_revocation(data, state.terminal.directory.store)
        if isinstance(revocation, TimeRevocation):
            raise RemoteError(
                "a revocation by time (format 1) is no longer issued: revoke with this "
                "lanesync's `lanesync revoke`, which cuts the chain at a position"
            )
        state.terminal.publish_revocation(revocation)
        state.mesh.bundle_imported()
        return {
            "revoked": revocation.terminal_id,
            "after_seq": revocation.after_seq,
            "hash": revocation.after_hash.hex() or None,
            "key": revocation.key.hex() or None,
        }

    @app.get("/v1/forks/{terminal}", tags=["reads"])
    async def get_fork(terminal: str, _: RequireToken) -> dict[str, Any]:
        """The open fork of a terminal's chain, as this lane holds it: what a resolution names."""
        fork = state.terminal.replica.open_fork(terminal_id(terminal))
        return {
            "terminal": fork.terminal,
            "fork_seq": fork.fork_seq,
            "base_hash": fork.base_hash.hex(),
            "branches": [
                {
                    "first_hash": b.first_hash.hex(),
                    "head_seq": b.head_seq,
                    "head_hash": b.head_hash.hex(),
                }
                for b in fork.branches
            ],
        }

    @app.post(
        "/v1/fork-resolutions",
        status_code=201,
        tags=["writes"],
        openapi_extra=raw_body("A store-signed fork resolution"),
    )
    async def post_fork_resolution(request: Request, _: RequireToken) -> dict[str, Any]:
        resolution = parse_fork_resolution(await request.body(), state.terminal.directory.store)
        state.terminal.publish_fork_resolution(resolution)
        state.mesh.bundle_imported()
        return {
            "terminal": resolution.terminal,
            "fork_seq": resolution.fork_seq,
            "closed_at": resolution.closed_at,
        }

    @app.post(
        "/v1/certificates",
        status_code=201,
        tags=["writes"],
        openapi_extra=raw_body("A store-signed terminal certificate"),
    )
    async def post_certificate(request: Request, _: RequireToken) -> dict[str, Any]:
        cert = parse_certificate(await request.body(), state.terminal.directory.store)
        state.terminal.publish_certificate(cert)
        state.mesh.bundle_imported()
        return {"terminal_id": cert.terminal_id, "key_fingerprint": cert.key_fingerprint}

    add_feed_routes(app, state)

    @app.get("/metrics", tags=["reads"], response_class=Response)
    async def metrics(_: RequireToken) -> Response:
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    app.include_router(dashboard_router(state.terminal))
    return app
