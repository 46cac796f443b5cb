"""Fixtures of the CLI tests: a small store built once through the CLI, copied per test.

The template (built once per session, 13 ``lanesync`` runs) holds, relative to its root::

    store/         the store authority of store ``shop-1``
    lane1/         a manager lane: milk priced 149, 10 received, sales lane1:3 (1 milk) and
                   lane1:4 (2 milk, voided by lane1:5): milk on hand 9
    lane2/         a cashier lane that imported everything lane1 holds (no records of its own)
    plain/         an empty ordinary directory
    lane1.bundle   lane1's full bundle (before any test ran)
    lane2.state    lane2's state file (after that import)

Each test gets its own copy, so a command that wrongly changes state cannot leak into another
test. Copies share CRDT client ids with the template; no test exchanges data between copies.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import Cli, digest_of


@dataclass(frozen=True, slots=True)
class Shop:
    root: Path
    cli: Cli
    digests: dict[str, str]  # digest of lane1 and lane2 as built

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="session")
def shop_template(tmp_path_factory: pytest.TempPathFactory) -> Shop:
    root = tmp_path_factory.mktemp("shop-template")
    cli = Cli(root)
    created = cli.json("store", "init", "store", "--store-id", "shop-1")
    assert created == {"store_id": "shop-1", "public_identity": "store/store.json"}
    cli.ok("enroll", "store", "lane1", "--terminal-id", "lane1", "--role", "manager")
    cli.ok("enroll", "store", "lane2", "--terminal-id", "lane2")
    assert cli.json("price", "lane1", "milk", "149") == {"record_id": "lane1:1"}
    assert cli.json("receive", "lane1", "milk", "10") == {"record_id": "lane1:2"}
    assert cli.json("sell", "lane1", "milk:1") == {"sale_id": "lane1:3", "total": 149}
    assert cli.json("sell", "lane1", "milk:2") == {"sale_id": "lane1:4", "total": 298}
    assert cli.json("void", "lane1", "lane1:4") == {"record_id": "lane1:5"}
    cli.ok("export", "lane1", "lane1.bundle")
    assert cli.json("import", "lane2", "lane1.bundle")["new_records"] == 5
    cli.ok("state", "lane2", "lane2.state")
    (root / "plain").mkdir()
    digests = {"lane1": cli.digest("lane1"), "lane2": cli.digest("lane2")}
    # the tests check state with the in-process digest: it must be the one the CLI prints
    assert digests == {lane: digest_of(root / lane) for lane in digests}
    return Shop(root, cli, digests)


@pytest.fixture
def shop(shop_template: Shop, tmp_path: Path) -> Shop:
    root = tmp_path / "shop"
    shutil.copytree(shop_template.root, root, symlinks=True)
    return Shop(root, Cli(root), dict(shop_template.digests))


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """``lanesync`` run in an empty directory of the test's own."""
    return Cli(tmp_path)
