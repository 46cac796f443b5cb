"""The cryptography done per record and per frame: the part of security that grows with traffic.

Whoever signs records (``records.make_record``), checks their signatures (``trust.Trust``) or
seals peer frames (``connection.PeerConnection``) is given a ``Crypto``; the default,
``SODIUM``, is Ed25519 and XSalsa20-Poly1305 through PyNaCl, and the product never passes
another. The benchmark does (``lanesync-unsigned``, in cli/bench_lane.py) to show what this
work costs. Certificates, revocations, bundles and the handshake always use
``identity.sign`` / ``identity.verify_signature`` directly: they are done once per peer or per file.
"""

from __future__ import annotations

from typing import Final, Protocol

from nacl.exceptions import CryptoError
from nacl.secret import SecretBox
from nacl.signing import SigningKey

from lanesync.core.identity import DOMAIN_RECORD, sign, verify_signature


class FrameCipher(Protocol):
    """One direction of a connection: seals or opens frame number ``seq`` (each seq once)."""

    def seal(self, seq: int, plaintext: bytes) -> bytes: ...

    def open(self, seq: int, sealed: bytes) -> bytes | None:
        """The plaintext, or None when ``sealed`` fails authentication (altered or forged)."""
        ...


class Crypto(Protocol):
    """Signs and verifies records, and makes the per-direction frame ciphers."""

    def sign_record(self, key: SigningKey, payload: bytes) -> bytes: ...

    def verify_record(self, public_key: bytes, payload: bytes, signature: bytes) -> bool: ...

    def frame_cipher(self, key: bytes) -> FrameCipher: ...


class _SecretBoxCipher:
    __slots__ = ("_box",)

    def __init__(self, key: bytes) -> None:
        self._box = SecretBox(key)

    def seal(self, seq: int, plaintext: bytes) -> bytes:
        sealed: bytes = self._box.encrypt(plaintext, _nonce(seq)).ciphertext
        return sealed

    def open(self, seq: int, sealed: bytes) -> bytes | None:
        try:
            plaintext: bytes = self._box.decrypt(sealed, _nonce(seq))
        except CryptoError:
            return None
        return plaintext


def _nonce(seq: int) -> bytes:
    # A key per direction and a seq used once per key: the seq is a safe nonce.
    return seq.to_bytes(SecretBox.NONCE_SIZE, "big")


class Sodium:
    """The real thing: Ed25519 record signatures, XSalsa20-Poly1305 frames (PyNaCl)."""

    __slots__ = ()

    def sign_record(self, key: SigningKey, payload: bytes) -> bytes:
        return sign(key, DOMAIN_RECORD, payload)

    def verify_record(self, public_key: bytes, payload: bytes, signature: bytes) -> bool:
        return verify_signature(public_key, DOMAIN_RECORD, payload, signature)

    def frame_cipher(self, key: bytes) -> FrameCipher:
        return _SecretBoxCipher(key)


SODIUM: Final[Crypto] = Sodium()
