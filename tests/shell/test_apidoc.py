"""What the lane API's document adds (``lanesync.shell.apidoc``) is true of the app.

The examples fit the schemas of their operations in the lane's real document, and every
example names an operation the app has. The patterns and bounds the document states for SKUs,
terminal ids, record ids, quantities, prices and reasons accept exactly what lanesync's core
accepts (hypothesis; the patterns are checked by a JSON Schema validator, as a client reads
them, not by Python's ``re``).
"""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lanesync.cli.reference import lane_openapi
from lanesync.core import bodies
from lanesync.core.identity import Role
from lanesync.core.ids import (
    NAME_PATTERN,
    RECORD_ID_PATTERN,
    SKU_PATTERN,
    RecordId,
    is_valid_name,
    is_valid_sku,
)
from lanesync.errors import UsageError
from lanesync.shell.apidoc import (
    CENTS_FIELD,
    DELTA_FIELD,
    LANE_DOC,
    LANE_EXAMPLES,
    QTY_FIELD,
    REASON_FIELD,
)

MAIN_ROUTES = {
    ("POST", "/v1/sales"),
    ("POST", "/v1/sales/{sale_id}/void"),
    ("POST", "/v1/stock/receive"),
    ("POST", "/v1/stock/adjust"),
    ("POST", "/v1/prices"),
    ("GET", "/v1/stock"),
    ("GET", "/v1/stock/{sku}"),
    ("GET", "/v1/status"),
    ("GET", "/v1/sales"),
    ("GET", "/v1/sales/{sale_id}"),
    ("GET", "/v1/prices"),
}


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return lane_openapi()


def valid(schema: dict[str, Any], instance: object, spec: dict[str, Any] | None = None) -> bool:
    root = {**schema, "components": (spec or {}).get("components", {})}
    return bool(jsonschema_rs.validator_for(root).is_valid(instance))


def string(pattern: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern}


def test_the_main_routes_have_examples_and_every_example_names_an_operation(
    spec: dict[str, Any],
) -> None:
    assert set(LANE_EXAMPLES) >= MAIN_ROUTES
    for method, path in LANE_EXAMPLES:
        assert method.lower() in spec["paths"].get(path, {}), (method, path)


@pytest.mark.parametrize(("method", "path"), sorted(LANE_EXAMPLES))
def test_each_example_fits_its_operations_schemas(
    spec: dict[str, Any], method: str, path: str
) -> None:
    example = LANE_EXAMPLES[(method, path)]
    operation = spec["paths"][path][method.lower()]
    assert operation["description"]
    if example.request is not None:
        media = operation["requestBody"]["content"]["application/json"]
        assert media["example"] == example.request
        assert valid(media["schema"], example.request, spec), example.request
    parameters = {p["name"]: p for p in operation.get("parameters", ())}
    for name, value in example.parameters.items():
        assert parameters[name]["example"] == value
        assert valid(parameters[name]["schema"], value, spec), (name, value)
    success = [s for s in operation["responses"] if s.startswith("2")]
    assert success
    for status in success:
        media = operation["responses"][status]["content"]["application/json"]
        assert media["example"] == example.response
        assert valid(media["schema"], example.response, spec), example.response


def test_the_parameter_rules_reach_every_parameter_of_that_name(spec: dict[str, Any]) -> None:
    seen = set()
    for item in spec["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", ()):
                rule = LANE_DOC.parameters.get(parameter["name"])
                if rule is not None:
                    seen.add(parameter["name"])
                    assert rule.items() <= parameter["schema"].items(), parameter
    assert seen == set(LANE_DOC.parameters)


# -- the stated rules are the core's -----------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8"), max_size=70) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9._/:-]{0,66}\n?", fullmatch=True
)


@given(TEXT)
def test_the_sku_pattern_accepts_what_the_core_accepts(text: str) -> None:
    assert valid(string(SKU_PATTERN), text) == is_valid_sku(text)


@given(TEXT)
def test_the_name_pattern_accepts_what_the_core_accepts(text: str) -> None:
    assert valid(string(NAME_PATTERN), text) == is_valid_name(text)


@given(TEXT | st.from_regex(r"[a-z0-9]{1,8}:[0-9]{1,4}", fullmatch=True))
def test_the_record_id_pattern_accepts_what_the_core_parses(text: str) -> None:
    try:
        RecordId.parse(text)
        parsed = True
    except UsageError:
        parsed = False
    assert valid(string(RECORD_ID_PATTERN), text) == parsed


def accepted(build: Any) -> bool:
    try:
        build()
    except UsageError:
        return False
    return True


BOUNDARY_INTS = st.integers(-(2**40), 2**40) | st.sampled_from(
    [-1_000_001, -1_000_000, -1, 0, 1, 1_000_000, 1_000_001, 100_000_000_000, 100_000_000_001]
)


@given(BOUNDARY_INTS)
def test_the_quantity_bounds_are_the_cores(qty: int) -> None:
    schema = {"type": "integer", **QTY_FIELD}
    assert valid(schema, qty) == accepted(lambda: bodies.build_receipt("milk", qty))


@given(BOUNDARY_INTS)
def test_the_delta_bounds_are_the_cores_but_zero(delta: int) -> None:
    schema = {"type": "integer", **DELTA_FIELD}
    built = accepted(lambda: bodies.build_adjustment("milk", delta, "count"))
    assert valid(schema, delta) == (built or delta == 0)  # zero: said in the description


@given(BOUNDARY_INTS)
def test_the_price_bounds_are_the_cores(cents: int) -> None:
    schema = {"type": "integer", **CENTS_FIELD}
    built = accepted(lambda: bodies.build_price_change(Role.MANAGER, "milk", cents))
    assert valid(schema, cents) == built


@given(
    st.text(max_size=210)
    | st.sampled_from(["", " ", "\x1c", "\x85", "\ufeff", "x" * 200, "x" * 201, " x" * 100])
)
def test_the_reason_rules_are_the_cores(reason: str) -> None:
    """A reason the document allows is one the core takes; one the core takes as it is sent
    (nothing to strip) is one the document allows."""
    schema = {"type": "string", **REASON_FIELD}
    taken = accepted(lambda: bodies.build_adjustment("milk", 1, reason))
    if valid(schema, reason):
        assert taken
    if taken and reason == reason.strip() and "\ufeff" not in reason:
        assert valid(schema, reason)
