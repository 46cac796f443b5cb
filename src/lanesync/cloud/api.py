"""The cloud's read API for head office (FastAPI; OpenAPI at /openapi.json, docs at /docs).

Every route needs the bearer token in CLOUD_DIR/api.token: head-office data is confidential.
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from lanesync import __version__
from lanesync.cloud.metrics import cloud_registry
from lanesync.cloud.service import CloudService
from lanesync.cloud.stores import StoreRuntime
from lanesync.core import bodies
from lanesync.core.identity import Role
from lanesync.core.ids import DAY_PATTERN, NAME_PATTERN, is_valid_name
from lanesync.errors import UsageError
from lanesync.shell.apidoc import CENTS_FIELD, SKU_FIELD
from lanesync.shell.http import RequireToken, install_common
from lanesync.shell.openapi import ApiDoc


class PriceIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    sku: StrictStr = Field(json_schema_extra=SKU_FIELD)
    unit_price: StrictInt = Field(
        description="Integer minor units (cents)", json_schema_extra=CENTS_FIELD
    )


# The checks store() and _is_day make, stated in the document.
CLOUD_DOC = ApiDoc(
    parameters={"store_id": {"pattern": NAME_PATTERN}, "day": {"pattern": DAY_PATTERN}}
)


def create_cloud_app(service: CloudService, token: str) -> FastAPI:
    app = FastAPI(title="lanesync cloud API", version=__version__, description=__doc__)
    install_common(app, token, CLOUD_DOC)
    registry = cloud_registry(service)

    def served(store_id: str) -> str:
        """A store this cloud serves (its tables answer without its replica being resident);
        one added since the process last listed its registry is served as a hello's is."""
        if not is_valid_name(store_id) or not service.serves(store_id):
            raise UsageError(f"this cloud does not serve store {store_id[:64]!r}")
        return store_id

    def resident(store_id: str) -> contextlib.AbstractContextManager[StoreRuntime]:
        """The store's replica, opened for the request if it is not resident."""
        return service.using(served(store_id))

    @app.get("/v1/stores")
    async def get_stores(_: RequireToken) -> dict[str, Any]:
        """Every store served; records, digest and leaders come from memory, so they are known
        only for the resident ones (a replica is opened when its leader connects)."""
        totals = {row["store_id"]: row for row in service.headoffice.stores()}
        rows = []
        for store_id in sorted(service.listed()):
            runtime = service.stores.get(store_id)
            rows.append(
                {
                    "store_id": store_id,
                    "resident": runtime is not None,
                    "records": None
                    if runtime is None
                    else runtime.terminal.replica.views.accepted_count(),
                    "digest": None if runtime is None else runtime.terminal.digest(),
                    "connected_leaders": []
                    if runtime is None
                    else [p["terminal_id"] for p in runtime.node.peer_status() if p["connected"]],
                    "sales_recorded": totals.get(store_id, {}).get("sales_recorded", 0),
                    "last_upload_ms": None if runtime is None else runtime.last_upload_ms,
                }
            )
        return {"stores": rows}

    @app.get("/v1/stores/{store_id}/stock")
    async def get_stock(store_id: str, _: RequireToken) -> dict[str, Any]:
        return service.headoffice.stock(served(store_id))

    @app.get("/v1/stores/{store_id}/sales")
    async def get_sales(store_id: str, _: RequireToken, day: str | None = None) -> dict[str, Any]:
        served(store_id)
        if day is not None and not _is_day(day):
            raise UsageError(f"invalid day {day[:32]!r}: expected YYYY-MM-DD")
        return service.headoffice.sales(store_id, day)

    @app.get("/v1/stores/{store_id}/digest")
    async def get_digest(store_id: str, _: RequireToken) -> dict[str, str]:
        with resident(store_id) as runtime:
            return {"digest": runtime.terminal.digest()}

    @app.get("/v1/stores/{store_id}/verify")
    async def get_verify(store_id: str, _: RequireToken) -> dict[str, Any]:
        """The store's replica as this cloud holds it, checked as a lane's ``/v1/verify``."""
        with resident(store_id) as runtime:
            return runtime.terminal.integrity()

    @app.post("/v1/stores/{store_id}/prices", status_code=201)
    async def post_price(store_id: str, body: PriceIn, _: RequireToken) -> dict[str, str]:
        with resident(store_id) as runtime:
            record = await runtime.committer.write(
                lambda _: bodies.build_price_change(Role.CLOUD, body.sku, body.unit_price)
            )
        return {"record_id": str(record.id)}

    @app.get("/v1/status")
    async def get_status(_: RequireToken) -> dict[str, Any]:
        return {
            "listen": service.listen,
            "api": service.api,
            "started_ms": service.started_ms,
            "stores": sorted(service.listed()),
            "resident": sorted(service.stores),
        }

    @app.get("/metrics", response_class=Response)
    async def metrics(_: RequireToken) -> Response:
        """Prometheus text: stores, uploads, merges and their latency, bytes, failures, lag."""
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")

    return app


def _is_day(text: str) -> bool:
    """A real calendar day written YYYY-MM-DD (2026-13-01 is not one)."""
    from lanesync.core.ids import is_valid_doc_name, ledger_doc

    if not is_valid_doc_name(ledger_doc(text)):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
