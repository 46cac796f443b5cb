"""Where a cloud's stores are registered (cloud/registry.py): on PostgreSQL, the table
``registered_stores`` that ``cloud add-store --db`` writes and every ``cloud serve --db``
reads, so a store added once is served by every process without a restart; the stores of a
process's own directory are served as well. On a real PostgreSQL server (the suite's), with
real ``cloud serve`` processes or ``CloudService`` objects behind loopback websockets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from lanesync.cloud import service as service_module
from lanesync.cloud.directory import CloudDirectory, read_cloud_identity
from lanesync.cloud.registry import DatabaseStores, Registration, add_store_to_database
from lanesync.cloud.schema import LATEST
from lanesync.cloud.service import CloudService
from lanesync.errors import ConfigError, UsageError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms

from .conftest import STORE_ID, VALID_DAYS, World
from .procs import Procs, cli, cli_json, cli_ok
from .store import clis, one_error_line
from .test_resident import OTHER_STORE, Leader, cloud_service, leaders, until

pytestmark = pytest.mark.parametrize("world", ["postgresql"], indirect=True)


def certify_other_store(world: World, cloud: Path | None = None, name: str = "cloud2.cert") -> Path:
    """Store s2 (``store2/``) and its certificate for ``cloud``'s key (the world's cloud by
    default), as ``store init`` and ``store certify-cloud`` make them; returns the file."""
    store_dir = world.root / "store2"
    store = (
        StoreDirectory.open(store_dir)
        if store_dir.exists()
        else StoreDirectory.init(store_dir, OTHER_STORE)
    )
    cert = store.certify_cloud(
        read_cloud_identity((cloud or world.cloud) / "cloud.json"), wall_clock_ms(), VALID_DAYS
    )
    (world.root / name).write_bytes(cert.encoded)
    return world.root / name


def registered(world: World) -> list[tuple[str, bytes]]:
    return [
        (r[0], bytes(r[1]))
        for r in world.rows("SELECT store_id, cert FROM registered_stores ORDER BY store_id")
    ]


def test_two_processes_serve_a_store_added_to_the_database_without_a_restart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = world.db
    assert db is not None
    monkeypatch.setattr(service_module, "RELIST_STORES_S", 0.0)  # not a second's wait here
    other = world.copy_cloud("cloud-b")  # another process's directory: s1 only, like ours
    cert = certify_other_store(world)
    lane2_path = world.enroll("lane2", store=world.root / "store2")

    async def served_by(service: CloudService, url: str, lane2: Leader) -> None:
        """The lane uplinks to ``service`` until the replica there holds what it does."""
        lane2.connect(url)
        await until(lambda: lane2.connected() and OTHER_STORE in service.stores)
        replica = service.stores[OTHER_STORE].terminal
        await until(lambda: replica.digest() == lane2.terminal.digest())
        lane2.disconnect()

    async def scenario() -> None:
        async with (
            cloud_service(world) as (service_a, url_a),
            cloud_service(world, directory=other) as (service_b, url_b),
        ):
            assert service_a.registered == service_b.registered == {STORE_ID}
            # Added once, in the database, while both run: neither directory learns of it.
            add_store_to_database(
                CloudDirectory.open(world.cloud), db, world.root / "store2/store.json", cert
            )
            async with leaders([lane2_path]) as (lane2,):
                await served_by(service_a, url_a, lane2)
                await served_by(service_b, url_b, lane2)
            for service in (service_a, service_b):
                assert service.registered == {STORE_ID, OTHER_STORE}
                assert service.registry.registered_in(OTHER_STORE) is Registration.DATABASE
                assert service.registry.registered_in(STORE_ID) is Registration.DIRECTORY

    asyncio.run(scenario())
    # Each process's directory holds only the replica's lock for s2: identity and certificate
    # came from the database.
    for cloud in (world.cloud, other):
        assert sorted(p.name for p in (cloud / "stores" / OTHER_STORE).iterdir()) == ["lock"]
    assert registered(world) == [(OTHER_STORE, cert.read_bytes())]


def test_cloud_serve_db_with_no_store_serves_the_one_cloud_add_store_db_adds(
    world: World, procs: Procs
) -> None:
    assert world.db is not None
    shutil.rmtree(world.cloud / "stores" / STORE_ID)  # a cloud whose stores are all in the db
    cloud = procs.cloud(world.cloud, world.db)
    assert cloud.stores() == []
    certify_other_store(world)
    added = cli_json(
        "cloud", "add-store", "cloud", "store2/store.json", "cloud2.cert", "--db", world.db,
        cwd=world.root,
    )  # fmt: skip
    assert added == {"store_id": OTHER_STORE, "registered_in": "database"}
    lane2_path = world.enroll("lane2", store=world.root / "store2")

    async def upload() -> str:
        async with leaders([lane2_path]) as (lane2,):
            lane2.connect(cloud.listen)
            await until(lambda: lane2.connected())
            await until(lambda: cloud.digest(OTHER_STORE) == lane2.terminal.digest())
            return lane2.terminal.digest()

    digest = asyncio.run(upload())
    assert cloud.get(f"/v1/stores/{OTHER_STORE}/stock")["items"] == [{"sku": "milk", "on_hand": 5}]
    # Asked at once (they read the running process, none opens a replica itself).
    listed, verified, without_db = clis(
        world.root,
        ("cloud", "stores", "cloud", "--db", world.db, "--json"),
        ("cloud", "verify", "cloud", OTHER_STORE, "--json"),
        ("cloud", "stores", "cloud"),
    )
    (row,) = listed.json()["stores"]
    assert (row["store_id"], row["registered_in"], row["resident"]) == (
        OTHER_STORE,
        "database",
        True,
    )
    assert row["records"] == 1
    assert (verified.json()["ok"], verified.json()["digest"]) == (True, digest)
    # Without the database, the list would lack what the running process serves: refused.
    assert one_error_line(without_db) == (
        "error: `cloud serve` on cloud serves stores registered in its database (s2): "
        "give the database with --db URL or LANESYNC_CLOUD_DB"
    )


def test_cloud_stores_and_verify_read_database_stores_while_nothing_serves(world: World) -> None:
    assert world.db is not None
    cert = certify_other_store(world)
    cloud = CloudDirectory.open(world.cloud)
    add_store_to_database(cloud, world.db, world.root / "store2" / "store.json", cert)
    # Without --db the store is not this directory's (asked at once: it opens no replica).
    listed_result, unknown = clis(
        world.root,
        ("cloud", "stores", "cloud", "--db", world.db, "--json"),
        ("cloud", "verify", "cloud", OTHER_STORE),
    )
    assert one_error_line(unknown) == f"error: this cloud does not serve store '{OTHER_STORE}'"
    listed = listed_result.json()
    assert listed["serving"] is False
    assert [(s["store_id"], s["registered_in"], s["records"]) for s in listed["stores"]] == [
        (STORE_ID, "directory", 0),
        (OTHER_STORE, "database", 0),
    ]
    said = cli_ok("cloud", "stores", "cloud", "--db", world.db, cwd=world.root).stdout
    lines = said.splitlines()
    assert lines[1].startswith(f"{OTHER_STORE}: 0 records, time zone UTC, registered in the "), said
    assert "registered in" not in lines[0], said
    verified = cli("cloud", "verify", "cloud", OTHER_STORE, "--db", world.db, cwd=world.root)
    assert verified.returncode == 0, verified.describe()
    assert verified.stdout.startswith("OK: 0 records"), verified.describe()


def test_bad_registrations_are_refused_with_one_line_and_change_nothing(world: World) -> None:
    assert world.db is not None
    cloud = CloudDirectory.open(world.cloud)
    identity = world.root / "store2" / "store.json"
    cli_json("cloud", "init", "cloud-x", cwd=world.root)
    foreign = certify_other_store(world, world.root / "cloud-x", "foreign.cert")
    good = certify_other_store(world)
    refused = {
        "another cloud's key": (identity, foreign, "does not certify this cloud's key"),
        "another store's certificate": (
            world.store / "store.json",
            good,
            "is not a certificate of store s1",
        ),
    }
    for name, (store_json, cert, said) in refused.items():
        with pytest.raises(UsageError, match=said):
            add_store_to_database(cloud, world.db, store_json, cert)
        assert registered(world) == [], name

    add_store_to_database(cloud, world.db, identity, good)
    before = registered(world)
    again = cli("cloud", "add-store", "cloud", identity, good, "--db", world.db, cwd=world.root)
    assert one_error_line(again) == f"error: store {OTHER_STORE} is already served by this cloud"
    assert registered(world) == before
    # A store of the directory may be added to the database (it moves there): once.
    add_store_to_database(cloud, world.db, world.store / "store.json", world.root / "cloud.cert")
    with pytest.raises(UsageError, match="already served"):
        add_store_to_database(
            cloud, world.db, world.store / "store.json", world.root / "cloud.cert"
        )
    assert [r[0] for r in registered(world)] == [STORE_ID, OTHER_STORE]

    # A database a lanesync before the table was migrated with: it says to migrate.
    sql = world.sql()
    try:
        sql.execute("UPDATE lanesync_schema SET version = 2")
    finally:
        sql.close()
    with pytest.raises(ConfigError, match=f"schema version 2, this lanesync needs {LATEST}"):
        add_store_to_database(
            cloud, world.db, world.store / "store.json", world.root / "cloud.cert"
        )


def test_a_row_certifying_another_clouds_key_is_not_served(world: World) -> None:
    """A process whose directory holds another key than the one a row certifies (a directory
    not copied from the first one's) refuses to serve that store: it could sign nothing the
    store's lanes accept."""
    assert world.db is not None
    cli_json("cloud", "init", "cloud-x", cwd=world.root)
    cert = certify_other_store(world, world.root / "cloud-x", "foreign.cert")
    stranger = CloudDirectory.open(world.root / "cloud-x")
    add_store_to_database(stranger, world.db, world.root / "store2" / "store.json", cert)
    sql = world.sql()
    try:
        ours = DatabaseStores(CloudDirectory.open(world.cloud), sql)
        assert ours.store_ids() == [STORE_ID, OTHER_STORE]
        with pytest.raises(ConfigError, match="does not certify the key of"):
            ours.store_directory(OTHER_STORE)
        with pytest.raises(UsageError, match="does not serve store 'nosuch'"):
            ours.store_directory("nosuch")
    finally:
        sql.close()
