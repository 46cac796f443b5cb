"""Checkpoints of the views: a restore that starts from one must give exactly the full fold.

The histories are random: chains of three terminals (a manager and two cashiers) with sales,
receipts, adjustments, prices (a cashier's is unauthorized), voids (some named twice, some of
sales that never count), a fork, a record that does not link, a revocation, a terminal whose
certificate arrives late or never, and a value that is not a record, all delivered in a random
order and cut at a random point into "covered by the checkpoint" and "the log after it".
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey
from pycrdt import Doc

from lanesync.core.change import Change
from lanesync.core.checkpoint import CHECKPOINT_DIGEST_SIZE
from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import AnyRevocation, Role, issue_revocation
from lanesync.core.ids import CATALOG_DOC, CONFIG_DOC, RecordId, Sku, TerminalId
from lanesync.core.records import (
    GENESIS_HASH,
    Adjustment,
    Body,
    PriceChange,
    Receipt,
    Record,
    Sale,
    SaleLine,
    Void,
    make_record,
)
from lanesync.core.replica import Replica

from .helpers import NOW, TODAY_DOC, Store, config_update, crafted_update, keyed, time_revocation

SKUS = [Sku("A"), Sku("B"), Sku("C")]
TERMINALS = [TerminalId("lane1"), TerminalId("lane2"), TerminalId("lane3")]

Delivery = tuple[str, bytes]


def views(replica: Replica) -> dict[str, object]:
    """Everything the views answer, for equality (the digest covers the documents)."""
    current = replica.views
    sale_ids = sorted(current.sale_ids())
    return {
        "on_hand": current.on_hand(),
        "prices": current.prices(),
        "heads": current.heads(),
        "problems": current.problems(),
        "sales": sale_ids,
        "voided": sorted(s for s in sale_ids if current.is_voided(s)),
        "accepted": current.accepted_count(),
        "broken": {t: current.is_broken(t) for t in TERMINALS},
        "digest": replica.digest(),
    }


@st.composite
def histories(draw: st.DrawFn) -> tuple[Store, list[Delivery]]:
    """A store and every map entry of a random history, one delivery each, in random order."""
    store = Store()
    keys = [SigningKey.generate() for _ in TERMINALS]
    roles = [Role.MANAGER, Role.CASHIER, Role.CASHIER]
    certs = [store.certificate(t, k, r) for t, k, r in zip(TERMINALS, keys, roles, strict=True)]
    client = iter(range(5_000, 1_000_000))
    deliveries: list[Delivery] = []

    def deliver(doc: str, *records: Record) -> None:
        deliveries.append((doc, crafted_update(RECORDS_ROOT, keyed(*records), next(client))))

    sales: list[RecordId] = []
    wall_ms: list[list[int]] = []
    hashes: list[list[bytes]] = []
    for index, (terminal, key) in enumerate(zip(TERMINALS, keys, strict=True)):
        prev, walls, chain = GENESIS_HASH, [], []
        for seq in range(1, draw(st.integers(1, 6)) + 1):
            body = draw(bodies(sales))
            at = NOW + 10 * seq + index
            record = make_record(key, terminal, seq, prev, Hlc(at, 0), body)
            deliver(CATALOG_DOC if isinstance(body, PriceChange) else TODAY_DOC, record)
            if isinstance(body, Sale):
                sales.append(record.id)
            if draw(st.integers(0, 5)) == 0:  # a fork: another record at this seq
                fork = make_record(key, terminal, seq, prev, Hlc(at, 1), Receipt(SKUS[0], 1))
                deliver(TODAY_DOC, fork)
            if draw(st.integers(0, 7)) == 0:  # a record at the next seq that does not link
                bad = make_record(key, terminal, seq + 1, bytes(32), Hlc(at + 5, 0), body)
                deliver(CATALOG_DOC if isinstance(body, PriceChange) else TODAY_DOC, bad)
            prev = record.hash
            walls.append(at)
            chain.append(record.hash)
        wall_ms.append(walls)
        hashes.append(chain)
    # lane3's certificate may come late (its records wait), or never (they stay unverified).
    known = certs if draw(st.booleans()) else certs[:2]
    deliveries.append((CONFIG_DOC, config_update(*known, client_id=next(client))))
    if draw(st.booleans()):
        victim = draw(st.integers(0, 2))
        revocation: AnyRevocation
        if draw(st.booleans()):  # a cut at a position, pinned to the record there
            seq = draw(st.integers(0, len(hashes[victim])))
            pinned = hashes[victim][seq - 1] if seq else b""
            revocation = issue_revocation(
                store.authority, store.store_id, TERMINALS[victim], seq, pinned
            )
        else:  # by time (the first format, still held by old databases)
            at = draw(st.sampled_from(wall_ms[victim]))
            revocation = time_revocation(store.authority, store.store_id, TERMINALS[victim], at)
        deliveries.append((CONFIG_DOC, config_update(revocation, client_id=next(client))))
    if draw(st.booleans()):
        garbage = crafted_update(RECORDS_ROOT, {"lane2:1#00": b"not a record"}, next(client))
        deliveries.append((TODAY_DOC, garbage))
    return store, draw(st.permutations(deliveries))


def bodies(sales: list[RecordId]) -> st.SearchStrategy[Body]:
    sku = st.sampled_from(SKUS)
    options: list[st.SearchStrategy[Body]] = [
        st.builds(Receipt, sku, st.integers(1, 9)),
        st.builds(Adjustment, sku, st.integers(-3, 3).filter(bool), st.just("count")),
        st.lists(st.tuples(sku, st.integers(1, 4)), min_size=1, max_size=3).map(
            lambda lines: Sale.of(tuple(SaleLine(s, q, 100) for s, q in lines))
        ),
        # counted from the manager (lane1); a cashier's is held but unauthorized
        st.builds(PriceChange, sku, st.integers(0, 999)),
    ]
    if sales:
        options.append(st.sampled_from(sales).map(Void))
    # a void of a sale that does not exist (or never counts)
    options.append(st.just(Void(RecordId(TerminalId("lane9"), 1))))
    return st.one_of(options)


def replay(
    store: Store,
    covered: list[Delivery],
    tail: list[Delivery],
    verified: set[bytes],
    checkpoint: bytes | None,
) -> Replica:
    replica = Replica(store.identity, store.client_id(), None)
    stored: dict[str, list[bytes]] = {}
    for doc, update in covered:
        stored.setdefault(doc, []).append(update)
    replica.restore(stored, verified, NOW + 1_000, checkpoint=checkpoint, tail=tail)
    return replica


def durable(changes: list[Change]) -> list[Delivery]:
    return [update for change in changes for update in change.updates]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_restore_from_a_checkpoint_equals_the_full_fold(
    history: tuple[Store, list[Delivery]], data: st.DataObject
) -> None:
    store, deliveries = history
    cut = data.draw(st.integers(0, len(deliveries)), label="deliveries before the checkpoint")
    live = Replica(store.identity, store.client_id(), None)
    live.restore({}, set(), NOW)
    before = [live.merge([d], NOW + 1_000) for d in deliveries[:cut]]
    checkpoint = live.checkpoint()
    after = [live.merge([d], NOW + 1_000) for d in deliveries[cut:]]
    verified = {h for change in before + after for h in change.verdicts}
    covered, tail = durable(before), durable(after)

    full = replay(store, covered, tail, verified, None)
    assert full.restored_from.startswith("rebuilt stock and sales from ")
    resumed = replay(store, covered, tail, verified, checkpoint)
    assert resumed.restored_from.startswith("loaded stock and sales from the checkpoint"), (
        resumed.restored_from
    )
    assert views(resumed) == views(full)
    # And both are what the live replica folded incrementally, entry by entry.
    assert views(live) == views(full)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_checkpoint_fits_documents_rebuilt_in_another_order(
    history: tuple[Store, list[Delivery]],
) -> None:
    """A compaction writes each document as one snapshot of a rebuilt document, whose clients
    are encoded in another order than the live document's: the checkpoint must still fit."""
    store, deliveries = history
    live = Replica(store.identity, store.client_id(), None)
    live.restore({}, set(), NOW)
    changes = [live.merge([d], NOW + 1_000) for d in deliveries]
    checkpoint = live.checkpoint()
    verified = {h for change in changes for h in change.verdicts}
    per_doc: dict[str, list[bytes]] = {}
    for doc, update in durable(changes):
        per_doc.setdefault(doc, []).append(update)
    snapshots: list[Delivery] = []
    for doc, updates in per_doc.items():
        rebuilt: Doc[Any] = Doc()
        for update in reversed(updates):  # pending until their predecessors arrive: same end
            rebuilt.apply_update(update)
        snapshots.append((doc, bytes(rebuilt.get_update())))
    resumed = replay(store, snapshots, [], verified, checkpoint)
    assert resumed.restored_from.startswith("loaded stock and sales from the checkpoint"), (
        resumed.restored_from
    )
    assert views(resumed) == views(live)


@settings(max_examples=40, deadline=None)
@given(histories(), st.data())
def test_a_checkpoint_that_does_not_fit_is_refused_and_everything_is_folded(
    history: tuple[Store, list[Delivery]], data: st.DataObject
) -> None:
    store, deliveries = history
    cut = data.draw(st.integers(1, len(deliveries)), label="deliveries before the checkpoint")
    live = Replica(store.identity, store.client_id(), None)
    live.restore({}, set(), NOW)
    changes = [live.merge([d], NOW + 1_000) for d in deliveries[:cut]]
    stale = live.checkpoint()
    changes += [live.merge([d], NOW + 1_000) for d in deliveries[cut:]]
    everything = durable(changes)
    verified = {h for change in changes for h in change.verdicts}
    full = replay(store, everything, [], verified, None)

    spoiled = bytearray(live.checkpoint())
    spoiled[data.draw(st.integers(0, len(spoiled) - 1), label="flipped byte")] ^= 0x01
    body = msgpack.packb([0, store.store_id, {}, []], use_bin_type=True)
    old_format = body + hashlib.blake2b(body, digest_size=CHECKPOINT_DIGEST_SIZE).digest()
    # The stale one claims to cover everything but was taken before the last deliveries.
    stale_fits = durable(changes[:cut]) == everything
    for checkpoint, why in [
        (bytes(spoiled), ""),
        (old_format, "format 0"),
        (stale, "does not match"),
    ]:
        if checkpoint is stale and stale_fits:
            continue  # nothing new was stored after it: it is not stale
        replica = replay(store, everything, [], verified, checkpoint)
        assert replica.restored_from.startswith("rebuilt stock and sales from "), why
        assert why in replica.restored_from
        assert replica.checkpoint_refused
        assert views(replica) == views(full)
