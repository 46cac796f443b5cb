"""Store and terminal directories on disk: keys, certificates and identity files.

Store directory (kept by the store owner, holds the authority key; mode 0700 when ``store
init`` creates it)::

    store.key        Ed25519 seed of the store authority, hex, mode 0600
    store.json       public identity: store id, public key, time zone (safe to copy anywhere)
    terminals.json   terminal ids enrolled so far (an id is never issued twice, except to re-key
                     the same terminal), each with its role, key and the directory it was
                     enrolled into (``enroll --replaces`` asks those lanes where a chain ends)

Terminal directory (one per lane, mode 0700 when ``enroll`` creates it)::

    terminal.key     Ed25519 seed of this terminal, hex, mode 0600
    terminal.cert    certificate signed by the store key
    terminal.json    terminal id
    store.json       copy of the store's public identity
    lanesync.db      SQLite database (see ``storage``), mode 0600, as are its -wal and -shm
    lock             held (flock) by whichever process has the directory open
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from lanesync.core.forks import Fork, ForkResolution, issue_fork_resolution
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Revocation,
    Role,
    StoreIdentity,
    Succession,
    issue_certificate,
    issue_revocation,
    parse_certificate,
    public_key_of,
    signing_key_from_seed,
)
from lanesync.core.ids import CLOUD_TERMINAL_ID, StoreId, TerminalId, store_id, terminal_id
from lanesync.errors import ConfigError, RemoteError, UsageError

STORE_KEY = "store.key"
STORE_IDENTITY = "store.json"
TERMINAL_REGISTRY = "terminals.json"
TERMINAL_KEY = "terminal.key"
TERMINAL_CERT = "terminal.cert"
TERMINAL_CONFIG = "terminal.json"
DATABASE = "lanesync.db"
LOCK = "lock"
IDENTITY_FORMAT = "lanesync-store-identity/1"
DAY_MS = 86_400_000
# Yjs client ids are unsigned 32-bit on the wire in practice (yjs encodes them as varuint and
# JavaScript peers keep them below 2**53); 31 bits keeps every implementation happy.
CLIENT_ID_BITS = 31


def new_client_id() -> int:
    """A fresh CRDT client id for every opening of a replica.

    Reusing one across openings would be unsafe: a directory restored from an older copy would
    write new content under CRDT ids its peers already hold for other content, and those writes
    would silently never propagate. With a fresh id they propagate, and the reused record
    sequence numbers show up everywhere as a fork.
    """
    return 1 + secrets.randbelow(2**CLIENT_ID_BITS - 1)


def make_private_directory(path: Path) -> None:
    """Create ``path`` readable by its owner only (missing parents get the usual mode).

    A directory that exists keeps its mode: the user made it, as they chose; what we create
    in it is private on its own (keys and databases are 0600)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    with tmp.open("rb") as handle:
        os.fsync(handle.fileno())
    tmp.replace(path)


def _read_key(path: Path) -> SigningKey:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key {path}: {exc.strerror}") from exc
    try:
        return signing_key_from_seed(bytes.fromhex(text))
    except ValueError as exc:
        raise ConfigError(f"key file {path} is corrupted") from exc


def identity_to_json(identity: StoreIdentity) -> bytes:
    return (
        json.dumps(
            {
                "format": IDENTITY_FORMAT,
                "store_id": identity.store_id,
                "public_key": identity.public_key.hex(),
                "timezone": identity.timezone,
            },
            indent=2,
        )
        + "\n"
    ).encode()


def read_identity(path: Path) -> StoreIdentity:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read store identity {path}: {exc.strerror}") from exc
    return parse_identity(data, str(path))


def parse_identity(data: bytes, where: str) -> StoreIdentity:
    """A store's public identity from the bytes of a ``store.json`` (``where``: what held them,
    for the message of the ``ConfigError`` raised when they are not one)."""
    try:
        fields = json.loads(data)
    except ValueError as exc:
        raise ConfigError(f"store identity {where} is not valid JSON") from exc
    if not isinstance(fields, dict) or fields.get("format") != IDENTITY_FORMAT:
        raise ConfigError(f"{where} is not a lanesync store identity")
    try:
        key = bytes.fromhex(str(fields["public_key"]))
        sid = store_id(fields["store_id"])
        tz = str(fields["timezone"])
    except (KeyError, ValueError, UsageError) as exc:
        raise ConfigError(f"store identity {where} is malformed") from exc
    if len(key) != 32:
        raise ConfigError(f"store identity {where} holds an invalid public key")
    return StoreIdentity(sid, key, tz)


@dataclass(frozen=True, slots=True)
class StoreDirectory:
    path: Path
    identity: StoreIdentity

    @classmethod
    def init(cls, path: Path, sid: str, timezone: str = "UTC") -> StoreDirectory:
        sid = store_id(sid)
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise UsageError(f"unknown time zone {timezone!r}") from exc
        if (path / STORE_KEY).exists():
            raise UsageError(f"{path} already holds a store (found {STORE_KEY})")
        make_private_directory(path)  # it holds the store's authority key
        key = SigningKey.generate()
        identity = StoreIdentity(StoreId(sid), public_key_of(key), timezone)
        _write_private(path / STORE_KEY, bytes(key).hex() + "\n")
        _write_public(path / STORE_IDENTITY, identity_to_json(identity))
        _write_public(path / TERMINAL_REGISTRY, b"{}\n")
        return cls(path, identity)

    @classmethod
    def open(cls, path: Path) -> StoreDirectory:
        if not (path / STORE_KEY).exists():
            raise ConfigError(f"{path} is not a store directory (no {STORE_KEY})")
        return cls(path, read_identity(path / STORE_IDENTITY))

    @property
    def identity_file(self) -> Path:
        return self.path / STORE_IDENTITY

    def authority(self) -> SigningKey:
        key = _read_key(self.path / STORE_KEY)
        if public_key_of(key) != self.identity.public_key:
            raise ConfigError(f"{STORE_KEY} does not match {STORE_IDENTITY} in {self.path}")
        return key

    def _registry(self) -> dict[str, object]:
        try:
            data = json.loads((self.path / TERMINAL_REGISTRY).read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read {TERMINAL_REGISTRY} in {self.path}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{TERMINAL_REGISTRY} in {self.path} is malformed")
        return data

    def enroll(
        self,
        terminal_path: Path,
        tid: str,
        role: Role,
        now_ms: int,
        valid_days: int,
        succeeds: Succession | None = None,
    ) -> Certificate:
        """Create a terminal directory with a new key and a certificate for it. ``succeeds``:
        the key takes over a chain there (the same id: a re-key) or the terminal replaces
        another one whose chain closes there."""
        tid = terminal_id(tid)
        if tid == CLOUD_TERMINAL_ID:
            raise UsageError("terminal id 'cloud' is reserved for the store's cloud service")
        if role is Role.CLOUD:
            raise UsageError("a cloud is certified with `lanesync store certify-cloud`")
        if not 1 <= valid_days <= 10 * 366:
            raise UsageError("--valid-days must be between 1 and 3660")
        registry = self._registry()
        if succeeds is not None and succeeds.terminal not in registry:
            raise UsageError(
                f"terminal {succeeds.terminal!r} is not enrolled in store {self.identity.store_id}"
            )
        rekey = succeeds is not None and succeeds.terminal == tid
        if tid in registry and not rekey:
            raise UsageError(
                f"terminal id {tid!r} is already enrolled in store {self.identity.store_id}; "
                "record ids must stay unique, so choose another id"
            )
        if terminal_path.exists() and any(terminal_path.iterdir()):
            raise UsageError(f"{terminal_path} is not empty; enroll into a new directory")
        authority = self.authority()
        make_private_directory(terminal_path)  # it will hold the key and every sale
        key = SigningKey.generate()
        # Valid from a day ago: a lane whose clock is slightly behind the store owner's laptop
        # must not find its own certificate "not yet valid".
        cert = issue_certificate(
            authority,
            self.identity.store_id,
            TerminalId(tid),
            public_key_of(key),
            role,
            now_ms - DAY_MS,
            now_ms + valid_days * DAY_MS,
            succeeds,
        )
        _write_private(terminal_path / TERMINAL_KEY, bytes(key).hex() + "\n")
        _write_public(terminal_path / TERMINAL_CERT, cert.encoded)
        _write_public(terminal_path / STORE_IDENTITY, identity_to_json(self.identity))
        config = {"terminal_id": tid}
        _write_public(terminal_path / TERMINAL_CONFIG, (json.dumps(config) + "\n").encode())
        entry: dict[str, object] = {
            "role": role.value,
            "key": cert.key_fingerprint,
            # relative to this directory: a store tree copied or moved whole still finds its lanes
            "path": os.path.relpath(terminal_path.resolve(), self.path.resolve()),
        }
        if succeeds is not None:
            entry["succeeds"] = {"terminal": succeeds.terminal, "after_seq": succeeds.seq}
        registry[tid] = entry
        _write_public(
            self.path / TERMINAL_REGISTRY, (json.dumps(registry, indent=2) + "\n").encode()
        )
        return cert

    def certify_cloud(self, cloud_public_key: bytes, now_ms: int, valid_days: int) -> Certificate:
        """A certificate that lets a cloud key sign catalog records for this store only."""
        return issue_certificate(
            self.authority(),
            self.identity.store_id,
            CLOUD_TERMINAL_ID,
            cloud_public_key,
            Role.CLOUD,
            now_ms - DAY_MS,
            now_ms + valid_days * DAY_MS,
        )

    def enrolled_roles(self) -> dict[TerminalId, Role]:
        """Every terminal enrolled so far, with its role (the cloud is not enrolled)."""
        roles: dict[TerminalId, Role] = {}
        for tid, entry in self._registry().items():
            role = entry.get("role") if isinstance(entry, dict) else None
            if role not in {r.value for r in Role}:
                raise ConfigError(f"{TERMINAL_REGISTRY} in {self.path} is malformed")
            roles[TerminalId(tid)] = Role(role)
        return roles

    def lane_directories(self) -> dict[TerminalId, Path]:
        """The directories terminals were enrolled into that still hold that terminal of this
        store on this machine (a lane moved, deleted or enrolled before paths were kept is
        left out)."""
        found: dict[TerminalId, Path] = {}
        for tid, entry in self._registry().items():
            where = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(where, str):
                continue
            try:
                lane = TerminalDirectory.open((self.path / where).resolve())
            except (ConfigError, OSError):
                continue
            if lane.store == self.identity and lane.terminal_id == tid:
                found[TerminalId(tid)] = lane.path
        return found

    def role_of(self, tid: str) -> Role:
        """The role an enrolled terminal was given (UsageError if it is not enrolled)."""
        entry = self._registry().get(terminal_id(tid))
        if not isinstance(entry, dict):
            raise UsageError(f"terminal {tid!r} is not enrolled in store {self.identity.store_id}")
        try:
            return Role(entry["role"])
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{TERMINAL_REGISTRY} in {self.path} is malformed") from exc

    def renew(self, terminal_path: Path, now_ms: int, valid_days: int) -> Certificate:
        """A new certificate for a terminal's own key (same id, role and succession), valid
        from a day ago for ``valid_days``, written over the terminal's certificate file."""
        if not 1 <= valid_days <= 10 * 366:
            raise UsageError("--valid-days must be between 1 and 3660")
        current = TerminalDirectory.open(terminal_path)
        if current.store != self.identity:
            raise UsageError(f"{terminal_path} belongs to another store")
        old = current.me.certificate
        cert = issue_certificate(
            self.authority(),
            self.identity.store_id,
            old.terminal_id,
            old.public_key,
            old.role,
            now_ms - DAY_MS,
            now_ms + valid_days * DAY_MS,
            old.succeeds,
        )
        _write_public(terminal_path / TERMINAL_CERT, cert.encoded)
        return cert

    def resolve_fork(self, fork: Fork) -> ForkResolution:
        """Sign a resolution declaring every branch of ``fork`` genuine (``core.forks``)."""
        self.role_of(fork.terminal)  # an enrolled terminal of this store
        return issue_fork_resolution(
            self.authority(),
            self.identity.store_id,
            fork.terminal,
            fork.fork_seq,
            fork.base_hash,
            fork.branches,
        )

    def revocable(self, tid: str) -> TerminalId:
        """``tid`` as a terminal id this store can revoke: enrolled here, or the cloud."""
        tid = terminal_id(tid)
        if tid != CLOUD_TERMINAL_ID and tid not in self._registry():
            raise UsageError(f"terminal {tid!r} is not enrolled in store {self.identity.store_id}")
        return TerminalId(tid)

    def revoke(
        self, tid: str, after_seq: int, after_hash: bytes = b"", key: bytes = b""
    ) -> Revocation:
        """Sign a revocation that cuts ``tid``'s chain after ``after_seq`` (whose record has
        ``after_hash``, when known); ``key``: revoke only that key's certificates."""
        terminal = self.revocable(tid)
        store = self.identity.store_id
        return issue_revocation(self.authority(), store, terminal, after_seq, after_hash, key)


@dataclass(frozen=True, slots=True)
class TerminalDirectory:
    path: Path
    store: StoreIdentity
    me: LocalIdentity

    @classmethod
    def open(cls, path: Path) -> TerminalDirectory:
        if not (path / TERMINAL_CERT).exists():
            raise ConfigError(f"{path} is not a terminal directory (run `lanesync enroll` first)")
        store = read_identity(path / STORE_IDENTITY)
        try:
            cert = parse_certificate((path / TERMINAL_CERT).read_bytes(), store)
        except RemoteError as exc:
            raise ConfigError(f"{path / TERMINAL_CERT} is invalid: {exc}") from exc
        key = _read_key(path / TERMINAL_KEY)
        if public_key_of(key) != cert.public_key:
            raise ConfigError(f"{TERMINAL_KEY} does not match {TERMINAL_CERT} in {path}")
        return cls(path, store, LocalIdentity(cert, key))

    @property
    def terminal_id(self) -> TerminalId:
        return self.me.certificate.terminal_id

    @property
    def database(self) -> Path:
        return self.path / DATABASE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK
