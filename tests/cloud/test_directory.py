"""The cloud's directory on disk: what ``cloud init`` and ``cloud add-store`` create, and the
SQLite files ``cloud serve`` writes there, are readable by their owner only.

In-process and real: a store authority, a cloud directory, its head-office database opened as
``cloud serve`` opens it (``Backend.open``) and the store's replica with one committed write.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.stores import Backend
from lanesync.core import bodies
from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import STORE_ID, VALID_DAYS

pytestmark = pytest.mark.usefixtures("usual_umask")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def sqlite_files(db: Path) -> list[Path]:
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def served_cloud(root: Path) -> CloudDirectory:
    """A cloud (in ``root/cloud``, which does not exist yet) serving store ``s1``."""
    store = StoreDirectory.init(root / "store", STORE_ID)
    cloud = CloudDirectory.init(root / "cloud")
    cert = store.certify_cloud(cloud.key.verify_key.encode(), wall_clock_ms(), VALID_DAYS)
    (root / "cloud.cert").write_bytes(cert.encoded)
    cloud.add_store(store.identity_file, root / "cloud.cert")
    return cloud


def test_the_directories_a_cloud_creates_are_private(tmp_path: Path) -> None:
    cloud = served_cloud(tmp_path)
    for path in (cloud.path, cloud.path / "stores", cloud.path / "stores" / STORE_ID):
        assert mode(path) == 0o700, path


def test_an_existing_directory_given_to_cloud_init_keeps_its_mode(tmp_path: Path) -> None:
    # The user made it, with the mode they chose: not ours to change. What init creates in it
    # is private.
    (tmp_path / "cloud").mkdir(mode=0o750)
    cloud = CloudDirectory.init(tmp_path / "cloud")
    assert mode(cloud.path) == 0o750
    assert mode(cloud.path / "stores") == 0o700


def test_the_sqlite_files_of_a_serving_cloud_are_private(tmp_path: Path) -> None:
    cloud = served_cloud(tmp_path)
    backend = Backend.open(cloud, None)
    try:
        directory = cloud.store_directory(STORE_ID)
        with Terminal.open_directory(directory, lock_wait_s=0) as replica:
            change = bodies.build_price_change(Role.CLOUD, "milk", 100)
            replica.write(lambda _: change)
            # Both databases have written: their -wal files exist while they are open, and the
            # head-office database's -shm (the store replica's is in exclusive locking mode:
            # its WAL index is in memory, there is no -shm).
            replica_files = sqlite_files(directory.database)[:2]
            for path in [*sqlite_files(cloud.headoffice_db), *replica_files]:
                assert mode(path) == 0o600, path
    finally:
        backend.close()
