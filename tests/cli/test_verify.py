"""``lanesync verify`` when integrity is broken: forks, entries that are not records, and a lane
restored from a copy. Each must be reported (``ok`` false, exit 1), on the lane that holds it
and on every lane it spreads to.

Forks are forged in the test process, after the CLI calls on the directory have finished: a
second, validly signed record for an already used sequence number, merged as any update from
a peer would be (see ``helpers.forge_fork``).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from typing import Any

import pytest

from .conftest import Shop
from .helpers import (
    assert_error,
    business_day,
    digest_of,
    forge_fork,
    map_update,
    signed_bundle,
)

DAY_MS = 86_400_000
FORK = "two different records with one sequence number"


def now_ms() -> int:
    return int(datetime.now(tz=UTC).timestamp() * 1000)


def verify_fails(shop: Shop, lane: str) -> dict[str, Any]:
    result = shop.cli.run("verify", lane, "--json")
    assert result.returncode == 1, result.describe()
    assert result.stderr == "", result.describe()
    report: dict[str, Any] = result.json()
    assert report["ok"] is False
    return report


def test_forked_chain_is_reported_and_spreads(shop: Shop) -> None:
    forge_fork(shop.path("lane1"), 2, shift_ms=0)
    report = verify_fails(shop, "lane1")
    assert report["broken_chains"] == [{"terminal": "lane1", "from_seq": 2, "reason": FORK}]
    # the chain counts up to the fork, no further
    assert [(c["terminal"], c["seq"]) for c in report["chains"]] == [("lane1", 1)]
    assert report["records"] == 1

    text = shop.cli.run("verify", "lane1")
    assert text.returncode == 1, text.describe()
    assert text.text.startswith("INTEGRITY PROBLEMS: 1 records")
    assert f"broken_chains: terminal=lane1, from_seq=2, reason={FORK}" in text.text

    # the lane whose chain forked must not sign anything more on top of it
    assert_error(shop.cli.run("sell", "lane1", "milk:1"), "broken")

    # a peer that imports the fork sees it too
    shop.cli.ok("export", "lane1", "fork.bundle")
    shop.cli.ok("import", "lane2", "fork.bundle")
    spread = verify_fails(shop, "lane2")
    assert spread["broken_chains"] == report["broken_chains"]
    assert spread["chains"] == report["chains"]


def test_fork_stored_in_another_day_is_reported(shop: Shop) -> None:
    # a day later than the genuine lane1:3: another ledger document, so no CRDT map key is
    # shared with the genuine record
    assert forge_fork(shop.path("lane1"), 3, shift_ms=DAY_MS).startswith("ledger/")
    report = verify_fails(shop, "lane1")
    assert report["broken_chains"] == [{"terminal": "lane1", "from_seq": 3, "reason": FORK}]
    assert [(c["terminal"], c["seq"]) for c in report["chains"]] == [("lane1", 2)]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"not a record" * 8, id="garbage-bytes"),
        pytest.param("a string", id="string"),
        # Found by this test, failing until src is fixed: a null value is held (it changes the
        # digest) but Replica._fold_events skips it like a deletion, so verify says ok.
        pytest.param(None, id="null"),
    ],
)
def test_entries_that_are_not_records_are_refused_or_reported(shop: Shop, value: object) -> None:
    """A lane of the store (buggy or compromised) signs a bundle whose CRDT update puts a value
    that is no record into today's ledger. Importing it must be refused cleanly, or be accepted
    and then reported by ``verify``; never a traceback."""
    doc = f"ledger/{business_day(now_ms())}"
    update = map_update("records", "lane1:99#" + "0" * 32, value)
    shop.path("odd.bundle").write_bytes(signed_bundle(shop.path("lane1"), {doc: update}))
    imported = shop.cli.run("import", "lane2", "odd.bundle", "--json")
    if imported.returncode != 0:
        assert_error(imported)
        assert digest_of(shop.path("lane2")) == shop.digests["lane2"]
        return
    assert imported.stderr == "", imported.describe()
    report = verify_fails(shop, "lane2")
    assert report["digest"] == imported.json()["digest"] != shop.digests["lane2"]
    assert report["rejected"] or report["unverified"], report


def test_lane_restored_from_a_copy_is_detected(shop: Shop) -> None:
    """A lane's directory is restored from a copy (a backup, a cloned disk) and keeps selling:
    both copies sign a different lane1:6. The fork must not vanish: a lane importing both
    must report it (or refuse the second bundle with an error)."""
    # (When both copies wrote CRDT updates under the client id kept in terminal.json, the
    # importing replica took the second update for a duplicate of the first and dropped it
    # silently: the restored lane's sale vanished and verify said ok.)
    cli = shop.cli
    shutil.copytree(shop.path("lane1"), shop.path("lane1-restored"))
    assert cli.json("sell", "lane1", "milk:1") == {"sale_id": "lane1:6", "total": 149}
    assert cli.json("sell", "lane1-restored", "milk:5:100") == {"sale_id": "lane1:6", "total": 500}
    cli.ok("export", "lane1", "original.bundle")
    cli.ok("export", "lane1-restored", "restored.bundle")
    assert cli.json("import", "lane2", "original.bundle")["new_records"] == 1
    second = cli.run("import", "lane2", "restored.bundle", "--json")
    if second.returncode != 0:
        assert_error(second)
        return
    report = verify_fails(shop, "lane2")
    assert {"terminal": "lane1", "from_seq": 6, "reason": FORK} in report["broken_chains"]
