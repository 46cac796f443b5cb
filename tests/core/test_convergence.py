"""Convergence: replicas that exchanged updates agree, whatever the order, delay or duplication.

The model in these tests is the tests' own log of operations; the replicas' views are checked
against it, never against each other only.
"""

from __future__ import annotations

from collections import defaultdict

import pycrdt
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from lanesync.core.hlc import Hlc
from lanesync.core.identity import Role
from lanesync.core.ids import RecordId, Sku, TerminalId
from lanesync.core.records import (
    Adjustment,
    Body,
    PriceChange,
    Receipt,
    Record,
    Sale,
    SaleLine,
    Void,
)
from lanesync.core.replica import Replica
from lanesync.errors import ConfigError

from .helpers import HOUR_MS, NOW, CoreTerminal, Store, no_problems, sync, sync_all

SKUS = [Sku("A"), Sku("B"), Sku("C")]
lane = st.integers(0, 3)
sku_st = st.sampled_from(SKUS)
sale_lines = st.lists(
    st.tuples(sku_st, st.integers(1, 5), st.integers(0, 500)), min_size=1, max_size=3
)


class Model:
    """What the stock must be, computed from the operations the test performed."""

    def __init__(self) -> None:
        self.moves: dict[Sku, int] = defaultdict(int)
        self.sales: dict[str, list[tuple[Sku, int]]] = {}
        self.voided: set[str] = set()
        self.prices: dict[Sku, tuple[Hlc, str, int]] = {}

    def record(self, record: Record) -> None:
        match record.body:
            case Receipt(sku, qty):
                self.moves[sku] += qty
            case Adjustment(sku, delta):
                self.moves[sku] += delta
            case Sale(lines):
                self.sales[str(record.id)] = [(line.sku, line.qty) for line in lines]
            case Void(sale_id):
                self.voided.add(str(sale_id))
            case PriceChange(sku, cents):
                candidate = (record.hlc, str(record.terminal), cents)
                if sku not in self.prices or candidate[:2] > self.prices[sku][:2]:
                    self.prices[sku] = candidate

    def on_hand(self) -> dict[Sku, int]:
        stock: dict[Sku, int] = defaultdict(int)
        for sku, delta in self.moves.items():
            stock[sku] += delta
        for sale_id, lines in self.sales.items():
            for sku, qty in lines:
                stock[sku] -= 0 if sale_id in self.voided else qty
        for sku in self.prices:
            stock[sku] += 0
        return dict(stock)


class LaneMesh(RuleBasedStateMachine):
    """2-4 terminals selling, receiving and voiding while partially connected."""

    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.terminals: list[CoreTerminal] = []
        self.now = NOW
        self.model = Model()

    @initialize(n=st.integers(2, 4))
    def enrol(self, n: int) -> None:
        for i in range(n):
            role = Role.MANAGER if i == 0 else Role.CASHIER
            self.terminals.append(self.store.terminal(f"lane{i + 1}", role, now_ms=self.now))

    def _lane(self, i: int) -> CoreTerminal:
        return self.terminals[i % len(self.terminals)]

    def _append(self, i: int, body: Body) -> Record:
        terminal = self._lane(i)
        before = terminal.replica.views.head(terminal.name).seq
        record, change = terminal.replica.append(body, self.now)
        assert record.seq == before + 1
        assert change.updates
        self.model.record(record)
        return record

    @rule(i=lane, sku=sku_st, qty=st.integers(1, 20))
    def receive(self, i: int, sku: Sku, qty: int) -> None:
        self._append(i, Receipt(sku, qty))

    @rule(i=lane, lines=sale_lines)
    def sell(self, i: int, lines: list[tuple[Sku, int, int]]) -> None:
        self._append(i, Sale.of(tuple(SaleLine(s, q, p) for s, q, p in lines)))

    @rule(i=lane, sku=sku_st, delta=st.integers(-5, 5).filter(bool))
    def adjust(self, i: int, sku: Sku, delta: int) -> None:
        self._append(i, Adjustment(sku, delta, "count"))

    @rule(sku=sku_st, cents=st.integers(0, 10_000))
    def set_price(self, sku: Sku, cents: int) -> None:
        self._append(0, PriceChange(sku, cents))  # lane1 is the manager

    @rule(i=lane, pick=st.integers(0, 1000))
    def void(self, i: int, pick: int) -> None:
        visible = sorted(self._lane(i).replica.views.sale_ids())
        if visible:
            target = visible[pick % len(visible)]
            self._append(i, Void(RecordId.parse(target)))
            assert self._lane(i).replica.views.is_voided(target)

    @rule(i=lane, j=lane, pick=st.integers(0, 1000))
    def void_twice_while_apart(self, i: int, j: int, pick: int) -> None:
        """Two lanes that both see one sale void it without hearing of each other's void."""
        a, b = self._lane(i), self._lane(j)
        if a is b:
            return
        common = sorted(set(a.replica.views.sale_ids()) & set(b.replica.views.sale_ids()))
        if not common:
            sale = self._append(i, Sale.of((SaleLine(SKUS[pick % 3], 1 + pick % 4, 100),)))
            sync(a.replica, b.replica, self.now)
            common = [str(sale.id)]
        target = common[pick % len(common)]
        self._append(i, Void(RecordId.parse(target)))
        self._append(j, Void(RecordId.parse(target)))
        event("two lanes voided one sale while apart")

    @rule(src=lane, dst=lane)
    def sync(self, src: int, dst: int) -> None:
        a, b = self._lane(src).replica, self._lane(dst).replica
        if a is b:
            return
        sync(a, b, self.now)
        # dst now holds everything src held
        for head in a.views.heads():
            assert b.views.head(head.terminal).seq >= head.seq
        assert not a.updates_since(b.state_vectors())

    @rule(src=lane, dst=lane)
    def sync_again(self, src: int, dst: int) -> None:
        """A duplicated delivery: the same full update sent twice changes nothing more."""
        a, b = self._lane(src).replica, self._lane(dst).replica
        if a is b:
            return
        everything = list(a.updates_since({}).items())
        b.merge(everything, self.now)
        digest = b.digest()
        b.merge(everything, self.now)
        assert b.digest() == digest

    @rule(ms=st.integers(0, 14 * HOUR_MS))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @invariant()
    def nothing_is_rejected(self) -> None:
        for terminal in self.terminals:
            assert no_problems(terminal.replica), terminal.replica.views.problems()

    def teardown(self) -> None:
        if not self.terminals:
            return
        replicas = [t.replica for t in self.terminals]
        sync_all(replicas, self.now)
        sync_all(replicas, self.now)
        days = [n for n in replicas[0].doc_names() if n.startswith("ledger/")]
        event(f"ledger documents: {min(len(days), 3)}")
        expected = self.model.on_hand()
        first = replicas[0]
        for replica in replicas:
            assert replica.digest() == first.digest()
            assert replica.views.on_hand() == expected
            assert no_problems(replica), replica.views.problems()
            assert {s: p.unit_cents for s, p in replica.views.prices().items()} == {
                s: cents for s, (_, _, cents) in self.model.prices.items()
            }
            assert set(replica.views.sale_ids()) == set(self.model.sales)
            for sale_id in self.model.sales:
                assert replica.views.is_voided(sale_id) == (sale_id in self.model.voided)


LaneMesh.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLaneMesh = LaneMesh.TestCase


def test_two_lanes_voiding_one_sale_while_apart_credit_it_back_once() -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("A"), 10), NOW)
    sale, _ = a.replica.append(Sale.of((SaleLine(Sku("A"), 4, 100),)), NOW)
    sync_all([a.replica, b.replica])
    assert b.replica.views.on_hand() == {"A": 6}
    a.replica.append(Void(sale.id), NOW + 1)
    b.replica.append(Void(sale.id), NOW + 2)
    assert a.replica.views.on_hand() == b.replica.views.on_hand() == {"A": 10}
    sync_all([a.replica, b.replica], NOW + 3)
    assert a.replica.views.on_hand() == b.replica.views.on_hand() == {"A": 10}
    assert a.replica.digest() == b.replica.digest()


def test_void_that_arrives_before_its_sale_credits_nothing_twice() -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    c = store.observer()
    a.replica.append(Receipt(Sku("A"), 10), NOW)
    sale, _ = a.replica.append(Sale.of((SaleLine(Sku("A"), 4, 100),)), NOW)
    sync(a.replica, b.replica)
    b.replica.append(Void(sale.id), NOW + 1)
    sync(b.replica, c)  # c gets the void and the sale together, b's chain first
    assert c.views.on_hand() == {"A": 10}
    assert c.views.is_voided(str(sale.id))


# -- delivery order and duplication of individual updates ----------------------------------------

op_st = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["receive", "sell", "adjust", "void", "sync", "later"]),
    st.integers(0, 1000),
)


def run_writers(
    ops: list[tuple[int, str, int]],
) -> tuple[Store, list[CoreTerminal], list[tuple[str, bytes]], int]:
    store = Store()
    writers = [store.terminal(f"lane{i + 1}") for i in range(3)]
    captured: list[tuple[str, bytes]] = []
    for w in writers:
        captured.extend(w.restored.updates)
    now = NOW
    for i, op, n in ops:
        w = writers[i]
        body: Body | None = None
        if op == "receive":
            body = Receipt(SKUS[n % 3], 1 + n % 7)
        elif op == "sell":
            body = Sale.of((SaleLine(SKUS[n % 3], 1 + n % 4, 100),))
        elif op == "adjust":
            body = Adjustment(SKUS[n % 3], n % 5 - 2 or 1, "count")
        elif op == "void":
            sales = sorted(w.replica.views.sale_ids())
            if sales:
                body = Void(RecordId.parse(sales[n % len(sales)]))
        elif op == "sync":
            sync(writers[(i + 1 + n % 2) % 3].replica, w.replica, now)
        else:
            now += (n % 13) * HOUR_MS
        if body is not None:
            _, change = w.replica.append(body, now)
            captured.extend(change.updates)
    sync_all([w.replica for w in writers], now)
    sync_all([w.replica for w in writers], now)
    return store, writers, captured, now


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op_st, min_size=1, max_size=16), data=st.data())
def test_any_delivery_order_with_duplicates_converges(
    ops: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    store, writers, captured, now = run_writers(ops)
    reference = writers[0].replica
    assert all(w.replica.digest() == reference.digest() for w in writers)

    duplicates = data.draw(st.lists(st.sampled_from(captured), max_size=len(captured)))
    schedule = data.draw(st.permutations(captured + duplicates))
    fresh = Replica(store.identity, store.client_id(), None)
    fresh.restore({}, set(), now)
    for name, update in schedule:
        fresh.merge([(name, update)], now)

    assert fresh.digest() == reference.digest()
    assert fresh.views.on_hand() == reference.views.on_hand()
    assert fresh.views.heads() == reference.views.heads()
    assert no_problems(fresh), fresh.views.problems()
    assert all(fresh.covered(name, [update]) == [True] for name, update in captured)


def test_updates_in_reverse_order_wait_for_their_predecessors() -> None:
    store = Store()
    a = store.terminal("lane1")
    updates = list(a.restored.updates)
    for qty in (1, 2, 3):
        _, change = a.replica.append(Receipt(Sku("A"), qty), NOW)
        updates.extend(change.updates)
    fresh = store.observer()
    *earlier, last = updates
    fresh.merge([last], NOW)
    # the last receipt's update depends on the earlier ones of the same client: pycrdt buffers it
    assert fresh.covered(last[0], [last[1]]) == [False]
    assert fresh.views.on_hand() == {}
    for update in reversed(earlier):
        fresh.merge([update], NOW)
    assert fresh.covered(last[0], [last[1]]) == [True]
    assert fresh.views.on_hand() == {"A": 6}
    assert fresh.digest() == a.replica.digest()


# -- why records and not a shared integer ------------------------------------------------------


def test_naive_shared_integer_loses_decrements_but_records_do_not() -> None:
    one: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc(client_id=1)
    two: pycrdt.Doc[pycrdt.Map[float]] = pycrdt.Doc(client_id=2)
    m1: pycrdt.Map[float] = one.get("stock", type=pycrdt.Map)
    m2: pycrdt.Map[float] = two.get("stock", type=pycrdt.Map)
    m1["X"] = 10
    two.apply_update(one.get_update())
    assert m2["X"] == 10
    for _ in range(3):
        m1["X"] = m1["X"] - 1  # lane 1 sells 3 while apart
    for _ in range(4):
        m2["X"] = m2["X"] - 1  # lane 2 sells 4 while apart
    one.apply_update(two.get_update(one.get_state()))
    two.apply_update(one.get_update(two.get_state()))
    naive = m1["X"]
    assert m2["X"] == naive  # converged ...
    assert naive in (6, 7)  # ... to one side's value
    assert naive != 10 - 3 - 4  # ... losing the other side's decrements

    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("X"), 10), NOW)
    sync_all([a.replica, b.replica])
    for k in range(3):
        a.replica.append(Sale.of((SaleLine(Sku("X"), 1, 100),)), NOW + k)
    for k in range(4):
        b.replica.append(Sale.of((SaleLine(Sku("X"), 1, 100),)), NOW + k)
    assert a.replica.views.on_hand() == {"X": 7}
    assert b.replica.views.on_hand() == {"X": 6}
    sync_all([a.replica, b.replica], NOW + 10)
    assert a.replica.views.on_hand() == b.replica.views.on_hand() == {"X": 10 - 3 - 4}
    assert a.replica.digest() == b.replica.digest()


def test_a_replica_without_identity_cannot_append() -> None:
    observer = Store().observer()
    with pytest.raises(ConfigError):
        observer.append(Receipt(Sku("A"), 1), NOW)
    assert observer.views.on_hand() == {}


def test_unused_terminal_id_has_empty_head() -> None:
    replica = Store().observer()
    head = replica.views.head(TerminalId("lane9"))
    assert head.seq == 0
    assert replica.views.heads() == []
