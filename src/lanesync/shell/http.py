"""What every lanesync HTTP API shares: JSON errors, a body-size limit, bearer tokens.

Errors are ``{"error": {"code": ..., "message": ...}}``: 4xx for anything the client can fix,
503 when storage failed or the process is busy; nothing a client sends produces a 500.

A route that needs the token says so with a ``RequireToken`` parameter, and that dependency is
the only place that says it. Requests to such a route without the token are answered 401
before their body is read (``TokenFirst``): a client that may not write learns nothing about
what the route accepts, and the server does not wait for its body.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute, APIRouter, iter_route_contexts
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lanesync.core.bundle import MAX_BUNDLE_SIZE
from lanesync.core.ids import is_decimal
from lanesync.errors import (
    Busy,
    IdempotencyConflict,
    LanesyncError,
    NotFound,
    PermissionDenied,
    RemoteError,
    StorageError,
    TerminalRevoked,
)
from lanesync.shell.openapi import ApiDoc, document, serve_docs

MAX_JSON_BODY = 256 * 1024  # a 200-line sale is ~10 KiB of JSON
LARGE_BODY_PATHS = frozenset({"/v1/import"})  # bundles
NO_DOC = ApiDoc()


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


def status_of(exc: LanesyncError) -> tuple[int, str]:
    if isinstance(exc, TerminalRevoked):
        return 403, "terminal_revoked"
    if isinstance(exc, PermissionDenied):
        return 403, "forbidden"
    if isinstance(exc, IdempotencyConflict):
        return 422, "idempotency_key_reused"
    if isinstance(exc, NotFound):
        return 404, "not_found"
    if isinstance(exc, StorageError):
        return 503, "storage_failed"
    if isinstance(exc, Busy):
        return 503, "busy"
    if isinstance(exc, RemoteError):
        return 400, "rejected"
    return 400, "bad_request"


class _Unauthorized(Exception):
    pass


class BodyLimit:
    """Refuse request bodies above a limit before reading them into memory (413)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = MAX_BUNDLE_SIZE if scope["path"] in LARGE_BODY_PATHS else MAX_JSON_BODY
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        too_large = error(413, "too_large", f"request body over {limit} bytes")
        if declared is not None and (
            not is_decimal(declared.decode(errors="replace")) or int(declared) > limit
        ):
            await too_large(scope, receive, send)
            return
        seen = 0
        over = False
        answered = False

        async def limited() -> Message:
            # Past the limit the app is told the client went away, so it stops reading; its
            # own answer to that is dropped below and ours (413) is sent instead.
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                over = True
                return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal answered
            if over:
                return
            answered = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except ClientDisconnect:
            if not over:
                raise
        if over and not answered:
            await too_large(scope, receive, send)


def _bearer_ok(headers: Iterable[tuple[bytes, bytes]], expected: bytes) -> bool:
    """Whether the first Authorization header is ``Bearer <expected>``.

    Compared as bytes: a header value may hold any byte above 0x7F (obs-text, RFC 9110 section
    5.5), and ``hmac.compare_digest`` refuses a str with non-ASCII characters (TypeError)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)
    return False


async def _authorized(request: Request) -> None:
    # async: FastAPI runs a synchronous dependency in an AnyIO worker thread, and those
    # non-daemon threads have kept a daemon that was failing from exiting.
    expected: bytes = request.app.state.token
    if not _bearer_ok(request.headers.raw, expected):
        raise _Unauthorized


RequireToken = Annotated[None, Depends(_authorized)]


def _needs_token(dependant: Dependant) -> bool:
    return any(d.call is _authorized or _needs_token(d) for d in dependant.dependencies)


def allowed_methods(router: APIRouter, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (whatever its method). Routes of
    that very path come first, as OpenAPI matches concrete paths before templated ones: for
    ``/v1/stock/adjust`` that is POST, though ``GET /v1/stock/{sku}`` would take it too."""
    concrete: set[str] = set()
    templated: set[str] = set()
    for route in iter_route_contexts(router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            params = getattr(route, "param_convertors", None)
            (templated if params else concrete).update(route.methods or ())
    return sorted(concrete or templated)


def _unauthorized() -> JSONResponse:
    response = error(401, "unauthorized", "a valid bearer token (api.token) is required")
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


class TokenFirst:
    """Answer 401 before the body is read when the route a request goes to has ``RequireToken``.

    FastAPI reads and parses the body before it runs a route's dependencies, so the dependency
    alone answers a malformed body without a token with 400, and reads (or waits for) the body
    of a client that may not write. Which route a request goes to is decided here as the
    router decides it (the first full match); the answer for a route without the token
    dependency, or with the token, is the app's."""

    def __init__(self, app: ASGIApp, router: APIRouter, token: bytes) -> None:
        self.app = app
        self.router = router  # its routes are added after the middleware: read per request
        self.token = token

    def _route_needs_token(self, scope: Scope) -> bool:
        # Route contexts, not router.routes: FastAPI keeps the routes of an included router
        # inside it, and only the context has the dependencies include_router added.
        for route in iter_route_contexts(self.router.routes):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return isinstance(route.original_route, APIRoute) and _needs_token(route.dependant)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and self._route_needs_token(scope)
            and not _bearer_ok(scope["headers"], self.token)
        ):
            await _unauthorized()(scope, receive, send)
            return
        await self.app(scope, receive, send)


class HeadAsGet:
    """Answer HEAD as GET (RFC 9110 section 9.3.2: the same headers, no body), so uptime monitors
    that probe with HEAD get 200 instead of 405. The app sees a GET; the server, which still
    knows the request was HEAD, sends no body. Streams (the change feed) stay GET-only: a HEAD
    would hold a stream open that nobody reads."""

    def __init__(self, app: ASGIApp, streams: frozenset[str]) -> None:
        self.app = app
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "HEAD"
            and scope["path"] not in self.streams
        ):
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


# Paths whose GET answer never ends (Server-Sent Events): no HEAD for them.
STREAMS = frozenset({"/v1/events"})


def install_common(app: FastAPI, token: str, doc: ApiDoc = NO_DOC) -> None:
    """Error handlers, the body limit and the token every lanesync API uses, its OpenAPI
    document completed to say so (and what ``doc`` adds), and ``/docs`` served without a CDN."""
    app.state.token = token.encode()
    app.add_middleware(BodyLimit)
    # Added last, so it runs first: a request without the token is refused before BodyLimit or
    # the app read any of its body.
    app.add_middleware(TokenFirst, router=app.router, token=app.state.token)
    # Outermost: every layer below (the token check included) sees the GET a HEAD stands for.
    app.add_middleware(HeadAsGet, streams=STREAMS)
    document(app, _needs_token, doc)
    serve_docs(app)

    @app.exception_handler(LanesyncError)
    async def lanesync_error(_: Request, exc: LanesyncError) -> JSONResponse:
        status, code = status_of(exc)
        return error(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}" if where else "invalid request body"
        return error(400, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        response = error(exc.status_code, "http_error", str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110 section 15.5.6: Allow lists what the resource takes. The router's names
            # only the first route of that path, and a path may have its GET in a router and
            # its POST in the app (GET and POST /v1/sales).
            response.headers["Allow"] = ", ".join(allowed_methods(app.router, request.scope))
        return response

    @app.exception_handler(ClientDisconnect)
    async def client_gone(_: Request, __: ClientDisconnect) -> JSONResponse:
        # Routes that read a raw body (bundles, revocations) meet a client that hung up mid-
        # body here: nothing was changed and nobody reads this answer, but without a handler
        # the hang-up was logged as an exception with a traceback.
        return error(400, "client_disconnected", "the client hung up before its whole request")

    @app.exception_handler(_Unauthorized)
    async def unauthorized(_: Request, __: _Unauthorized) -> JSONResponse:
        return _unauthorized()
