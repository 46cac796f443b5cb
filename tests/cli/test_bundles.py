"""Bundles and state files that must be refused whole: corrupted, truncated, foreign, forged.

Each refusal is one ``error:`` line and exit 1, and the importing terminal's state (digest and
files) is exactly what it was. Hostile bundles are made in the test process: byte flips of a
genuine bundle, bundles of stores made apart, and bundles signed by an enrolled lane of the
shop itself that carry garbage instead of CRDT updates.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Shop
from .helpers import assert_error, digest_of, outsider, signed_bundle, tree


def _flip(data: bytes, index: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= 0x01
    return bytes(flipped)


@pytest.fixture(scope="session")
def hostile(shop_template: Shop, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    genuine = shop_template.path("lane1.bundle").read_bytes()
    other = outsider(tmp_path_factory.mktemp("other-store"), "shop-2", "lane7")
    # same store id and terminal id as the shop, but a store key of its own
    impostor = outsider(tmp_path_factory.mktemp("impostor-store"), "shop-1", "lane1")
    lane1 = shop_template.path("lane1")
    return {
        "flipped-byte": _flip(genuine, len(genuine) // 2),
        "flipped-signature": _flip(genuine, len(genuine) - 1),
        "truncated": genuine[: len(genuine) // 2],
        "random-bytes": os.urandom(4096),
        "empty": b"",
        "magic-then-garbage": b"LSB1" + os.urandom(100),
        "state-file": shop_template.path("lane2.state").read_bytes(),
        "other-store": other.bundle,
        "other-store-state": other.state,
        "impostor-store": impostor.bundle,
        "signed-garbage-update": signed_bundle(lane1, {"ledger/2026-01-01": b"\x01\x02\x03\x04"}),
        "signed-unknown-document": signed_bundle(lane1, {"evil": b"\x00\x00"}),
    }


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("flipped-byte", "bundle"),
        ("flipped-signature", "bundle signature does not verify (corrupted or forged)"),
        ("random-bytes", "not a lanesync bundle"),
        ("empty", "not a lanesync bundle"),
        ("other-store", "bundle belongs to store 'shop-2', not 'shop-1'"),
        ("impostor-store", "bundle exporter is not enrolled in this store"),
        ("signed-garbage-update", "CRDT update does not decode"),
        ("signed-unknown-document", "invalid document entry 'evil'"),
    ],
)
def test_import_refuses_a_bad_bundle_whole(
    shop: Shop, hostile: dict[str, bytes], name: str, says: str
) -> None:
    shop.path("bad.bundle").write_bytes(hostile[name])
    before = tree(shop.root)
    assert_error(shop.cli.run("import", "lane2", "bad.bundle", "--json"), says)
    assert tree(shop.root) == before
    assert digest_of(shop.path("lane2")) == shop.digests["lane2"]


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("other-store-state", "state file belongs to store 'shop-2', not 'shop-1'"),
        ("flipped-signature", "not a lanesync state file"),  # a bundle is not a state file
    ],
)
def test_export_refuses_a_bad_state_file(
    shop: Shop, hostile: dict[str, bytes], name: str, says: str
) -> None:
    shop.path("bad.state").write_bytes(hostile[name])
    before = tree(shop.root)
    assert_error(shop.cli.run("export", "lane1", "out.bundle", "--since", "bad.state"), says)
    assert tree(shop.root) == before  # no out.bundle, no out.bundle.tmp
    assert digest_of(shop.path("lane1")) == shop.digests["lane1"]


def test_since_bundle_carries_only_what_is_missing(shop: Shop) -> None:
    cli = shop.cli
    # lane2 already holds everything lane1 has: the --since bundle moves no record
    cli.ok("export", "lane1", "nothing-new.bundle", "--since", "lane2.state")
    assert cli.json("import", "lane2", "nothing-new.bundle")["new_records"] == 0
    assert digest_of(shop.path("lane2")) == shop.digests["lane2"]
    sizes = {p: Path(shop.path(p)).stat().st_size for p in ("nothing-new.bundle", "lane1.bundle")}
    assert sizes["nothing-new.bundle"] < sizes["lane1.bundle"], sizes
