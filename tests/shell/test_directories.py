"""Store and terminal directories: key files, certificates, identity files and their checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from lanesync.core.identity import Role, parse_certificate, public_key_of
from lanesync.errors import ConfigError, UsageError
from lanesync.shell.directories import (
    CLIENT_ID_BITS,
    STORE_IDENTITY,
    STORE_KEY,
    TERMINAL_CERT,
    TERMINAL_CONFIG,
    TERMINAL_KEY,
    StoreDirectory,
    TerminalDirectory,
)
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import file_mode

BAD_IDS = ["", "a b", "lane:1", "lane|1", "-lane", ".lane", "x" * 65, "caf\u00e9", "a\nb", "a/b"]


def test_store_init_writes_private_key_and_public_identity(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = StoreDirectory.init(path, "store-042", "Europe/Berlin")

    assert file_mode(path / STORE_KEY) == 0o600
    seed = bytes.fromhex((path / STORE_KEY).read_text().strip())
    assert public_key_of(SigningKey(seed)) == store.identity.public_key
    identity = json.loads((path / STORE_IDENTITY).read_text())
    assert identity["store_id"] == "store-042"
    assert identity["public_key"] == store.identity.public_key.hex()
    assert identity["timezone"] == "Europe/Berlin"
    # The identity file holds no secret.
    assert seed.hex() not in (path / STORE_IDENTITY).read_text()
    assert StoreDirectory.open(path) == store
    assert public_key_of(store.authority()) == store.identity.public_key


def test_store_init_twice_is_refused_and_keeps_the_key(store: StoreDirectory) -> None:
    key_before = (store.path / STORE_KEY).read_bytes()
    identity_before = (store.path / STORE_IDENTITY).read_bytes()
    with pytest.raises(UsageError, match="already holds a store"):
        StoreDirectory.init(store.path, "s1")
    with pytest.raises(UsageError, match="already holds a store"):
        StoreDirectory.init(store.path, "other")
    assert (store.path / STORE_KEY).read_bytes() == key_before
    assert (store.path / STORE_IDENTITY).read_bytes() == identity_before


@pytest.mark.parametrize("bad", BAD_IDS)
def test_store_init_refuses_invalid_store_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UsageError, match="invalid store id"):
        StoreDirectory.init(tmp_path / "store", bad)
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "", "../../etc/passwd", "UTC\x00"])
def test_store_init_refuses_unknown_time_zone(tmp_path: Path, zone: str) -> None:
    with pytest.raises(UsageError, match="unknown time zone"):
        StoreDirectory.init(tmp_path / "store", "s1", zone)
    assert not (tmp_path / "store" / STORE_KEY).exists()


def test_store_open_of_a_directory_without_store_key_fails(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a store directory"):
        StoreDirectory.open(tmp_path)


def test_store_key_that_does_not_match_identity_is_refused(store: StoreDirectory) -> None:
    (store.path / STORE_KEY).write_text(bytes(SigningKey.generate()).hex() + "\n")
    with pytest.raises(ConfigError, match="does not match"):
        store.authority()
    with pytest.raises(ConfigError, match="does not match"):
        store.enroll(store.path.parent / "lane", "lane", Role.CASHIER, wall_clock_ms(), 30)


def test_enroll_writes_key_certificate_and_config(store: StoreDirectory, tmp_path: Path) -> None:
    path = tmp_path / "lane1"
    now = wall_clock_ms()
    cert = store.enroll(path, "lane1", Role.MANAGER, now, 7)

    assert file_mode(path / TERMINAL_KEY) == 0o600
    assert (path / TERMINAL_CERT).read_bytes() == cert.encoded
    assert (path / STORE_IDENTITY).read_bytes() == (store.path / STORE_IDENTITY).read_bytes()
    assert json.loads((path / TERMINAL_CONFIG).read_text())["terminal_id"] == "lane1"

    parsed = parse_certificate(cert.encoded, store.identity)
    assert parsed.terminal_id == "lane1"
    assert parsed.role is Role.MANAGER
    assert parsed.valid_at(now)
    assert parsed.valid_at(now + 6 * 86_400_000)
    assert not parsed.valid_at(now + 8 * 86_400_000)

    directory = TerminalDirectory.open(path)
    assert directory.terminal_id == "lane1"
    assert directory.store == store.identity
    assert public_key_of(directory.me.key) == cert.public_key
    assert directory.me.certificate == cert


@pytest.mark.usefixtures("usual_umask")
def test_store_init_creates_a_private_store_directory(tmp_path: Path) -> None:
    path = tmp_path / "store"
    StoreDirectory.init(path, "shop-1")
    assert file_mode(path) == 0o700
    assert file_mode(path / "store.key") == 0o600


@pytest.mark.usefixtures("usual_umask")
def test_enroll_records_the_lane_directory_relative_to_the_store(
    store: StoreDirectory, tmp_path: Path
) -> None:
    path = tmp_path / "lanes" / "lane1"
    store.enroll(path, "lane1", Role.CASHIER, wall_clock_ms(), 7)
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path, moved, ignore=shutil.ignore_patterns("moved"))
    copied = StoreDirectory.open(moved / store.path.relative_to(tmp_path))
    # the copy finds its own lane, not the original's
    assert copied.lane_directories() == {"lane1": (moved / "lanes" / "lane1").resolve()}
    shutil.rmtree(moved / "lanes")
    assert copied.lane_directories() == {}


@pytest.mark.usefixtures("usual_umask")
def test_enroll_creates_a_private_terminal_directory(store: StoreDirectory, tmp_path: Path) -> None:
    path = tmp_path / "lane1"
    store.enroll(path, "lane1", Role.CASHIER, wall_clock_ms(), 7)
    assert file_mode(path) == 0o700


@pytest.mark.usefixtures("usual_umask")
def test_enroll_into_an_existing_empty_directory_keeps_its_mode(
    store: StoreDirectory, tmp_path: Path
) -> None:
    # The user made it, with the mode they chose: not ours to change.
    path = tmp_path / "lane1"
    path.mkdir(mode=0o750)
    store.enroll(path, "lane1", Role.CASHIER, wall_clock_ms(), 7)
    assert file_mode(path) == 0o750


def test_enrolled_terminals_get_distinct_keys(lanes: Lanes) -> None:
    directories = [TerminalDirectory.open(lanes.enroll(f"lane{i}")) for i in range(4)]
    assert len({d.me.certificate.public_key for d in directories}) == 4
    assert len({d.me.certificate.key_fingerprint for d in directories}) == 4


def test_every_opening_writes_under_a_fresh_crdt_client_id(lanes: Lanes) -> None:
    terminal = lanes.new("lane1")
    first = terminal.replica.client_id
    terminal = lanes.reopen(terminal)
    assert terminal.replica.client_id != first
    assert 0 < terminal.replica.client_id < 2**CLIENT_ID_BITS


def test_enrolling_the_same_terminal_id_twice_is_refused(
    store: StoreDirectory, tmp_path: Path
) -> None:
    store.enroll(tmp_path / "first", "lane1", Role.CASHIER, wall_clock_ms(), 30)
    with pytest.raises(UsageError, match="already enrolled"):
        store.enroll(tmp_path / "second", "lane1", Role.MANAGER, wall_clock_ms(), 30)
    assert not (tmp_path / "second").exists()
    # Not even through another StoreDirectory object of the same store.
    with pytest.raises(UsageError, match="already enrolled"):
        StoreDirectory.open(store.path).enroll(
            tmp_path / "third", "lane1", Role.CASHIER, wall_clock_ms(), 30
        )


def test_enrolling_into_a_non_empty_directory_is_refused(
    store: StoreDirectory, tmp_path: Path
) -> None:
    path = tmp_path / "busy"
    path.mkdir()
    (path / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        store.enroll(path, "lane1", Role.CASHIER, wall_clock_ms(), 30)
    assert sorted(p.name for p in path.iterdir()) == ["precious.txt"]
    # The refused enrolment did not burn the id.
    store.enroll(tmp_path / "fresh", "lane1", Role.CASHIER, wall_clock_ms(), 30)


def test_enrolling_over_an_existing_terminal_is_refused(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    key_before = (path / TERMINAL_KEY).read_bytes()
    with pytest.raises(UsageError):
        lanes.store.enroll(path, "lane2", Role.CASHIER, wall_clock_ms(), 30)
    assert (path / TERMINAL_KEY).read_bytes() == key_before


def test_enroll_refuses_the_reserved_cloud_id(store: StoreDirectory, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="reserved"):
        store.enroll(tmp_path / "lane", "cloud", Role.MANAGER, wall_clock_ms(), 30)
    assert not (tmp_path / "lane").exists()


@pytest.mark.parametrize("bad", BAD_IDS)
def test_enroll_refuses_invalid_terminal_id(
    store: StoreDirectory, tmp_path: Path, bad: str
) -> None:
    with pytest.raises(UsageError, match="invalid terminal id"):
        store.enroll(tmp_path / "lane", bad, Role.CASHIER, wall_clock_ms(), 30)
    assert not (tmp_path / "lane").exists()


@pytest.mark.parametrize("days", [0, -1, 3661])
def test_enroll_refuses_validity_out_of_range(
    store: StoreDirectory, tmp_path: Path, days: int
) -> None:
    with pytest.raises(UsageError, match="valid-days"):
        store.enroll(tmp_path / "lane", "lane", Role.CASHIER, wall_clock_ms(), days)
    assert not (tmp_path / "lane").exists()


@pytest.mark.parametrize("kind", ["missing", "empty", "store", "half"])
def test_opening_a_non_terminal_directory_is_a_config_error(
    store: StoreDirectory, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "not-a-terminal"
    if kind == "empty":
        path.mkdir()
    elif kind == "store":
        path = store.path
    elif kind == "half":
        path.mkdir()
        (path / TERMINAL_KEY).write_text(bytes(SigningKey.generate()).hex())
    with pytest.raises(ConfigError):
        TerminalDirectory.open(path)
    with pytest.raises(ConfigError):
        Terminal.open(path, lock_wait_s=0)


def test_terminal_key_that_does_not_match_the_certificate_is_refused(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    (path / TERMINAL_KEY).write_text(bytes(SigningKey.generate()).hex() + "\n")
    with pytest.raises(ConfigError, match="does not match"):
        TerminalDirectory.open(path)
    with pytest.raises(ConfigError, match="does not match"):
        Terminal.open(path, lock_wait_s=0)


def test_key_of_another_terminal_is_refused(lanes: Lanes) -> None:
    one, two = lanes.enroll("lane1"), lanes.enroll("lane2")
    (one / TERMINAL_KEY).write_bytes((two / TERMINAL_KEY).read_bytes())
    with pytest.raises(ConfigError, match="does not match"):
        TerminalDirectory.open(one)


@pytest.mark.parametrize("content", ["", "zz", "00" * 31, "00" * 33, "\u00e9"])
def test_corrupted_terminal_key_is_a_config_error(lanes: Lanes, content: str) -> None:
    path = lanes.enroll("lane1")
    (path / TERMINAL_KEY).write_text(content)
    with pytest.raises(ConfigError):
        TerminalDirectory.open(path)


def test_missing_terminal_key_is_a_config_error(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    (path / TERMINAL_KEY).unlink()
    with pytest.raises(ConfigError, match="cannot read key"):
        TerminalDirectory.open(path)


def test_certificate_from_another_store_authority_is_refused(lanes: Lanes, tmp_path: Path) -> None:
    # Same store id, different authority: the copied certificate does not verify.
    impostor = StoreDirectory.init(tmp_path / "impostor", "s1")
    foreign = tmp_path / "foreign"
    impostor.enroll(foreign, "lane1", Role.MANAGER, wall_clock_ms(), 30)
    path = lanes.enroll("lane1")
    for name in (TERMINAL_CERT, TERMINAL_KEY):
        (path / name).write_bytes((foreign / name).read_bytes())
    with pytest.raises(ConfigError, match="invalid"):
        TerminalDirectory.open(path)


def test_corrupted_certificate_is_refused(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    cert = bytearray((path / TERMINAL_CERT).read_bytes())
    cert[len(cert) // 2] ^= 0x01
    (path / TERMINAL_CERT).write_bytes(bytes(cert))
    with pytest.raises(ConfigError, match="invalid"):
        TerminalDirectory.open(path)


@pytest.mark.parametrize("content", ["", "not json", "[]", '{"format": "other"}'])
def test_malformed_store_identity_in_terminal_is_a_config_error(lanes: Lanes, content: str) -> None:
    path = lanes.enroll("lane1")
    (path / STORE_IDENTITY).write_text(content)
    with pytest.raises(ConfigError):
        TerminalDirectory.open(path)


def test_terminal_with_unknown_time_zone_is_refused_and_released(lanes: Lanes) -> None:
    path = lanes.enroll("lane1")
    identity_file = path / STORE_IDENTITY
    good = identity_file.read_text()
    identity = json.loads(good)
    identity["timezone"] = "Atlantis/Capital"
    identity_file.write_text(json.dumps(identity))
    with pytest.raises(ConfigError, match="unknown time zone"):
        Terminal.open(path, lock_wait_s=0)
    # The refused open released the lock and the database.
    identity_file.write_text(good)
    terminal = lanes.open(path, lock_wait_s=0)
    assert terminal.terminal_id == "lane1"


def test_copied_store_directory_enrolls_into_the_same_store(
    store: StoreDirectory, tmp_path: Path, lanes: Lanes
) -> None:
    # A backup of the store directory is the same authority: its terminals sync with ours.
    backup = tmp_path / "backup"
    shutil.copytree(store.path, backup)
    copy = StoreDirectory.open(backup)
    copy.enroll(tmp_path / "lane9", "lane9", Role.CASHIER, wall_clock_ms(), 30)
    ours = lanes.new("lane1")
    theirs = lanes.open(tmp_path / "lane9")
    ours.import_bundle(theirs.export_bundle())
    certified = {cert.terminal_id for cert in ours.replica.views.certificates()}
    assert certified == {"lane1", "lane9"}
