"""When a lane breaks, through the CLI: repair a fork, replace a lane, re-key it, renew it.

The shop (conftest): lane1 (manager) wrote lane1:1-5, milk on hand 9; lane2 imported them. A
fork is made as it happens in a store: lane1's directory is restored from a copy, and both the
lane and its copy keep selling.
"""

from __future__ import annotations

import shutil
from typing import Any

from lanesync.shell.directories import TerminalDirectory

from .conftest import Shop
from .helpers import assert_error, outsider

FORK = "two different records with one sequence number"


def milk(shop: Shop, lane: str) -> int:
    (item,) = shop.cli.json("stock", lane)["items"]
    assert item["sku"] == "milk"
    on_hand: int = item["on_hand"]
    return on_hand


def fork_lane1(shop: Shop) -> None:
    """lane1 sells lane1:6 and lane1:7 (1 and 2 milk); its restored copy sells another lane1:6
    (3 milk); lane2 imports both. Returns with lane2's verify failing on the fork."""
    cli = shop.cli
    shutil.copytree(shop.path("lane1"), shop.path("lane1-restored"))
    assert cli.json("sell", "lane1", "milk:1")["sale_id"] == "lane1:6"
    assert cli.json("sell", "lane1", "milk:2")["sale_id"] == "lane1:7"
    assert cli.json("sell", "lane1-restored", "milk:3")["sale_id"] == "lane1:6"
    cli.ok("export", "lane1", "original.bundle")
    cli.ok("export", "lane1-restored", "restored.bundle")
    cli.ok("import", "lane2", "original.bundle")
    cli.ok("import", "lane2", "restored.bundle")
    broken = cli.run("verify", "lane2", "--json")
    assert broken.returncode == 1, broken.describe()
    assert broken.json()["broken_chains"] == [{"terminal": "lane1", "from_seq": 6, "reason": FORK}]
    assert milk(shop, "lane2") == 9  # the fork froze lane1's counting at seq 5


def test_resolve_fork_counts_both_branches_once_and_closes_the_chain(shop: Shop) -> None:
    cli = shop.cli
    fork_lane1(shop)
    resolved = cli.json("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    assert resolved["terminal"] == "lane1"
    assert resolved["fork_seq"] == 6
    assert resolved["closed_at"] == 7
    assert sorted(b["head_seq"] for b in resolved["branches"]) == [6, 7]

    report = cli.json("verify", "lane2")
    assert report["ok"] is True
    assert report["broken_chains"] == []
    (fork,) = report["resolved_forks"]
    assert (fork["terminal"], fork["fork_seq"], fork["closed_at"]) == ("lane1", 6, 7)
    assert sorted((b["head_seq"], b["counted_to_seq"]) for b in fork["branches"]) == [
        (6, 6),
        (7, 7),
    ]
    assert report["records"] == 8  # lane1:1-5, and 6-7 and 6 of the two branches
    assert milk(shop, "lane2") == 9 - 1 - 2 - 3  # every genuine sale exactly once

    text = cli.run("verify", "lane2")
    assert text.returncode == 0, text.describe()
    assert text.text.startswith("OK: 8 records")
    assert "resolved fork lane1 at seq 6, closed at seq 7" in text.text

    # lane1:6 names a sale on each branch: no void can tell which; lane1:7 names one
    assert_error(cli.run("void", "lane2", "lane1:6"), "lane1:6")
    assert cli.json("void", "lane2", "lane1:7")["record_id"] == "lane2:1"
    assert milk(shop, "lane2") == 9 - 1 - 3

    # the resolution spreads like data; the lane itself may sign nothing more
    cli.ok("export", "lane2", "resolved.bundle")
    cli.ok("import", "lane1", "resolved.bundle")
    assert cli.json("verify", "lane1")["ok"] is True
    assert_error(cli.run("sell", "lane1", "milk:1"), "closed")
    assert milk(shop, "lane1") == 5

    # nothing left to resolve
    again = cli.run("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    assert_error(again, "no open fork")


def test_records_signed_after_the_resolution_count_only_if_resolved_again(shop: Shop) -> None:
    cli = shop.cli
    fork_lane1(shop)
    cli.ok("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    # the copy never heard of the resolution and sells on
    assert cli.json("sell", "lane1-restored", "milk:4")["sale_id"] == "lane1:7"
    cli.ok("export", "lane1-restored", "late.bundle")
    cli.ok("import", "lane2", "late.bundle")
    report = cli.run("verify", "lane2", "--json")
    assert report.returncode == 1, report.describe()
    assert report.json()["closed_chains"] == [{"terminal": "lane1", "closed_at": 7, "refused": 1}]
    assert milk(shop, "lane2") == 3
    # the store may decide it is a genuine sale all the same: resolving again names the longer
    # branch, and every replica keeps the resolution that counts more
    again = cli.json("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    assert sorted(b["head_seq"] for b in again["branches"]) == [7, 7]
    assert cli.json("verify", "lane2")["ok"] is True
    assert milk(shop, "lane2") == 3 - 4
    assert_error(
        cli.run("store", "resolve-fork", "store", "lane1", "--via", "lane2"), "no open fork"
    )


def test_resolve_fork_refuses_what_it_cannot_resolve(shop: Shop) -> None:
    cli = shop.cli
    assert_error(
        cli.run("store", "resolve-fork", "store", "lane1", "--via", "lane2"), "no open fork"
    )
    assert_error(
        cli.run("store", "resolve-fork", "store", "lane9", "--via", "lane2"), "not enrolled"
    )
    assert_error(cli.run("store", "resolve-fork", "store", "lane 1", "--via", "lane2"))
    assert_error(cli.run("store", "resolve-fork", "lane2", "lane1", "--via", "lane2"))


def test_enroll_replaces_a_lane_after_a_resolved_fork(shop: Shop) -> None:
    """The lane goes on under a new id: its chain starts at 1, names its predecessor and the
    old chain's last seq, and it starts with the store's stock."""
    cli = shop.cli
    fork_lane1(shop)
    cli.ok("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    enrolled = cli.json(
        "enroll", "store", "lane1b", "--terminal-id", "lane1b", "--replaces", "lane1",
        "--via", "lane2",
    )  # fmt: skip
    assert enrolled["terminal_id"] == "lane1b"
    assert enrolled["role"] == "manager"  # the replaced lane's role
    assert (enrolled["replaces"], enrolled["after_seq"]) == ("lane1", 7)
    assert milk(shop, "lane1b") == 3
    assert cli.json("sell", "lane1b", "milk:1")["sale_id"] == "lane1b:1"
    report = cli.json("verify", "lane1b")
    assert report["ok"] is True
    assert report["successions"] == [
        {
            "terminal": "lane1b",
            "kind": "replacement",
            "predecessor": "lane1",
            "after_seq": 7,
            "after_hash": enrolled["after_hash"],
            "key_fingerprint": enrolled["key_fingerprint"],
        }
    ]
    text = cli.ok("verify", "lane1b").text
    assert "replacement: lane1b continues lane1 after seq 7" in text
    status = cli.json("status", "lane1b")
    assert status["succeeds"] == {"kind": "replacement", "predecessor": "lane1", "after_seq": 7}
    assert "continues lane1 after seq 7 (replacement)" in cli.ok("status", "lane1b").text
    assert cli.json("status", "lane2")["succeeds"] is None


def test_enroll_replaces_a_working_lane_and_closes_its_chain(shop: Shop) -> None:
    cli = shop.cli
    enrolled = cli.json(
        "enroll", "store", "lane2b", "--terminal-id", "lane2b", "--replaces", "lane1",
        "--via", "lane1",
    )  # fmt: skip
    assert enrolled["after_seq"] == 5
    # lane1 published the replacement itself: it is closed now
    assert_error(cli.run("sell", "lane1", "milk:1"), "lane2b replaces it after seq 5")
    assert cli.json("sell", "lane2b", "milk:1")["sale_id"] == "lane2b:1"
    assert milk(shop, "lane2b") == 8


def test_enroll_rekeys_a_lane_and_its_chain_goes_on_without_a_fork(shop: Shop) -> None:
    cli = shop.cli
    old_key = TerminalDirectory.open(shop.path("lane1")).me.certificate.key_fingerprint
    enrolled = cli.json(
        "enroll", "store", "lane1-new", "--terminal-id", "lane1", "--replaces", "lane1",
        "--via", "lane2",
    )  # fmt: skip
    assert enrolled["terminal_id"] == "lane1"
    assert enrolled["key_fingerprint"] != old_key
    assert enrolled["after_seq"] == 5
    # receipt numbers go on where the old key stopped
    assert cli.json("sell", "lane1-new", "milk:1")["sale_id"] == "lane1:6"
    # the old key (a lost or stolen lane) signs a lane1:6 of its own: it never counts
    assert cli.json("sell", "lane1", "milk:5")["sale_id"] == "lane1:6"
    cli.ok("export", "lane1-new", "new.bundle")
    cli.ok("export", "lane1", "old.bundle")
    cli.ok("import", "lane2", "new.bundle")
    cli.ok("import", "lane2", "old.bundle")
    report: dict[str, Any] = cli.run("verify", "lane2", "--json").json()
    assert report["broken_chains"] == []
    assert next(c for c in report["chains"] if c["terminal"] == "lane1")["seq"] == 6
    assert len(report["unverified"]) == 1  # the old key's lane1:6
    assert report["successions"][0]["kind"] == "rekey"
    assert milk(shop, "lane2") == 8
    # the old directory learns of the re-key and stops
    cli.ok("export", "lane2", "all.bundle")
    cli.ok("import", "lane1", "all.bundle")
    assert_error(cli.run("sell", "lane1", "milk:1"), "re-keyed")


def test_enroll_replaces_without_via_asks_the_lanes_enrolled_here(shop: Shop) -> None:
    """The issue's own command: no --via. lane1 holds lane1:6, which lane2 never saw: the
    chain closes after 6, where lane1 (the lane holding most of it) ends it."""
    cli = shop.cli
    assert cli.json("sell", "lane1", "milk:1")["sale_id"] == "lane1:6"
    enrolled = cli.json(
        "enroll", "store", "lane3b", "--terminal-id", "lane3b", "--replaces", "lane1"
    )
    assert (enrolled["replaces"], enrolled["after_seq"]) == ("lane1", 6)
    assert enrolled["via"] == str(shop.path("lane1"))
    assert enrolled["role"] == "manager"  # the replaced lane's role
    assert_error(cli.run("sell", "lane1", "milk:1"), "lane3b replaces it after seq 6")
    assert cli.json("sell", "lane3b", "milk:1")["sale_id"] == "lane3b:1"
    assert milk(shop, "lane3b") == 7
    assert "continues lane1 after seq 6 (replacement)" in cli.ok("status", "lane3b").text


def test_enroll_replaces_without_via_prefers_another_lane_when_both_hold_the_head(
    shop: Shop,
) -> None:
    """lane1 and lane2 both hold lane1:1-5: lane2 spreads the replacement, so a broken lane1
    need not be touched."""
    cli = shop.cli
    text = cli.ok("enroll", "store", "lane1b", "--terminal-id", "lane1b", "--replaces", "lane1")
    assert f"lane1's chain is closed after seq 5; {shop.path('lane2')} spreads it" in text.text
    # lane1 itself was not told: it learns when lane2's data reaches it
    assert cli.json("sell", "lane1", "milk:1")["sale_id"] == "lane1:6"
    cli.ok("export", "lane2", "all.bundle")
    cli.ok("import", "lane1", "all.bundle")
    assert_error(cli.run("sell", "lane1", "milk:1"), "lane1b replaces it after seq 5")


def test_enroll_replaces_without_via_needs_a_lane_on_this_machine(shop: Shop) -> None:
    cli = shop.cli
    for lane in ("lane1", "lane2"):
        shutil.move(shop.path(lane), shop.path(f"moved-{lane}"))
    args = ("enroll", "store", "new", "--terminal-id", "new", "--replaces", "lane1")
    assert_error(cli.run(*args), "--replaces needs --via")
    assert not shop.path("new").exists()
    enrolled = cli.json(*args, "--via", "moved-lane2")
    assert enrolled["after_seq"] == 5


def test_enroll_replaces_without_via_says_why_no_lane_can_answer(shop: Shop) -> None:
    fork_lane1(shop)  # lane2 holds both branches of lane1:6
    shutil.rmtree(shop.path("lane1"))
    result = shop.cli.run("enroll", "store", "new", "--terminal-id", "new", "--replaces", "lane1")
    assert_error(result, "resolve-fork")
    assert not shop.path("new").exists()


def test_enroll_replaces_refuses_without_via_an_unknown_terminal_or_an_open_fork(
    shop: Shop,
) -> None:
    cli = shop.cli
    args = ("enroll", "store", "new", "--terminal-id", "new")
    assert_error(cli.run(*args, "--via", "lane2"), "--replaces")
    assert_error(cli.run(*args, "--replaces", "lane9", "--via", "lane2"), "not enrolled")
    assert_error(
        cli.run("enroll", "store", "x", "--terminal-id", "lane2", "--replaces", "lane1",
                "--via", "lane2"),
        "already enrolled",
    )  # fmt: skip
    fork_lane1(shop)
    assert_error(cli.run(*args, "--replaces", "lane1", "--via", "lane2"), "resolve-fork")
    cli.ok("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    rekey = cli.run(
        "enroll", "store", "y", "--terminal-id", "lane1", "--replaces", "lane1", "--via", "lane2"
    )
    assert_error(rekey, "new terminal id")
    assert not shop.path("new").exists()


def test_store_renew_gives_the_same_key_a_later_expiry(shop: Shop) -> None:
    cli = shop.cli
    before = TerminalDirectory.open(shop.path("lane2")).me.certificate
    renewed = cli.json("store", "renew", "store", "lane2", "--valid-days", "3000")
    after = TerminalDirectory.open(shop.path("lane2")).me.certificate
    assert renewed["terminal_id"] == "lane2"
    assert renewed["key_fingerprint"] == before.key_fingerprint == after.key_fingerprint
    assert renewed["not_after_ms"] == after.not_after_ms > before.not_after_ms
    assert cli.json("sell", "lane2", "milk:1")["sale_id"] == "lane2:1"
    assert_error(cli.run("store", "renew", "store", "lane2", "--valid-days", "0"), "--valid-days")
    assert_error(cli.run("store", "renew", "store", "plain"), "not a terminal directory")


def test_a_lane_of_another_store_is_refused_as_via_or_to_renew(shop: Shop) -> None:
    cli = shop.cli
    outsider(shop.path("other"), "shop-2", "lane7")
    other = shop.path("other") / "lane7"
    assert_error(cli.run("store", "renew", "store", other), "another store")
    assert_error(
        cli.run("store", "resolve-fork", "store", "lane1", "--via", other), "another store"
    )
    replaced = cli.run(
        "enroll", "store", "new", "--terminal-id", "new", "--replaces", "lane1", "--via", other
    )
    assert_error(replaced, "another store")
    registry = shop.path("store") / "terminals.json"
    registry.write_text('{"lane1": {"role": "boss"}}\n')
    assert_error(cli.run("store", "resolve-fork", "store", "lane1", "--via", "lane2"), "malformed")


def test_the_text_output_says_what_was_done_and_what_to_do_next(shop: Shop) -> None:
    cli = shop.cli
    fork_lane1(shop)
    resolved = cli.ok("store", "resolve-fork", "store", "lane1", "--via", "lane2").text
    assert resolved.startswith("fork of lane1 at seq 6 resolved: both branches count")
    assert "lane1's chain is closed at seq 7" in resolved
    assert "--replaces lane1 --via lane2" in resolved
    replaced = cli.ok(
        "enroll", "store", "lane1b", "--terminal-id", "lane1b", "--replaces", "lane1",
        "--via", "lane2",
    ).text  # fmt: skip
    assert replaced.startswith("terminal lane1b enrolled to replace lane1 as manager")
    assert "lane1's chain is closed after seq 7" in replaced
    rekeyed = cli.ok(
        "enroll", "store", "lane2-new", "--terminal-id", "lane2", "--replaces", "lane2",
        "--via", "lane1b",
    ).text  # fmt: skip
    assert rekeyed.startswith("terminal lane2 re-keyed as cashier")
    renewed = cli.ok("store", "renew", "store", "lane2-new").text
    assert renewed.startswith("terminal lane2 renewed")


def test_revoking_a_resolved_lane_cuts_after_its_furthest_branch_and_it_cannot_be_rekeyed(
    shop: Shop,
) -> None:
    """lane1's chain proper ends at seq 5; its branches at 7 (lane1) and 6 (the copy). The
    default cut is the furthest branch's head, named by hash (only one branch reaches seq 7):
    every sale of both branches still counts. A cut at seq 6, which both branches reach, names
    no hash. A revoked lane is replaced, never re-keyed."""
    cli = shop.cli
    fork_lane1(shop)
    cli.ok("store", "resolve-fork", "store", "lane1", "--via", "lane2")
    branch_head = next(
        b["head_hash"] for b in cli.json("verify", "lane2")["resolved_forks"][0]["branches"]
        if b["head_seq"] == 7
    )  # fmt: skip
    revoked = cli.json("revoke", "store", "lane1", "--via", "lane2", "--force")
    assert (revoked["after_seq"], revoked["hash"], revoked["held_seq"]) == (7, branch_head, 7)
    report = cli.json("verify", "lane2")
    assert report["ok"] is True
    assert report["revocations"]["lane1"]["after_seq"] == 7
    assert milk(shop, "lane2") == 9 - 1 - 2 - 3
    lower = cli.json("revoke", "store", "lane1", "--via", "lane2", "--after", "6", "--force")
    assert (lower["after_seq"], lower["hash"]) == (6, None)
    assert milk(shop, "lane2") == 9 - 1 - 3  # lane1:7 (2 milk) is past the cut now
    rekey = cli.run(
        "enroll", "store", "y", "--terminal-id", "lane1", "--replaces", "lane1", "--via", "lane2"
    )
    assert_error(rekey, "revoked")
    assert not shop.path("y").exists()
