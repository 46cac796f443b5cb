"""A Server-Sent Events client for ``GET /v1/events`` of a real daemon: httpx streams the
response in a thread and parses it as the WHATWG HTML standard says (section 9.2.6: ``id``,
``event``, ``data`` fields, comment lines starting with a colon, a blank line ends an event).

The daemons under test send a keep-alive comment every ``KEEPALIVE_MS``, so the thread sees a
line at least that often and notices ``close()`` without the socket being torn down under it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .cluster import Daemon

KEEPALIVE_MS = 200
# The options a feed test's daemons run with.
FEED_OPTIONS = ("--feed-keepalive-ms", str(KEEPALIVE_MS))


@dataclass(frozen=True, slots=True)
class Event:
    id: str | None
    type: str
    data: dict[str, Any]


class FeedClient:
    """Follows one daemon's change feed until ``close``; ``events`` receives each event, in
    order, then None when the stream ended."""

    def __init__(self, daemon: Daemon, last_id: str | None = None) -> None:
        headers = {"Authorization": f"Bearer {daemon.token}"}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        self.status_code: int | None = None
        self.content_type = ""
        self.comments = 0
        self.ended = threading.Event()
        self.events: queue.Queue[Event | None] = queue.Queue()
        self._stop = threading.Event()
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._client = httpx.Client(
            base_url=daemon.api, timeout=httpx.Timeout(10.0), trust_env=False
        )
        self._thread = threading.Thread(target=self._run, args=(headers,), daemon=True)
        self._thread.start()
        if not self._opened.wait(15):
            raise AssertionError("the feed did not answer within 15 s")
        if self._error is not None:
            raise AssertionError(f"the feed failed: {self._error!r}")

    def _run(self, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", "/v1/events", headers=headers) as response:
                self.status_code = response.status_code
                self.content_type = response.headers.get("content-type", "")
                self._opened.set()
                if response.status_code != 200:
                    response.read()
                    return
                self._parse(response)
        except httpx.HTTPError as exc:
            if not self._stop.is_set():
                self._error = exc
        finally:
            self._opened.set()
            self.ended.set()
            self.events.put(None)
            self._client.close()

    def _parse(self, response: httpx.Response) -> None:
        event_id: str | None = None
        kind = "message"
        data: list[str] = []
        for line in response.iter_lines():
            if self._stop.is_set():
                return
            if line == "":
                if data:
                    self.events.put(Event(event_id, kind, json.loads("\n".join(data))))
                event_id, kind, data = None, "message", []
            elif line.startswith(":"):
                self.comments += 1
            else:
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "id":
                    event_id = value
                elif name == "event":
                    kind = value
                elif name == "data":
                    data.append(value)

    def next(self, timeout: float = 20.0) -> Event:
        event = self.events.get(timeout=timeout)
        if event is None:
            raise AssertionError(f"the stream ended ({self._error!r})")
        return event

    def until(self, done: Callable[[Event], bool], timeout: float = 20.0) -> list[Event]:
        """Every event up to and including the first for which ``done`` is true."""
        seen: list[Event] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no such event within {timeout} s; saw {seen}")
            try:
                event = self.next(left)
            except queue.Empty:
                continue
            seen.append(event)
            if done(event):
                return seen

    def records(self, count: int, timeout: float = 20.0) -> list[Event]:
        """The next ``count`` record events (those with an id), skipping status events."""
        found: list[Event] = []

        def counted(event: Event) -> bool:
            if event.id is not None:
                found.append(event)
            return len(found) == count

        self.until(counted, timeout)
        return found

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
