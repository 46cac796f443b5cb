"""Store authority, terminal certificates and signatures (Ed25519, via PyNaCl).

A store authority key signs one certificate per terminal. Every record, bundle and (later) frame
is signed by a terminal key, and is believed only when that key's certificate verifies against
the store's public key. Certificates are small msgpack documents signed by the store key.
``LocalIdentity`` is a terminal's own certificate with its private key: what it signs and
handshakes with.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgpack
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from lanesync.core.ids import StoreId, TerminalId, is_valid_name
from lanesync.errors import ConfigError, RemoteError

SIGNATURE_SIZE = 64  # Ed25519 (RFC 8032 section 5.1.6)
PUBLIC_KEY_SIZE = 32  # Ed25519 (RFC 8032 section 5.1.5)
CERT_FORMAT = 1
# A certificate that continues or replaces a terminal's chain (``Succession``) has one more
# field; certificates without one keep format 1, so what was issued before still verifies.
CERT_FORMAT_SUCCESSION = 2
MAX_CERT_SIZE = 512
HASH_SIZE = 32  # BLAKE2b-256 of a record's payload (core.records)

# Domain separation: a signature made for one kind of message can never be replayed as another.
DOMAIN_CERT = b"lanesync/cert/v1\x00"
DOMAIN_RECORD = b"lanesync/record/v1\x00"
DOMAIN_BUNDLE = b"lanesync/bundle/v1\x00"
DOMAIN_REVOCATION = b"lanesync/revocation/v1\x00"
# Format 2 cuts a chain at a position; format 1 (a time, chosen by the signer's clock) is still
# read from databases that hold one, never issued.
REVOCATION_FORMAT = 2
CHAIN_HASH_SIZE = 32  # BLAKE2b-256 of a record (core.records.HASH_SIZE; records imports us)


class Role(enum.Enum):
    CASHIER = "cashier"
    MANAGER = "manager"
    # Head office's cloud service: certified by the store (``store certify-cloud``) to sign
    # catalog records (prices) for this store and nothing else.
    CLOUD = "cloud"

    @property
    def may_set_prices(self) -> bool:
        return self in (Role.MANAGER, Role.CLOUD)

    @property
    def may_sell(self) -> bool:
        return self is not Role.CLOUD


def key_fingerprint(public_key: bytes) -> str:
    """A short stable name for a key: the first 8 bytes of its BLAKE2b-256 hash, in hex."""
    return hashlib.blake2b(public_key, digest_size=32).hexdigest()[:16]


def sign(key: SigningKey, domain: bytes, message: bytes) -> bytes:
    signature: bytes = key.sign(domain + message).signature
    return signature


def verify_signature(public_key: bytes, domain: bytes, message: bytes, signature: bytes) -> bool:
    try:
        VerifyKey(public_key).verify(domain + message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """What every terminal knows about its store: the id, the authority's public key and the
    time zone its business days are counted in."""

    store_id: StoreId
    public_key: bytes
    timezone: str


@dataclass(frozen=True, slots=True)
class Succession:
    """Where a certificate's key takes over a chain: after record ``seq`` (hash ``hash``) of
    ``terminal``. The store closes ``terminal``'s chain there.

    * ``terminal`` is the certificate's own terminal: a re-key. The new key signs that
      terminal's records from ``seq + 1`` on, the first linking to ``hash``; every other key of
      the terminal signs nothing past ``seq``, so the chain goes on without a fork.
    * another terminal: a replacement. That terminal's chain is closed at ``seq`` (nothing past
      it counts, whichever key signed it); the certificate's own chain starts at 1 and names
      its predecessor, so receipt numbers stay traceable.
    """

    terminal: TerminalId
    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Certificate:
    store_id: StoreId
    terminal_id: TerminalId
    public_key: bytes
    role: Role
    not_before_ms: int
    not_after_ms: int
    encoded: bytes  # payload || store signature, exactly as issued
    succeeds: Succession | None = None

    @property
    def is_rekey(self) -> bool:
        return self.succeeds is not None and self.succeeds.terminal == self.terminal_id

    @property
    def first_seq(self) -> int:
        """The first seq of its terminal's chain this certificate's key may sign."""
        return self.succeeds.seq + 1 if self.is_rekey and self.succeeds is not None else 1

    @property
    def key_fingerprint(self) -> str:
        return key_fingerprint(self.public_key)

    def valid_at(self, ms: int) -> bool:
        return self.not_before_ms <= ms <= self.not_after_ms


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def outside_certificate(cert: Certificate, at_ms: int) -> str:
    """Why ``cert``'s terminal may not sign a record stamped ``at_ms`` (one line)."""
    if at_ms < cert.not_before_ms:
        why = f"is not valid before {_utc(cert.not_before_ms)}"
        fix = "set this lane's clock right"
    else:
        why = f"expired at {_utc(cert.not_after_ms)}"
        fix = "check this lane's clock; if it is right, renew it (lanesync store renew)"
    return (
        f"terminal {cert.terminal_id}'s certificate {why} and this lane's clock reads "
        f"{_utc(at_ms)}: a record signed now would count nowhere; {fix}"
    )


@dataclass(frozen=True, slots=True)
class LocalIdentity:
    """The terminal this process writes and speaks as: its certificate and private key."""

    certificate: Certificate
    key: SigningKey


def issue_certificate(
    authority: SigningKey,
    store_id: StoreId,
    terminal_id: TerminalId,
    public_key: bytes,
    role: Role,
    not_before_ms: int,
    not_after_ms: int,
    succeeds: Succession | None = None,
) -> Certificate:
    fields: list[object] = [
        CERT_FORMAT,
        store_id,
        terminal_id,
        public_key,
        role.value,
        not_before_ms,
        not_after_ms,
    ]
    if succeeds is not None:
        fields[0] = CERT_FORMAT_SUCCESSION
        fields.append([succeeds.terminal, succeeds.seq, succeeds.hash])
    payload = msgpack.packb(fields, use_bin_type=True)
    encoded = payload + sign(authority, DOMAIN_CERT, payload)
    return Certificate(
        store_id, terminal_id, public_key, role, not_before_ms, not_after_ms, encoded, succeeds
    )


def open_store_signed(
    encoded: object, store: StoreIdentity, domain: bytes, what: str, max_size: int
) -> tuple[bytes, bytes]:
    """The bytes and the payload of an object the store authority signed (``payload ||
    signature`` over ``domain || payload``: certificates, revocations, fork resolutions), once
    its size and signature are checked; RemoteError naming ``what`` otherwise."""
    if not isinstance(encoded, bytes | bytearray) or not (
        SIGNATURE_SIZE < len(encoded) <= max_size
    ):
        raise RemoteError(f"{what} has an impossible size")
    encoded = bytes(encoded)
    payload, signature = encoded[:-SIGNATURE_SIZE], encoded[-SIGNATURE_SIZE:]
    if not verify_signature(store.public_key, domain, payload, signature):
        raise RemoteError(f"{what} is not signed by the authority of store {store.store_id}")
    return encoded, payload


def unpack_payload(payload: bytes, what: str) -> Any:
    """A signed object's msgpack payload (Any, as msgpack types it: the caller matches its shape);
    RemoteError naming ``what`` when it does not decode."""
    try:
        return msgpack.unpackb(payload, use_list=True, raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise RemoteError(f"{what} payload is not valid msgpack") from exc


def parse_certificate(encoded: bytes, store: StoreIdentity) -> Certificate:
    """Decode a certificate and check it was issued by ``store``'s authority.

    Raises ``RemoteError`` with a one-line reason for anything else.
    """
    encoded, payload = open_store_signed(encoded, store, DOMAIN_CERT, "certificate", MAX_CERT_SIZE)
    fields = unpack_payload(payload, "certificate")
    succeeds: Succession | None = None
    match fields:
        case [1, _, _, _, _, _, _]:
            pass
        case [2, _, _, _, _, _, _, [str(predecessor), int(seq), bytes(at)]] if (
            is_valid_name(predecessor) and seq >= 0 and len(at) == HASH_SIZE
        ):
            succeeds = Succession(TerminalId(predecessor), seq, at)
        case _:
            raise RemoteError("certificate has an unknown format")
    _, cert_store, terminal, public_key, role, not_before, not_after = fields[:7]
    if cert_store != store.store_id:
        raise RemoteError(f"certificate is for store {cert_store!r}, not {store.store_id!r}")
    if not is_valid_name(terminal):
        raise RemoteError("certificate names an invalid terminal id")
    if not isinstance(public_key, bytes) or len(public_key) != PUBLIC_KEY_SIZE:
        raise RemoteError("certificate carries an invalid public key")
    if not isinstance(role, str) or role not in {r.value for r in Role}:
        raise RemoteError(f"certificate has an unknown role {role!r}")
    if not (isinstance(not_before, int) and isinstance(not_after, int) and not_before <= not_after):
        raise RemoteError("certificate has an invalid validity period")
    return Certificate(
        store.store_id,
        TerminalId(terminal),
        public_key,
        Role(role),
        not_before,
        not_after,
        encoded,
        succeeds,
    )


def signing_key_from_seed(seed: bytes) -> SigningKey:
    if len(seed) != 32:
        raise ConfigError("a signing key file must hold a 32-byte Ed25519 seed")
    return SigningKey(seed)


def public_key_of(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


@dataclass(frozen=True, slots=True)
class Revocation:
    """The store authority cuts a terminal's chain: its records up to ``after_seq`` (the one at
    ``after_seq`` with hash ``after_hash``, when that is known) still count, whenever they
    arrive; nothing later ever does, and nobody accepts its connections any more.

    ``key`` empty: every certificate of the terminal is revoked. Otherwise only certificates of
    that public key are (the cloud's: every cloud of a store signs as ``cloud``, so revoking the
    terminal id would refuse the cloud certified next too)."""

    store_id: StoreId
    terminal_id: TerminalId
    after_seq: int
    after_hash: bytes  # HASH_SIZE bytes, or empty when the revoking replica did not hold it
    key: bytes  # PUBLIC_KEY_SIZE bytes, or empty for every key of the terminal
    encoded: bytes


@dataclass(frozen=True, slots=True)
class TimeRevocation:
    """A revocation of format 1, issued before revocations cut chains by position: from
    ``revoked_at_ms`` on (a record's own HLC time), no certificate of the terminal is valid.
    No longer issued; still believed where databases hold one, and judged as before."""

    store_id: StoreId
    terminal_id: TerminalId
    revoked_at_ms: int
    encoded: bytes


AnyRevocation = Revocation | TimeRevocation


def issue_revocation(
    authority: SigningKey,
    store_id: StoreId,
    terminal_id: TerminalId,
    after_seq: int,
    after_hash: bytes = b"",
    key: bytes = b"",
) -> Revocation:
    if after_seq < 0 or len(after_hash) not in (0, CHAIN_HASH_SIZE):
        raise ConfigError("a revocation cuts at a seq >= 0 and names a 32-byte hash or none")
    if len(key) not in (0, PUBLIC_KEY_SIZE):
        raise ConfigError("a revocation names a 32-byte public key or none")
    payload = msgpack.packb(
        [REVOCATION_FORMAT, store_id, terminal_id, after_seq, after_hash, key], use_bin_type=True
    )
    encoded = payload + sign(authority, DOMAIN_REVOCATION, payload)
    return Revocation(store_id, terminal_id, after_seq, after_hash, key, encoded)


def parse_revocation(encoded: object, store: StoreIdentity) -> AnyRevocation:
    """Decode a revocation (either format) and check the store authority signed it;
    RemoteError otherwise."""
    encoded, payload = open_store_signed(
        encoded, store, DOMAIN_REVOCATION, "revocation", MAX_CERT_SIZE
    )
    fields = unpack_payload(payload, "revocation")
    match fields:
        case [2, str(sid), str(terminal), int(seq), bytes(cut), bytes(key)] if (
            sid == store.store_id
            and is_valid_name(terminal)
            and seq >= 0
            and len(cut) in (0, CHAIN_HASH_SIZE)
            and len(key) in (0, PUBLIC_KEY_SIZE)
        ):
            return Revocation(store.store_id, TerminalId(terminal), seq, cut, key, encoded)
        case [1, str(sid), str(terminal), int(at)] if (
            sid == store.store_id and is_valid_name(terminal) and at >= 0
        ):
            return TimeRevocation(store.store_id, TerminalId(terminal), at, encoded)
    raise RemoteError("revocation is malformed or for another store")
