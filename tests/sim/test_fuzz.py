"""Bad input (DESIGN.md invariant 6), fuzzed with hypothesis: malformed, truncated, oversized and
mutated-valid frames, handshakes, bundles and CRDT updates.

Properties: nothing raises out of a protocol object except its documented error type
(``ProtocolViolation`` / ``BundleRejected``, both ``RemoteError``; a ``PeerConnection`` never
raises at all: it closes); nothing is applied when input is rejected (digest unchanged); a
mutated input never authenticates. Counts of inputs tried go to the terminal summary.
"""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.bundle import BUNDLE_MAGIC, encode_bundle, parse_bundle
from lanesync.core.connection import Closed, ConnState, Established, PeerConnection, Received
from lanesync.core.election import Candidate
from lanesync.core.identity import (
    Certificate,
    LocalIdentity,
    Role,
    StoreIdentity,
    issue_certificate,
    public_key_of,
)
from lanesync.core.ids import CONFIG_DOC, StoreId, TerminalId
from lanesync.core.records import Receipt, Sale, SaleLine
from lanesync.core.replica import Replica
from lanesync.core.wire import (
    MAX_FRAME_SIZE,
    MAX_HANDSHAKE_FRAME,
    ElectionGossip,
    Peers,
    State,
    Update,
    Updates,
    decode_frame,
    decode_message,
    encode_message,
)
from lanesync.errors import BundleRejected, ProtocolViolation, RemoteError

from .fuzzcount import TRIED

NOW = 1_795_000_000_000
FUZZ = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class _Store:
    """A store authority and deterministic terminals (the fuzz tests' fixtures)."""

    def __init__(self) -> None:
        rng = random.Random(42)
        self.authority = SigningKey(rng.randbytes(32))
        self.identity = StoreIdentity(StoreId("fuzz"), public_key_of(self.authority), "UTC")
        self._rng = rng

    def me(self, name: str) -> LocalIdentity:
        key = SigningKey(self._rng.randbytes(32))
        cert = issue_certificate(
            self.authority,
            self.identity.store_id,
            TerminalId(name),
            public_key_of(key),
            Role.CASHIER,
            0,
            NOW * 2,
        )
        return LocalIdentity(cert, key)

    def replica(self, me: LocalIdentity, client_id: int) -> Replica:
        replica = Replica(self.identity, client_id, me)
        replica.restore({}, set(), NOW)
        return replica


class _Accept:
    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        return None


STORE = _Store()
ALICE = STORE.me("alice")
BOB = STORE.me("bob")


def _pair() -> tuple[PeerConnection, PeerConnection, list[bytes], list[bytes]]:
    """Two connections; returns them and the handshake frames each sent (hello, auth)."""
    rng_a, rng_b = random.Random(1), random.Random(2)
    a = PeerConnection(ALICE, STORE.identity, _Accept(), random_bytes=rng_a.randbytes)
    b = PeerConnection(BOB, STORE.identity, _Accept(), random_bytes=rng_b.randbytes)
    a.start()
    b.start()
    sent_a, sent_b = a.data_to_send(), b.data_to_send()
    b.receive_data(sent_a[0], NOW)
    a.receive_data(sent_b[0], NOW)
    auth_a, auth_b = a.data_to_send(), b.data_to_send()
    return a, b, sent_a + auth_a, sent_b + auth_b


_, _, HANDSHAKE_A, HANDSHAKE_B = _pair()


def _valid_frames() -> list[bytes]:
    """Handshake frames and sealed frames of a real session (mutation seeds)."""
    a, b, _, _ = _pair()
    b.receive_data(HANDSHAKE_A[1], NOW)
    a.receive_data(HANDSHAKE_B[1], NOW)
    a.events_received()
    b.events_received()
    a.send(State({"config": b"\x00"}, reply=True))
    a.send(Peers(("bob",)))
    return [*HANDSHAKE_A, *a.data_to_send()]


VALID_FRAMES = _valid_frames()
VALID_MESSAGES = [
    encode_message(State({"config": b"\x01\x02", "ledger/2026-11-18": b"\x00"}, reply=False)),
    encode_message(Updates((Update("catalog", b"\x00\x00", "alice"),))),
    encode_message(Peers(("alice", "bob"))),
    encode_message(ElectionGossip((Candidate("alice", True, 1, 3, 20),))),
]


def _mutations(valid: list[bytes]) -> st.SearchStrategy[bytes]:
    """Mutated-valid inputs: bit flips, truncations, insertions, splices of real frames."""

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "byte")))
            at = draw(st.integers(0, max(0, len(data) - 1)))
            if kind == "flip" and data:
                data[at] ^= 1 << draw(st.integers(0, 7))
            elif kind == "truncate":
                del data[at:]
            elif kind == "insert":
                data[at:at] = draw(st.binary(min_size=1, max_size=8))
            elif kind == "delete" and data:
                del data[at : at + draw(st.integers(1, 8))]
            elif data:
                data[at] = draw(st.integers(0, 255))
        return bytes(data)

    return mutate()


def _structured() -> st.SearchStrategy[bytes]:
    """msgpack arrays shaped like frames and messages, with wrong types and sizes."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),
        st.floats(allow_nan=False),
        st.text(max_size=40),
        st.binary(max_size=80),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )
    heads = st.lists(st.sampled_from([0, 1, 2, 3, 4, 10, 11, 12, 13, 99, -1]), max_size=2)
    return st.builds(
        lambda head, tail: msgpack.packb([*head, *tail], use_bin_type=True),
        heads,
        st.lists(values, max_size=6),
    )


ANY_BYTES = st.one_of(
    st.binary(max_size=512), _mutations(VALID_FRAMES), _structured(), _mutations(VALID_MESSAGES)
)


@FUZZ
@given(ANY_BYTES)
def test_frame_decoder_raises_only_protocol_violations(data: bytes) -> None:
    TRIED["wire.decode_frame"] += 1
    reason = "ok"
    try:
        decode_frame(data)
    except ProtocolViolation as exc:
        reason = str(exc)
    assert reason
    assert "\n" not in reason


@FUZZ
@given(ANY_BYTES)
def test_message_decoder_raises_only_protocol_violations(data: bytes) -> None:
    TRIED["wire.decode_message"] += 1
    reason = "ok"
    try:
        decode_message(data)
    except ProtocolViolation as exc:
        reason = str(exc)
    assert reason
    assert "\n" not in reason


def test_oversized_frames_are_refused_before_decoding() -> None:
    TRIED["wire.oversized"] += 3
    with pytest.raises(ProtocolViolation, match="exceeds the limit"):
        decode_frame(b"\x00" * (MAX_FRAME_SIZE + 1))
    with pytest.raises(ProtocolViolation, match="exceeds the limit"):
        decode_message(b"\x00" * (MAX_FRAME_SIZE + 1))
    hello = msgpack.unpackb(HANDSHAKE_A[0])
    hello[3] = b"x" * MAX_HANDSHAKE_FRAME
    with pytest.raises(ProtocolViolation, match="too large"):
        decode_frame(msgpack.packb(hello, use_bin_type=True))


@FUZZ
@given(st.sampled_from((0, 1)), _mutations(HANDSHAKE_A[:1]), _mutations(HANDSHAKE_A[1:]))
def test_mutated_handshake_never_authenticates(which: int, hello: bytes, auth: bytes) -> None:
    """Bob receives Alice's hello and auth, one of them mutated: he never establishes a
    session unless the bytes are exactly Alice's, and never raises: he closes."""
    TRIED["handshake"] += 1
    frames = [hello, HANDSHAKE_A[1]] if which == 0 else [HANDSHAKE_A[0], auth]
    bob = _fresh_bob()
    for frame in frames:
        bob.receive_data(frame, NOW)
    events = bob.events_received()
    established = [e for e in events if isinstance(e, Established)]
    if frames == HANDSHAKE_A[:2]:
        assert established
    else:
        assert not established
        assert bob.state in (ConnState.CLOSED, ConnState.AWAIT_AUTH, ConnState.AWAIT_HELLO)
        assert not any(isinstance(e, Received) for e in events)


def _fresh_bob() -> PeerConnection:
    bob = PeerConnection(BOB, STORE.identity, _Accept(), random_bytes=random.Random(2).randbytes)
    bob.start()
    bob.data_to_send()
    return bob


@FUZZ
@given(st.lists(ANY_BYTES, min_size=1, max_size=4))
def test_garbage_after_the_handshake_closes_and_delivers_nothing(frames: list[bytes]) -> None:
    TRIED["sealed-session"] += len(frames)
    a, b, _, _ = _pair()
    b.receive_data(HANDSHAKE_A[1], NOW)
    a.receive_data(HANDSHAKE_B[1], NOW)
    b.events_received()
    genuine = set(VALID_FRAMES[2:])
    for frame in frames:
        b.receive_data(frame, NOW)
    events = b.events_received()
    received = [e for e in events if isinstance(e, Received)]
    if not any(f in genuine for f in frames):
        assert not received
    if b.state is ConnState.CLOSED:
        assert any(isinstance(e, Closed) for e in events)


# -- bundles and CRDT updates ----------------------------------------------------------------------


def _source_updates() -> tuple[Replica, list[tuple[str, bytes]], set[bytes]]:
    """A replica with records, the updates it produced (config and ledger), and the hashes of
    its genuine records."""
    source = STORE.replica(ALICE, 1001)
    updates = list(source.updates_since({}).items())
    hashes = set()
    for i, body in enumerate((Receipt("milk", 5), Sale.of((SaleLine("milk", 2, 149),)))):
        record, change = source.append(body, NOW + i)
        updates += change.updates
        hashes.add(record.hash)
    return source, updates, hashes


SOURCE, SOURCE_UPDATES, GENUINE = _source_updates()
BUNDLE = encode_bundle(ALICE, STORE.identity.store_id, SOURCE.updates_since({}), NOW)


def _check_merge(target: Replica, updates: list[tuple[str, bytes]]) -> None:
    before = target.digest()
    on_hand = target.views.on_hand()
    try:
        target.merge(updates, NOW)
    except RemoteError:
        assert target.digest() == before, "a rejected merge changed the replica"
        assert target.views.on_hand() == on_hand
        return
    # Accepted (pycrdt accepts many bit flips): garbage may be held, but never counted.
    for _, _, record in target.records():
        if target.views.is_accepted(record):
            assert record.hash in GENUINE or record.terminal == "bob"


@FUZZ
@given(st.data())
def test_mutated_crdt_updates_are_rejected_whole_or_never_counted(data: st.DataObject) -> None:
    TRIED["replica.merge"] += 1
    index = data.draw(st.integers(0, len(SOURCE_UPDATES) - 1))
    doc, update = SOURCE_UPDATES[index]
    mutated = data.draw(_mutations([update]))
    name = data.draw(st.sampled_from([doc, doc, CONFIG_DOC, "catalog", "ledger/2026-99-99", "x"]))
    target = STORE.replica(BOB, 2002)
    target.merge(SOURCE_UPDATES[:1], NOW)  # certificates first, as a peer would have them
    _check_merge(target, [(name, mutated)])


@FUZZ
@given(_mutations([BUNDLE]))
def test_mutated_bundles_are_rejected_before_anything_is_applied(data: bytes) -> None:
    TRIED["bundle.parse_bundle"] += 1
    target = STORE.replica(BOB, 3003)
    before = target.digest()
    try:
        bundle = parse_bundle(data, STORE.identity)
    except BundleRejected as exc:
        reason = str(exc)
    else:
        reason = ""
    if reason:
        assert "\n" not in reason
        assert target.digest() == before
        return
    assert data == BUNDLE, "a mutated bundle passed its signature check"
    _check_merge(target, list(bundle.updates))


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bundles_are_rejected(data: bytes) -> None:
    TRIED["bundle.parse_bundle"] += 1
    with pytest.raises(BundleRejected):
        parse_bundle(BUNDLE_MAGIC + data, STORE.identity)
