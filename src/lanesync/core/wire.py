"""Peer protocol messages and their msgpack encoding (version 1).

Every websocket message is one frame::

    frame = msgpack [PROTOCOL_VERSION, frame_type, ...fields]

Handshake frames travel in clear (they carry only public data, and each side signs both hello
frames, so nothing in them can be altered unnoticed). After the handshake every frame is a
``Sealed`` frame: an explicit sequence number and an XSalsa20-Poly1305 box of one inner
message, under a key per direction (see ``session``).

``decode_*`` never raises anything but ``ProtocolViolation``, whose text is safe to log and to
send to the peer as a close reason.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from lanesync.core.election import Candidate
from lanesync.core.ids import is_valid_doc_name, is_valid_name
from lanesync.core.sealing import SEALED_SUMMARY
from lanesync.errors import ProtocolViolation

PROTOCOL_VERSION = 1
# A catch-up of a 10k-sale split is ~1.7 MiB of updates. A lane joining mid-day receives the
# day's document as one CRDT update (they cannot be split by size): ~180 B per sale, so 64 MiB
# carries a day of ~350k sales, several times the busiest 32-lane store. Nothing bigger passes.
MAX_FRAME_SIZE = 64 * 1024 * 1024
MAX_HANDSHAKE_FRAME = 2048
MAX_DOCS_PER_MESSAGE = 4096
MAX_PEERS_PER_MESSAGE = 256
NONCE_SIZE = 32
X25519_KEY_SIZE = 32


class FrameType(enum.IntEnum):
    HELLO = 1
    AUTH = 2
    REFUSE = 3
    SEALED = 4


class MessageType(enum.IntEnum):
    STATE = 10
    UPDATES = 11
    PEERS = 12
    ELECTION = 13


@dataclass(frozen=True, slots=True)
class Hello:
    store_id: str
    certificate: bytes
    nonce: bytes
    ephemeral_key: bytes


@dataclass(frozen=True, slots=True)
class Auth:
    signature: bytes


@dataclass(frozen=True, slots=True)
class Refuse:
    reason: str


@dataclass(frozen=True, slots=True)
class Sealed:
    seq: int
    box: bytes


Frame = Hello | Auth | Refuse | Sealed


@dataclass(frozen=True, slots=True)
class State:
    """The sender's state vector per document. ``reply``: answer with what I lack and your own
    state (anti-entropy); without it the message only acknowledges what was received."""

    vectors: dict[str, bytes]
    reply: bool


@dataclass(frozen=True, slots=True)
class Update:
    doc: str
    update: bytes
    origin: str  # terminal whose write produced it ("" when mixed, e.g. a catch-up diff)


@dataclass(frozen=True, slots=True)
class Updates:
    items: tuple[Update, ...]


@dataclass(frozen=True, slots=True)
class Peers:
    """Terminals the sender has an open connection with (used to avoid redundant relaying)."""

    terminals: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ElectionGossip:
    """Leader-election gossip: the sender first, then every candidate it knows alive."""

    candidates: tuple[Candidate, ...]


Message = State | Updates | Peers | ElectionGossip


def _pack(fields: list[object]) -> bytes:
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def encode_frame(frame: Frame) -> bytes:
    match frame:
        case Hello(store_id, certificate, nonce, key):
            return _pack([PROTOCOL_VERSION, FrameType.HELLO, store_id, certificate, nonce, key])
        case Auth(signature):
            return _pack([PROTOCOL_VERSION, FrameType.AUTH, signature])
        case Refuse(reason):
            return _pack([PROTOCOL_VERSION, FrameType.REFUSE, reason[:200]])
        case Sealed(seq, box):
            return _pack([PROTOCOL_VERSION, FrameType.SEALED, seq, box])


def _unpack(data: bytes, limit: int) -> list[object]:
    if len(data) > limit:
        raise ProtocolViolation(f"frame of {len(data)} bytes exceeds the limit of {limit}")
    try:
        fields = msgpack.unpackb(data, use_list=True, raw=False, strict_map_key=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        raise ProtocolViolation("frame is not valid msgpack") from None
    if not isinstance(fields, list) or not fields:
        raise ProtocolViolation("frame is not a msgpack array")
    return fields


def _bytes(value: object, size: int | None, what: str) -> bytes:
    if not isinstance(value, bytes) or (size is not None and len(value) != size):
        raise ProtocolViolation(f"{what} is malformed")
    return value


def decode_frame(data: bytes) -> Frame:
    fields = _unpack(data, MAX_FRAME_SIZE)
    # ``type(...) is int``: msgpack's true decodes to Python's True, which equals 1 (the version,
    # and the hello's frame type): one frame must have one encoding, as a record does.
    if type(fields[0]) is not int or fields[0] != PROTOCOL_VERSION:
        raise ProtocolViolation(f"unsupported protocol version {fields[0]!r}")
    if len(fields) < 2 or type(fields[1]) is not int:
        raise ProtocolViolation("unknown or malformed frame")
    match fields[1:]:
        case [FrameType.HELLO, str(store_id), cert, nonce, key]:
            if len(data) > MAX_HANDSHAKE_FRAME:
                raise ProtocolViolation("hello frame is too large")
            return Hello(
                store_id,
                _bytes(cert, None, "certificate"),
                _bytes(nonce, NONCE_SIZE, "nonce"),
                _bytes(key, X25519_KEY_SIZE, "ephemeral key"),
            )
        case [FrameType.AUTH, signature]:
            return Auth(_bytes(signature, 64, "signature"))
        case [FrameType.REFUSE, str(reason)]:
            return Refuse(reason[:200])
        case [FrameType.SEALED, int(seq), bytes(box)] if type(seq) is int and seq >= 0:
            return Sealed(seq, box)
    raise ProtocolViolation("unknown or malformed frame")


def encode_message(message: Message) -> bytes:
    match message:
        case State(vectors, reply):
            return _pack([MessageType.STATE, vectors, reply])
        case Updates(items):
            return _pack([MessageType.UPDATES, [[u.doc, u.update, u.origin] for u in items]])
        case Peers(terminals):
            return _pack([MessageType.PEERS, list(terminals)])
        case ElectionGossip(candidates):
            return _pack(
                [
                    MessageType.ELECTION,
                    [
                        [
                            c.terminal_id,
                            c.reachable,
                            c.priority,
                            c.term,
                            c.age_ms,
                            c.leader,
                            c.leader_term,
                            c.beat,
                        ]
                        for c in candidates
                    ],
                ]
            )


def decode_message(data: bytes) -> Message:
    fields = _unpack(data, MAX_FRAME_SIZE)
    match fields:
        case [MessageType.STATE, dict(vectors), bool(reply)]:
            if len(vectors) > MAX_DOCS_PER_MESSAGE:
                raise ProtocolViolation("state message names too many documents")
            for name, sv in vectors.items():
                if not (name == SEALED_SUMMARY or is_valid_doc_name(name)) or not isinstance(
                    sv, bytes
                ):
                    raise ProtocolViolation("state message has a malformed entry")
            return State(vectors, reply)
        case [MessageType.UPDATES, list(raw)]:
            if not 0 < len(raw) <= MAX_DOCS_PER_MESSAGE * 64:
                raise ProtocolViolation("updates message is empty or too long")
            items = []
            for item in raw:
                match item:
                    case [str(doc), bytes(update), str(origin)] if is_valid_doc_name(doc) and (
                        origin == "" or is_valid_name(origin)
                    ):
                        items.append(Update(doc, update, origin))
                    case _:
                        raise ProtocolViolation("updates message has a malformed entry")
            return Updates(tuple(items))
        case [MessageType.PEERS, list(terminals)]:
            if len(terminals) > MAX_PEERS_PER_MESSAGE or not all(
                is_valid_name(t) for t in terminals
            ):
                raise ProtocolViolation("peers message is malformed")
            return Peers(tuple(terminals))
        case [MessageType.ELECTION, list(raw)] if 0 < len(raw) <= MAX_PEERS_PER_MESSAGE:
            candidates = []
            for item in raw:
                match item:
                    case [
                        str(t),
                        bool(reachable),
                        int(priority),
                        int(term),
                        int(age),
                        str(leader),
                        int(leader_term),
                        int(beat),
                    ] if (
                        is_valid_name(t)
                        and bool not in {type(v) for v in (priority, term, age, leader_term, beat)}
                        and (leader == "" or is_valid_name(leader))
                        and 0 <= term < 2**63
                        and 0 <= leader_term < 2**63
                        and 0 <= beat < 2**63
                        and 0 <= age < 2**31
                        and -(2**31) <= priority < 2**31
                    ):
                        candidates.append(
                            Candidate(t, reachable, priority, term, age, leader, leader_term, beat)
                        )
                    case _:
                        raise ProtocolViolation("election message has a malformed entry")
            return ElectionGossip(tuple(candidates))
    raise ProtocolViolation("unknown or malformed message")
