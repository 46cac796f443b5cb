"""The cloud on PostgreSQL at chain scale: explicit schema migrations, several ``cloud serve``
processes sharing one database, and a process killed with SIGKILL mid-upload.

Every other cloud test also runs against PostgreSQL (the ``world`` fixture's second backend);
these are the ones only a shared database has. Expected figures come from what the lanes
acknowledged (``store.Books``), and both processes must show exactly them: the head-office tables
are one set whichever process wrote a row, and each process's replica follows the database.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import ProxyLoop, parallel, port_of, wait_until

from lanesync.tools.pgserver import PostgresServer, unavailable_reason

from .conftest import STORE_ID, Template, World
from .procs import Cloud, Lane, Procs, cli, cli_ok
from .store import (
    Books,
    check_cloud_cli,
    clis,
    one_error_line,
    sell_rounds,
    start_mesh,
    wait_cloud_exact,
    wait_digests,
    wait_leader,
)

pytestmark = pytest.mark.slow
ON_POSTGRESQL = pytest.mark.parametrize("world", ["postgresql"], indirect=True)
KILL_POINTS = ("connected", "updates", "sales")


def count(world: World, table: str) -> int:
    return int(world.rows(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608 - our names


def test_migrations_are_explicit_versioned_and_safe_to_run_at_once(
    pg_server: PostgresServer, cloud_template: Template, tmp_path: Path
) -> None:
    root = tmp_path / "w"
    shutil.copytree(cloud_template.root, root)
    url = pg_server.create_database("migrations")
    serve = ("cloud", "serve", "cloud", "--listen", "127.0.0.1:0", "--api", "127.0.0.1:0")

    # An empty database: serve refuses it and says what to run.
    line = one_error_line(cli(*serve, "--db", url, cwd=root))
    assert "schema version 0" in line, line
    assert "lanesync cloud migrate" in line, line

    # Two migrations at once: each step is applied exactly once.
    first, second = clis(
        root,
        ("cloud", "migrate", "cloud", "--db", url, "--json"),
        ("cloud", "migrate", "cloud", "--db", url, "--json"),
    )
    applied = first.json()["applied"] + second.json()["applied"]
    assert [m["version"] for m in applied] == [1, 2, 3, 4, 5], applied
    assert first.json()["schema_version"] == second.json()["schema_version"] == 5
    again = cli_ok("cloud", "migrate", "cloud", "--db", url, cwd=root)
    assert again.stdout == "database schema already at version 5\n"

    # A database a newer lanesync migrated: neither command touches it.
    sql_world = World(root, url)
    rows = sql_world.rows("SELECT version FROM lanesync_schema")
    assert rows == [(5,)]
    sql = sql_world.sql()
    try:
        sql.execute("UPDATE lanesync_schema SET version = 99")
    finally:
        sql.close()
    for result in clis(root, (*serve, "--db", url), ("cloud", "migrate", "cloud", "--db", url)):
        line = one_error_line(result)
        assert "schema version 99" in line, line
        assert "upgrade lanesync" in line, line
    assert sql_world.rows("SELECT version FROM lanesync_schema") == [(99,)]

    # Bad URLs: one line each, nothing started.
    nobody = pg_server.url("no_such_database")
    results = clis(
        root,
        (*serve, "--db", "mysql://u@127.0.0.1/x"),
        ("cloud", "migrate", "cloud", "--db", "sqlite:///tmp/x.db"),
        ("cloud", "migrate", "cloud", "--db", nobody),
        ("cloud", "migrate", "cloud", "--db", "postgresql://u:secret@127.0.0.1:1/x"),
        ("cloud", "migrate", "store", "--db", url),
    )
    lines = [one_error_line(result) for result in results]
    assert "only postgresql://" in lines[0], lines[0]
    assert "only postgresql://" in lines[1], lines[1]
    assert "cannot connect" in lines[2], lines[2]
    assert "cannot connect" in lines[3], lines[3]
    assert "secret" not in lines[3], "a password must never be printed"
    assert "not a cloud directory" in lines[4], lines[4]


def both_exact(clouds: list[Cloud], books: Books, world: World) -> None:
    """Each process's API shows exactly the books, and the table holds every sale once."""
    for cloud in clouds:
        wait_cloud_exact(cloud, books)
    rows = world.rows("SELECT sale_id FROM sales WHERE store_id = ?", STORE_ID)
    assert sorted(r[0] for r in rows) == sorted(books.sales)  # every sale once
    movements = world.rows(
        "SELECT movement_id, COUNT(*) FROM stock_movements GROUP BY movement_id, sku "
        "HAVING COUNT(*) > 1"
    )
    assert movements == []


def sales_of(books: Books, lane: str) -> list[str]:
    """The lane's sales in the order it made them."""
    mine = [s for s in books.sales if s.startswith(f"{lane}:")]
    return sorted(mine, key=lambda s: int(s.split(":")[1].split("#")[0]))


def wait_followed(clouds: list[Cloud], lanes: list[Lane]) -> None:
    """Every process's replica holds what every lane holds: each follows the database."""
    for cloud in clouds:
        wait_digests(lanes, cloud)


@ON_POSTGRESQL
def test_the_leader_switches_cloud_process_mid_upload_and_totals_stay_exact(
    world: World, procs: Procs, proxies: ProxyLoop
) -> None:
    assert world.db is not None
    cloud_a = procs.cloud(world.cloud, world.db)
    cloud_b = procs.cloud(world.copy_cloud("cloud-b"), world.db)
    # The lanes know the cloud by one address (a load balancer's): it points at A, then B.
    wan = proxies.link()
    proxies.retarget(wan, port_of(cloud_a.listen))
    dirs = {name: world.enroll(name) for name in ("lane1", "lane2", "lane3")}
    mesh = start_mesh(
        procs, proxies, dirs, cloud=f"ws://127.0.0.1:{wan.port}", priorities={"lane1": 1}
    )
    lanes = [mesh.lanes[name] for name in sorted(dirs)]
    wait_leader(lanes, lanes[0])
    books = Books()
    for lane, sku in zip(lanes, ("milk", "bread", "eggs"), strict=True):
        books.receive(lane, sku, 5000)
    sell_rounds(books, lanes, 3)
    both_exact([cloud_a, cloud_b], books, world)

    # A backlog builds up while the WAN is down; when it returns, the upload starts on A and
    # the balancer moves the leader to B in the middle of it.
    proxies.partition(wan)
    sell_rounds(books, lanes, 120, offset=10)
    before = len(world.rows("SELECT sale_id FROM sales"))
    proxies.heal(wan)
    wait_until(
        lambda: len(world.rows("SELECT sale_id FROM sales")) > before,
        30,
        "the upload to A started",
        interval=0.01,
    )
    proxies.retarget(wan, port_of(cloud_b.listen))
    proxies.partition(wan)  # cut the live connection to A ...
    proxies.heal(wan)  # ... so the leader redials, and lands on B
    sell_rounds(books, lanes, 5, offset=500)
    both_exact([cloud_a, cloud_b], books, world)
    wait_followed([cloud_a, cloud_b], lanes)
    check_cloud_cli(world.root, world.cloud, books)


@ON_POSTGRESQL
def test_two_leaders_of_a_split_store_upload_to_two_processes_at_once(
    world: World, procs: Procs, proxies: ProxyLoop
) -> None:
    assert world.db is not None
    cloud_a, cloud_b = parallel(
        [
            lambda: procs.cloud(world.cloud, world.db),
            lambda: procs.cloud(world.copy_cloud("cloud-b"), world.db),
        ]
    )
    names = ("lane1", "lane2", "lane3", "lane4")
    left, right = {"lane1", "lane2"}, {"lane3", "lane4"}
    dirs = {name: world.enroll(name) for name in names}
    mesh = start_mesh(
        procs,
        proxies,
        dirs,
        cloud=cloud_a.listen,
        clouds={"lane3": cloud_b.listen, "lane4": cloud_b.listen},
        priorities={"lane1": 2, "lane3": 1},
    )
    lanes = [mesh.lanes[name] for name in names]
    lane1, lane2, lane3, lane4 = lanes
    wait_leader(lanes, lane1)
    books = Books()
    books.receive(lane1, "milk", 400)
    books.receive(lane4, "bread", 400)
    books.receive(lane4, "eggs", 400)
    sell_rounds(books, lanes, 2)
    both_exact([cloud_a, cloud_b], books, world)

    proxies.partition(*mesh.between(left, right))
    wait_leader([lane3, lane4], lane3)
    assert lane1.leads()
    assert {s["store_id"]: s["connected_leaders"] for s in cloud_a.stores()} == {
        STORE_ID: ["lane1"]
    }
    assert {s["store_id"]: s["connected_leaders"] for s in cloud_b.stores()} == {
        STORE_ID: ["lane3"]
    }
    # Both sides sell at once; each leader uploads to its own process, at the same time.
    sell_rounds(books, lanes, 15, offset=30)
    # Each side voids a sale the other side made before the split.
    books.void(lane2, sales_of(books, "lane4")[0])
    books.void(lane4, sales_of(books, "lane1")[1])
    assert lane1.leads(), "both sides' leaders upload during the split"
    assert lane3.leads(), "both sides' leaders upload during the split"
    both_exact([cloud_a, cloud_b], books, world)
    # Still split, yet each side holds the other's sales: A relays what B committed to lane1
    # and B relays A's to lane3, through the database.
    wait_followed([cloud_a, cloud_b], lanes)

    proxies.heal(*mesh.between(left, right))
    wait_leader(lanes, lane1)
    sell_rounds(books, lanes, 1, offset=90)
    both_exact([cloud_a, cloud_b], books, world)
    wait_followed([cloud_a, cloud_b], lanes)
    for lane in lanes:
        assert lane.verify()["ok"], lane.name


@ON_POSTGRESQL
def test_a_cloud_process_killed_mid_upload_is_exact_after_restart_and_reupload(
    world: World, procs: Procs, proxies: ProxyLoop
) -> None:
    assert world.db is not None
    wan = proxies.link()
    cloud = procs.cloud(world.cloud, world.db)
    proxies.retarget(wan, port_of(cloud.listen))
    dirs = {name: world.enroll(name) for name in ("lane1", "lane2")}
    mesh = start_mesh(
        procs, proxies, dirs, cloud=f"ws://127.0.0.1:{wan.port}", priorities={"lane1": 1}
    )
    lanes = [mesh.lanes["lane1"], mesh.lanes["lane2"]]
    wait_leader(lanes, lanes[0])
    books = Books()
    books.receive(lanes[1], "milk", 9000)
    books.receive(lanes[1], "bread", 9000)
    books.receive(lanes[1], "eggs", 9000)
    wait_cloud_exact(cloud, books)

    # Three rounds: a backlog builds up behind a WAN outage, the WAN returns, and the cloud is
    # killed with SIGKILL at a different point of taking it in each time: as the leader's uplink
    # reaches it, as soon as the backlog's CRDT updates are committed (the head-office projection
    # follows in its own transaction), and once the head-office rows appear. Then restarted.
    for round_no, trigger in enumerate(KILL_POINTS):
        proxies.partition(wan)
        sell_rounds(books, lanes, 150, offset=1000 * round_no)
        books.void(lanes[0], sorted(books.live_sales())[round_no])
        before = {
            "connected": cloud.log_text().count("peer.connected peer=lane1"),
            "updates": count(world, "store_updates"),
            "sales": count(world, "sales"),
        }
        proxies.heal(wan)

        def reached(
            cloud: Cloud = cloud, before: dict[str, int] = before, at: str = trigger
        ) -> bool:
            if at == "connected":
                return cloud.log_text().count("peer.connected peer=lane1") > before[at]
            return count(world, "store_updates" if at == "updates" else at) > before[at]

        wait_until(reached, 30, f"the upload reached point {trigger!r}", interval=0.002)
        procs.kill(cloud)
        print(
            f"measured SIGKILL at {trigger}: {count(world, 'store_updates')} update rows, "
            f"{count(world, 'sales')} of {len(books.sales)} sales in the tables"
        )
        cloud = procs.cloud(world.cloud, world.db)
        proxies.retarget(wan, port_of(cloud.listen))
    wait_cloud_exact(cloud, books, timeout=60)
    both_exact([cloud], books, world)
    wait_followed([cloud], lanes)
    check_cloud_cli(world.root, world.cloud, books)


OWNER = """
import sys, time
from lanesync.tools.pgserver import PostgresServer
server = PostgresServer.start()
print(server.root, server.port, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_a_server_whose_owner_is_killed_is_stopped_and_deleted() -> None:
    """A test run killed with SIGKILL cannot stop its PostgreSQL: the watchdog does."""
    with subprocess.Popen(
        [sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, start_new_session=True
    ) as owner:
        try:
            assert owner.stdout is not None
            root, port = owner.stdout.readline().split()
            with socket.create_connection(("127.0.0.1", int(port)), timeout=5):
                pass  # it is up
        finally:
            owner.kill()

    def gone() -> bool:
        try:
            socket.create_connection(("127.0.0.1", int(port)), timeout=1).close()
        except OSError:
            return not Path(root).exists()
        return False

    wait_until(gone, 30, lambda: f"PostgreSQL at {root} (port {port}) still there")
