"""Signed update bundles (files carried between terminals) and replica state files.

A bundle moves CRDT updates between replicas without a network::

    bundle  = MAGIC || payload || Ed25519 signature over (DOMAIN_BUNDLE || payload)
    payload = msgpack [FORMAT, store_id, exporter certificate, created_ms, [[doc, update], ...]]

The exporter's certificate must verify against the importing store's authority, and the
signature covers every byte, so a corrupted, truncated or foreign bundle is rejected whole
before anything is applied. A state file holds a replica's state vectors so that another
replica can export exactly what it lacks (``export --since``); it is a hint, not a credential:
a wrong one can only make a bundle larger or smaller, never change what is accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgpack

from lanesync.core.identity import (
    DOMAIN_BUNDLE,
    SIGNATURE_SIZE,
    Certificate,
    LocalIdentity,
    StoreIdentity,
    parse_certificate,
    sign,
    verify_signature,
)
from lanesync.core.ids import StoreId, TerminalId, is_valid_doc_name, is_valid_name
from lanesync.core.sealing import SEALED_SUMMARY
from lanesync.errors import BundleRejected, RemoteError

BUNDLE_MAGIC = b"LSB1"
BUNDLE_FORMAT = 1
STATE_MAGIC = b"LSS1"
STATE_FORMAT = 1
# A busy lane writes ~300 B per sale; a year of a 32-lane store is far below this. The limit
# keeps a hostile file from exhausting memory before its signature is even checked.
MAX_BUNDLE_SIZE = 512 * 1024 * 1024
MAX_STATE_SIZE = 1024 * 1024
MAX_DOCS = 10_000


@dataclass(frozen=True, slots=True)
class Bundle:
    store_id: StoreId
    exporter: Certificate
    created_ms: int
    updates: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ReplicaState:
    store_id: StoreId
    terminal_id: TerminalId
    state_vectors: dict[str, bytes]


def _unpack(data: bytes, error: type[RemoteError], what: str) -> object:
    try:
        return msgpack.unpackb(data, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise error(f"{what} is not valid msgpack") from exc


def encode_bundle(
    me: LocalIdentity, store_id: StoreId, updates: Mapping[str, bytes], created_ms: int
) -> bytes:
    payload = msgpack.packb(
        [
            BUNDLE_FORMAT,
            store_id,
            me.certificate.encoded,
            created_ms,
            [[name, update] for name, update in sorted(updates.items())],
        ],
        use_bin_type=True,
    )
    return BUNDLE_MAGIC + bytes(payload) + sign(me.key, DOMAIN_BUNDLE, payload)


def parse_bundle(data: bytes, store: StoreIdentity) -> Bundle:
    """Check a bundle's signature and signer; raises BundleRejected with a one-line reason."""
    if len(data) > MAX_BUNDLE_SIZE:
        raise BundleRejected(f"bundle is larger than {MAX_BUNDLE_SIZE} bytes")
    if not data.startswith(BUNDLE_MAGIC) or len(data) < len(BUNDLE_MAGIC) + SIGNATURE_SIZE + 1:
        raise BundleRejected("not a lanesync bundle (bad magic or truncated)")
    payload, signature = data[len(BUNDLE_MAGIC) : -SIGNATURE_SIZE], data[-SIGNATURE_SIZE:]
    fields = _unpack(payload, BundleRejected, "bundle payload")
    if not (isinstance(fields, list) and len(fields) == 5 and fields[0] == BUNDLE_FORMAT):
        raise BundleRejected("bundle has an unknown format (corrupted or from a newer version)")
    _, bundle_store, cert_bytes, created_ms, raw_updates = fields
    if bundle_store != store.store_id:
        raise BundleRejected(f"bundle belongs to store {bundle_store!r}, not {store.store_id!r}")
    if not isinstance(cert_bytes, bytes):
        raise BundleRejected("bundle carries no exporter certificate")
    try:
        exporter = parse_certificate(cert_bytes, store)
    except RemoteError as exc:
        raise BundleRejected(f"bundle exporter is not enrolled in this store: {exc}") from exc
    if not verify_signature(exporter.public_key, DOMAIN_BUNDLE, payload, signature):
        raise BundleRejected("bundle signature does not verify (corrupted or forged)")
    if type(created_ms) is not int or not isinstance(raw_updates, list):
        raise BundleRejected("bundle has a malformed body")
    if len(raw_updates) > MAX_DOCS:
        raise BundleRejected("bundle holds too many documents")
    updates: list[tuple[str, bytes]] = []
    for item in raw_updates:
        if not (isinstance(item, list) and len(item) == 2):
            raise BundleRejected("bundle has a malformed document entry")
        name, update = item
        if not is_valid_doc_name(name) or not isinstance(update, bytes):
            raise BundleRejected(f"bundle has an invalid document entry {name!r}")
        updates.append((name, update))
    return Bundle(store.store_id, exporter, created_ms, tuple(updates))


def encode_state(
    store_id: StoreId, terminal: TerminalId, state_vectors: Mapping[str, bytes]
) -> bytes:
    payload = msgpack.packb(
        [STATE_FORMAT, store_id, terminal, dict(sorted(state_vectors.items()))],
        use_bin_type=True,
    )
    return STATE_MAGIC + bytes(payload)


def parse_state(data: bytes, store: StoreIdentity) -> ReplicaState:
    if len(data) > MAX_STATE_SIZE or not data.startswith(STATE_MAGIC):
        raise BundleRejected("not a lanesync state file")
    fields = _unpack(data[len(STATE_MAGIC) :], BundleRejected, "state file")
    if not (isinstance(fields, list) and len(fields) == 4 and fields[0] == STATE_FORMAT):
        raise BundleRejected("state file has an unknown format")
    _, state_store, terminal, svs = fields
    if state_store != store.store_id:
        raise BundleRejected(f"state file belongs to store {state_store!r}, not {store.store_id!r}")
    if not is_valid_name(terminal) or not isinstance(svs, dict):
        raise BundleRejected("state file is malformed")
    vectors: dict[str, bytes] = {}
    for name, sv in svs.items():
        if not (name == SEALED_SUMMARY or is_valid_doc_name(name)) or not isinstance(sv, bytes):
            raise BundleRejected(f"state file has an invalid entry {name!r}")
        vectors[name] = sv
    return ReplicaState(store.store_id, TerminalId(terminal), vectors)
