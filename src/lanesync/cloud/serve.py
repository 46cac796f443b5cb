"""``lanesync cloud serve``: the process around ``CloudService``: its sockets, the head-office
API, following a shared database, and one way to stop (SIGTERM, or a storage failure: exit 74,
lanesync.shell.server).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.server import serve

from lanesync.cloud.api import create_cloud_app
from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.follow import follow_database
from lanesync.cloud.residency import DEFAULT_IDLE_S, DEFAULT_MAX_RESIDENT
from lanesync.cloud.service import CloudService
from lanesync.errors import ConfigError, StorageError
from lanesync.shell.directories import LOCK
from lanesync.shell.eventloop import DEFAULT_LOOP, LoopChoice, choose_loop, run_on
from lanesync.shell.lock import DirectoryLock
from lanesync.shell.logs import DEFAULT_LOG_LEVEL, LOG_LEVELS
from lanesync.shell.mesh import DEFAULT_COLLABORATORS, Collaborators, websocket_options
from lanesync.shell.runtime import load_or_create_token, remove_runtime, write_runtime
from lanesync.shell.server import (
    ApiServer,
    Shutdown,
    bind_sockets,
    configure_logging,
    socket_url,
    stop_api,
)

log = logging.getLogger("lanesync.cloud")


@dataclass(frozen=True, slots=True)
class CloudConfig:
    directory: Path
    listen: tuple[str, int] = ("127.0.0.1", 0)
    api: tuple[str, int] = ("127.0.0.1", 0)
    db_url: str | None = None  # None: SQLite in the directory; else a shared PostgreSQL
    collaborators: Collaborators = DEFAULT_COLLABORATORS  # the defaults but for the benchmark
    log_level: str = DEFAULT_LOG_LEVEL  # a key of shell.logs.LOG_LEVELS
    # The uplink port over TLS (wss://) with this certificate chain and key, both PEM; None: ws://
    tls: tuple[Path, Path] | None = None
    idle_s: float = DEFAULT_IDLE_S  # a store nobody uses this long is evicted
    max_resident: int = DEFAULT_MAX_RESIDENT  # stores whose replica the process holds, at most
    loop: LoopChoice = DEFAULT_LOOP  # the event loop (shell.eventloop)


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A server context for the uplink port (Python's defaults: TLS 1.2 and up)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert_file, key_file)
    except OSError as exc:
        # OpenSSL says "[SSL] PEM lib (_ssl.c:3905)" for a file that is not PEM, or a key that
        # is not the certificate's: say that in words.
        reason = (
            "not a PEM certificate and its private key"
            if isinstance(exc, ssl.SSLError)
            else exc.strerror or str(exc)
        )
        raise ConfigError(
            f"cannot use TLS certificate {cert_file} with key {key_file}: {reason}"
        ) from exc
    return context


async def run_cloud(config: CloudConfig) -> None:
    """Serve until SIGTERM/SIGINT (returns) or a storage failure (raises ``StorageError`` once
    everything is closed)."""
    directory = CloudDirectory.open(config.directory)
    tls = None if config.tls is None else tls_context(*config.tls)
    lock = DirectoryLock(config.directory / LOCK)
    lock.acquire(0)  # one serve per cloud directory
    try:
        service = CloudService(
            directory,
            config.db_url,
            config.collaborators,
            idle_s=config.idle_s,
            max_resident=config.max_resident,
        )
    except BaseException:
        lock.release()
        raise
    shutdown = Shutdown()
    try:
        service.start(shutdown.storage_failed)
        await _serve(config, service, shutdown, tls)
    finally:
        remove_runtime(config.directory)
        service.close()
        lock.release()
        log.info("cloud.stopped")
    shutdown.raise_failure()


async def _serve(
    config: CloudConfig, service: CloudService, shutdown: Shutdown, tls: ssl.SSLContext | None
) -> None:
    shutdown.install_signals()
    peer_sock, api_sock = bind_sockets(config.listen, config.api)
    service.listen = socket_url("ws" if tls is None else "wss", peer_sock)
    service.api = socket_url("http", api_sock)
    token = load_or_create_token(config.directory)
    api = ApiServer(create_cloud_app(service, token))
    async with (
        serve(service.route, sock=peer_sock, ssl=tls, **websocket_options()) as server,
        asyncio.TaskGroup() as group,
    ):
        serving_api = group.create_task(api.serve(sockets=[api_sock]), name="api")
        tasks = [
            group.create_task(service.evict_idle_forever(), name="evict"),
            group.create_task(
                follow_database(service.backend, service.stores, shutdown.storage_failed),
                name="follow",
            ),
        ]
        try:
            write_runtime(
                config.directory,
                {
                    "pid": os.getpid(),
                    "listen": service.listen,
                    "api": service.api,
                    "started_ms": service.started_ms,
                },
            )
        except StorageError as exc:
            shutdown.storage_failed(exc)
        else:
            log.info(
                "cloud.started listen=%s api=%s stores=%d max_resident=%d idle_s=%g db=%s",
                service.listen,
                service.api,
                len(service.registered),
                service.max_resident,
                service.idle_s,
                service.backend.description,
            )
        await shutdown.wait()
        remove_runtime(config.directory)
        for runtime in list(service.stores.values()):
            runtime.mesh.close_all()
        server.close()
        await stop_api(api, serving_api)
        for task in tasks:
            task.cancel()


def cloud_main(config: CloudConfig) -> None:
    loop = choose_loop(config.loop)  # uvloop asked for and missing: an error before anything
    configure_logging(LOG_LEVELS[config.log_level])
    run_on(loop, run_cloud(config))
