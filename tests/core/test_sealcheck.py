"""Checking one day (``lanesync verify --day``): a sealed day from what storage keeps of it,
tampered with in each way the check names; an open day by its day-end findings."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from pycrdt import Doc, Map

from lanesync.core import archive_codec, sealdays, sealing
from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.ids import Sku
from lanesync.core.records import Sale, SaleLine
from lanesync.core.sealcheck import StoredSeal, check_sealed, verify_day
from lanesync.errors import NotFound

from .helpers import NOW, TODAY_DOC, CoreTerminal, Store, sync

TODAY = TODAY_DOC.removeprefix("ledger/")
MILK = Sku("milk")


def sale(qty: int) -> Sale:
    return Sale.of((SaleLine(MILK, qty, 150),))


def sealed_lane(store: Store) -> tuple[CoreTerminal, StoredSeal, dict[str, bytes]]:
    """lane1 sold twice today, closed the day and sealed it; ``archives`` is its storage."""
    lane = store.terminal("lane1")
    lane.replica.append(sale(2), NOW)
    lane.replica.append(sale(1), NOW + 1)
    lane.replica.close_days(None, NOW + 2)
    done = sealdays.seal_day(lane.replica, TODAY)
    archives = {TODAY: done.archive}
    lane.replica.attach_archives(archives.__getitem__)
    return lane, StoredSeal(done.meta, done.archive, done.signature, done.report), archives


def test_a_sealed_day_as_stored_verifies() -> None:
    lane, stored, _ = sealed_lane(Store())
    checked = verify_day(lane.replica, TODAY, stored)
    assert checked == {
        "day": TODAY,
        "state": "sealed",
        "records": 3,
        "report_hash": lane.replica.sealed_days()[TODAY].report_hash,
        "ok": True,
        "problems": [],
        "day_end_mismatches": [],
        "records_after_close": [],
    }


def test_a_flipped_byte_of_the_archive_is_named_without_reading_further() -> None:
    lane, stored, _ = sealed_lane(Store())
    flipped = bytearray(stored.archive)
    flipped[len(flipped) // 2] ^= 0x01
    checked = verify_day(lane.replica, TODAY, replace(stored, archive=bytes(flipped)))
    assert checked["ok"] is False
    assert len(checked["problems"]) == 2
    assert "signature does not verify" in checked["problems"][0]
    assert "does not decompress" in checked["problems"][1]
    assert (checked["day_end_mismatches"], checked["records_after_close"]) == ([], [])


def without_a_record(archive: bytes) -> bytes:
    """The archive re-made, valid, with one record deleted (what an editor of the database
    could write)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(archive_codec.decompress(archive))
    records: Map[Any] = doc.get(RECORDS_ROOT, type=Map)
    del records[sorted(records.keys())[0]]
    return archive_codec.compress(bytes(doc.get_update()))


def test_an_archive_remade_without_a_record_fails_every_check_it_touches() -> None:
    lane, stored, archives = sealed_lane(Store())
    archives[TODAY] = without_a_record(stored.archive)
    problems = check_sealed(lane.replica, TODAY, replace(stored, archive=archives[TODAY]))
    assert [p.split(" ")[:4] for p in problems] == [
        ["the", "archive's", "signature", "does"],
        ["the", "archive's", "deletions", "are"],
        ["the", "archive's", "content", "digest"],
        ["the", "archive", "holds", "2"],
    ]


def test_a_description_or_a_report_that_is_not_the_sealed_one_is_named() -> None:
    lane, stored, _ = sealed_lane(Store())
    described = sealing.decode_meta(stored.meta)
    other_day = sealing.encode_meta(replace(described, day="2026-11-17"))
    assert check_sealed(lane.replica, TODAY, replace(stored, meta=other_day)) == [
        f"the description stored for {TODAY} describes 2026-11-17"
    ]
    assert "description" in check_sealed(lane.replica, TODAY, replace(stored, meta=b"x"))[0]
    report = json.loads(stored.report)
    report["totals"]["net_cents"] += 100
    forged = replace(stored, report=json.dumps(report).encode())
    assert check_sealed(lane.replica, TODAY, forged) == [
        "the Z-report stored with the seal is not the one the seal names "
        "(`lanesync report --day` prints it)"
    ]
    # a seal made by another key (another lane's, say) does not verify as this lane's
    other = Store().terminal("lane1")
    signature = bytes(other.key.sign(b"\0" * 32).signature)
    assert "signature" in check_sealed(lane.replica, TODAY, replace(stored, signature=signature))[0]
    checked = verify_day(lane.replica, TODAY, None)
    assert checked["problems"] == [f"storage holds no archive of the sealed day {TODAY}"]


def test_an_open_day_has_the_day_checks_and_a_day_not_held_is_not_found() -> None:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(sale(1), NOW)
    checked = verify_day(lane.replica, TODAY, None)
    assert (checked["state"], checked["ok"], checked["records"]) == ("open", True, 1)
    with pytest.raises(NotFound, match="2026-11-10 is not held here"):
        verify_day(lane.replica, "2026-11-10", None)


def test_a_late_record_leaves_nothing_unpersisted_once_its_change_is_stored() -> None:
    """The archive row an unseal stores is counted once: after the commit the terminal may
    seal, compact and checkpoint again (shell.terminal waits for zero)."""
    store = Store()
    lane, _, _ = sealed_lane(store)
    lane2 = store.terminal("lane2")
    sync(lane.replica, lane2.replica)
    lane2.replica.append(sale(3), NOW + 10)
    # lane1 names the sealed day's archived vector to a peer holding the day open (the echo)
    asked = lane.replica.state_vectors(lane2.replica.state_vectors())
    before = lane.replica.unpersisted_updates  # this test stores none of lane1's own changes
    change = lane.replica.merge(list(lane2.replica.updates_since(asked).items()), NOW + 11)
    assert change.unsealed == [TODAY_DOC]
    lane.replica.persisted([change])
    assert lane.replica.unpersisted_updates == before
    assert TODAY not in lane.replica.sealed_days()
