"""One authenticated, encrypted connection to a peer terminal, as a sans-I/O state machine.

Contract (as in websockets' ``Protocol``): after ``start()`` or ``receive_data()``, call
``data_to_send()`` and send every frame in order, then handle ``events_received()``. Nothing
here touches a socket, a clock or the event loop; ``now_ms`` is passed in.

Handshake (both sides at once, symmetric; no client/server distinction)::

    -> Hello(store id, certificate, nonce, ephemeral X25519 key)
    <- Hello(...)                      each side checks the other's certificate against the
                                       store authority, expiry and revocation (the policy)
    -> Auth(Ed25519 signature by the terminal key over H(my hello) || H(your hello))
    <- Auth(...)                       proves possession of the certified key and binds both
                                       ephemeral keys, so a man in the middle learns nothing
    == Sealed(seq, box) ...            XSalsa20-Poly1305 under a key per direction derived from
                                       the X25519 secret and both hellos; seq must be exactly the
                                       next one: a replayed, reordered, dropped, altered or
                                       injected frame closes the connection.

Every failure becomes a ``Closed`` event with a reason safe to log and to send to the peer.
"""

from __future__ import annotations

import enum
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nacl.exceptions import CryptoError
from nacl.public import Box, PrivateKey, PublicKey

from lanesync.core.crypto import SODIUM, Crypto, FrameCipher
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    StoreIdentity,
    parse_certificate,
    sign,
    verify_signature,
)
from lanesync.core.wire import (
    NONCE_SIZE,
    Auth,
    FrameType,
    Hello,
    Message,
    Refuse,
    Sealed,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
)
from lanesync.errors import LocalProtocolError, ProtocolViolation, RemoteError

DOMAIN_HANDSHAKE = b"lanesync/handshake/v1\x00"
KDF_PERSON = b"lanesync-sess-v1"  # BLAKE2b personalisation (16 bytes max)


class ConnState(enum.Enum):
    AWAIT_HELLO = "await-hello"  # our hello is out; waiting for the peer's
    AWAIT_AUTH = "await-auth"  # peer's hello accepted, our auth is out; waiting for theirs
    OPEN = "open"
    CLOSED = "closed"


# Every legal transition on a received frame, in one place. Anything else is a violation.
TRANSITIONS: dict[tuple[ConnState, FrameType], ConnState] = {
    (ConnState.AWAIT_HELLO, FrameType.HELLO): ConnState.AWAIT_AUTH,
    (ConnState.AWAIT_AUTH, FrameType.AUTH): ConnState.OPEN,
    (ConnState.OPEN, FrameType.SEALED): ConnState.OPEN,
    (ConnState.AWAIT_HELLO, FrameType.REFUSE): ConnState.CLOSED,
    (ConnState.AWAIT_AUTH, FrameType.REFUSE): ConnState.CLOSED,
    (ConnState.OPEN, FrameType.REFUSE): ConnState.CLOSED,
}


class PeerPolicy(Protocol):
    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        """Why this (store-signed) certificate may not connect now, or None to accept it."""


@dataclass(frozen=True, slots=True)
class Established:
    peer: Certificate


@dataclass(frozen=True, slots=True)
class Received:
    message: Message


@dataclass(frozen=True, slots=True)
class Closed:
    reason: str
    by_peer: bool


Event = Established | Received | Closed


_FRAME_TYPE: dict[type, FrameType] = {
    Hello: FrameType.HELLO,
    Auth: FrameType.AUTH,
    Refuse: FrameType.REFUSE,
    Sealed: FrameType.SEALED,
}


def _h(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


class PeerConnection:
    def __init__(
        self,
        me: LocalIdentity,
        store: StoreIdentity,
        policy: PeerPolicy,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        crypto: Crypto = SODIUM,
    ) -> None:
        self._me = me
        self._crypto = crypto
        self._store = store
        self._policy = policy
        self._random = random_bytes
        self.state = ConnState.AWAIT_HELLO
        self.peer: Certificate | None = None
        self.close_reason: str | None = None
        self._out: list[bytes] = []
        self._events: list[Event] = []
        self._ephemeral = PrivateKey(random_bytes(32))
        self._my_hello = encode_frame(
            Hello(
                store.store_id,
                me.certificate.encoded,
                random_bytes(NONCE_SIZE),
                bytes(self._ephemeral.public_key),
            )
        )
        self._peer_hello = b""
        self._send_box: FrameCipher | None = None
        self._recv_box: FrameCipher | None = None
        self._send_seq = 0
        self._recv_seq = 0
        self.frames_sent = 0
        self.frames_received = 0
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- the sans-I/O contract -------------------------------------------------------------------

    def start(self) -> None:
        """Queue our hello. Call once, right after the transport opened."""
        self._emit(self._my_hello)

    def receive_data(self, data: bytes, now_ms: int) -> None:
        if self.state is ConnState.CLOSED:
            return
        self.frames_received += 1
        self.bytes_received += len(data)
        try:
            frame = decode_frame(data)
            kind = _FRAME_TYPE[type(frame)]
            after = TRANSITIONS.get((self.state, kind))
            if after is None:
                raise ProtocolViolation(
                    f"unexpected {kind.name.lower()} frame in {self.state.value}"
                )
            self._handle(frame, now_ms)
            if self.close_reason is None:  # a refusal in _handle already closed it
                self.state = after
        except ProtocolViolation as exc:
            self._fail(str(exc), tell_peer=True)

    def send(self, message: Message) -> None:
        if self.state is not ConnState.OPEN or self._send_box is None:
            raise LocalProtocolError(f"cannot send on a connection in state {self.state.value}")
        box = self._send_box.seal(self._send_seq, encode_message(message))
        self._emit(encode_frame(Sealed(self._send_seq, box)))
        self._send_seq += 1

    def close(self, reason: str) -> None:
        """Close locally (the shell then closes the transport with this reason)."""
        if self.state is not ConnState.CLOSED:
            self.state = ConnState.CLOSED
            self.close_reason = reason
            self._events.append(Closed(reason, by_peer=False))

    def transport_closed(self, reason: str) -> None:
        """The transport went away underneath us."""
        if self.state is not ConnState.CLOSED:
            self.state = ConnState.CLOSED
            self.close_reason = reason
            self._events.append(Closed(reason, by_peer=True))

    def data_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    # -- handling --------------------------------------------------------------------------------

    def _emit(self, frame: bytes) -> None:
        self.frames_sent += 1
        self.bytes_sent += len(frame)
        self._out.append(frame)

    def _fail(self, reason: str, *, tell_peer: bool) -> None:
        if self.state is ConnState.CLOSED:
            return
        if tell_peer:
            self._emit(encode_frame(Refuse(reason)))
        self.state = ConnState.CLOSED
        self.close_reason = reason
        self._events.append(Closed(reason, by_peer=False))

    def _handle(self, frame: Hello | Auth | Refuse | Sealed, now_ms: int) -> None:
        match frame:
            case Hello():
                self._on_hello(frame, now_ms)
            case Auth(signature):
                self._on_auth(signature)
            case Refuse(reason):
                self.state = ConnState.CLOSED
                self.close_reason = f"refused by peer: {reason}"
                self._events.append(Closed(self.close_reason, by_peer=True))
            case Sealed(seq, box):
                self._on_sealed(seq, box)

    def _on_hello(self, hello: Hello, now_ms: int) -> None:
        if hello.store_id != self._store.store_id:
            raise ProtocolViolation(f"peer belongs to store {hello.store_id!r}, not ours")
        try:
            peer = parse_certificate(hello.certificate, self._store)
        except RemoteError as exc:
            raise ProtocolViolation(f"peer certificate rejected: {exc}") from None
        if not peer.valid_at(now_ms):
            raise ProtocolViolation(
                f"certificate of {peer.terminal_id} is expired or not yet valid"
            )
        if peer.terminal_id == self._me.certificate.terminal_id:
            raise ProtocolViolation("peer presents our own terminal id")
        refusal = self._policy.refusal(peer, now_ms)
        if refusal is not None:
            raise ProtocolViolation(refusal)
        self.peer = peer
        self._peer_hello = encode_frame(hello)
        try:
            shared = Box(self._ephemeral, PublicKey(hello.ephemeral_key)).shared_key()
        except (CryptoError, RuntimeError, ValueError):
            # libsodium refuses low-order points (RFC 7748 section 6.1): no shared secret.
            raise ProtocolViolation("peer sent an invalid ephemeral key") from None
        mine, theirs = _h(self._my_hello), _h(self._peer_hello)
        low, high = sorted((mine, theirs))
        keys = hashlib.blake2b(shared + low + high, digest_size=64, person=KDF_PERSON).digest()
        first, second = keys[:32], keys[32:]
        send, recv = (first, second) if mine == low else (second, first)
        self._send_box = self._crypto.frame_cipher(send)
        self._recv_box = self._crypto.frame_cipher(recv)
        self._emit(encode_frame(Auth(sign(self._me.key, DOMAIN_HANDSHAKE, mine + theirs))))

    def _on_auth(self, signature: bytes) -> None:
        if self.peer is None:  # unreachable by the transition table; kept as a guard
            raise ProtocolViolation("auth before hello")
        transcript = _h(self._peer_hello) + _h(self._my_hello)
        if not verify_signature(self.peer.public_key, DOMAIN_HANDSHAKE, transcript, signature):
            raise ProtocolViolation("peer failed to prove possession of its certified key")
        self._events.append(Established(self.peer))

    def _on_sealed(self, seq: int, box: bytes) -> None:
        if self._recv_box is None:
            raise ProtocolViolation("sealed frame before the handshake finished")
        if seq != self._recv_seq:
            raise ProtocolViolation(
                f"frame {seq} out of sequence (expected {self._recv_seq}): replayed, "
                "reordered or injected"
            )
        plaintext = self._recv_box.open(seq, box)
        if plaintext is None:
            raise ProtocolViolation("frame failed authentication: altered or forged")
        self._recv_seq += 1
        self._events.append(Received(decode_message(plaintext)))
