"""Bundles between terminals: convergence in any order, idempotence, ``export --since``, and
whole rejection of anything corrupted, truncated, foreign or forged (state left untouched)."""

from __future__ import annotations

import itertools
import random
import shutil
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.bundle import (
    BUNDLE_MAGIC,
    STATE_MAGIC,
    encode_bundle,
    encode_state,
    parse_bundle,
)
from lanesync.core.identity import (
    SIGNATURE_SIZE,
    LocalIdentity,
    Role,
    issue_certificate,
    public_key_of,
)
from lanesync.core.ids import StoreId, TerminalId
from lanesync.core.records import Sale
from lanesync.errors import BundleRejected, RemoteError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import (
    count_rows,
    database_files,
    on_hand,
    price,
    receipt,
    sale,
    void,
    write_together,
)


class Unchanged:
    """Snapshot of a terminal's state and database files, to prove a refusal wrote nothing."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.digest = terminal.digest()
        self.records = terminal.replica.views.accepted_count()
        self.stock = terminal.stock()
        self.files = database_files(terminal)

    def check(self) -> None:
        assert self.terminal.digest() == self.digest
        assert self.terminal.replica.views.accepted_count() == self.records
        assert self.terminal.stock() == self.stock
        assert database_files(self.terminal) == self.files


def refused(
    terminal: Terminal, data: bytes, error: type[RemoteError] = BundleRejected
) -> RemoteError:
    with pytest.raises(error) as caught:
        terminal.import_bundle(data)
    check_message(caught.value)
    return caught.value


def check_message(exc: BaseException) -> None:
    message = str(exc)
    assert message
    assert "\n" not in message
    assert "Traceback" not in message


def full_mesh(terminals: list[Terminal]) -> None:
    bundles = [t.export_bundle() for t in terminals]
    for terminal in terminals:
        for bundle in bundles:
            terminal.import_bundle(bundle)


@pytest.fixture
def manager(lanes: Lanes) -> Terminal:
    """lane1 (manager): milk 149 and bread 299, 50 milk and 20 bread received."""
    terminal = lanes.new("lane1", Role.MANAGER)
    terminal.write(price("milk", 149))
    terminal.write(price("bread", 299))
    write_together(terminal, [receipt("milk", 50), receipt("bread", 20)])
    return terminal


def test_three_terminals_converge(lanes: Lanes, manager: Terminal) -> None:
    two, three = lanes.new("lane2"), lanes.new("lane3")
    catalog = manager.export_bundle()
    result = two.import_bundle(catalog)
    assert (result.records_before, result.records_after) == (0, 4)
    three.import_bundle(catalog)
    # Sales while apart, with catalog prices learnt from the bundle.
    s2 = two.write(sale("milk:2", "bread:1"))
    two.write(sale("milk:1"))
    three.write(sale("milk:5"))
    three.write(receipt("bread", 4))
    manager.write(sale("bread:3"))
    assert isinstance(s2.body, Sale)
    assert s2.body.total_cents == 2 * 149 + 299

    full_mesh([manager, two, three])
    digests = {t.digest() for t in (manager, two, three)}
    assert len(digests) == 1
    for terminal in (manager, two, three):
        assert on_hand(terminal, "milk") == 50 - 2 - 1 - 5
        assert on_hand(terminal, "bread") == 20 - 1 + 4 - 3
        assert terminal.replica.views.accepted_count() == 4 + 2 + 2 + 1
        assert terminal.integrity()["ok"] is True
    # Converged state is durable too.
    assert lanes.reopen(two).digest() in digests


def test_importing_the_same_bundle_twice_changes_nothing(lanes: Lanes, manager: Terminal) -> None:
    other = lanes.new("lane2")
    manager.write(sale("milk:3"))
    bundle = manager.export_bundle()
    first = other.import_bundle(bundle)
    assert first.records_after - first.records_before == 5
    before = Unchanged(other)
    again = other.import_bundle(bundle)
    assert again.records_before == again.records_after == first.records_after
    assert again.digest == first.digest == before.digest
    assert other.digest() == before.digest
    assert other.stock() == before.stock
    assert lanes.reopen(other).digest() == before.digest
    # Its own bundle coming back changes nothing either.
    mine = Unchanged(manager)
    manager.import_bundle(manager.export_bundle())
    assert manager.digest() == mine.digest
    assert manager.stock() == mine.stock


def test_duplicate_import_does_not_grow_the_update_log(lanes: Lanes, manager: Terminal) -> None:
    other = lanes.new("lane2")
    bundle = manager.export_bundle()
    other.import_bundle(bundle)
    rows = count_rows(other, "updates")
    for _ in range(3):
        other.import_bundle(bundle)
    assert count_rows(other, "updates") == rows


def delta_bundles(lanes: Lanes, manager: Terminal) -> tuple[list[bytes], dict[str, int]]:
    """Three bundles that depend on each other: the catalog and receipts (lane1), lane2's sales
    only, lane3's sales and a void of a lane2 sale only. Returns them and the expected stock."""
    two, three = lanes.new("lane2"), lanes.new("lane3")
    catalog = manager.export_bundle()
    two.import_bundle(catalog)
    voided = two.write(sale("milk:2"))
    two.write(sale("bread:1"))
    sales_of_two = two.export_bundle(since=manager.state_file())
    three.import_bundle(catalog)
    three.import_bundle(sales_of_two)
    three.write(void(str(voided.id)))
    three.write(sale("milk:5"))
    three.write(receipt("eggs", 6))
    sales_of_three = three.export_bundle(since=two.state_file())
    assert len(sales_of_two) < len(catalog)
    assert len(sales_of_three) < len(two.export_bundle())
    return [catalog, sales_of_two, sales_of_three], {"milk": 45, "bread": 19, "eggs": 6}


def test_bundles_in_any_order_converge(lanes: Lanes, manager: Terminal, tmp_path: Path) -> None:
    bundles, expected = delta_bundles(lanes, manager)
    # One observer terminal, copied before first use so every copy is the same replica.
    template = lanes.enroll("lane4")
    results: dict[tuple[int, ...], tuple[str, dict[str, int | None]]] = {}
    for order in itertools.permutations(range(len(bundles))):
        path = tmp_path / ("copy-" + "".join(map(str, order)))
        shutil.copytree(template, path)
        terminal = lanes.open(path)
        for i in order:
            terminal.import_bundle(bundles[i])
        assert terminal.integrity()["ok"] is True
        results[order] = (terminal.digest(), {item: on_hand(terminal, item) for item in expected})
        lanes.close(terminal)
    assert len({digest for digest, _ in results.values()}) == 1
    assert all(stock == expected for _, stock in results.values())


def test_export_since_is_smaller_and_converges(lanes: Lanes, manager: Terminal) -> None:
    for i in range(20):
        manager.write(sale(f"milk:{1 + i % 2}"))
    other = lanes.new("lane2")
    other.import_bundle(manager.export_bundle())
    other.write(sale("milk:1"))
    state = other.state_file()
    manager.write(sale("milk:2"))
    manager.write(receipt("eggs", 3))

    full = manager.export_bundle()
    delta = manager.export_bundle(since=state)
    assert len(delta) < len(full) / 3
    result = other.import_bundle(delta)
    assert result.records_after - result.records_before == 2
    manager.import_bundle(other.export_bundle(since=manager.state_file()))
    assert other.digest() == manager.digest()
    assert on_hand(other, "milk") == on_hand(manager, "milk") == 50 - 30 - 1 - 2
    assert on_hand(other, "eggs") == 3
    # Converged: what either lacks is nothing at all.
    store = manager.directory.store
    assert parse_bundle(manager.export_bundle(since=other.state_file()), store).updates == ()
    assert parse_bundle(other.export_bundle(since=manager.state_file()), store).updates == ()


@pytest.fixture
def bundle(lanes: Lanes, manager: Terminal) -> bytes:
    """A valid bundle of lane1 that lane2 has not imported (see ``target``)."""
    manager.write(sale("milk:2"))
    return manager.export_bundle()


@pytest.fixture
def target(lanes: Lanes) -> Terminal:
    terminal = lanes.new("lane2")
    terminal.write(receipt("milk", 7))
    return terminal


def test_the_valid_bundle_is_accepted(lanes: Lanes, bundle: bytes) -> None:
    # Control for the refusals below: the very same bundle, untouched, is accepted.
    other = lanes.new("lane3")
    assert other.import_bundle(bundle).records_after == 5


def test_bundle_with_any_byte_flipped_is_rejected_whole(target: Terminal, bundle: bytes) -> None:
    before = Unchanged(target)
    positions = range(len(bundle))
    assert len(bundle) - SIGNATURE_SIZE in positions  # the signature is covered too
    for position in positions:
        for mask in (0x01, 0x80):
            spoilt = bytearray(bundle)
            spoilt[position] ^= mask
            refused(target, bytes(spoilt))
    before.check()


def test_truncated_bundle_is_rejected_whole(target: Terminal, bundle: bytes) -> None:
    before = Unchanged(target)
    for length in range(len(bundle)):
        refused(target, bundle[:length])
    refused(target, bundle + b"\x00")
    refused(target, bundle[:-SIGNATURE_SIZE])
    before.check()


def test_empty_and_random_bundles_are_rejected(target: Terminal, bundle: bytes) -> None:
    before = Unchanged(target)
    refused(target, b"")
    refused(target, BUNDLE_MAGIC)
    rng = random.Random(7)
    for size in (1, 4, 63, 64, 65, 100, 1000, len(bundle)):
        refused(target, rng.randbytes(size))
        refused(target, BUNDLE_MAGIC + rng.randbytes(size))

    @settings(
        max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
    )
    @given(st.binary(max_size=2048), st.booleans())
    def fuzz(data: bytes, magic: bool) -> None:
        refused(target, BUNDLE_MAGIC + data if magic else data)

    fuzz()
    before.check()


def test_bundle_with_valid_msgpack_but_wrong_shape_is_rejected(
    target: Terminal, bundle: bytes
) -> None:
    before = Unchanged(target)
    payload = bundle[len(BUNDLE_MAGIC) : -SIGNATURE_SIZE]
    fields = msgpack.unpackb(payload)
    signature = bundle[-SIGNATURE_SIZE:]
    shapes: list[object] = [
        [],
        {"a": 1},
        fields[:4],
        [*fields, 1],
        [2, *fields[1:]],
        [fields[0], fields[1], "not a cert", fields[3], fields[4]],
        [fields[0], fields[1], fields[2], "now", fields[4]],
        [fields[0], fields[1], fields[2], fields[3], [["nowhere", b"\x00\x00"]]],
    ]
    for shape in shapes:
        refused(target, BUNDLE_MAGIC + msgpack.packb(shape, use_bin_type=True) + signature)
    before.check()


def test_bundle_from_another_store_is_rejected(
    lanes: Lanes, target: Terminal, tmp_path: Path
) -> None:
    before = Unchanged(target)
    for sid in ("s2", "s1"):  # another store id, and an impostor store with our id
        other = StoreDirectory.init(tmp_path / f"store-{sid}", sid)
        path = tmp_path / f"foreign-{sid}"
        other.enroll(path, "lane1", Role.MANAGER, wall_clock_ms(), 30)
        with Terminal.open(path) as foreign:
            foreign.write(receipt("milk", 1000))
            error = refused(target, foreign.export_bundle())
        assert "store" in str(error) or "enrolled" in str(error)
    before.check()


def test_bundle_signed_under_a_foreign_authority_certificate_is_rejected(
    target: Terminal, manager: Terminal
) -> None:
    """Genuine content, but the exporter's certificate was issued by another authority."""
    before = Unchanged(target)
    updates = manager.replica.updates_since({})
    key = SigningKey.generate()
    forged = issue_certificate(
        SigningKey.generate(),
        StoreId("s1"),
        TerminalId("lane1"),
        public_key_of(key),
        Role.MANAGER,
        0,
        wall_clock_ms() + 10**9,
    )
    data = encode_bundle(LocalIdentity(forged, key), StoreId("s1"), updates, wall_clock_ms())
    refused(target, data)
    # A genuine certificate with a key that is not its own does not help either.
    stolen = LocalIdentity(manager.directory.me.certificate, key)
    refused(target, encode_bundle(stolen, StoreId("s1"), updates, wall_clock_ms()))
    before.check()


def test_signed_bundle_with_garbage_update_changes_nothing(
    target: Terminal, manager: Terminal
) -> None:
    before = Unchanged(target)
    good = manager.replica.updates_since({})
    me = manager.directory.me
    for garbage in (b"", b"\xff" * 40, b"\x01\x01\x01"):
        updates = dict(good)
        updates["ledger/2026-01-01"] = garbage
        refused(target, encode_bundle(me, StoreId("s1"), updates, wall_clock_ms()), RemoteError)
    before.check()


def test_state_file_from_another_store_is_refused(
    manager: Terminal, tmp_path: Path, bundle: bytes
) -> None:
    other = StoreDirectory.init(tmp_path / "other-store", "s2")
    path = tmp_path / "foreign"
    other.enroll(path, "lane2", Role.CASHIER, wall_clock_ms(), 30)
    with Terminal.open(path) as foreign:
        state = foreign.state_file()
    with pytest.raises(BundleRejected, match="store") as caught:
        manager.export_bundle(since=state)
    check_message(caught.value)


def test_garbage_state_file_is_refused(manager: Terminal) -> None:
    good = manager.state_file()
    rng = random.Random(3)
    bad = [
        b"",
        STATE_MAGIC,
        good[:-1],
        good[: len(good) // 2],
        good + b"\x00",
        BUNDLE_MAGIC + good[len(STATE_MAGIC) :],
        rng.randbytes(200),
        STATE_MAGIC + rng.randbytes(200),
        manager.export_bundle(),
        encode_state(StoreId("s1"), TerminalId("lane2"), {"not-a-doc": b"\x00"}),
        STATE_MAGIC + msgpack.packb([1, "s1", "lane2", {"config": "text"}]),
    ]
    for data in bad:
        with pytest.raises(BundleRejected) as caught:
            manager.export_bundle(since=data)
        check_message(caught.value)
    # Well-formed, but a state vector that does not decode: still a clean RemoteError.
    for vector in (b"\xff", b"\x05\x01\x02", b"\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"):
        since = encode_state(StoreId("s1"), TerminalId("lane2"), {"catalog": vector})
        try:
            manager.export_bundle(since=since)
        except RemoteError as exc:
            check_message(exc)
