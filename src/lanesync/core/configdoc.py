"""The config document's entries: what the store signed that is not a record (certificates,
revocations, fork resolutions), under which key each is stored, and which entries are genuine.

Keys are ``<kind>:<terminal>:<content id>``; ':' cannot occur in ids, so the kinds never
collide. Like record keys they are content-addressed: a value can never displace a different
one. An entry is believed only when the store authority signed it and it sits under its own key:
a foreign, corrupt or misfiled one is ``None`` here and changes nothing. ``core.replica`` stores
and folds the document; this module only names and reads its entries.
"""

from __future__ import annotations

import hashlib

from lanesync.core.forks import ForkResolution, parse_fork_resolution
from lanesync.core.identity import (
    AnyRevocation,
    Certificate,
    StoreIdentity,
    parse_certificate,
    parse_revocation,
)
from lanesync.errors import RemoteError

ConfigEntry = Certificate | AnyRevocation | ForkResolution


def certificate_key(cert: Certificate) -> str:
    return f"cert:{cert.terminal_id}:{_content_id(cert.encoded)}"


def revocation_key(revocation: AnyRevocation) -> str:
    return f"revoke:{revocation.terminal_id}:{_content_id(revocation.encoded)}"


def fork_resolution_key(resolution: ForkResolution) -> str:
    return f"fork:{resolution.terminal}:{_content_id(resolution.encoded)}"


def _content_id(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def is_genuine(key: str, value: object, store: StoreIdentity) -> bool:
    """Is ``value`` a store-signed entry of any kind under its own content key (an entry worth
    writing back when a peer overwrote or deleted it)?"""
    try:
        return certificate_key(parse_certificate(value, store)) == key  # type: ignore[arg-type]
    except RemoteError:
        pass
    try:
        return revocation_key(parse_revocation(value, store)) == key
    except RemoteError:
        pass
    try:
        return fork_resolution_key(parse_fork_resolution(value, store)) == key
    except RemoteError:
        return False


def read_entry(key: str, value: object, store: StoreIdentity) -> ConfigEntry | None:
    """The entry stored under ``key``, if the store signed it and it is that entry's own key;
    else None. The kind is read from the key."""
    try:
        if key.startswith("cert:"):
            cert = parse_certificate(value, store)  # type: ignore[arg-type]
            return cert if key == certificate_key(cert) else None
        if key.startswith("revoke:"):
            revocation = parse_revocation(value, store)
            return revocation if key == revocation_key(revocation) else None
        if key.startswith("fork:"):
            resolution = parse_fork_resolution(value, store)
            return resolution if key == fork_resolution_key(resolution) else None
    except RemoteError:
        return None
    return None
