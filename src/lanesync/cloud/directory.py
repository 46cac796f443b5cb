"""The cloud's directory: its key, its public identity, and the stores it serves.

The directory, ``stores`` and each store's directory are created mode 0700, the databases
(and their -wal and -shm files) 0600.

    cloud.key          Ed25519 seed of the cloud, hex, mode 0600 (never leaves this directory)
    cloud.json         public identity (safe to send to every store owner)
    api.token          bearer token of the read API (mode 0600, created by ``serve``)
    headoffice.db      SQL tables for head office (SQLite by default)
    stores/<id>/       per store: store.json, terminal.cert (the store's certificate for this
                       cloud), lanesync.db (the store's documents), lock; a store registered
                       in PostgreSQL (cloud/registry.py) has only its lock here

Setting up a store takes three commands, in this order: ``cloud init`` (here),
``store certify-cloud`` (where the store key lives) and ``cloud add-store`` (here, or, with
``--db``, in the PostgreSQL database every cloud process shares).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from nacl.signing import SigningKey

from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Role,
    StoreIdentity,
    parse_certificate,
    public_key_of,
    signing_key_from_seed,
)
from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.errors import ConfigError, RemoteError, UsageError
from lanesync.shell.directories import (
    DATABASE,
    LOCK,
    STORE_IDENTITY,
    TERMINAL_CERT,
    TerminalDirectory,
    identity_to_json,
    make_private_directory,
    read_identity,
)

CLOUD_KEY = "cloud.key"
CLOUD_IDENTITY = "cloud.json"
CLOUD_IDENTITY_FORMAT = "lanesync-cloud-identity/1"
HEADOFFICE_DB = "headoffice.db"
STORES = "stores"


def read_cloud_identity(path: Path) -> bytes:
    """The cloud public key from a ``cloud.json`` file."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read cloud identity {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ConfigError(f"cloud identity {path} is not valid JSON") from exc
    if not isinstance(data, dict) or data.get("format") != CLOUD_IDENTITY_FORMAT:
        raise ConfigError(f"{path} is not a lanesync cloud identity")
    try:
        key = bytes.fromhex(str(data["public_key"]))
    except (KeyError, ValueError) as exc:
        raise ConfigError(f"cloud identity {path} is malformed") from exc
    if len(key) != 32:
        raise ConfigError(f"cloud identity {path} holds an invalid public key")
    return key


@dataclass(frozen=True, slots=True)
class CloudDirectory:
    path: Path
    key: SigningKey

    @classmethod
    def init(cls, path: Path) -> CloudDirectory:
        if (path / CLOUD_KEY).exists():
            raise UsageError(f"{path} already holds a cloud (found {CLOUD_KEY})")
        # A directory the user gave that already exists keeps its mode (theirs to choose);
        # everything secret init and serve create in it is private on its own.
        make_private_directory(path)
        key = SigningKey.generate()
        fd = os.open(path / CLOUD_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(bytes(key).hex() + "\n")
        identity = {"format": CLOUD_IDENTITY_FORMAT, "public_key": public_key_of(key).hex()}
        (path / CLOUD_IDENTITY).write_text(json.dumps(identity, indent=2) + "\n")
        make_private_directory(path / STORES)
        return cls(path, key)

    @classmethod
    def open(cls, path: Path) -> CloudDirectory:
        if not (path / CLOUD_KEY).exists():
            raise ConfigError(f"{path} is not a cloud directory (run `lanesync cloud init` first)")
        try:
            key = signing_key_from_seed(bytes.fromhex((path / CLOUD_KEY).read_text().strip()))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cloud key in {path} is unreadable or corrupted") from exc
        if read_cloud_identity(path / CLOUD_IDENTITY) != public_key_of(key):
            raise ConfigError(f"{CLOUD_KEY} does not match {CLOUD_IDENTITY} in {path}")
        return cls(path, key)

    @property
    def identity_file(self) -> Path:
        return self.path / CLOUD_IDENTITY

    @property
    def headoffice_db(self) -> Path:
        return self.path / HEADOFFICE_DB

    def add_store(self, store_identity_file: Path, cert_file: Path) -> Certificate:
        """Learn a store's public identity and install its certificate for this cloud (in
        CLOUD_DIR/stores; cloud/registry.py registers it in a PostgreSQL database instead)."""
        store, cert = self.certified(store_identity_file, cert_file)
        target = self.store_path(store.store_id)
        if (target / TERMINAL_CERT).exists():
            raise UsageError(f"store {store.store_id} is already served by this cloud")
        make_private_directory(target)
        (target / STORE_IDENTITY).write_bytes(identity_to_json(store))
        # The certificate last, and whole (a rename): a running ``cloud serve`` takes the store
        # for served once it exists (``store_ids``) and opens it at its first connection.
        incoming = target / (TERMINAL_CERT + ".new")
        incoming.write_bytes(cert.encoded)
        incoming.replace(target / TERMINAL_CERT)
        return cert

    def certified(
        self, store_identity_file: Path, cert_file: Path
    ) -> tuple[StoreIdentity, Certificate]:
        """A store's public identity and its certificate for this cloud, read from the files
        ``cloud add-store`` is given: ``UsageError`` unless the store's authority signed the
        certificate and it certifies this cloud's key in the role ``cloud``."""
        store = read_identity(store_identity_file)
        try:
            cert = parse_certificate(cert_file.read_bytes(), store)
        except OSError as exc:
            raise ConfigError(f"cannot read certificate {cert_file}: {exc.strerror}") from exc
        except RemoteError as exc:
            raise UsageError(
                f"{cert_file} is not a certificate of store {store.store_id}: {exc}"
            ) from exc
        if cert.role is not Role.CLOUD or cert.public_key != public_key_of(self.key):
            raise UsageError(
                f"{cert_file} does not certify this cloud's key as the cloud of {store.store_id}"
            )
        return store, cert

    def store_path(self, store_id: str) -> Path:
        """Where the store's replica keeps its files here: its lock (and, on SQLite, its
        database), and the identity and certificate ``add_store`` installs."""
        return self.path / STORES / store_id

    def store_ids(self) -> list[str]:
        root = self.path / STORES
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / TERMINAL_CERT).exists())

    def store_directory(self, store_id: str) -> TerminalDirectory:
        """The store's replica in this cloud, signing as the cloud (catalog records only)."""
        path = self.store_path(store_id)
        if not (path / TERMINAL_CERT).exists():
            raise UsageError(f"this cloud does not serve store {store_id!r}")
        store: StoreIdentity = read_identity(path / STORE_IDENTITY)
        try:
            cert = parse_certificate((path / TERMINAL_CERT).read_bytes(), store)
        except RemoteError as exc:
            raise ConfigError(
                f"certificate of store {store_id} in {path} is invalid: {exc}"
            ) from exc
        return TerminalDirectory(path, store, LocalIdentity(cert, self.key))


__all__ = ["CLOUD_TERMINAL_ID", "DATABASE", "LOCK", "CloudDirectory", "read_cloud_identity"]
