"""Minimal HTTP/1.1 over asyncio streams, loopback only: the load generator's client and the
baseline peers' tiny API server. Keep-alive, ``Content-Length`` bodies, JSON; nothing else.

A dependency-free client keeps the generator cheap (it shares two cores with the lanes), and
the same client drives lanesync and the baselines, so neither gets a faster path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_HEADER_BYTES = 64 * 1024
# Servers close idle keep-alive connections (uvicorn after 5 s); a request sent on one they are
# closing at that moment fails. Connections idle longer than this are not reused.
MAX_IDLE_S = 2.0


class HttpError(Exception):
    """The request did not get an answer (refused, reset, timed out, malformed)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: Any


async def _read_message(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEADER_BYTES:
        raise HttpError("header too large")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return lines[0], headers, body


class HttpClient:
    """A pool of keep-alive connections to one ``http://127.0.0.1:PORT`` base."""

    def __init__(self, base_url: str, token: str = "", max_connections: int = 64) -> None:
        parts = urlsplit(base_url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"benchmark HTTP targets must be loopback, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.token = token
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(
        self, method: str, path: str, body: Any = None, timeout_s: float = 30.0
    ) -> Response:
        async with self._slots:
            conn = self._take_idle()
            try:
                if conn is None:
                    conn = await asyncio.wait_for(
                        asyncio.open_connection(self.host, self.port), timeout_s
                    )
                reply = await asyncio.wait_for(self._exchange(conn, method, path, body), timeout_s)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                if conn is not None:
                    conn[1].transport.abort()
                raise HttpError(f"{method} {path}: {type(exc).__name__}: {exc}") from None
            except asyncio.CancelledError:
                if conn is not None:
                    conn[1].transport.abort()
                raise
            self._idle.append((*conn, time.monotonic()))
            return reply

    def _take_idle(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self._idle:
            reader, writer, since = self._idle.pop()
            if now - since < MAX_IDLE_S and not reader.at_eof():
                return reader, writer
            writer.transport.abort()
        return None

    async def _exchange(
        self,
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        method: str,
        path: str,
        body: Any,
    ) -> Response:
        reader, writer = conn
        data = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        if body is not None:
            head.append("Content-Type: application/json")
        head.append(f"Content-Length: {len(data)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        status_line, headers, payload = await _read_message(reader)
        status = int(status_line.split(" ", 2)[1])
        parsed: Any = payload
        if headers.get("content-type", "").startswith("application/json"):
            parsed = json.loads(payload)
        return Response(status, parsed)

    def close(self) -> None:
        for _, writer, _ in self._idle:
            writer.transport.abort()
        self._idle.clear()


Handler = Callable[[str, str, Any], Awaitable[tuple[int, Any]]]


async def serve_http(handler: Handler, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """A keep-alive JSON API: ``handler(method, path, body) -> (status, json)``."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    request_line, _, payload = await _read_message(reader)
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                    return
                method, path, _ = request_line.split(" ", 2)
                body = json.loads(payload) if payload else None
                status, reply = await handler(method, path, body)
                data = json.dumps(reply).encode()
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except ConnectionError:
            return
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.close()

    return await asyncio.start_server(connection, host, port)
