"""A lane the store revoked, seen through its daemon: it is told (refused as revoked, then
the revocation itself through its API), and from then on its POS is told too.

Manager ``a`` and cashier ``r`` (which dials ``a``) run. ``r`` sells with an idempotency key,
``a`` holds that sale, and, while ``r`` is stopped, the store revokes ``r`` through ``a``.
Started again, ``r`` is refused by ``a`` at every dial, so its status says ``isolated_since``
while it still sells (it does not hold the revocation: peers refuse before anything is
exchanged). Then ``a``'s bundle
is imported into ``r`` through ``r``'s daemon: from then on every write route answers 403
``terminal_revoked``, the CLI says so in one line, the status and the metrics say
``revoked``, and one error line in the log says it once. A retry of the sale acknowledged
before the revocation gets its first answer again; a retry of the sale made after it (which
the revocation withdrew) does not.

A restart of ``r`` says it again, once, from its own database. A lane ``s`` that is connected
to ``a`` when ``a`` revokes it learns it live (``a`` sends it the config document as it cuts
it off). The isolation bound
(``--isolated-after``) is checked on its own lane ``q``, alone, then with
a peer, then alone again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory

from .cluster import Cluster, Daemon, wait_connected, wait_until

pytestmark = pytest.mark.slow

PRICE = 100
RECEIVED = 20
IDEMPOTENCY = "Idempotency-Key"
WRITES = [
    ("/v1/sales", {"lines": [{"sku": "milk", "qty": 1}]}),
    ("/v1/sales/r:1/void", None),
    ("/v1/stock/receive", {"sku": "milk", "qty": 1}),
    ("/v1/stock/adjust", {"sku": "milk", "delta": -1, "reason": "count"}),
    ("/v1/prices", {"sku": "milk", "unit_price": 1}),
]


@dataclass
class Lanes:
    cluster: Cluster
    store: StoreDirectory
    a: Daemon
    r: Daemon


@pytest.fixture(scope="module")
def lanes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lanes]:
    cluster = Cluster(tmp_path_factory.mktemp("revoked"))
    try:
        store = cluster.store()
        a = cluster.start(cluster.enroll(store, "a", Role.MANAGER))
        r = cluster.start(cluster.enroll(store, "r"), [a.listen])
        wait_connected(a, {"r"})
        a.set_price("milk", PRICE)
        a.receive("milk", RECEIVED)
        wait_until(lambda: r.on_hand("milk") == RECEIVED, 15, "r got a's receipt")
        yield Lanes(cluster, store, a, r)
    finally:
        cluster.close()


def sale(daemon: Daemon, key: str | None = None) -> tuple[int, dict[str, object], bool]:
    headers = {} if key is None else {IDEMPOTENCY: key}
    response = daemon.client.post(
        "/v1/sales", json={"lines": [{"sku": "milk", "qty": 1}]}, headers=headers
    )
    replayed = response.headers.get("Idempotent-Replayed") == "true"
    return response.status_code, response.json(), replayed


def metric(daemon: Daemon, name: str) -> float:
    text = daemon.client.get("/metrics").text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found is not None, text
    return float(found.group(1))


def error_lines(daemon: Daemon, event: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in daemon.log_text().splitlines() if line.startswith("{")]
    return [line for line in lines if str(line["msg"]).startswith(event)]


def assert_revoked_answer(
    status: int, body: dict[str, object], what: str, terminal: str = "r"
) -> None:
    assert status == 403, f"{what}: {status} {body}"
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict), body
    assert error["code"] == "terminal_revoked", body
    assert f"terminal {terminal} is revoked" in error["message"], body
    assert "enroll a replacement terminal" in error["message"], body


def test_a_revoked_lane_is_isolated_then_refuses_every_write(lanes: Lanes, tmp_path: Path) -> None:
    a, r, cluster = lanes.a, lanes.r, lanes.cluster
    status = r.status()
    assert (status["revoked"], status["isolated_since"]) == (False, None)
    assert metric(r, "lanesync_terminal_revoked") == 0
    assert metric(r, "lanesync_isolated") == 0
    code, before, _ = sale(r, "sold-before")
    assert code == 201, before
    assert before["sale_id"] == "r:1"
    wait_until(lambda: a.chain_head("r") == 1, 15, "a holds r's sale")

    # r is off when the store revokes it (had it been connected, a would have told it as it
    # cut it off: the next test); back on, a refuses it at every dial: that is all it hears
    cluster.stop(r)
    cluster.cli_json("revoke", lanes.store.path, "r", "--via", a.path)
    r = cluster.start(r.path, [a.listen])
    wait_until(
        lambda: r.status()["isolated_since"] is not None,
        20,
        lambda: "r saw it is refused as revoked\n" + cluster.describe(),
    )
    assert r.status()["revoked"] is False  # a refusal is no signed revocation
    assert metric(r, "lanesync_isolated") == 1
    assert [line["level"] for line in error_lines(r, "terminal.refused_as_revoked")] == ["error"]
    code, after, _ = sale(r, "sold-after")  # it cannot know better yet: it still sells
    assert code == 201, after
    assert after["sale_id"] == "r:2"
    assert error_lines(r, "terminal.revoked") == []

    # the revocation reaches r through its daemon (a bundle of a's, imported by the CLI)
    bundle = tmp_path / "a.bundle"
    cluster.cli_json("export", a.path, bundle)
    cluster.cli_json("import", r.path, bundle)
    status = r.status()
    assert status["revoked"] is True
    assert status["isolated_since"] is not None
    assert metric(r, "lanesync_terminal_revoked") == 1
    digest, head = r.digest(), r.chain_head("r")

    for path, body in WRITES:
        response = r.post(path, body)
        assert_revoked_answer(response.status_code, response.json(), f"POST {path}")
    code, body, _ = sale(r, "a-new-key")
    assert_revoked_answer(code, body, "a new keyed sale")
    result = cluster.cli("sell", r.path, "milk:1")
    assert result.returncode == 1, result.describe()
    assert result.stdout == "", result.describe()
    assert len(result.stderr.splitlines()) == 1, result.describe()
    assert result.stderr.startswith("error: terminal r is revoked"), result.describe()

    # the sale acknowledged before the revocation: answered as it was, nothing written
    code, again, replayed = sale(r, "sold-before")
    assert (code, again, replayed) == (201, before, True)
    # the sale made after it no longer counts: its retry is not confirmed again
    code, body, _ = sale(r, "sold-after")
    assert_revoked_answer(code, body, "the retry of a withdrawn sale")
    assert "r:2" in str(body)

    assert (r.digest(), r.chain_head("r")) == (digest, head)
    assert r.chain_head("r") == 1  # r:2 came after the revocation: withdrawn
    assert r.on_hand("milk") == a.on_hand("milk") == RECEIVED - 1
    # said once, whatever the number of refused requests
    assert [line["level"] for line in error_lines(r, "terminal.revoked")] == ["error"]

    # a restart learns it from its own database: said once more, at the start
    cluster.stop(r)
    r = cluster.start(r.path)
    assert r.status()["revoked"] is True
    assert_revoked_answer(*sale(r)[:2], "a sale after the restart")
    assert [line["level"] for line in error_lines(r, "terminal.revoked")] == ["error"]


def test_a_lane_connected_when_it_is_revoked_learns_it_live(lanes: Lanes) -> None:
    """The peer that cuts it off sends it the store's config document first."""
    cluster, a = lanes.cluster, lanes.a
    s = cluster.start(cluster.enroll(lanes.store, "s"), [a.listen])
    wait_connected(s, {"a"})
    assert s.sell("milk") == "s:1"
    cluster.cli_json("revoke", lanes.store.path, "s", "--via", a.path)
    wait_until(
        lambda: s.status()["revoked"],
        15,
        lambda: "s learnt its revocation live\n" + cluster.describe(),
    )
    assert_revoked_answer(*sale(s)[:2], "a sale once revoked", "s")
    assert metric(s, "lanesync_terminal_revoked") == 1
    assert [line["level"] for line in error_lines(s, "terminal.revoked")] == ["error"]
    assert "s" not in a.peers()


def test_a_lane_that_hears_nobody_for_the_bound_is_isolated(lanes: Lanes) -> None:
    cluster = lanes.cluster
    q = cluster.start(cluster.enroll(lanes.store, "q"), extra=["--isolated-after", "1"])
    started = q.status()["started_ms"]
    alone = wait_until(lambda: q.status()["isolated_since"], 10, "q alone is isolated")
    assert started - 1000 <= alone <= started + 1000  # since (about) its start
    shown = cluster.cli("status", q.path)
    assert shown.returncode == 0, shown.describe()
    # as local time and age, not epoch ms (the test runs on the day it started, give or take)
    local = datetime.fromtimestamp(alone / 1000).astimezone().strftime("%H:%M:%S")
    assert re.search(rf"ISOLATED since [-0-9 ]*{local}, \d+ s ago", shown.stdout), shown.describe()
    assert str(alone) not in shown.stdout, shown.describe()
    p = cluster.start(cluster.enroll(lanes.store, "p"), [q.listen])
    wait_connected(q, {"p"})
    assert q.status()["isolated_since"] is None
    assert metric(q, "lanesync_isolated") == 0
    cluster.stop(p)
    again = wait_until(lambda: q.status()["isolated_since"], 10, "q alone again is isolated")
    assert again > alone  # since the connection closed, not since the start
    assert q.status()["revoked"] is False
