"""``lanesync run``: one terminal as a long-running process.

Runs, in one asyncio TaskGroup: the peer websocket server, a dialer per static peer, the local
HTTP API (uvicorn), the group committer, and the closing of business days (shell.dayclosing).
SIGTERM or SIGINT shuts down cleanly: peers are told, servers stop, the runtime file is removed
and the directory lock released. A storage failure takes the same path and then exits with
``EXIT_STORAGE_FAILED`` (lanesync.shell.server). A second daemon on the same directory is
refused (the directory lock).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.server import serve

from lanesync.core.dayclose import DEFAULT_CLOSE_AT_MINUTE
from lanesync.core.election import Election
from lanesync.core.headcheck import DEFAULT_HEAD_WAIT_MS, HeadCheck
from lanesync.core.ids import is_decimal
from lanesync.core.isolation import DEFAULT_ISOLATION_AFTER_MS, Isolation
from lanesync.core.node import ANTI_ENTROPY_MS, Node
from lanesync.errors import StorageError, UsageError
from lanesync.shell.api import DaemonState, create_app
from lanesync.shell.committer import FirstWrite, GroupCommitter
from lanesync.shell.dayclosing import close_days_on_schedule, seal_days_when_due
from lanesync.shell.discovery import Discovery
from lanesync.shell.eventloop import (
    DEFAULT_LOOP,
    LoopChoice,
    choose_loop,
    run_on,
    running_loop_name,
)
from lanesync.shell.feed import (
    KEEPALIVE_S,
    MAX_QUEUED_BYTES,
    MAX_SUBSCRIBERS,
    FeedHub,
    read_status,
)
from lanesync.shell.logs import DEFAULT_LOG_LEVEL, LOG_LEVELS
from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators, Mesh, websocket_options
from lanesync.shell.runtime import load_or_create_token, remove_runtime, write_runtime
from lanesync.shell.server import (
    ApiServer,
    Shutdown,
    bind_sockets,
    configure_logging,
    socket_url,
    stop_api,
)
from lanesync.shell.terminal import Terminal, wall_clock_ms
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
    # How long the lane may hear no peer and no cloud before its status says it is isolated.
    isolation_after_ms: int = DEFAULT_ISOLATION_AFTER_MS
    # How long the first write after opening waits for a peer's answer (0: not at all).
    head_wait_ms: int = DEFAULT_HEAD_WAIT_MS
    # The change feed's keep-alive interval (shortened only by tests).
    feed_keepalive_s: float = KEEPALIVE_S
    feed_queue_bytes: int = MAX_QUEUED_BYTES
    feed_max_clients: int = MAX_SUBSCRIBERS
    # Store-time minute of the day at which the lane closes the day before (None: never on its
    # own); it also closes the days it missed when it starts (shell.dayclosing).
    close_at_minute: int | None = DEFAULT_CLOSE_AT_MINUTE
    collaborators: Collaborators = DEFAULT_COLLABORATORS  # the defaults but for the benchmark
    log_level: str = DEFAULT_LOG_LEVEL  # a key of shell.logs.LOG_LEVELS
    loop: LoopChoice = DEFAULT_LOOP  # the event loop (shell.eventloop)
    # BENCHMARK ONLY (the lane control of ``lanesync bench mesh``): run with the daemon's state
    # once it serves (runtime file written), in its task group; cancelled when it stops.
    alongside: Callable[[DaemonState], Coroutine[None, None, None]] | None = None


def parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not is_decimal(port) or not 0 <= int(port) <= 65535:
        raise UsageError(f"invalid {what} address {text!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    return host, int(port)


def parse_peer_url(text: str, what: str = "peer") -> str:
    """A ``ws://`` or ``wss://`` address with a host and a port, no path; ``what`` names it in
    the error (``peer`` for ``--peer``, ``cloud URL`` for ``--cloud``)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    if parts.scheme not in ("ws", "wss") or not parts.hostname or port is None:
        raise UsageError(f"invalid {what} {text!r}: expected ws://HOST:PORT or wss://HOST:PORT")
    if parts.username is not None or parts.password is not None:
        # Never used (peers prove who they are with certificates), and logged with the URL.
        raise UsageError(f"invalid {what} {text!r}: no user name or password in an address")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise UsageError(f"invalid {what} {text!r}: an address has no path, query or fragment")
    return text.rstrip("/")


async def run_daemon(config: DaemonConfig) -> None:
    """Serve until SIGTERM/SIGINT (returns) or a storage failure (raises ``StorageError`` once
    everything is closed: lock, ports, runtime file)."""
    terminal = Terminal.open(config.directory, lock_wait_s=0, crypto=config.collaborators.crypto)
    started = time.monotonic()
    shutdown = Shutdown()
    terminal.on_failure = shutdown.storage_failed
    try:
        await _serve(config, terminal, shutdown)
    finally:
        remove_runtime(config.directory)
        terminal.close()
        log.info("stopped after %.1f s", time.monotonic() - started)
    shutdown.raise_failure()


async def _serve(config: DaemonConfig, terminal: Terminal, shutdown: Shutdown) -> None:
    shutdown.install_signals()
    election = Election(terminal.terminal_id, priority=config.priority, started_ms=wall_clock_ms())
    node = Node(
        terminal.replica,
        anti_entropy_ms=config.anti_entropy_ms or ANTI_ENTROPY_MS,
        election=election,
    )
    started_ms = wall_clock_ms()
    isolation = Isolation(terminal.terminal_id, started_ms, config.isolation_after_ms)
    first_write = FirstWrite(HeadCheck(started_ms, config.head_wait_ms), wall_clock_ms)
    mesh = Mesh(
        node,
        terminal,
        observer=config.collaborators.observer(terminal),
        isolation=isolation,
        on_caught_up=first_write.answered,
    )
    terminal.on_revoked = partial(_revoked, terminal)
    if terminal.revoked:
        _revoked(terminal)  # learnt before this start: said once per run, here
    committer = GroupCommitter(terminal, publish=mesh.write, first_write=first_write)
    uplink = None if config.cloud is None else Uplink(mesh, election, config.cloud)
    peer_sock, api_sock = bind_sockets(config.listen, config.api)
    state = DaemonState(
        terminal,
        committer,
        mesh,
        load_or_create_token(config.directory),
        listen=socket_url("ws", peer_sock),
        api=socket_url("http", api_sock),
        started_ms=started_ms,
        first_write=first_write,
        election=election,
        uplink=uplink,
    )
    if terminal.feed is not None:
        state.feed = FeedHub(
            terminal.feed,
            partial(read_status, mesh, election, uplink),
            keepalive_s=config.feed_keepalive_s,
            queue_bytes=config.feed_queue_bytes,
            max_subscribers=config.feed_max_clients,
        )
    api = ApiServer(create_app(state))
    async with (
        serve(mesh.serve_connection, sock=peer_sock, **websocket_options()) as server,
        asyncio.TaskGroup() as group,
    ):
        serving_api = group.create_task(api.serve(sockets=[api_sock]), name="api")
        tasks = [group.create_task(committer.run(), name="committer")]
        if state.feed is not None:
            tasks.append(group.create_task(state.feed.run(), name="feed"))
        if config.close_at_minute is not None:
            closing = close_days_on_schedule(
                terminal, committer, config.close_at_minute, wall_clock_ms
            )
            tasks.append(group.create_task(closing, name="day-close"))
        # A lane with peers to find gives them the first write's head wait to connect (the
        # same reasoning: a --peer is dialled at once, mDNS needs ~1.2 s) before it may seal
        # a day on its own word.
        finds_peers = bool(config.peers) or config.discovery
        sealing = seal_days_when_due(
            terminal,
            node.peer_states,
            mesh.days_sealed,
            cloud=config.cloud is not None,
            first_check_after_s=config.head_wait_ms / 1000 if finds_peers else 0.0,
        )
        tasks.append(group.create_task(sealing, name="day-seal"))
        mesh.start()
        if uplink is not None:
            tasks.append(group.create_task(uplink.run(), name="uplink"))
        for url in config.peers:
            mesh.add_static(url)
        discovery = None
        try:
            write_runtime(
                config.directory,
                {
                    "pid": os.getpid(),
                    "terminal_id": terminal.terminal_id,
                    "listen": state.listen,
                    "api": state.api,
                    "started_ms": state.started_ms,
                },
            )
        except StorageError as exc:
            shutdown.storage_failed(exc)
        else:
            if config.alongside is not None:
                tasks.append(group.create_task(config.alongside(state), name="alongside"))
            if config.discovery:
                discovery = Discovery(
                    store_id=terminal.store_id,
                    terminal_id=terminal.terminal_id,
                    key_fingerprint=terminal.directory.me.certificate.key_fingerprint,
                    listen_host=config.listen[0],
                    port=peer_sock.getsockname()[1],
                    interfaces=config.interfaces,
                    on_found=mesh.discovered,
                    on_lost=mesh.lost,
                )
                await discovery.start()  # RFC 6762 probing: ~1.2 s before peers see us
            log.info(
                "started terminal=%s listen=%s api=%s peers=%d loop=%s",
                terminal.terminal_id,
                state.listen,
                state.api,
                len(config.peers),
                running_loop_name(),
            )
        await shutdown.wait()
        log.info("stopping terminal=%s", terminal.terminal_id)
        remove_runtime(config.directory)
        if discovery is not None:
            await discovery.stop()  # the mDNS goodbye
        mesh.close_all()
        for entry in mesh.peers:
            if entry.task is not None:
                entry.task.cancel()
        server.close()
        if state.feed is not None:
            state.feed.close()  # streams end now, not at uvicorn's grace timeout
        await stop_api(api, serving_api)
        for task in tasks:
            task.cancel()


def _revoked(terminal: Terminal) -> None:
    log.error(
        "terminal.revoked terminal=%s: the store revoked this terminal; every write is refused "
        "from now on: enroll a replacement terminal and contact the store authority",
        terminal.terminal_id,
    )


def daemon_main(config: DaemonConfig) -> None:
    loop = choose_loop(config.loop)  # uvloop asked for and missing: an error before anything
    configure_logging(LOG_LEVELS[config.log_level])
    run_on(loop, run_daemon(config))
