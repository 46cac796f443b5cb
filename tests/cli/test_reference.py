"""docs/reference/cli.md and docs/reference/http.md are generated (lanesync.cli.reference): they
must be what the generator writes today, so a changed command or route cannot leave them stale."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from lanesync.cli.reference import REGENERATE, lane_openapi, render_cli, write

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_committed_references_are_what_the_generator_writes(tmp_path: Path) -> None:
    written = write(tmp_path)
    assert {p.name for p in written} == {"cli.md", "http.md"}
    for fresh in written:
        committed = DOCS / fresh.name
        assert committed.is_file(), f"{committed} is missing: run `{REGENERATE}`"
        assert committed.read_text(encoding="utf-8") == fresh.read_text(encoding="utf-8"), (
            f"{committed} is out of date: run `{REGENERATE}`"
        )


def test_cli_reference_lists_every_command_with_its_usage_and_options() -> None:
    @click.group()
    def top() -> None:
        """Top help."""

    @top.command()
    @click.argument("where")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
    def sell(where: str, as_json: bool) -> None:
        """Sell things."""

    text = render_cli(top, "tool")
    assert "## `tool sell`" in text
    assert "Usage: tool sell [OPTIONS] WHERE" in text
    assert "| `--json` | Print JSON. |" in text
    assert "Sell things." in text


@pytest.mark.parametrize(
    ("route", "method"),
    [("/v1/sales", "post"), ("/v1/state", "get"), ("/v1/stock", "get"), ("/v1/sales", "get")],
)
def test_lane_openapi_says_which_routes_need_the_token(route: str, method: str) -> None:
    operation = lane_openapi()["paths"][route][method]
    assert operation["security"] == [{"bearer": []}]
    assert "401" in operation["responses"]


def test_lane_openapi_documents_the_400_the_app_answers_not_fastapis_422() -> None:
    spec = lane_openapi()
    responses = spec["paths"]["/v1/sales"]["post"]["responses"]
    assert "400" in responses
    # The one 422 a write answers is a reused Idempotency-Key (lanesync.shell.api), as Error;
    # FastAPI's validation error is neither documented nor answered.
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    assert responses["422"]["content"] == error
    assert "idempotency_key_reused" in responses["422"]["description"]
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    # Health is the one route without the token (issue 18: every read needs it).
    assert "security" not in spec["paths"]["/v1/health"]["get"]
