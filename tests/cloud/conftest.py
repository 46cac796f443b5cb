"""Fixtures of the cloud tests.

``cloud_template`` (once per session) sets up a store and a cloud with the three documented
commands, through the CLI, exactly as docs/how-to/cloud.md shows them::

    lanesync cloud init cloud
    lanesync store certify-cloud store cloud/cloud.json cloud.cert
    lanesync cloud add-store cloud store/store.json cloud.cert

Every test gets its own copy (``world``), once with the default SQLite database and once with
a fresh PostgreSQL database (migrated with ``lanesync cloud migrate``) on a throwaway server the
session starts (lanesync.tools.pgserver); where PostgreSQL is not installed, those runs skip
and say why. Processes (``procs``) and fault proxies (``proxies``, from tests/conftest.py)
are torn down whatever the test did; when a test fails, the tail of every log of the processes
it started is attached to the report.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import attach_logs

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.pgstorage import PostgresStoreStorage
from lanesync.cloud.schema import migrate_postgresql
from lanesync.cloud.sql import Sql, SqliteSql, connect
from lanesync.cloud.stores import Backend, StoreRuntime, open_store
from lanesync.core.identity import Role
from lanesync.errors import StorageError
from lanesync.shell.admission import HandshakeGate
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms
from lanesync.tools.pgserver import PostgresServer, unavailable_reason

from .procs import Procs, cli_json, cli_ok

STORE_ID = "s1"
VALID_DAYS = 30
BACKENDS = ("sqlite", "postgresql")
_databases = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Template:
    root: Path
    outputs: dict[str, str]  # the setup commands' text output, for the docs


@dataclass(frozen=True, slots=True)
class World:
    """A store authority (``store/``), a cloud serving it (``cloud/``), lanes enrolled on demand;
    ``db`` is the cloud's PostgreSQL URL, or None for its SQLite files."""

    root: Path
    db: str | None = None

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def cloud(self) -> Path:
        return self.root / "cloud"

    def enroll(self, name: str, role: Role = Role.CASHIER, store: Path | None = None) -> Path:
        path = self.root / name
        StoreDirectory.open(store or self.store).enroll(
            path, name, role, wall_clock_ms(), VALID_DAYS
        )
        return path

    def copy_cloud(self, name: str) -> Path:
        """Another cloud process's directory: the same key and stores (config only; with a
        shared database the state is in PostgreSQL)."""
        target = self.root / name
        shutil.copytree(
            self.cloud,
            target,
            ignore=shutil.ignore_patterns("runtime.json", "lock", "*.db", "*.db-*"),
        )
        return target

    def sql(self) -> Sql:
        return SqliteSql(self.cloud / "headoffice.db") if self.db is None else connect(self.db)

    def rows(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        """Head office's plain SQL on the cloud's database (``?`` placeholders)."""
        sql = self.sql()
        try:
            return sql.execute(query, args)
        finally:
            sql.close()

    @contextlib.contextmanager
    def open_store_replica(self) -> Iterator[Terminal]:
        """The cloud's replica of the store, from its database (the cloud must be stopped)."""
        directory = CloudDirectory.open(self.cloud).store_directory(STORE_ID)
        if self.db is None:
            with Terminal.open_directory(directory, lock_wait_s=5) as terminal:
                yield terminal
            return
        sql = connect(self.db)
        try:
            with Terminal.open_directory(
                directory, lock_wait_s=5, open_storage=lambda: PostgresStoreStorage(sql, STORE_ID)
            ) as terminal:
                yield terminal
        finally:
            sql.close()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"PostgreSQL backend not tested: {reason}")
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


def migrated_database(pg_server: PostgresServer, name: str) -> str:
    """A fresh database of the session's server, migrated to the current schema: its URL."""
    url = pg_server.create_database(name)
    sql = connect(url)
    try:
        migrate_postgresql(sql)
    finally:
        sql.close()
    return url


@pytest.fixture(scope="session")
def cloud_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("cloud-template")
    outputs = {}
    created = cli_json("store", "init", "store", "--store-id", STORE_ID, cwd=root)
    assert created == {"store_id": STORE_ID, "public_identity": "store/store.json"}
    for key, args in {
        "cloud init": ("cloud", "init", "cloud"),
        "store certify-cloud": (
            "store",
            "certify-cloud",
            "store",
            "cloud/cloud.json",
            "cloud.cert",
        ),
        "cloud add-store": ("cloud", "add-store", "cloud", "store/store.json", "cloud.cert"),
    }.items():
        outputs[key] = cli_ok(*args, cwd=root).stdout
    assert outputs == {
        "cloud init": "cloud created; public identity: cloud/cloud.json\n",
        "store certify-cloud": "wrote cloud.cert: the cloud may set prices for s1\n",
        "cloud add-store": (
            "store s1 added: a `cloud serve` on this directory serves it from its leader's first "
            "connection\n"
        ),
    }
    assert (root / "cloud" / "cloud.key").stat().st_mode & 0o777 == 0o600
    for directory in ("cloud", "cloud/stores", f"cloud/stores/{STORE_ID}"):
        assert (root / directory).stat().st_mode & 0o777 == 0o700, directory
    assert (root / "cloud" / "stores" / STORE_ID / "terminal.cert").read_bytes() == (
        root / "cloud.cert"
    ).read_bytes()
    return Template(root, outputs)


@pytest.fixture(params=BACKENDS)
def world(request: pytest.FixtureRequest, cloud_template: Template, tmp_path: Path) -> World:
    root = tmp_path / "w"
    shutil.copytree(cloud_template.root, root)
    if request.param == "sqlite":
        return World(root)
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database(f"cloud{next(_databases)}")
    migrated = cli_json("cloud", "migrate", "cloud", "--db", url, cwd=root)
    assert migrated["applied"][0]["version"] == 1, migrated
    return World(root, url)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path / "logs")
    try:
        yield group
    finally:
        group.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    used = list(getattr(item, "funcargs", {}).values())
    attach_logs(report, call, [g for g in Procs.live if g in used], "lanesync process logs")
    return report


def open_runtime(
    world: World,
    stack: ExitStack,
    path: Path,
    wrap: Callable[[Sql], Sql] | None = None,
    headoffice: HeadOffice | None = None,
) -> tuple[Backend, StoreRuntime, list[StorageError]]:
    """A cloud process's runtime of the store at ``path`` (``CloudService._open`` without the
    network), closed with ``stack``; the storage failures it reports are collected. ``wrap``:
    a spy around the process's database connection; ``headoffice``: the process's, when a
    test opens the store again in it."""
    directory = CloudDirectory.open(path)
    backend = Backend.open(directory, world.db)
    stack.callback(backend.close)
    if wrap is not None:
        backend.sql = wrap(backend.sql)
    failures: list[StorageError] = []
    runtime = open_store(
        directory.store_directory(STORE_ID),
        backend,
        HeadOffice(backend.sql) if headoffice is None else headoffice,
        failures.append,
        HandshakeGate(),
    )
    stack.callback(runtime.terminal.close)
    return backend, runtime, failures
