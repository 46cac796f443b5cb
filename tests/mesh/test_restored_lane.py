"""A lane restored from a backup asks its peers for its own chain head before it writes.

Cashier ``r`` sells ``r:1``; its directory is backed up (daemon stopped); it sells ``r:2`` and
``r:3``, which manager ``a`` holds; then the backup is put back. The restored ``r`` starts with
its only peer behind a cut link and is sent a sale at once. Its first write waits for a peer's
answer: the link heals, ``a``'s catch-up brings ``r:2`` and ``r:3`` (signed with ``r``'s own
key), and the sale is ``r:4``, not a second ``r:2``: no fork, every replica verifies.

A lane that hears nobody within the bound writes anyway, and its status says when it first did
(``first_write_unheard_ms``); with the wait set to 0 it never waits and says so as well.
"""

from __future__ import annotations

import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from support import ProxyLoop, port_of

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory

from .cluster import Cluster, Daemon, wait_connected, wait_until

pytestmark = pytest.mark.slow

RECEIVED = 20
# The link stays cut this long after the restored lane's sale is sent: well within the wait.
CUT_S = 0.5


@dataclass
class Shop:
    cluster: Cluster
    store: StoreDirectory
    a: Daemon


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    cluster = Cluster(tmp_path_factory.mktemp("restored"))
    try:
        store = cluster.store()
        a = cluster.start(cluster.enroll(store, "a", Role.MANAGER))
        a.set_price("milk", 100)
        a.receive("milk", RECEIVED)
        yield Shop(cluster, store, a)
    finally:
        cluster.close()


def test_a_restored_lane_continues_its_chain_instead_of_forking(
    shop: Shop, proxies: ProxyLoop, tmp_path: Path
) -> None:
    cluster, a = shop.cluster, shop.a
    r_path = cluster.enroll(shop.store, "r")
    r = cluster.start(r_path, [a.listen])
    wait_connected(r, {"a"})
    wait_until(lambda: r.on_hand("milk") == RECEIVED, 15, "r got a's stock")
    assert r.sell("milk") == "r:1"
    cluster.stop(r)
    backup = tmp_path / "r-backup"
    shutil.copytree(r_path, backup)
    r = cluster.start(r_path, [a.listen])
    assert [r.sell("milk"), r.sell("milk")] == ["r:2", "r:3"]
    wait_until(lambda: a.chain_head("r") == 3, 15, lambda: "a holds r:3\n" + cluster.describe())
    cluster.stop(r)

    shutil.rmtree(r_path)
    shutil.copytree(backup, r_path)  # the restore
    link = proxies.link(port_of(a.listen))
    proxies.partition(link)
    r = cluster.start(r_path, [f"ws://127.0.0.1:{link.port}"])
    assert r.chain_head("r") == 1  # what the backup holds
    answers: list[object] = []
    selling = threading.Thread(target=lambda: answers.append(r.sell("milk")))
    selling.start()
    time.sleep(CUT_S)
    proxies.heal(link)
    selling.join(timeout=30)
    assert answers == ["r:4"], cluster.describe()
    wait_until(lambda: a.chain_head("r") == 4, 15, lambda: "a holds r:4\n" + cluster.describe())
    for lane in (a, r):
        report = lane.verify()
        assert report["ok"], report
    assert a.on_hand("milk") == r.on_hand("milk") == RECEIVED - 4
    assert r.status()["first_write_unheard_ms"] is None


@pytest.mark.parametrize("wait_s", ["1", "0"])
def test_a_lane_that_hears_nobody_writes_after_the_wait_and_says_so(
    shop: Shop, wait_s: str
) -> None:
    cluster = shop.cluster
    q = cluster.start(cluster.enroll(shop.store, f"q{wait_s}"), extra=["--head-wait", wait_s])
    started = q.status()["started_ms"]
    assert q.status()["first_write_unheard_ms"] is None  # nothing written yet
    q.receive("milk", 1)
    unheard = q.status()["first_write_unheard_ms"]
    assert isinstance(unheard, int), q.status()
    # the write went through only once the wait ran out
    assert unheard >= started + int(wait_s) * 1000, (unheard, started)
    q.receive("milk", 1)
    assert q.status()["first_write_unheard_ms"] == unheard  # the first one, not the last
    shown = cluster.cli("status", q.path)
    assert shown.returncode == 0, shown.describe()
    # as local time and age, not epoch ms
    local = datetime.fromtimestamp(unheard / 1000).astimezone().strftime("%H:%M:%S")
    assert re.search(rf"WROTE UNHEARD at [-0-9 ]*{local}, \d+ s ago", shown.stdout), (
        shown.describe()
    )
    assert str(unheard) not in shown.stdout, shown.describe()
