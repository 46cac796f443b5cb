"""``GET /v1/events``: the change feed as Server-Sent Events (shell.feed streams it).

The bearer token is required (401 JSON before anything streams; browsers read the stream with
``fetch()``, since ``EventSource`` cannot send the header). ``Last-Event-ID`` resumes after the
id a client saw last: 400 JSON if it is not an id of this lane; 503 JSON when the feed already
has its maximum of clients or the lane is stopping.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from lanesync.core.feed import MAX_EVENT_ID_DIGITS, EventType, parse_last_event_id
from lanesync.shell.feed import FeedUnavailable, Subscriber
from lanesync.shell.feedlog import FeedLog
from lanesync.shell.http import RequireToken, error

if TYPE_CHECKING:
    from lanesync.shell.api import DaemonState

MEDIA_TYPE: Final = "text/event-stream"
# How long the end of a stream (its last, empty chunk) may wait for a client's TCP window.
FINAL_SEND_S: Final = 1.0

EVENT_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": f"^[0-9]{{1,{MAX_EVENT_ID_DIGITS}}}$"},
        "event": {"type": "string", "enum": [t.value for t in EventType]},
        "data": {"type": "string", "contentMediaType": "application/json"},
    },
}
EVENTS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: record events (with ids) and status events "
        "(without); a `: keep-alive` comment every 15 s",
        # The schema of one event (OpenAPI 3.2 and schemathesis read a text/event-stream
        # schema so): its id (record events only), its type, and one line of JSON data.
        "content": {MEDIA_TYPE: {"schema": EVENT_SCHEMA}},
    },
    400: {"description": "Last-Event-ID is not an event id of this lane (bad_request)"},
    503: {"description": "Too many clients follow the feed, or the lane is stopping"},
}


class EventStream(Response):
    """A subscriber's frames as a streaming response that ends when the client goes, when the
    hub ends the subscriber (dropped, or stopping), or when its frames end, whichever is
    first, even while a send waits for a client that does not read."""

    media_type = MEDIA_TYPE

    def __init__(self, subscriber: Subscriber, feed: FeedLog) -> None:
        super().__init__(
            # A stream ends only when the lane drops it or stops: no request follows it on the
            # connection, and closing it is how a client that stopped reading is let go.
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "close"},
            media_type=MEDIA_TYPE,
        )
        # A stream has no length: Response declared the empty body's (0).
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._subscriber = subscriber
        self._feed = feed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.ensure_future(self._pump(send))
        gone = asyncio.ensure_future(_disconnected(receive))
        ended = asyncio.ensure_future(self._subscriber.ended.wait())
        tasks = (pump, gone, ended)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._subscriber.close()
            for task in tasks:
                task.cancel()
            # Each has finished, one way or another; pump's own error is raised below.
            await asyncio.gather(*tasks, return_exceptions=True)
        if not pump.cancelled() and (failure := pump.exception()) is not None:
            raise failure  # a storage failure while replaying: not swallowed
        if gone not in done:
            # Ended by the hub (dropped, or stopping): end the response if the client's TCP
            # window lets us; if it does not (it stopped reading), uvicorn closes the
            # connection after we return.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_end_body(send), FINAL_SEND_S)

    async def _pump(self, send: Send) -> None:
        async for chunk in self._subscriber.frames(self._feed):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _end_body(send: Send) -> None:
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def add_feed_routes(app: FastAPI, state: DaemonState) -> None:
    """Add the feed's route to ``app`` itself. Not through ``include_router``: FastAPI 0.165
    keeps an included router as one opaque route, which ``shell.http`` (``TokenFirst``, the
    OpenAPI security entries) does not look into, so the route would be documented as needing
    no token."""

    @app.get(
        "/v1/events",
        tags=["reads"],
        status_code=200,
        response_class=EventStream,
        responses=EVENTS_RESPONSES,
    )
    async def get_events(request: Request, _: RequireToken) -> Response:
        """The change feed: one event per record this lane accepted and made durable (sale,
        void, receipt, adjustment, price, ...) and per status change (peer_up, peer_down,
        leader, cloud_link, oversold). Send ``Last-Event-ID`` to resume after that event."""
        after = parse_last_event_id(request.headers.get("last-event-id"))
        hub = state.feed
        if hub is None:
            return error(503, "unavailable", "this process serves no change feed")
        try:
            subscriber = hub.subscribe(after)
        except FeedUnavailable as exc:
            return error(503, "unavailable", str(exc))
        return EventStream(subscriber, hub.feed)
