"""``lanesync cloud stores`` and ``cloud verify`` (cloud/inventory.py, cli/cloud_cmd.py): the
stores a cloud serves and a check of its replica of one, from the directory and storage while
no ``cloud serve`` runs, from the running process otherwise."""

from __future__ import annotations

import json

import pytest
from support import wait_until

from lanesync.cloud.directory import CloudDirectory
from lanesync.core.views import expected_doc
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms

from .conftest import STORE_ID, World
from .procs import Procs, cli, cli_json, cli_ok
from .store import one_error_line
from .test_cloud_e2e import UTC_ZONE, forge_sale, forged_update

SALE_TIMEOUT_S = 30.0


def _cert_of_store(world: World) -> tuple[str, int]:
    cert = CloudDirectory.open(world.cloud).store_directory(STORE_ID).me.certificate
    return cert.key_fingerprint, cert.not_after_ms


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_cloud_stores_offline_then_from_the_running_cloud(world: World, procs: Procs) -> None:
    fingerprint, not_after_ms = _cert_of_store(world)
    offline = cli_json("cloud", "stores", world.cloud, cwd=world.root)
    assert offline == {
        "serving": False,
        "stores": [
            {
                "store_id": STORE_ID,
                "timezone": "UTC",
                "cert_fingerprint": fingerprint,
                "cert_not_after_ms": not_after_ms,
                "registered_in": "directory",
                "records": 0,
                "last_upload_ms": None,
            }
        ],
    }
    text = cli_ok("cloud", "stores", world.cloud, cwd=world.root).stdout
    assert text.startswith(f"{STORE_ID}: 0 records, time zone UTC, certificate {fingerprint}")
    assert text.rstrip().endswith("last upload unknown"), text

    cloud = procs.cloud(world.cloud, world.db)
    lane = procs.ready(procs.spawn_lane(world.enroll("lane1"), cloud=cloud.listen))
    before_ms = wall_clock_ms()
    lane.sell([("milk", 2, 149)])
    wait_until(lambda: cloud.sales(STORE_ID)["count"] == 1, SALE_TIMEOUT_S, lane.log_text)
    serving = cli_json("cloud", "stores", world.cloud, cwd=world.root)
    assert serving["serving"] is True
    (row,) = serving["stores"]
    assert row["records"] >= 1  # the sale
    assert row["records"] == cloud.stores()[0]["records"]
    assert row["last_upload_ms"] is not None
    assert row["last_upload_ms"] >= before_ms - 1000
    assert row["cert_fingerprint"] == fingerprint
    said = cli_ok("cloud", "stores", world.cloud, cwd=world.root).stdout
    assert said.startswith(f"{STORE_ID}: {row['records']} records, "), said
    assert "last upload unknown" not in said

    # A store added while serve runs is listed by it (it lists its stores again, at most once
    # a second) and served, not resident until its leader connects.
    cli_json("store", "init", "store2", "--store-id", "s2", cwd=world.root)
    cli_ok("store", "certify-cloud", "store2", "cloud/cloud.json", "cloud2.cert", cwd=world.root)
    cli_ok("cloud", "add-store", "cloud", "store2/store.json", "cloud2.cert", cwd=world.root)
    wait_until(lambda: len(cloud.stores()) == 2, SALE_TIMEOUT_S, cloud.log_text)
    both = cli_json("cloud", "stores", world.cloud, cwd=world.root)["stores"]
    added = both[1]
    assert (added["store_id"], added["records"], added["resident"]) == ("s2", None, False)
    assert added["last_upload_ms"] is None
    said = cli_ok("cloud", "stores", world.cloud, cwd=world.root).stdout.splitlines()
    assert said[1].startswith(
        "s2: not resident in `cloud serve` (opened when its leader connects), time zone UTC"
    ), said


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_cloud_stores_of_an_empty_cloud_and_bad_input(world: World) -> None:
    empty = world.root / "empty"
    cli_ok("cloud", "init", empty, cwd=world.root)
    assert cli_json("cloud", "stores", empty, cwd=world.root) == {"serving": False, "stores": []}
    said = cli_ok("cloud", "stores", empty, cwd=world.root).stdout
    assert said == "this cloud serves no store yet (`lanesync cloud add-store`)\n"
    stray = cli("cloud", "stores", world.root / "nowhere", cwd=world.root)
    assert stray.returncode == 1
    assert one_error_line(stray).startswith("error: ")
    assert "is not a cloud directory" in stray.stderr


def _forge_into_cloud_replica(world: World) -> str:
    """Merge a sale signed by another authority's key into the cloud's replica of the store
    (as an enrolled but malicious lane could send it); returns its key."""
    rogue = StoreDirectory.init(world.root / "rogue-store", STORE_ID)
    ghost = forge_sale(rogue, "ghost", 1, 7)
    doc = expected_doc(ghost, UTC_ZONE)
    with world.open_store_replica() as terminal:
        change = terminal.replica.merge(
            [(doc, forged_update(doc, {ghost.key: ghost.encoded}))], wall_clock_ms()
        )
        terminal.commit([change])
    return ghost.key


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_cloud_verify_offline_reports_as_lane_verify_does(world: World) -> None:
    clean = cli("cloud", "verify", world.cloud, STORE_ID, "--json", cwd=world.root)
    assert clean.returncode == 0, clean.describe()
    report = clean.json()
    assert report["ok"] is True
    assert set(report) >= {"records", "digest", "chains", "rejected", "unverified"}
    assert cli_ok("cloud", "verify", world.cloud, STORE_ID, cwd=world.root).stdout.startswith("OK")

    ghost_key = _forge_into_cloud_replica(world)
    forged = cli("cloud", "verify", world.cloud, STORE_ID, "--json", cwd=world.root)
    assert forged.returncode == 1, forged.describe()
    assert [p["key"] for p in json.loads(forged.stdout)["unverified"]] == [ghost_key]
    said = cli("cloud", "verify", world.cloud, STORE_ID, cwd=world.root)
    assert said.returncode == 1
    assert said.stdout.startswith("INTEGRITY PROBLEMS")
    assert "unverified: doc=" in said.stdout
    assert ghost_key in said.stdout


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("store_id", "message"),
    [
        ("s2", "error: this cloud does not serve store 's2'"),
        ("../s1", "error: invalid value '../s1'"),
    ],
)
def test_cloud_verify_refuses_a_store_it_does_not_serve(
    world: World, store_id: str, message: str
) -> None:
    result = cli("cloud", "verify", world.cloud, store_id, cwd=world.root)
    assert result.returncode == 1
    assert one_error_line(result) == message


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_cloud_verify_asks_the_running_cloud(world: World, procs: Procs) -> None:
    ghost_key = _forge_into_cloud_replica(world)
    cloud = procs.cloud(world.cloud, world.db)
    result = cli("cloud", "verify", world.cloud, STORE_ID, "--json", cwd=world.root)
    assert result.returncode == 1, result.describe()
    assert [p["key"] for p in result.json()["unverified"]] == [ghost_key]
    assert result.json() == cloud.get(f"/v1/stores/{STORE_ID}/verify")
    unknown = cli("cloud", "verify", world.cloud, "s2", cwd=world.root)
    assert unknown.returncode == 1
    assert one_error_line(unknown) == "error: this cloud does not serve store 's2'"
    response = cloud.client.get("/v1/stores/s2/verify")
    assert response.status_code == 400, response.text  # as every other route of the cloud
    assert response.json()["error"] == {
        "code": "bad_request",
        "message": "this cloud does not serve store 's2'",
    }


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)
def test_cloud_stores_and_verify_read_the_replica_from_postgresql(world: World) -> None:
    # The list is the directory's; the records are in the database, read with --db.
    assert world.db is not None
    listed = cli_json("cloud", "stores", world.cloud, "--db", world.db, cwd=world.root)
    assert [(s["store_id"], s["records"]) for s in listed["stores"]] == [(STORE_ID, 0)]
    ok = cli("cloud", "verify", world.cloud, STORE_ID, "--db", world.db, cwd=world.root)
    assert ok.returncode == 0, ok.describe()
    ghost_key = _forge_into_cloud_replica(world)
    forged = cli(
        "cloud", "verify", world.cloud, STORE_ID, "--db", world.db, "--json", cwd=world.root
    )
    assert forged.returncode == 1, forged.describe()
    assert [p["key"] for p in forged.json()["unverified"]] == [ghost_key]
