"""The head-office tables (``lanesync.cloud.headoffice``): real replicas of the pure core
projected into a real SQLite head-office database (the schema the cloud creates), then read
through the same read API the cloud serves. The end-to-end path (lanes, uplink, HTTP) is in
test_cloud_e2e; PostgreSQL runs the same statements there."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from core.helpers import NOW, Store  # tests/ is on sys.path, as for `support`
from hypothesis import given, settings
from hypothesis import strategies as st

from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.schema import prepare_sqlite_headoffice
from lanesync.cloud.sql import SqliteSql
from lanesync.core.accepted import AcceptedRecords
from lanesync.core.forks import issue_fork_resolution
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.records import Adjustment, PriceChange, Receipt, Record, Sale, SaleLine, Void
from lanesync.core.replica import Replica

DAY = "2026-11-18"  # NOW's day in the store's time zone (UTC)


@pytest.fixture
def sql(tmp_path: Path) -> Iterator[SqliteSql]:
    db = SqliteSql(tmp_path / "headoffice.db")
    try:
        prepare_sqlite_headoffice(db)
        yield db
    finally:
        db.close()


# Each cloud replica's stream of accepted records, as cloud.stores.open_store subscribes.
_ACCEPTED: dict[Replica, AcceptedRecords] = {}


def project(office: HeadOffice, sql: SqliteSql, store_id: str, replica: Replica) -> None:
    with sql.transaction():
        office.project(store_id, replica, _ACCEPTED[replica])


def sale_of(*lines: tuple[str, int, int]) -> Sale:
    return Sale.of(tuple(SaleLine(Sku(s), q, c) for s, q, c in lines))


def movements(sql: SqliteSql, store_id: str) -> list[tuple[str, str, int, str]]:
    rows = sql.execute(
        "SELECT movement_id, sku, delta, kind FROM stock_movements WHERE store_id = ? "
        "ORDER BY kind, movement_id, sku",
        (store_id,),
    )
    return [(str(m), str(s), int(d), str(k)) for m, s, d, k in rows]


def cloud_replica(store: Store) -> Replica:
    replica = store.observer()
    _ACCEPTED[replica] = replica.subscribe_accepted()  # as cloud.stores.open_store does
    return replica


def deliver(replica: Replica, *sources: Replica) -> None:
    for source in sources:
        replica.merge(list(source.updates_since(replica.state_vectors()).items()), NOW + 100)


def test_sales_stock_and_movements_are_projected_once_however_often_delivered(
    sql: SqliteSql,
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    manager = store.terminal("lane2", Role.MANAGER)
    lane.replica.append(Receipt(Sku("milk"), 10), NOW)
    sold, _ = lane.replica.append(sale_of(("milk", 3, 149), ("milk", 1, 149)), NOW + 1)
    lane.replica.append(Adjustment(Sku("milk"), -2, "broken"), NOW + 2)
    manager.replica.append(PriceChange(Sku("milk"), 159), NOW + 3)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, lane.replica, manager.replica)
    project(office, sql, "s1", cloud)
    deliver(cloud, lane.replica, manager.replica)  # again: nothing new
    project(office, sql, "s1", cloud)
    office.forget_projection("s1")  # a full rewrite must not count anything twice either
    project(office, sql, "s1", cloud)

    assert office.stores() == [{"store_id": "s1", "sales_recorded": 1, "total": 596}]
    assert office.stock("s1") == {"items": [{"sku": "milk", "on_hand": 4}]}
    assert office.sales("s1", DAY) == {
        "count": 1,
        "total": 596,
        "sales": [
            {
                "sale_id": str(sold.id),
                "terminal_id": "lane1",
                "business_day": DAY,
                "hlc_ms": sold.hlc.wall_ms,
                "total": 596,
            }
        ],
    }
    assert office.sales("s1", "2026-11-17") == {"count": 0, "total": 0, "sales": []}
    receipt_id, adjustment_id = (str(r.id) for r in lane_records(lane.replica, Receipt, Adjustment))
    # One movement per sale and SKU: two lines of milk become one row of -4.
    assert sorted(movements(sql, "s1")) == sorted(
        [
            (adjustment_id, "milk", -2, "adjustment"),
            (receipt_id, "milk", 10, "receipt"),
            (str(sold.id), "milk", -4, "sale"),
        ]
    )
    assert sql.execute("SELECT sku, unit_cents FROM prices WHERE store_id = 's1'") == [
        ("milk", 159)
    ]
    heads = sql.execute("SELECT terminal_id, seq FROM chain_heads ORDER BY terminal_id")
    assert heads == [("lane1", 3), ("lane2", 1)]


def lane_records(replica: Replica, *kinds: type) -> list[Record]:
    return sorted(
        (r for _, _, r in replica.records() if isinstance(r.body, kinds)), key=lambda r: r.seq
    )


def test_two_voids_of_one_sale_credit_it_back_once_and_leave_it_out(sql: SqliteSql) -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    a.replica.append(Receipt(Sku("eggs"), 6), NOW)
    sold, _ = a.replica.append(sale_of(("eggs", 2, 320)), NOW + 1)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, a.replica)
    project(office, sql, "s1", cloud)
    assert office.stock("s1") == {"items": [{"sku": "eggs", "on_hand": 4}]}
    deliver(b.replica, a.replica)
    a.replica.append(Void(sold.id), NOW + 2)
    b.replica.append(Void(sold.id), NOW + 3)
    deliver(cloud, a.replica)
    project(office, sql, "s1", cloud)
    deliver(cloud, b.replica)
    project(office, sql, "s1", cloud)
    assert office.stock("s1") == {"items": [{"sku": "eggs", "on_hand": 6}]}
    assert office.sales("s1", None) == {"count": 0, "total": 0, "sales": []}
    assert office.stores() == [{"store_id": "s1", "sales_recorded": 1, "total": 0}]
    voids = [m for m in movements(sql, "s1") if m[3] == "void"]
    assert voids == [(f"void:{sold.id}", "eggs", 2, "void")]


def test_a_sale_that_arrives_after_its_void_is_projected_as_voided(sql: SqliteSql) -> None:
    store = Store()
    a, b = store.terminal("lane1"), store.terminal("lane2")
    sold, _ = a.replica.append(sale_of(("bread", 1, 275)), NOW)
    deliver(b.replica, a.replica)
    b.replica.append(Void(sold.id), NOW + 1)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, b.replica)  # b holds the sale too: both arrive, in one merge
    project(office, sql, "s1", cloud)
    assert sql.execute("SELECT sale_id, voided FROM sales") == [(str(sold.id), 1)]
    assert office.sales("s1", None)["count"] == 0
    assert [m[3] for m in movements(sql, "s1")] == ["sale", "void"]


def test_a_full_projection_replaces_the_stores_rows_and_an_incremental_one_does_not(
    sql: SqliteSql,
) -> None:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(Receipt(Sku("milk"), 5), NOW)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, lane.replica)
    project(office, sql, "s1", cloud)
    sql.execute("INSERT INTO sales VALUES ('s1', 'stale:1', 'lane9', 1, ?, 0, 999, 0)", (DAY,))
    sql.execute("DELETE FROM stock_movements")
    project(office, sql, "s1", cloud)  # incremental: only what is new (nothing)
    assert movements(sql, "s1") == []
    assert office.stores()[0]["sales_recorded"] == 1
    cloud.rebuild(NOW + 200)  # the views were rebuilt: the next projection rewrites everything
    project(office, sql, "s1", cloud)
    assert [m[3] for m in movements(sql, "s1")] == ["receipt"]
    assert office.stores() == []  # the stale sale is gone with the rewrite


def test_stores_are_kept_apart(sql: SqliteSql) -> None:
    one, two = Store(), Store()
    office = HeadOffice(sql)
    for store_id, store, qty in (("s1", one, 2), ("s2", two, 7)):
        lane = store.terminal("lane1")
        lane.replica.append(Receipt(Sku("milk"), 10), NOW)
        lane.replica.append(sale_of(("milk", qty, 100)), NOW + 1)
        cloud = cloud_replica(store)
        deliver(cloud, lane.replica)
        project(office, sql, store_id, cloud)
    assert office.stores() == [
        {"store_id": "s1", "sales_recorded": 1, "total": 200},
        {"store_id": "s2", "sales_recorded": 1, "total": 700},
    ]
    assert office.stock("s2") == {"items": [{"sku": "milk", "on_hand": 3}]}
    assert office.stock("s3") == {"items": []}


def test_both_branches_of_a_resolved_fork_are_projected_each_sale_once(sql: SqliteSql) -> None:
    """lane1 forks at seq 2 (two copies of it each sold there and on) and the store resolved it:
    lane1:2 names a sale on each branch. Each gets its own row, under its record key, and a void
    of lane1:2 voids neither (as in the views); a void of lane1:3 (one branch) voids it."""
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(Receipt(Sku("milk"), 100), NOW)
    copy = Replica(store.identity, store.client_id(), lane.replica.me)
    copy.restore(
        {name: [lane.replica.full_state(name)] for name in lane.replica.doc_names()}, (), NOW
    )
    x2, _ = lane.replica.append(sale_of(("milk", 1, 100)), NOW + 1)
    x3, _ = lane.replica.append(sale_of(("milk", 2, 100)), NOW + 2)
    y2, _ = copy.append(sale_of(("milk", 5, 100)), NOW + 3)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, lane.replica, copy)
    fork = cloud.open_fork(lane.name)
    resolution = issue_fork_resolution(
        store.authority, store.store_id, lane.name, fork.fork_seq, fork.base_hash, fork.branches
    )
    cloud.publish_fork_resolution(resolution, NOW + 10)
    project(office, sql, "s1", cloud)
    sales = office.sales("s1", DAY)
    assert sorted(s["sale_id"] for s in sales["sales"]) == sorted([x2.key, y2.key, "lane1:3"])
    assert sales["total"] == 100 * (1 + 2 + 5)
    assert office.stock("s1") == {"items": [{"sku": "milk", "on_hand": 92}]}

    manager = store.terminal("lane2", Role.MANAGER)
    deliver(manager.replica, cloud)
    manager.replica.append(Void(x2.id), NOW + 20)
    manager.replica.append(Void(x3.id), NOW + 21)
    deliver(cloud, manager.replica)
    project(office, sql, "s1", cloud)
    assert office.sales("s1", DAY)["total"] == 100 * (1 + 5)
    assert office.stock("s1") == {"items": [{"sku": "milk", "on_hand": 94}]}


def test_day_ends_are_projected_once_and_sales_stay_as_they_were(sql: SqliteSql) -> None:
    store = Store()
    lane = store.terminal("lane1")
    lane.replica.append(sale_of(("milk", 2, 150)), NOW)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, lane.replica)
    project(office, sql, "s1", cloud)
    (day_end,), _ = lane.replica.close_days(None, NOW + 1)
    deliver(cloud, lane.replica)
    project(office, sql, "s1", cloud)
    office.forget_projection("s1")  # a full rewrite keeps one row per lane and day
    project(office, sql, "s1", cloud)
    assert sql.execute("SELECT * FROM day_ends") == [
        ("s1", "lane1", DAY, day_end.seq, 1, 1, 1, 0, 300, 0, 300)
    ]
    assert office.stores() == [{"store_id": "s1", "sales_recorded": 1, "total": 300}]
    assert cloud.views.closed_days(lane.name) == {DAY: 2}


class _CountingSql(SqliteSql):
    """The head-office database, counting the rows each table's statements were sent."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.rows_sent: dict[str, int] = {}

    def executemany(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        table = statement.split()[2]  # INSERT INTO <table> / UPDATE <table> SET
        table = statement.split()[1] if statement.startswith("UPDATE") else table
        self.rows_sent[table] = self.rows_sent.get(table, 0) + len(rows)
        super().executemany(statement, rows)


def test_a_live_sale_writes_the_stock_rows_of_its_own_skus_not_the_catalog(
    tmp_path: Path,
) -> None:
    sql = _CountingSql(tmp_path / "headoffice.db")
    prepare_sqlite_headoffice(sql)
    store = Store()
    lane, manager = store.terminal("lane1"), store.terminal("lane2", Role.MANAGER)
    for i in range(50):
        lane.replica.append(Receipt(Sku(f"sku{i:02d}"), 10), NOW)
        manager.replica.append(PriceChange(Sku(f"sku{i:02d}"), 100 + i), NOW)
    cloud, office = cloud_replica(store), HeadOffice(sql)
    deliver(cloud, lane.replica, manager.replica)
    project(office, sql, "s1", cloud)  # the first projection writes every row
    assert (sql.rows_sent["stock_on_hand"], sql.rows_sent["prices"]) == (50, 50)

    sql.rows_sent.clear()
    lane.replica.append(sale_of(("sku07", 2, 107), ("sku31", 1, 131)), NOW + 1)
    deliver(cloud, lane.replica)
    project(office, sql, "s1", cloud)
    assert sql.rows_sent["stock_on_hand"] == 2
    assert sql.rows_sent["prices"] == 0
    assert sql.rows_sent["chain_heads"] == 1  # lane1's; lane2's did not move
    assert_tables_show_the_views(sql, cloud)
    sql.close()


def assert_tables_show_the_views(sql: SqliteSql, replica: Replica) -> None:
    views = replica.views
    stock = dict(sql.execute("SELECT sku, on_hand FROM stock_on_hand WHERE store_id = 's1'"))
    prices = dict(sql.execute("SELECT sku, unit_cents FROM prices WHERE store_id = 's1'"))
    heads = sql.execute("SELECT terminal_id, seq, hash FROM chain_heads WHERE store_id = 's1'")
    assert stock == views.on_hand()
    assert prices == {sku: price.unit_cents for sku, price in views.prices().items()}
    assert sorted(heads) == sorted((h.terminal, h.seq, h.hash.hex()) for h in views.heads())


# A lane's write: which terminal (lane3 is a cashier trying to set prices, refused), what,
# and the SKU (of 4) it names; "void" voids a sale of that lane, "rebuild" rebuilds the views.
OPS = st.lists(
    st.tuples(
        st.sampled_from(["lane1", "lane2", "lane3"]),
        st.sampled_from(["receipt", "sale", "void", "adjust", "price", "deliver", "rebuild"]),
        st.sampled_from([Sku(f"sku{i}") for i in range(4)]),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(ops=OPS)
def test_stock_prices_and_heads_equal_the_views_after_every_projection(
    ops: list[tuple[str, str, Sku]],
) -> None:
    """Each projection writes only what its records may have changed, and the tables still
    equal the views after every one, whatever arrives when (receipts, sales, voids before and
    after their sale arrives, adjustments, accepted and refused prices, rebuilds)."""
    with tempfile.TemporaryDirectory() as tmp:
        sql = SqliteSql(Path(tmp) / "headoffice.db")
        prepare_sqlite_headoffice(sql)
        store = Store()
        lanes = {
            "lane1": store.terminal("lane1"),
            "lane2": store.terminal("lane2", Role.MANAGER),
            "lane3": store.terminal("lane3"),
        }
        cloud, office = cloud_replica(store), HeadOffice(sql)
        sold: dict[str, list[Record]] = {name: [] for name in lanes}
        for step, (name, op, sku) in enumerate(ops, 1):
            replica, now = lanes[name].replica, NOW + step
            if op == "receipt":
                replica.append(Receipt(sku, 5), now)
            elif op == "sale":
                sold[name].append(replica.append(sale_of((sku, 1, 100)), now)[0])
            elif op == "void" and sold[name]:
                replica.append(Void(sold[name].pop(0).id), now)
            elif op == "adjust":
                replica.append(Adjustment(sku, -1, "broken"), now)
            elif op == "price":
                replica.append(PriceChange(sku, 100 + step), now)
            elif op == "rebuild":
                cloud.rebuild(now)
            elif op == "deliver":
                deliver(cloud, replica)  # one lane's news only: the others arrive later
                project(office, sql, "s1", cloud)
                assert_tables_show_the_views(sql, cloud)
        deliver(cloud, *(lane.replica for lane in lanes.values()))
        project(office, sql, "s1", cloud)
        assert_tables_show_the_views(sql, cloud)
        sql.close()
