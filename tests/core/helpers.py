"""Shared factories for the pure-core tests: a store, its terminals, and a sync step.

Everything here uses the real components (pycrdt documents, PyNaCl keys); nothing is mocked.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import pycrdt
from nacl.signing import SigningKey

from lanesync.core.change import Change
from lanesync.core.configdoc import certificate_key, revocation_key
from lanesync.core.documents import CERTS_ROOT, RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import (
    DOMAIN_REVOCATION,
    AnyRevocation,
    Certificate,
    LocalIdentity,
    Role,
    StoreIdentity,
    TimeRevocation,
    issue_certificate,
    public_key_of,
    sign,
)
from lanesync.core.ids import CONFIG_DOC, StoreId, TerminalId
from lanesync.core.records import GENESIS_HASH, Body, Record, make_record
from lanesync.core.replica import Replica

# 2026-11-18 11:06:40 UTC: far from midnight, so a few hours of test time stay on one day.
NOW = 1_795_000_000_000
DAY = NOW // 86_400_000 * 86_400_000
TODAY_DOC = "ledger/2026-11-18"
HOUR_MS = 3_600_000
CERT_NOT_AFTER = NOW + 365 * 24 * HOUR_MS


@dataclass
class CoreTerminal:
    name: TerminalId
    key: SigningKey
    cert: Certificate
    replica: Replica
    restored: Change


@dataclass
class Store:
    """A store authority plus a counter of client ids, so every replica gets a distinct one."""

    store_id: StoreId = field(default_factory=lambda: StoreId("shop1"))
    authority: SigningKey = field(default_factory=SigningKey.generate)
    next_client_id: int = 1000

    @property
    def identity(self) -> StoreIdentity:
        return StoreIdentity(self.store_id, public_key_of(self.authority), "UTC")

    def client_id(self) -> int:
        self.next_client_id += 1
        return self.next_client_id

    def certificate(
        self,
        name: str,
        key: SigningKey,
        role: Role = Role.CASHIER,
        *,
        authority: SigningKey | None = None,
        store_id: str | None = None,
    ) -> Certificate:
        return issue_certificate(
            authority or self.authority,
            StoreId(store_id or self.store_id),
            TerminalId(name),
            public_key_of(key),
            role,
            0,
            CERT_NOT_AFTER,
        )

    def terminal(
        self,
        name: str,
        role: Role = Role.CASHIER,
        *,
        now_ms: int = NOW,
        key: SigningKey | None = None,
        cert: Certificate | None = None,
    ) -> CoreTerminal:
        key = key or SigningKey.generate()
        cert = cert or self.certificate(name, key, role)
        replica = Replica(self.identity, self.client_id(), LocalIdentity(cert, key))
        restored = replica.restore({}, set(), now_ms)
        return CoreTerminal(TerminalId(name), key, cert, replica, restored)

    def observer(self, now_ms: int = NOW) -> Replica:
        """A replica with no identity of its own (it only receives)."""
        replica = Replica(self.identity, self.client_id(), None)
        replica.restore({}, set(), now_ms)
        return replica


def sync(src: Replica, dst: Replica, now_ms: int = NOW) -> Change:
    """One direction of state-vector sync: ``dst`` receives what it lacks from ``src``."""
    return dst.merge(list(src.updates_since(dst.state_vectors()).items()), now_ms)


def sync_all(replicas: list[Replica], now_ms: int = NOW) -> None:
    for src in replicas:
        for dst in replicas:
            if src is not dst:
                sync(src, dst, now_ms)


def no_problems(replica: Replica) -> bool:
    return not any(replica.views.problems().values())


def record_chain(
    key: SigningKey, terminal: str, bodies: list[Body], start_ms: int = NOW
) -> list[Record]:
    """A correctly chained list of records of ``terminal`` signed by ``key``."""
    records: list[Record] = []
    prev = GENESIS_HASH
    for i, body in enumerate(bodies):
        record = make_record(key, TerminalId(terminal), i + 1, prev, Hlc(start_ms + i, 0), body)
        records.append(record)
        prev = record.hash
    return records


def crafted_update(root: str, entries: dict[str, object], client_id: int = 7_777_777) -> bytes:
    """A pycrdt update that sets ``entries`` in root Map ``root`` of a fresh document."""
    doc: pycrdt.Doc[pycrdt.Map[object]] = pycrdt.Doc(client_id=client_id)
    m: pycrdt.Map[object] = doc.get(root, type=pycrdt.Map)
    with doc.transaction():
        for k, v in entries.items():
            m[k] = v
    return bytes(doc.get_update())


def enrolled_observer(store: Store, *certs: Certificate, now_ms: int = NOW) -> Replica:
    """An identity-less replica that knows ``certs`` (published through the config document)."""
    replica = store.observer(now_ms)
    if certs:
        entries: dict[str, object] = {certificate_key(c): c.encoded for c in certs}
        update = crafted_update(CERTS_ROOT, entries, store.client_id())
        replica.merge([(CONFIG_DOC, update)], now_ms)
    return replica


def put_records(
    replica: Replica, doc: str, entries: dict[str, object], client_id: int, now_ms: int = NOW
) -> Change:
    """Deliver entries as if a peer with ``client_id`` had written them into ``doc``."""
    return replica.merge([(doc, crafted_update(RECORDS_ROOT, entries, client_id))], now_ms)


def keyed(*records: Record) -> dict[str, object]:
    """Map entries for ``records``, each under its own content-addressed key."""
    return {record.key: record.encoded for record in records}


def time_revocation(
    authority: SigningKey, store_id: StoreId, terminal: TerminalId, revoked_at_ms: int
) -> TimeRevocation:
    """A revocation of the first format (by record time), as lanesync issued them before
    revocations cut chains by position: databases may still hold one. Built by hand because
    lanesync no longer issues them."""
    payload = msgpack.packb([1, store_id, terminal, revoked_at_ms], use_bin_type=True)
    encoded = payload + sign(authority, DOMAIN_REVOCATION, payload)
    return TimeRevocation(store_id, terminal, revoked_at_ms, encoded)


def config_update(*entries: Certificate | AnyRevocation, client_id: int = 8_888_888) -> bytes:
    """A config-document update holding certificates and revocations under their own keys."""
    return crafted_update(
        CERTS_ROOT,
        {
            (certificate_key(e) if isinstance(e, Certificate) else revocation_key(e)): e.encoded
            for e in entries
        },
        client_id,
    )


def durable_log(*changes: Change) -> dict[str, list[bytes]]:
    """What a shell would have committed: every update of ``changes``, per document, in order."""
    stored: dict[str, list[bytes]] = {}
    for change in changes:
        for name, update in change.updates:
            stored.setdefault(name, []).append(update)
    return stored


def restarted(replica: Replica, *, now_ms: int = NOW) -> Replica:
    """A fresh replica of the same terminal loaded from ``replica``'s full state (a restart)."""
    again = Replica(replica.store, replica.client_id, replica.me)
    again.restore({name: [replica.full_state(name)] for name in replica.doc_names()}, (), now_ms)
    return again


def root_name(doc: str) -> str:
    return CERTS_ROOT if doc == CONFIG_DOC else RECORDS_ROOT


def overwrite(replica: Replica, doc: str, key: str, value: bytes | None, client_id: int) -> bytes:
    """An update from a peer that saw ``replica``'s state of ``doc`` and then overwrote (or
    deleted, when ``value`` is None) ``key``: it causally follows the genuine entry."""
    peer: pycrdt.Doc[pycrdt.Map[object]] = pycrdt.Doc(client_id=client_id)
    peer.apply_update(replica.full_state(doc))
    root: pycrdt.Map[object] = peer.get(root_name(doc), type=pycrdt.Map)
    before = peer.get_state()
    with peer.transaction():
        if value is None:
            del root[key]
        else:
            root[key] = value
    return bytes(peer.get_update(before))


def stored_value(replica: Replica, doc: str, key: str) -> object:
    """The raw value ``replica`` holds under ``key`` in ``doc`` (read from its full state)."""
    copy: pycrdt.Doc[pycrdt.Map[object]] = pycrdt.Doc()
    copy.apply_update(replica.full_state(doc))
    root: pycrdt.Map[object] = copy.get(root_name(doc), type=pycrdt.Map)
    value = root.get(key)
    return bytes(value) if isinstance(value, bytes | bytearray) else value
