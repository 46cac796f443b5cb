"""The sales journal (``lanesync.core.journal``): every counted sale, oldest first, a page at a
time, with a cursor that neither skips nor repeats a sale while sales arrive from peers with
any timestamp. Real replicas of the pure core: records signed by enrolled terminals, delivered
as CRDT updates in any order (a record waits for its chain's gap to fill, as on a lane)."""

from __future__ import annotations

import base64
import itertools
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.change import Change
from lanesync.core.hlc import Hlc
from lanesync.core.identity import Certificate, Role, issue_revocation
from lanesync.core.ids import CLOUD_TERMINAL_ID, CONFIG_DOC, Sku, TerminalId, ledger_doc
from lanesync.core.journal import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Cursor,
    SalesJournal,
    SalesQuery,
    check_limit,
)
from lanesync.core.records import (
    GENESIS_HASH,
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
from lanesync.errors import NotFound, UsageError

from .helpers import (
    DAY,
    HOUR_MS,
    NOW,
    TODAY_DOC,
    Store,
    durable_log,
    enrolled_observer,
    keyed,
    put_records,
    sync_all,
)
from .test_forks import Forked, resolution_update

TERMINALS = ("lane1", "lane2", "lane3")


def sale(sku: str = "milk", qty: int = 1, cents: int = 100) -> Sale:
    return Sale.of((SaleLine(Sku(sku), qty, cents),))


def chain(key: SigningKey, terminal: str, stamped: list[tuple[int, Body]]) -> list[Record]:
    """Records of ``terminal`` at the given wall ms (increasing), correctly chained."""
    records: list[Record] = []
    prev = GENESIS_HASH
    for seq, (wall_ms, body) in enumerate(stamped, start=1):
        record = make_record(key, TerminalId(terminal), seq, prev, Hlc(wall_ms, 0), body)
        records.append(record)
        prev = record.hash
    return records


class Shop:
    """Terminals of one store whose records an observer replica receives by hand."""

    def __init__(self) -> None:
        self.store = Store()
        self.keys = {t: SigningKey.generate() for t in TERMINALS}
        self.certs: list[Certificate] = [self.store.certificate(t, k) for t, k in self.keys.items()]
        self.replica = enrolled_observer(self.store, *self.certs)
        self.changes: list[Change] = []

    def deliver(self, records: list[Record]) -> None:
        by_doc: dict[str, list[Record]] = {}
        for record in records:
            by_doc.setdefault(ledger_doc(self.replica.business_day(record)), []).append(record)
        for doc, held in by_doc.items():
            self.changes.append(
                put_records(self.replica, doc, keyed(*held), self.store.client_id(), NOW)
            )


def walk(
    journal: SalesJournal,
    query: SalesQuery,
    limit: int,
    between: list[list[Record]] | None = None,
    shop: Shop | None = None,
) -> list[dict[str, Any]]:
    """Every page of a listing; before each page after the first, the next batch of
    ``between`` reaches the replica."""
    listed: list[dict[str, Any]] = []
    cursor: str | None = None
    batches = list(between or [])
    while True:
        page = journal.page(query, limit, cursor)
        assert len(page["sales"]) <= limit
        listed.extend(page["sales"])
        cursor = page["next_cursor"]
        if cursor is None:
            return listed
        if batches and shop is not None:
            shop.deliver(batches.pop(0))


def place(sale: dict[str, Any]) -> tuple[int, str, int]:
    return sale["at_ms"], sale["terminal"], sale["seq"]


def counted_sales(replica: Replica) -> set[str]:
    return set(replica.views.sale_ids())


# -- the property ----------------------------------------------------------------------------------

wall_steps = st.lists(st.integers(1, 5_000), min_size=0, max_size=10)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, list[tuple[int, Body]]], int]:
    """Per terminal, records stamped from its own start (lanes' clocks interleave freely);
    a few are receipts, not sales."""
    out = {}
    for terminal in TERMINALS:
        wall = NOW + draw(st.integers(0, 20_000))
        stamped: list[tuple[int, Body]] = []
        for step in draw(wall_steps):
            wall += step
            body: Body = sale() if draw(st.integers(0, 4)) else Receipt(Sku("milk"), 5)
            stamped.append((wall, body))
        out[terminal] = stamped
    return out, draw(st.integers(1, 7))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_paging_visits_every_sale_once_oldest_first_while_sales_arrive(
    history: tuple[dict[str, list[tuple[int, Body]]], int], data: st.DataObject
) -> None:
    """Some records are held when the listing starts, the rest arrive in random batches between
    pages (in any order: a record past a gap waits for it). Following next_cursor to the end
    lists every sale that counts then exactly once; the sales held at the start come first,
    in timestamp order; the listing is at most one timestamp-ordered run per page asked."""
    stamped, limit = history
    shop = Shop()
    records = [r for t in TERMINALS for r in chain(shop.keys[t], t, stamped[t])]
    order = data.draw(st.permutations(records))
    held = data.draw(st.integers(0, len(order)))
    shop.deliver(list(order[:held]))
    journal = SalesJournal(shop.replica)
    at_start = counted_sales(shop.replica)
    rest = list(order[held:])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rest)), max_size=4)))
    batches = [rest[a:b] for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True)]

    listed = walk(journal, SalesQuery(), limit, batches, shop)

    ids = [s["id"] for s in listed]
    assert len(ids) == len(set(ids)), "a sale was listed twice"
    assert set(ids) == counted_sales(shop.replica), "a sale was skipped"
    first = listed[: len(at_start)]
    assert {s["id"] for s in first} == at_start
    assert first == sorted(first, key=place)
    pages = -(-len(listed) // limit) or 1
    runs = 1 + sum(place(a) > place(b) for a, b in itertools.pairwise(listed))
    assert runs <= pages
    # Nothing arrives meanwhile: one run, the whole listing in timestamp order.
    again = walk(journal, SalesQuery(), limit)
    assert again == sorted(again, key=place)
    assert {s["id"] for s in again} == set(ids)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_filters_list_exactly_the_matching_sales(
    history: tuple[dict[str, list[tuple[int, Body]]], int], data: st.DataObject
) -> None:
    stamped, limit = history
    shop = Shop()
    shop.deliver([r for t in TERMINALS for r in chain(shop.keys[t], t, stamped[t])])
    journal = SalesJournal(shop.replica)
    everything = walk(journal, SalesQuery(), MAX_LIMIT)
    since = data.draw(st.none() | st.integers(NOW, NOW + 60_000))
    terminal = data.draw(st.none() | st.sampled_from(TERMINALS))
    query = SalesQuery.of(since, None, terminal)
    expected = [
        s
        for s in everything
        if (since is None or s["at_ms"] > since) and terminal in (None, s["terminal"])
    ]
    assert walk(journal, query, limit) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_a_journal_read_in_slices_while_records_arrive_lists_what_a_whole_read_lists(
    history: tuple[dict[str, list[tuple[int, Body]]], int], data: st.DataObject
) -> None:
    """The daemon reads the journal a slice at a time (``scan``) while merges go on: records
    arriving between slices, some of them already copied by the scan, are listed once, and
    the listing equals that of a journal read whole afterwards."""
    stamped, slice_records = history
    shop = Shop()
    records = [r for t in TERMINALS for r in chain(shop.keys[t], t, stamped[t])]
    order = data.draw(st.permutations(records))
    held = data.draw(st.integers(0, len(order)))
    shop.deliver(list(order[:held]))
    journal = SalesJournal(shop.replica, scan=False)
    assert not journal.scanned
    rest = list(order[held:])
    for _ in journal.scan(slice_records):
        if rest:
            shop.deliver([rest.pop(0)])
    shop.deliver(rest)
    assert journal.scanned
    listed = walk(journal, SalesQuery(), MAX_LIMIT)
    assert [s["id"] for s in listed] == [
        s["id"] for s in walk(SalesJournal(shop.replica), SalesQuery(), MAX_LIMIT)
    ]
    assert {s["id"] for s in listed} == counted_sales(shop.replica)


def test_a_rebuild_of_the_views_during_a_sliced_read_ends_it_with_every_sale_told() -> None:
    lane = Store().terminal("lane1")
    for i in range(6):
        lane.replica.append(sale(qty=i + 1), NOW + i)
    journal = SalesJournal(lane.replica, scan=False)
    slices = journal.scan(2)
    next(slices)
    journal.views_rebuilt()  # what a rebuild tells subscribers first
    for record in (r for _, _, r in lane.replica.records([TODAY_DOC])):
        journal.record_accepted(record)  # then every record that counts, again
    assert list(slices) == []
    assert journal.scanned
    assert [s["seq"] for s in walk(journal, SalesQuery(), 10)] == [1, 2, 3, 4, 5, 6]


# -- what a sale shows -----------------------------------------------------------------------------


def test_a_sale_shows_its_lines_total_day_and_the_void_that_credited_it() -> None:
    store = Store()
    lane = store.terminal("lane1")
    first, _ = lane.replica.append(
        Sale.of((SaleLine(Sku("milk"), 2, 149), SaleLine(Sku("bread"), 1, 250))), NOW
    )
    kept, _ = lane.replica.append(sale("milk"), NOW + 1)
    void, _ = lane.replica.append(Void(first.id), NOW + 2)
    journal = SalesJournal(lane.replica)
    assert journal.sale("lane1:1") == {
        "id": "lane1:1",
        "terminal": "lane1",
        "seq": 1,
        "at_ms": NOW,
        "day": "2026-11-18",
        "lines": [
            {"sku": "milk", "qty": 2, "unit_cents": 149},
            {"sku": "bread", "qty": 1, "unit_cents": 250},
        ],
        "total_cents": 548,
        "voided": True,
        "void_id": str(void.id),
    }
    page = journal.page(SalesQuery(), DEFAULT_LIMIT)
    assert [s["id"] for s in page["sales"]] == ["lane1:1", "lane1:2"]
    assert page["sales"][1]["voided"] is False
    assert page["sales"][1]["void_id"] is None
    assert page["next_cursor"] is None
    assert journal.sale(str(kept.id))["total_cents"] == 100


def test_two_voids_of_one_sale_name_the_first_in_timestamp_order() -> None:
    """Two lanes apart void the same sale: every replica names the same (earlier) void."""
    shop = Shop()
    sold = chain(shop.keys["lane1"], "lane1", [(NOW, sale())])
    late = chain(shop.keys["lane2"], "lane2", [(NOW + 20, Void(sold[0].id))])
    early = chain(shop.keys["lane3"], "lane3", [(NOW + 10, Void(sold[0].id))])
    shop.deliver(sold + late)
    journal = SalesJournal(shop.replica)
    assert journal.sale("lane1:1")["void_id"] == "lane2:1"
    shop.deliver(early)
    assert journal.sale("lane1:1")["void_id"] == "lane3:1"


def test_receipts_voids_and_prices_are_not_sales() -> None:
    store = Store()
    lane = store.terminal("lane1", Role.MANAGER)
    lane.replica.append(Receipt(Sku("milk"), 5), NOW)
    lane.replica.append(PriceChange(Sku("milk"), 100), NOW + 1)
    sold, _ = lane.replica.append(sale(), NOW + 2)
    lane.replica.append(Void(sold.id), NOW + 3)
    journal = SalesJournal(lane.replica)
    assert [s["id"] for s in journal.page(SalesQuery(), 10)["sales"]] == ["lane1:3"]
    for other in ("lane1:1", "lane1:2", "lane1:4", "lane1:5", "lane9:1"):
        with pytest.raises(NotFound, match=f"no sale {other}"):
            journal.sale(other)


@pytest.mark.parametrize("bad", ["lane1", "lane1:0", "lane1:x", ":3", "a b:1", "lane1:-1"])
def test_a_malformed_sale_id_is_a_usage_error_not_a_miss(bad: str) -> None:
    journal = SalesJournal(Store().terminal("lane1").replica)
    with pytest.raises(UsageError, match="invalid record id") as caught:
        journal.sale(bad)
    assert not isinstance(caught.value, NotFound)


def test_sales_of_one_day_and_of_one_terminal() -> None:
    shop = Shop()
    yesterday = DAY - HOUR_MS  # 23:00 UTC the day before
    shop.deliver(chain(shop.keys["lane1"], "lane1", [(yesterday, sale()), (NOW, sale())]))
    shop.deliver(chain(shop.keys["lane2"], "lane2", [(yesterday + 1, sale())]))
    journal = SalesJournal(shop.replica)
    on = [s["id"] for s in walk(journal, SalesQuery.of(day="2026-11-17"), 1)]
    assert on == ["lane1:1", "lane2:1"]
    assert [s["id"] for s in walk(journal, SalesQuery.of(day="2026-11-18"), 5)] == ["lane1:2"]
    assert walk(journal, SalesQuery.of(day="2026-11-19"), 5) == []
    mine = walk(journal, SalesQuery.of(terminal="lane1"), 1)
    assert [s["id"] for s in mine] == ["lane1:1", "lane1:2"]
    both = walk(journal, SalesQuery.of(day="2026-11-17", terminal="lane2"), 1)
    assert [s["id"] for s in both] == ["lane2:1"]


# -- the journal beside the views ------------------------------------------------------------------


def test_a_revocation_withdraws_the_sales_past_its_cut_from_the_listing() -> None:
    shop = Shop()
    records = chain(shop.keys["lane1"], "lane1", [(NOW + i, sale()) for i in range(4)])
    shop.deliver(records)
    shop.deliver(chain(shop.keys["lane2"], "lane2", [(NOW + 9, sale())]))
    journal = SalesJournal(shop.replica)
    assert len(walk(journal, SalesQuery(), 10)) == 5
    under_way = journal.page(SalesQuery(), 1)["next_cursor"]  # lane1:1 listed
    store = shop.store
    cut = issue_revocation(store.authority, store.store_id, TerminalId("lane1"), 2, records[1].hash)
    shop.replica.publish_revocation(cut, NOW + 100)
    # lane2 is cut before its first record: none of its sales count any more.
    everything = issue_revocation(store.authority, store.store_id, TerminalId("lane2"), 0)
    shop.replica.publish_revocation(everything, NOW + 100)
    assert [s["id"] for s in walk(journal, SalesQuery(), 10)] == ["lane1:1", "lane1:2"]
    # A listing under way goes on with what still counts.
    rest = journal.page(SalesQuery(), 10, under_way)
    assert ([s["id"] for s in rest["sales"]], rest["next_cursor"]) == (["lane1:2"], None)
    with pytest.raises(NotFound):
        journal.sale("lane1:3")


def test_a_journal_made_after_a_restore_from_a_checkpoint_lists_the_same() -> None:
    """A checkpoint tells subscribers nothing: a journal made then reads the documents."""
    lane = Store().terminal("lane1")
    changes = [lane.restored]
    for i in range(5):
        changes.append(lane.replica.append(sale(qty=i + 1), NOW + i)[1])
    lane.replica.persisted(changes)
    saved = lane.replica.checkpoint()
    again = Replica(lane.replica.store, lane.replica.client_id, lane.replica.me)
    again.restore(durable_log(*changes), set(), NOW + 10, checkpoint=saved)
    assert again.restored_from.startswith("loaded stock and sales from the checkpoint")
    listed = walk(SalesJournal(again), SalesQuery(), 2)
    assert listed == walk(SalesJournal(lane.replica), SalesQuery(), 3)
    assert [s["total_cents"] for s in listed] == [100, 200, 300, 400, 500]


# -- parameters and cursors ------------------------------------------------------------------------


def test_limits() -> None:
    assert check_limit(None) == DEFAULT_LIMIT == 100
    assert check_limit(1) == 1
    assert check_limit(MAX_LIMIT) == MAX_LIMIT == 1000
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(UsageError, match="limit must be 1 to 1000"):
            check_limit(bad)


@pytest.mark.parametrize(
    ("since", "day", "terminal", "message"),
    [
        (-1, None, None, "since must be"),
        (2**63, None, None, "since must be"),
        (None, "2026-02-30", None, "invalid day"),
        (None, "2026-2-3", None, "invalid day"),
        (None, "today", None, "invalid day"),
        (None, "\uff12\uff10\uff12\uff16-01-01", None, "invalid day"),  # fullwidth digits
        (None, None, "a b", "invalid terminal id"),
        (None, None, "", "invalid terminal id"),
    ],
)
def test_bad_filters_are_usage_errors(
    since: int | None, day: str | None, terminal: str | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        SalesQuery.of(since, day, terminal)


def test_a_cursor_round_trips_and_carries_its_filters() -> None:
    shop = Shop()
    shop.deliver(chain(shop.keys["lane1"], "lane1", [(NOW + i, sale()) for i in range(3)]))
    journal = SalesJournal(shop.replica)
    query = SalesQuery.of(NOW - 1, "2026-11-18", "lane1")
    page = journal.page(query, 1)
    cursor = Cursor.decode(page["next_cursor"])
    assert cursor.query == query
    assert cursor.encode() == page["next_cursor"]
    # Without filters, the cursor's are used; with others, it is refused.
    assert journal.page(SalesQuery(), 5, page["next_cursor"])["sales"][0]["id"] == "lane1:2"
    with pytest.raises(UsageError, match="terminal differs from the listing"):
        journal.page(SalesQuery.of(terminal="lane2"), 5, page["next_cursor"])


def packed(data: object) -> str:
    """Text in a cursor's encoding holding ``data``."""
    return base64.urlsafe_b64encode(msgpack.packb(data)).decode().rstrip("=")


NO_FILTER = [None, None, None]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x",
        "not base64!",
        "A" * 9000,
        packed([1]),
        packed({"format": 1}),
        packed([2, *NO_FILTER, [], [], [], None]),
        packed([1, *NO_FILTER, ["a b"], [0], [1], None]),
        packed([1, *NO_FILTER, ["lane1"], [-1], [1], None]),
        packed([1, *NO_FILTER, ["lane1"], [0], [1, 2], None]),
        packed([1, *NO_FILTER, ["lane1"], [0], [True], None]),
        packed([1, "1", None, None, [], [], [], None]),
        packed([1, None, "2026-13-01", None, [], [], [], None]),
        packed([1, None, 20261201, None, [], [], [], None]),
        packed([1, *NO_FILTER, [], [], [], [1, 2, "lane1"]]),
        packed([1, *NO_FILTER, [], [], [], [1, 2, "lane1", 3, 4]]),
        packed([1, *NO_FILTER, [], [], [], "after"]),
        base64.urlsafe_b64encode(b"\xc1").decode(),  # not msgpack
    ],
)
def test_a_cursor_not_made_by_a_listing_is_refused(bad: str) -> None:
    journal = SalesJournal(Store().terminal("lane1").replica)
    with pytest.raises(UsageError, match="invalid cursor"):
        journal.page(SalesQuery(), 10, bad)


# -- forks the store resolved, and a cloud's void -------------------------------------------------


def test_both_branches_of_a_resolved_fork_are_listed_and_their_shared_ids_name_no_sale() -> None:
    """lane1 forked at seq 3 (branch x: seqs 3-4, branch y: seqs 3-5); once the store resolved
    it, every sale of both branches counts: the listing shows each once (ids 3 and 4 twice,
    one per branch), and asking for such an id by itself is refused as ambiguous."""
    forked = Forked()
    replica = forked.observer()
    put_records(replica, TODAY_DOC, keyed(*forked.all_records), 5_000)
    journal = SalesJournal(replica)
    before = walk(journal, SalesQuery(), 1)
    assert [s["id"] for s in before] == ["lane1:2"]  # the chain stops at the fork
    replica.merge([(CONFIG_DOC, resolution_update(forked.resolution))], NOW + 100)
    for limit in (1, 2, 10):
        listed = walk(journal, SalesQuery(), limit)
        assert [(s["id"], s["total_cents"]) for s in listed] == [
            ("lane1:2", 100),
            ("lane1:3", 200),
            ("lane1:4", 300),
            ("lane1:3", 500),
            ("lane1:4", 700),
            ("lane1:5", 1100),
        ]
    assert journal.sale("lane1:5")["total_cents"] == 1100
    with pytest.raises(UsageError, match="names a sale on each branch"):
        journal.sale("lane1:3")
    # A listing begun before the resolution still ends with every sale once.
    page = journal.page(SalesQuery(), 1)
    assert walk(SalesJournal(replica), SalesQuery(), 3)[0] == page["sales"][0]


def test_a_void_signed_by_a_cloud_certificate_is_not_the_void_of_a_sale() -> None:
    """A cloud certificate signs prices only: its void credits nothing back, so the sale's
    void is the lane's, even though the cloud's is stamped earlier."""
    store = Store()
    lane1, lane2 = store.terminal("lane1"), store.terminal("lane2")
    cloud = store.terminal(str(CLOUD_TERMINAL_ID), Role.CLOUD)
    sold, _ = lane1.replica.append(sale(), NOW)
    sync_all([lane1.replica, lane2.replica, cloud.replica])
    journal = SalesJournal(lane1.replica)
    cloud.replica.append(Void(sold.id), NOW + 5)
    sync_all([lane1.replica, cloud.replica], NOW + 6)
    assert journal.sale(str(sold.id))["voided"] is False  # the cloud's void does not count
    lane2.replica.append(Void(sold.id), NOW + 10)
    sync_all([lane1.replica, lane2.replica], NOW + 11)
    shown = journal.sale(str(sold.id))
    assert (shown["voided"], shown["void_id"]) == (True, "lane2:1")


def test_a_branch_arriving_after_the_resolution_joins_the_listing_in_timestamp_order() -> None:
    forked = Forked()
    replica = forked.observer()
    put_records(replica, TODAY_DOC, keyed(*forked.prefix, *forked.x), 5_000)
    replica.merge([(CONFIG_DOC, resolution_update(forked.resolution))], NOW + 100)
    journal = SalesJournal(replica)
    assert [s["total_cents"] for s in walk(journal, SalesQuery(), 2)] == [100, 200, 300]
    put_records(replica, TODAY_DOC, keyed(*forked.y), 5_001)  # seqs 3-5, below x's head 4
    listed = walk(journal, SalesQuery(), 2)
    assert [s["total_cents"] for s in listed] == [100, 200, 300, 500, 700, 1100]
    assert journal.sale("lane1:5")["total_cents"] == 1100
