"""``lanesync revoke``: it cuts the revoked terminal's chain after the last record the ``--via``
lane holds of it (or ``--after SEQ``), says so, and shows the cut in ``verify`` and ``status``;
records up to the cut count whenever they arrive, later ones never (whenever they were made);
it refuses to revoke the last unrevoked manager, or through the terminal being revoked, unless
``--force``; and it revokes the cloud's certificate too.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from lanesync.core.configdoc import certificate_key
from lanesync.core.documents import CERTS_ROOT
from lanesync.core.identity import DOMAIN_REVOCATION, parse_certificate, sign
from lanesync.core.ids import CONFIG_DOC
from lanesync.shell.directories import StoreDirectory

from .conftest import Shop
from .helpers import assert_error, digest_of, map_update, signed_bundle, tree

MILK_ON_HAND = 9  # in the shop template


def content_id(encoded: bytes) -> str:
    """The content id in a config entry's key (docs/reference/record-format.md)."""
    return hashlib.blake2b(encoded, digest_size=16).hexdigest()


def on_hand(shop: Shop, lane: str) -> int:
    items = shop.cli.json("stock", lane)["items"]
    return int(next(i["on_hand"] for i in items if i["sku"] == "milk"))


def move_everything(shop: Shop, source: str, target: str) -> None:
    shop.cli.ok("export", source, f"{source}.all.bundle")
    shop.cli.ok("import", target, f"{source}.all.bundle")


def head_hash(shop: Shop, lane: str, terminal: str) -> str:
    chains = shop.cli.run("verify", lane, "--json").json()["chains"]
    return str(next(c["hash"] for c in chains if c["terminal"] == terminal))


def test_revoke_cuts_after_the_last_record_via_holds_and_later_records_never_count(
    shop: Shop,
) -> None:
    assert shop.cli.json("sell", "lane2", "milk:1")["sale_id"] == "lane2:1"
    move_everything(shop, "lane2", "lane1")
    # made before the revocation, but it never reached lane1: past the cut
    assert shop.cli.json("sell", "lane2", "milk:2")["sale_id"] == "lane2:2"
    cut_hash = head_hash(shop, "lane1", "lane2")

    revoked = shop.cli.json("revoke", "store", "lane2", "--via", "lane1")
    assert revoked == {
        "revoked": "lane2",
        "after_seq": 1,
        "hash": cut_hash,
        "held_seq": 1,
        "keys": [],
        "via": "lane1",
    }
    move_everything(shop, "lane2", "lane1")
    assert on_hand(shop, "lane1") == MILK_ON_HAND - 1

    result = shop.cli.run("verify", "lane1", "--json")
    assert result.returncode == 1, result.describe()
    report = result.json()
    cut = {"after_seq": 1, "hash": cut_hash, "revoked_at_ms": None, "keys": {}}
    assert report["revocations"] == {"lane2": cut}
    assert [p["key"].split("#")[0] for p in report["revoked"]] == ["lane2:2"]
    assert report["revoked"][0]["reason"] == "after the revocation cut of lane2 at seq 1"
    assert report["unverified"] == []
    assert shop.cli.json("status", "lane1")["revocations"] == {"lane2": cut}

    text = shop.cli.run("verify", "lane1").text
    assert f"revoked lane2: counts up to seq 1 (hash {cut_hash[:16]}), nothing after" in text
    assert "revoked: doc=" in text
    status = shop.cli.ok("status", "lane1").text
    assert "revoked lane2: counts up to seq 1" in status


def test_revoke_after_seq_counts_the_records_up_to_it_that_arrive_later(shop: Shop) -> None:
    """The lane was offline: lane1 holds none of its records, the store IT person read seq 2
    off the lane's last receipt. Sales up to 2 arrive later and count; the third never."""
    for n in (1, 2, 3):
        assert shop.cli.json("sell", "lane2", "milk:1")["sale_id"] == f"lane2:{n}"
    result = shop.cli.ok("revoke", "store", "lane2", "--via", "lane1", "--after", "2")
    assert result.text == (
        "terminal lane2 revoked after seq 2: its records up to seq 2 count, later ones never; "
        "lane1 holds up to seq 0 and spreads the revocation"
    )
    assert on_hand(shop, "lane1") == MILK_ON_HAND
    move_everything(shop, "lane2", "lane1")
    assert on_hand(shop, "lane1") == MILK_ON_HAND - 2
    revocations = shop.cli.json("status", "lane1")["revocations"]
    assert revocations["lane2"]["after_seq"] == 2
    assert revocations["lane2"]["hash"] is None


def test_a_second_revocation_can_only_lower_the_cut(shop: Shop) -> None:
    assert shop.cli.json("sell", "lane2", "milk:1")["sale_id"] == "lane2:1"
    move_everything(shop, "lane2", "lane1")
    assert (
        shop.cli.json("revoke", "store", "lane2", "--via", "lane1", "--after", "0")["hash"] is None
    )
    # lane1 no longer counts lane2:1, so the cut it holds is 0: a higher one must be explicit
    assert shop.cli.json("revoke", "store", "lane2", "--via", "lane1")["after_seq"] == 0
    raised = shop.cli.run("revoke", "store", "lane2", "--via", "lane1", "--after", "1")
    assert_error(raised, "lane2 is revoked after seq 0 already")
    assert shop.cli.json("status", "lane1")["revocations"]["lane2"]["after_seq"] == 0
    assert on_hand(shop, "lane1") == MILK_ON_HAND


def assert_nothing_changed(shop: Shop, store_tree: dict[str, str]) -> None:
    assert digest_of(shop.path("lane1")) == shop.digests["lane1"]
    assert digest_of(shop.path("lane2")) == shop.digests["lane2"]
    assert tree(shop.path("store")) == store_tree


def test_revoke_refuses_the_last_unrevoked_manager_unless_forced(shop: Shop) -> None:
    store_tree = tree(shop.path("store"))
    refused = shop.cli.run("revoke", "store", "lane1", "--via", "lane2")
    assert_error(refused, "lane1 is the last unrevoked manager")
    assert "--force" in refused.stderr
    assert_nothing_changed(shop, store_tree)

    forced = shop.cli.json("revoke", "store", "lane1", "--via", "lane2", "--force")
    assert forced["after_seq"] == 5  # lane2 holds lane1's five records
    assert shop.cli.json("status", "lane2")["revocations"]["lane1"]["after_seq"] == 5


def test_a_manager_may_be_revoked_while_another_stays_unrevoked(shop: Shop) -> None:
    shop.cli.ok("enroll", "store", "lane3", "--terminal-id", "lane3", "--role", "manager")
    shop.cli.json("revoke", "store", "lane1", "--via", "lane2")
    # lane2 now holds lane1's revocation: lane3 is the last manager it does not hold one of
    assert_error(
        shop.cli.run("revoke", "store", "lane3", "--via", "lane2"),
        "lane3 is the last unrevoked manager",
    )


def test_revoke_refuses_to_go_via_the_revoked_terminal_unless_forced(shop: Shop) -> None:
    store_tree = tree(shop.path("store"))
    assert_error(
        shop.cli.run("revoke", "store", "lane2", "--via", "lane2"),
        "--via lane2 is the terminal being revoked",
    )
    assert_nothing_changed(shop, store_tree)
    shop.cli.json("revoke", "store", "lane2", "--via", "lane2", "--force")
    assert "lane2" in shop.cli.json("status", "lane2")["revocations"]


def test_revoke_the_cloud(shop: Shop) -> None:
    """The cloud is not enrolled like a lane; its certificate reaches the lanes when it syncs.
    Revoking it names its key, so a cloud certified afterwards (another key) is not refused."""
    store_tree = tree(shop.path("store"))
    assert_error(
        shop.cli.run("revoke", "store", "cloud", "--via", "lane1"),
        "lane1 holds no certificate of the cloud",
    )
    assert_nothing_changed(shop, store_tree)

    identity = shop.cli.json("cloud", "init", "cloud")["public_identity"]
    shop.cli.ok("store", "certify-cloud", "store", identity, "cloud.cert")
    store = StoreDirectory.open(shop.path("store"))
    cert = parse_certificate(shop.path("cloud.cert").read_bytes(), store.identity)
    # what the cloud's replica publishes when it serves the store, delivered by a bundle
    update = map_update(CERTS_ROOT, certificate_key(cert), cert.encoded)
    shop.path("cloud.bundle").write_bytes(signed_bundle(shop.path("lane1"), {CONFIG_DOC: update}))
    shop.cli.ok("import", "lane1", "cloud.bundle")

    revoked: dict[str, Any] = shop.cli.json("revoke", "store", "cloud", "--via", "lane1")
    assert revoked["revoked"] == "cloud"
    assert revoked["keys"] == [cert.key_fingerprint]
    assert revoked["after_seq"] == 0
    cut = {"after_seq": 0, "hash": None}
    assert shop.cli.json("status", "lane1")["revocations"] == {
        "cloud": {"after_seq": None, "hash": None, "revoked_at_ms": None,
                  "keys": {cert.key_fingerprint: cut}},
    }  # fmt: skip


def test_a_revocation_by_time_in_an_old_database_is_shown_and_still_judged(shop: Shop) -> None:
    """A store upgraded in place may hold a revocation of the first format (by time): status
    and verify show it, and records stamped from its time on do not count."""
    store = StoreDirectory.open(shop.path("store"))
    payload = bytes(msgpack.packb([1, "shop-1", "lane2", 0], use_bin_type=True))
    encoded = payload + sign(store.authority(), DOMAIN_REVOCATION, payload)
    update = map_update(CERTS_ROOT, f"revoke:lane2:{content_id(encoded)}", encoded)
    shop.path("old.bundle").write_bytes(signed_bundle(shop.path("lane1"), {CONFIG_DOC: update}))
    shop.cli.ok("import", "lane1", "old.bundle")
    assert shop.cli.json("sell", "lane2", "milk:1")["sale_id"] == "lane2:1"
    move_everything(shop, "lane2", "lane1")
    assert on_hand(shop, "lane1") == MILK_ON_HAND
    entry = {"after_seq": None, "hash": None, "revoked_at_ms": 0, "keys": {}}
    assert shop.cli.json("status", "lane1")["revocations"] == {"lane2": entry}
    assert "revoked lane2: by time (format 1)" in shop.cli.ok("status", "lane1").text
    report = shop.cli.run("verify", "lane1", "--json").json()
    assert [p["reason"] for p in report["revoked"]] == [
        "lane2 is revoked from 0 ms on (record time)"
    ]


def test_revoke_bad_arguments(shop: Shop) -> None:
    store_tree = tree(shop.path("store"))
    assert_error(
        shop.cli.run("revoke", "store", "lane9", "--via", "lane1"), "'lane9' is not enrolled"
    )
    result = shop.cli.run("revoke", "store", "lane2", "--via", "lane1", "--after", "-1")
    assert result.returncode == 2, result.describe()
    assert "Traceback" not in result.stderr
    assert_nothing_changed(shop, store_tree)
    # the roles of the enrolled terminals are what the guard rail reads
    (shop.path("store") / "terminals.json").write_text('{"lane1": {"role": "boss"}}\n')
    assert_error(shop.cli.run("revoke", "store", "lane1", "--via", "lane2"), "malformed")
    assert digest_of(shop.path("lane2")) == shop.digests["lane2"]
