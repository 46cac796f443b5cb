"""What the terminal daemon (``lanesync run``) and the cloud (``lanesync cloud serve``) share as
long-running processes: listening sockets bound before start, the HTTP API under uvicorn,
structured logs, and one way to stop.

A process stops for one of two reasons, and both take the same path (``Shutdown``):

* an operator's SIGTERM or SIGINT: exit status 0;
* a storage failure (a full disk, an I/O error, a lost database): one ``storage failed`` line
  at level error, every request in flight answered (503) within ``API_SHUTDOWN_GRACE_S``, the
  directory lock and both ports released, and exit status ``EXIT_STORAGE_FAILED``, so that a
  supervisor (systemd ``Restart=on-failure``) starts it again once the disk is fixed. Memory
  may be ahead of disk after a failed commit, so only a restart, which replays what is durable,
  is safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from lanesync.errors import EXIT_STORAGE_FAILED, StorageError, UsageError

log = logging.getLogger("lanesync.server")

__all__ = [
    "EXIT_STORAGE_FAILED",
    "ApiServer",
    "Shutdown",
    "bind_socket",
    "bind_sockets",
    "socket_url",
    "stop_api",
]

# How long the local API keeps an idle keep-alive connection. uvicorn's default is 5 s, as short
# as common HTTP clients' own idle expiry (httpx 5 s, Node's agent 5 s, aiohttp 15 s): a POS
# request sent on a connection the server is closing at that moment gets no answer. A server
# that waits longer than its clients lets them always close first (docs/how-to/operations.md).
API_KEEP_ALIVE_S = 65
# On shutdown, requests in flight get this long to be answered before their connections are
# dropped. A write is answered in milliseconds (or at once with 503 after a storage failure);
# a bundle import of a large day takes a second or two on a busy lane.
API_SHUTDOWN_GRACE_S = 3


class JsonLines(logging.Formatter):
    """One JSON object per line: easy to grep, easy to ship."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr from ``level`` up (docs/reference/logs.md); the libraries' own
    loggers only from warning up, whatever ``level`` is: their debug is not ours."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)


class ApiServer(uvicorn.Server):
    """uvicorn with the settings every lanesync API shares."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(
            uvicorn.Config(
                app,
                log_config=None,  # its records go through our JSON lines (configure_logging)
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_keep_alive=API_KEEP_ALIVE_S,
                timeout_graceful_shutdown=API_SHUTDOWN_GRACE_S,
            )
        )

    # uvicorn re-raises captured signals when it stops; the process owns signal handling.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only disables Nagle (TCP_NODELAY) on sockets whose
    # protocol says TCP; with 0 every small response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        why = str(exc.strerror or exc)
        raise UsageError(f"cannot listen on {where}: {why[:1].lower()}{why[1:]}") from exc
    return sock


def bind_sockets(
    listen: tuple[str, int], api: tuple[str, int]
) -> tuple[socket.socket, socket.socket]:
    """The peer socket and the API socket, both bound, or neither (a UsageError naming the
    address that could not be bound)."""
    peer_sock = bind_socket(*listen)
    try:
        api_sock = bind_socket(*api)
    except BaseException:
        peer_sock.close()
        raise
    return peer_sock, api_sock


def socket_url(scheme: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def stop_api(api: ApiServer, serving: asyncio.Task[None]) -> None:
    """Stop the API first, while the rest still runs: uvicorn stops accepting, closes idle
    keep-alive connections and answers the requests in flight (writes need the committer, so
    it is cancelled only after this), giving up on them after ``API_SHUTDOWN_GRACE_S``."""
    api.should_exit = True
    await asyncio.wait([serving])


class Shutdown:
    """Why and when the process stops. Guarantee: ``wait`` returns once a signal arrived or
    storage failed; ``failure`` then tells which, and ``storage_failed`` logs one line however
    often it is called."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.failure: StorageError | None = None

    def install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._event.set)

    def storage_failed(self, exc: StorageError) -> None:
        if self.failure is None:
            self.failure = exc
            log.error("storage failed, stopping: %s", exc)
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def raise_failure(self) -> None:
        """After the shutdown: raise the storage failure, if that is why it stopped."""
        if self.failure is not None:
            raise self.failure
