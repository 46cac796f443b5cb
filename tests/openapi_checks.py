"""Checks of an OpenAPI document and of ``/docs`` that the lane's and the cloud's tests share,
and schemathesis run against a live API (its command line, not its pytest plugin)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
from swagger_ui_bundle import swagger_ui_path

BIN = Path(sys.executable).parent  # the virtualenv's scripts: schemathesis, the generator
METHODS = ("get", "post", "put", "patch", "delete")
ERROR_REF = {"$ref": "#/components/schemas/Error"}
# A few examples per operation by default (~30 s for the lane on 2 cores); more with the
# variable (docs/how-to/simulate-and-fuzz.md). LANESYNC_SCHEMATHESIS_SEED replays a run.
SCHEMATHESIS_EXAMPLES = int(os.environ.get("LANESYNC_SCHEMATHESIS_EXAMPLES", "10"))
SCHEMATHESIS_SEED = os.environ.get("LANESYNC_SCHEMATHESIS_SEED")
# Loopback only: a proxy from the environment would take the requests elsewhere.
NO_PROXY_ENV = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
LINKS = re.compile(r"""(?:src|href|url)\s*[:=]\s*["']([^"']*)["']""")


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def conforms(spec: dict[str, Any], schema: dict[str, Any], instance: Any) -> bool:
    """Whether ``instance`` fits ``schema``, whose references point into ``spec``."""
    root = {**schema, "components": spec.get("components", {})}
    return bool(jsonschema_rs.validator_for(root).is_valid(instance))


def assert_errors_are_the_error_model(spec: dict[str, Any]) -> None:
    """Every 4xx and 5xx of every operation is ``Error``; FastAPI's 422 model is gone."""
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    error = {"error": {"code": "unauthorized", "message": "a valid bearer token is required"}}
    assert conforms(spec, ERROR_REF, error)
    assert not conforms(spec, ERROR_REF, {"detail": [{"loc": ["body"], "msg": "x"}]})
    for method, path, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status[0] in "45":
                where = f"{method} {path} {status}"
                assert response["content"] == {"application/json": {"schema": ERROR_REF}}, where
                assert response["description"], where


def assert_docs_load_only_local_assets(get: Callable[[str], httpx.Response]) -> None:
    """``/docs`` answers a page whose every link is a path of the same app that answers, the
    assets being the files the installed swagger-ui-bundle ships."""
    page = get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # Nothing from another host: no absolute URL, no protocol-relative one.
    assert not re.search(r"https?:|[\"'(=]\s*//", page.text), page.text
    # Swagger UI's validator badge would send the document to a public host.
    assert '"validatorUrl": null' in page.text
    links = LINKS.findall(page.text)
    assert "/openapi.json" in links
    assets = [link for link in links if link.startswith("/docs/assets/")]
    assert len(assets) == 3, links  # the script, the style sheet, the icon
    for link in links:
        assert link.startswith("/"), link
        answer = get(link)
        assert answer.status_code == 200, link
        if link in assets:
            shipped = (Path(str(swagger_ui_path)) / link.rsplit("/", 1)[1]).read_bytes()
            assert answer.content == shipped, link


def run_schemathesis(api: str, token: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """schemathesis against ``api``'s own /openapi.json: generated valid and invalid input, with
    and without the token, all checks but positive_data_acceptance (a request the schema allows
    may still be refused 400 for what the server holds: an unknown SKU or store, a sale it does
    not hold, an object the store did not sign; as documented)."""
    command = [
        BIN / "st", "run", f"{api}/openapi.json",
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(SCHEMATHESIS_EXAMPLES), "--workers", "1",
        "--generation-database", "none", "--no-color",
    ]  # fmt: skip
    if SCHEMATHESIS_SEED:
        command += ["--seed", SCHEMATHESIS_SEED]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=cwd,  # its reports, if any, go there
        env=NO_PROXY_ENV,
        timeout=60 + 3 * SCHEMATHESIS_EXAMPLES,
        check=False,
    )


def assert_schemathesis_passed(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-4000:]
    assert " passed" in result.stdout, result.stdout[-4000:]
