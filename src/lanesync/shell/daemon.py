"""``lanesync run``: one terminal as a long-running process.

Runs, in one asyncio TaskGroup: the peer websocket server, a dialer per static peer, the local
HTTP API (uvicorn), and the group committer. SIGTERM or SIGINT shuts down cleanly: peers are
told, servers stop, the runtime file is removed and the directory lock released. A second
daemon on the same directory is refused (the directory lock).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from websockets.asyncio.server import serve

from lanesync.core.election import Election
from lanesync.core.ids import is_decimal
from lanesync.core.node import ANTI_ENTROPY_MS, Node
from lanesync.errors import UsageError
from lanesync.shell.api import DaemonState, create_app
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.discovery import Discovery
from lanesync.shell.mesh import SHUTDOWN_REASON, Mesh, wall_ms, websocket_options
from lanesync.shell.runtime import load_or_create_token, remove_runtime, write_runtime
from lanesync.shell.terminal import Terminal
from lanesync.shell.uplink import Uplink

log = logging.getLogger("lanesync.daemon")


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    directory: Path
    listen: tuple[str, int] = ("127.0.0.1", 0)
    api: tuple[str, int] = ("127.0.0.1", 0)
    peers: tuple[str, ...] = ()
    discovery: bool = True
    interfaces: tuple[str, ...] = ()
    cloud: str | None = None
    priority: int = 0
    anti_entropy_ms: int | None = None


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not is_decimal(port) or not 0 <= int(port) <= 65535:
        raise UsageError(f"invalid {what} address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    return host, int(port)


def parse_peer_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    if parts.scheme not in ("ws", "wss") or not parts.hostname or port is None:
        raise UsageError(f"invalid peer {text!r}: expected ws://HOST:PORT or wss://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"invalid peer {text!r}: a peer address has no path")
    return text.rstrip("/")


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("uvicorn").setLevel(logging.WARNING)


# How long the local API keeps an idle keep-alive connection. uvicorn's default is 5 s, as short
# as common HTTP clients' own idle expiry (httpx 5 s, Node's agent 5 s, aiohttp 15 s): a POS
# request sent on a connection the server is closing at that moment gets no answer. A server
# that waits longer than its clients lets them always close first (docs/operations.md).
API_KEEP_ALIVE_S = 65


class ApiServer(uvicorn.Server):
    # uvicorn re-raises captured signals when it stops; the daemon owns signal handling.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only disables Nagle (TCP_NODELAY) on sockets whose
    # protocol says TCP; with 0 every small response waited ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def socket_url(scheme: str, sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


async def run_daemon(config: DaemonConfig) -> None:
    terminal = Terminal.open(config.directory, lock_wait_s=0)
    try:
        await _serve(config, terminal)
    finally:
        remove_runtime(config.directory)
        terminal.close()


async def _serve(config: DaemonConfig, terminal: Terminal) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    election = Election(terminal.terminal_id, priority=config.priority, started_ms=wall_ms())
    node = Node(
        terminal.replica,
        anti_entropy_ms=config.anti_entropy_ms or ANTI_ENTROPY_MS,
        election=election,
    )
    fatal: list[BaseException] = []

    def on_fatal(exc: BaseException) -> None:
        fatal.append(exc)
        stop.set()

    mesh = Mesh(node, terminal, on_fatal=on_fatal)
    committer = GroupCommitter(terminal, on_commit=mesh.committed)
    uplink = None if config.cloud is None else Uplink(mesh, election, config.cloud)
    peer_sock = bind_socket(*config.listen)
    api_sock = bind_socket(*config.api)
    state = DaemonState(
        terminal,
        committer,
        mesh,
        load_or_create_token(config.directory),
        listen=socket_url("ws", peer_sock),
        api=socket_url("http", api_sock),
        started_ms=wall_ms(),
        election=election,
        uplink=uplink,
    )
    api = ApiServer(
        uvicorn.Config(
            create_app(state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=API_KEEP_ALIVE_S,
        )
    )
    async with (
        serve(mesh.serve_connection, sock=peer_sock, **websocket_options()) as server,
        asyncio.TaskGroup() as group,
    ):
        tasks = [
            group.create_task(committer.run(), name="committer"),
            group.create_task(api.serve(sockets=[api_sock]), name="api"),
        ]
        mesh.start()
        if uplink is not None:
            tasks.append(group.create_task(uplink.run(), name="uplink"))
        for url in config.peers:
            mesh.add_static(url)
        write_runtime(
            config.directory,
            {
                "pid": _pid(),
                "terminal_id": terminal.terminal_id,
                "listen": state.listen,
                "api": state.api,
                "started_ms": state.started_ms,
            },
        )
        discovery = None
        if config.discovery:
            discovery = Discovery(
                store_id=terminal.store_id,
                terminal_id=terminal.terminal_id,
                fingerprint=terminal.directory.me.certificate.key_fingerprint,
                listen_host=config.listen[0],
                port=peer_sock.getsockname()[1],
                interfaces=config.interfaces,
                on_found=mesh.discovered,
                on_lost=mesh.lost,
            )
            await discovery.start()  # RFC 6762 probing: ~1.2 s before peers see us
        log.info(
            "started terminal=%s listen=%s api=%s peers=%d",
            terminal.terminal_id,
            state.listen,
            state.api,
            len(config.peers),
        )
        await stop.wait()
        log.info("stopping terminal=%s", terminal.terminal_id)
        remove_runtime(config.directory)
        if discovery is not None:
            await discovery.stop()  # the mDNS goodbye
        mesh.close_all(SHUTDOWN_REASON)
        for entry in mesh.peers:
            if entry.task is not None:
                entry.task.cancel()
        server.close()
        api.should_exit = True
        await asyncio.sleep(0)
        for task in tasks:
            if task.get_name() != "api":
                task.cancel()
    if fatal:
        raise fatal[0]


def _pid() -> int:
    return os.getpid()


def run(config: DaemonConfig) -> None:
    configure_logging()
    started = time.monotonic()
    asyncio.run(run_daemon(config))
    log.info("stopped after %.1f s", time.monotonic() - started)
