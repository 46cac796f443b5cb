"""Fixtures of the cloud tests.

``cloud_template`` (once per session) sets up a store and a cloud with the three documented
commands, through the CLI, exactly as docs/cloud.md shows them::

    lanesync cloud init cloud
    lanesync store certify-cloud store cloud/cloud.json cloud.cert
    lanesync cloud add-store cloud store/store.json cloud.cert

Every test gets its own copy (``world``). Processes (``procs``) and fault proxies (``proxies``)
are torn down whatever the test did; when a test fails, the tail of every log of the processes
it started is attached to the report.
"""

from __future__ import annotations

import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import ProxyLoop

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms

from .procs import Procs, cli_json, cli_ok

STORE_ID = "s1"
VALID_DAYS = 30


@dataclass(frozen=True, slots=True)
class Template:
    root: Path
    outputs: dict[str, str]  # the setup commands' text output, for the docs


@dataclass(frozen=True, slots=True)
class World:
    """A store authority (``store/``), a cloud serving it (``cloud/``), lanes enrolled on demand."""

    root: Path

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
        "cloud add-store": "store s1 added (restart `cloud serve` to serve it)\n",
    }
    assert (root / "cloud" / "cloud.key").stat().st_mode & 0o777 == 0o600
    assert (root / "cloud" / "stores" / STORE_ID / "terminal.cert").read_bytes() == (
        root / "cloud.cert"
    ).read_bytes()
    return Template(root, outputs)


@pytest.fixture
def world(cloud_template: Template, tmp_path: Path) -> World:
    root = tmp_path / "w"
    shutil.copytree(cloud_template.root, root)
    return World(root)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    group = Procs(tmp_path / "logs")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def proxies() -> Iterator[ProxyLoop]:
    loop = ProxyLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        used = list(getattr(item, "funcargs", {}).values())
        logs = "\n".join(group.describe() for group in Procs.live if group in used)
        if logs:
            report.sections.append(("lanesync process logs", logs))
    return report
