"""The accepted-records stream (``Replica.subscribe_accepted``): what its docstring promises."""

from __future__ import annotations

from nacl.signing import SigningKey

from lanesync.core.identity import issue_revocation
from lanesync.core.ids import CONFIG_DOC, Sku, TerminalId
from lanesync.core.records import Receipt, Sale, SaleLine

from .helpers import (
    NOW,
    TODAY_DOC,
    Store,
    config_update,
    enrolled_observer,
    keyed,
    put_records,
    record_chain,
)

SKU = Sku("A")


def test_every_accepted_record_is_drained_once_in_acceptance_order() -> None:
    store = Store()
    key = SigningKey.generate()
    replica = enrolled_observer(store, store.certificate("lane1", key))
    before = record_chain(key, "lane1", [Receipt(SKU, 10)])
    put_records(replica, TODAY_DOC, keyed(*before), client_id=10)
    stream = replica.subscribe_accepted()
    assert stream.drain() == []  # nothing from before the subscription
    sales = [Sale.of((SaleLine(SKU, n, 100),)) for n in (1, 2, 3)]
    later = record_chain(key, "lane1", [Receipt(SKU, 10), *sales])[1:]
    assert [r.seq for r in later] == [2, 3, 4]
    put_records(replica, TODAY_DOC, keyed(later[2]), client_id=11)  # behind a gap: held
    assert stream.drain() == []
    put_records(replica, TODAY_DOC, keyed(later[0], later[1]), client_id=12)
    assert [r.seq for r in stream.drain()] == [2, 3, 4]
    assert stream.drain() == []
    assert stream.rebuilds == 0


def test_a_rebuild_is_counted_and_drops_what_was_not_drained() -> None:
    store = Store()
    key = SigningKey.generate()
    replica = enrolled_observer(store, store.certificate("lane1", key))
    stream = replica.subscribe_accepted()
    records = record_chain(key, "lane1", [Receipt(SKU, n) for n in (1, 2, 3)])
    put_records(replica, TODAY_DOC, keyed(*records[:2]), client_id=10)
    revocation = issue_revocation(
        store.authority, store.store_id, TerminalId("lane1"), 2, records[1].hash
    )
    replica.merge([(CONFIG_DOC, config_update(revocation))], NOW)
    assert stream.rebuilds == 1
    # The rebuilt views accepted the two records again: they follow the rebuild.
    assert [r.seq for r in stream.drain()] == [1, 2]
    put_records(replica, TODAY_DOC, keyed(records[2]), client_id=11)  # revoked: never counts
    assert stream.drain() == []
    assert replica.views.accepted_count() == 2


def test_two_streams_each_see_every_record() -> None:
    store = Store()
    key = SigningKey.generate()
    replica = enrolled_observer(store, store.certificate("lane1", key))
    first, second = replica.subscribe_accepted(), replica.subscribe_accepted()
    records = record_chain(key, "lane1", [Receipt(SKU, 1), Receipt(SKU, 2)])
    put_records(replica, TODAY_DOC, keyed(*records), client_id=10)
    assert first.drain() == second.drain() == records
