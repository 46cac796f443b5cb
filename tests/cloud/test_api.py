"""The cloud's HTTP API as its own OpenAPI document describes it (``lanesync.cloud.api``): a
real ``lanesync cloud serve`` on 127.0.0.1 serving the store of ``world``.

Every route needs the token (head-office data is confidential) and the document says so on
each; every error is the ``Error`` model; ``/docs`` loads nothing from elsewhere; schemathesis
finds no 5xx and no answer that disagrees with the document (slow).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from openapi_checks import (
    assert_docs_load_only_local_assets,
    assert_errors_are_the_error_model,
    assert_schemathesis_passed,
    operations,
    run_schemathesis,
)

from .conftest import STORE_ID, World
from .procs import Procs


def test_the_cloud_document_needs_the_token_on_every_route(world: World, procs: Procs) -> None:
    cloud = procs.cloud(world.cloud, world.db)
    spec = cloud.client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert_errors_are_the_error_model(spec)
    documented = list(operations(spec))
    assert len(documented) >= 6
    with httpx.Client(base_url=cloud.api, trust_env=False) as anonymous:
        for method, path, operation in documented:
            assert operation["security"] == [{"bearer": []}], (method, path)
            assert "401" in operation["responses"], (method, path)
            answer = anonymous.request(method, path.replace("{store_id}", STORE_ID))
            assert answer.status_code == 401, (method, path, answer.text)
        assert_docs_load_only_local_assets(anonymous.get)  # the page itself is public
    stock = spec["paths"]["/v1/stores/{store_id}/stock"]["get"]
    assert stock["parameters"][0]["schema"]["pattern"].startswith("^")


@pytest.mark.slow
def test_schemathesis_finds_nothing_wrong_with_a_live_cloud(
    world: World, procs: Procs, tmp_path: Path
) -> None:
    cloud = procs.cloud(world.cloud, world.db)
    assert_schemathesis_passed(run_schemathesis(cloud.api, cloud.token, tmp_path))
    assert cloud.alive(), cloud.describe()
    assert cloud.stores()[0]["store_id"] == STORE_ID
    assert "Traceback" not in cloud.log_text(), cloud.describe()
