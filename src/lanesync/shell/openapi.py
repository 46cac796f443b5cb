"""The OpenAPI document and the ``/docs`` page of every lanesync HTTP API, saying what the app
really does, so that a client generated from ``/openapi.json`` works as written.

FastAPI derives the document from the routes; what it cannot see is added here, in one pass over
every route the app holds when the document is first asked for (so routes that routers add,
whenever they are included, are covered like the app's own):

- the token: ``components.securitySchemes.bearer`` (HTTP bearer) and ``security`` on every
  operation whose route has ``RequireToken`` (with its 401); public routes have none;
- the error model: every 4xx and 5xx answer has the ``Error`` schema
  (``{"error": {"code", "message"}}``). FastAPI's ``422 HTTPValidationError`` is replaced by the
  400 the app answers (``install_common``'s handler); 400 on every operation that takes input,
  413 on every one with a body, 503 on every write, 404 on every one with a path parameter (a
  segment no route takes answers so); others (403, 404, 409, 422) where the route declares
  them in ``responses=``, whose description is kept;
- what the app hands in (``ApiDoc``): examples keyed by method and path, and the patterns or
  bounds of parameters by name.

``/docs`` is Swagger UI served from the installed swagger-ui-bundle package: a store LAN has no
internet, so a page that loads its script from a CDN is blank there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from swagger_ui_bundle import swagger_ui_path

from lanesync.errors import LocalError

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
# The files the page loads (get_swagger_ui_html names them); nothing else of the bundle is served.
ASSETS: Mapping[str, str] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
SECURITY_SCHEME = "bearer"
ERROR_SCHEMA = "Error"
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
_WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})

# The answers every route gets from the shared machinery (lanesync.shell.http), by status.
INPUT_ERROR = "Invalid request: the message says what (error codes invalid_request, bad_request)"
UNAUTHORIZED = "No valid bearer token (error code unauthorized)"
TOO_LARGE = "Request body over the size limit (error code too_large)"
STORAGE_FAILED = "Storage failed (error code storage_failed): retry once it is fixed"
UNROUTED = "No such resource, or a path segment no route takes (error code not_found, http_error)"


@dataclass(frozen=True, slots=True)
class Example:
    """One operation's example: its JSON request body (None: it has none), its path or query
    parameters, and its successful JSON answer."""

    summary: str
    response: Any
    request: Any = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


Examples = Mapping[tuple[str, str], Example]  # ("POST", "/v1/sales") -> Example
NeedsToken = Callable[[Dependant], bool]


@dataclass(frozen=True, slots=True)
class ApiDoc:
    """What an app's document says beyond what FastAPI derives: ``examples``, and the schema
    keywords (a pattern, bounds) of every path or query parameter of a given name, which the
    app checks itself (its messages say more than a generic validation error)."""

    examples: Examples = field(default_factory=dict)
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def error_schemas() -> dict[str, Any]:
    """The JSON Schema of every error answer (``lanesync.shell.http.error``)."""
    return {
        ERROR_SCHEMA: {
            "title": ERROR_SCHEMA,
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
            "examples": [
                {"error": {"code": "unauthorized", "message": "a valid bearer token is required"}}
            ],
        },
        "ErrorDetail": {
            "title": "ErrorDetail",
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable, for programs (e.g. invalid_request, unauthorized, "
                    "terminal_revoked, storage_failed)",
                },
                "message": {"type": "string", "description": "For people: says what to fix"},
            },
        },
    }


def document(app: FastAPI, needs_token: NeedsToken, doc: ApiDoc) -> None:
    """Replace ``app.openapi`` by one that completes FastAPI's document (see the module doc).
    ``needs_token(dependant)`` says whether a route requires the bearer token."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(default(), app.routes, needs_token, doc)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(
    schema: dict[str, Any], routes: Sequence[BaseRoute], needs_token: NeedsToken, doc: ApiDoc
) -> dict[str, Any]:
    components = schema.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "The token in TERMINAL_DIR/api.token (the cloud: CLOUD_DIR/api.token)",
        }
    }
    components.setdefault("schemas", {}).update(error_schemas())
    # Route contexts, as FastAPI's own document is built: an included router keeps its routes.
    operations = [
        (str(route.name), str(route.path_format), method.lower(), route.dependant, operation)
        for route in iter_route_contexts(routes)
        if isinstance(route.original_route, APIRoute) and route.include_in_schema
        for method in sorted(route.methods or ())
        if (operation := schema["paths"].get(route.path_format, {}).get(method.lower()))
    ]
    names = Counter(name for name, *_ in operations)
    for name, path, method, dependant, operation in operations:
        # A generated client names its functions after operationId: FastAPI's default
        # ("post_sale_v1_sales_post") repeats the path and method; the endpoint's own name
        # ("post_sale") says it, unless two operations share it.
        if names[name] == 1:
            operation["operationId"] = name
            _name_inline_answers(operation, name)
        _complete_operation(operation, method, dependant, needs_token)
        for parameter in operation.get("parameters", ()):
            parameter["schema"].update(doc.parameters.get(parameter["name"], {}))
        example = doc.examples.get((method.upper(), path))
        if example is not None:
            _add_example(operation, example)
    for name in _FASTAPI_VALIDATION:  # every 4xx above is Error now: nothing refers to them
        components["schemas"].pop(name, None)
    return schema


def _complete_operation(
    operation: dict[str, Any], method: str, dependant: Dependant, needs_token: NeedsToken
) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if _is_fastapi_validation(responses.get("422")):
        del responses["422"]
    takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
    if takes_input or method in _WRITE_METHODS:
        responses.setdefault("400", {"description": INPUT_ERROR})
    if any(p.get("in") == "path" for p in operation.get("parameters", ())):
        # A path segment the router cannot take matches no route (schemathesis found
        # `GET /v1/stock/{sku}` with a sku of control bytes and a newline answered so).
        responses.setdefault("404", {"description": UNROUTED})
    if needs_token(dependant):
        operation["security"] = [{SECURITY_SCHEME: []}]
        responses["401"] = {
            "description": UNAUTHORIZED,
            "headers": {"WWW-Authenticate": {"schema": {"type": "string", "const": "Bearer"}}},
        }
    if method in _WRITE_METHODS:
        responses.setdefault("413", {"description": TOO_LARGE})
        responses.setdefault("503", {"description": STORAGE_FAILED})
    operation["responses"] = responses = dict(sorted(responses.items()))
    for status, response in responses.items():
        if status[:1] in ("4", "5"):
            response["content"] = {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}}
            }


def _name_inline_answers(operation: dict[str, Any], name: str) -> None:
    """Title an answer schema without a name of its own (a route returning a dict) after its
    operation: ``GetStockResponse``, not FastAPI's "Response Get Stock V1 Stock Get", which
    generators turn into class names."""
    for status, response in operation.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        if status.startswith("2") and str(schema.get("title", "")).startswith("Response "):
            schema["title"] = "".join(part.capitalize() for part in name.split("_")) + "Response"


def _is_fastapi_validation(response: dict[str, Any] | None) -> bool:
    if response is None:
        return False
    ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
    return isinstance(ref, str) and ref.endswith("/HTTPValidationError")


def _add_example(operation: dict[str, Any], example: Example) -> None:
    operation.setdefault("description", example.summary)
    for parameter in operation.get("parameters", ()):
        if parameter["name"] in example.parameters:
            parameter["example"] = example.parameters[parameter["name"]]
    if example.request is not None:
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            raise LocalError(f"example request for {operation.get('operationId')}: no JSON body")
        content["example"] = example.request
    success = [s for s in operation.get("responses", {}) if s.startswith("2")]
    for status in success:
        media = operation["responses"][status].setdefault("content", {})
        media.setdefault("application/json", {"schema": {}})["example"] = example.response


# -- /docs -----------------------------------------------------------------------------------------


def serve_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI with every asset served by this app from the installed package,
    in place of FastAPI's own pages, which load Swagger UI and ReDoc from a CDN."""
    cdn_pages = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url} - {None}
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if isinstance(route, APIRoute) or getattr(route, "path", None) not in cdn_pages
    ]
    app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url = DOCS_PATH, None, None
    title = f"{app.title} - Swagger UI"
    openapi_url = app.openapi_url or "/openapi.json"
    assets = Path(str(swagger_ui_path))

    @app.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # Swagger UI sends the document to a public validator for its badge otherwise.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> FileResponse:
        media_type = ASSETS.get(name)
        if media_type is None:
            raise HTTPException(404, f"no docs asset {name[:64]!r}")
        return FileResponse(assets / name, media_type=media_type)
