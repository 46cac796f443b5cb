"""Store authority and terminal certificates: issue, parse, reject."""

from __future__ import annotations

import hashlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.configdoc import certificate_key
from lanesync.core.identity import (
    CERT_FORMAT,
    DOMAIN_CERT,
    DOMAIN_RECORD,
    MAX_CERT_SIZE,
    Certificate,
    Role,
    StoreIdentity,
    issue_certificate,
    key_fingerprint,
    parse_certificate,
    public_key_of,
    sign,
    signing_key_from_seed,
)
from lanesync.core.ids import StoreId, TerminalId
from lanesync.errors import ConfigError, RemoteError

from .helpers import NOW, Store

STORE = Store()
TERMINAL_KEY = SigningKey.generate()

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


def signed_payload(fields: object, authority: SigningKey = STORE.authority) -> bytes:
    payload: bytes = msgpack.packb(fields, use_bin_type=True)
    return payload + sign(authority, DOMAIN_CERT, payload)


def good_fields(**overrides: object) -> list[object]:
    base: dict[str, object] = {
        "fmt": CERT_FORMAT,
        "store": STORE.store_id,
        "terminal": "lane1",
        "key": public_key_of(TERMINAL_KEY),
        "role": "cashier",
        "not_before": 0,
        "not_after": NOW,
    }
    base.update(overrides)
    return list(base.values())


@settings(max_examples=60, deadline=None)
@given(
    terminal=names,
    role=st.sampled_from(Role),
    not_before=st.integers(0, 2**62),
    span=st.integers(0, 2**62),
)
def test_certificate_round_trip(terminal: str, role: Role, not_before: int, span: int) -> None:
    key = SigningKey.generate()
    cert = issue_certificate(
        STORE.authority,
        STORE.store_id,
        TerminalId(terminal),
        public_key_of(key),
        role,
        not_before,
        not_before + span,
    )
    parsed = parse_certificate(cert.encoded, STORE.identity)
    assert parsed == cert
    assert parsed.terminal_id == terminal
    assert parsed.role is role
    assert parsed.public_key == public_key_of(key)
    assert parsed.key_fingerprint == key_fingerprint(public_key_of(key))
    assert parsed.valid_at(not_before)
    assert parsed.valid_at(not_before + span)
    assert not parsed.valid_at(not_before - 1)
    assert not parsed.valid_at(not_before + span + 1)
    assert parse_certificate(bytearray(cert.encoded), STORE.identity) == cert  # type: ignore[arg-type]


def test_only_managers_may_set_prices() -> None:
    assert Role.MANAGER.may_set_prices
    assert not Role.CASHIER.may_set_prices


def test_fingerprint_is_short_and_stable() -> None:
    public = public_key_of(TERMINAL_KEY)
    assert key_fingerprint(public) == key_fingerprint(bytes(public))
    assert len(key_fingerprint(public)) == 16
    assert key_fingerprint(public) != key_fingerprint(public_key_of(SigningKey.generate()))


def test_certificate_of_another_authority_is_rejected() -> None:
    foreign = Store()  # same store id, different authority key
    cert = foreign.certificate("lane1", TERMINAL_KEY)
    with pytest.raises(RemoteError, match="not signed by the authority"):
        parse_certificate(cert.encoded, STORE.identity)
    # positive control: the foreign store accepts it
    assert parse_certificate(cert.encoded, foreign.identity) == cert


def test_certificate_for_another_store_id_is_rejected() -> None:
    cert = STORE.certificate("lane1", TERMINAL_KEY, store_id="shop2")
    with pytest.raises(RemoteError, match="shop2"):
        parse_certificate(cert.encoded, STORE.identity)


def test_signature_of_another_domain_is_rejected() -> None:
    payload = msgpack.packb(good_fields(), use_bin_type=True)
    forged = payload + sign(STORE.authority, DOMAIN_RECORD, payload)
    with pytest.raises(RemoteError):
        parse_certificate(forged, STORE.identity)
    assert parse_certificate(signed_payload(good_fields()), STORE.identity).terminal_id == "lane1"


def test_any_tampered_byte_is_rejected() -> None:
    encoded = STORE.certificate("lane1", TERMINAL_KEY, Role.MANAGER).encoded
    for i in range(len(encoded)):
        for mask in (0x01, 0xFF):
            tampered = bytearray(encoded)
            tampered[i] ^= mask
            with pytest.raises(RemoteError):
                parse_certificate(bytes(tampered), STORE.identity)


def test_truncated_or_extended_certificate_is_rejected() -> None:
    encoded = STORE.certificate("lane1", TERMINAL_KEY).encoded
    for length in range(len(encoded)):
        with pytest.raises(RemoteError):
            parse_certificate(encoded[:length], STORE.identity)
    with pytest.raises(RemoteError):
        parse_certificate(encoded + b"\x00", STORE.identity)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=MAX_CERT_SIZE + 100))
def test_garbage_is_rejected_with_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteError):
        parse_certificate(data, STORE.identity)


@pytest.mark.parametrize("value", [None, 5, 1.5, "certificate", ["x"], memoryview(b"x" * 100)])
def test_non_bytes_are_rejected_with_remote_error(value: object) -> None:
    with pytest.raises(RemoteError):
        parse_certificate(value, STORE.identity)  # type: ignore[arg-type]


def test_oversized_certificate_is_rejected() -> None:
    big = signed_payload(good_fields(terminal="x" * (MAX_CERT_SIZE + 1)))
    with pytest.raises(RemoteError, match="size"):
        parse_certificate(big, STORE.identity)


@pytest.mark.parametrize(
    "fields",
    [
        good_fields(fmt=2),
        good_fields()[:6],
        [*good_fields(), 1],
        {"store": "shop1"},
        "certificate",
        good_fields(terminal="bad name"),
        good_fields(terminal="lane|1"),
        good_fields(terminal=5),
        good_fields(key=b"short"),
        good_fields(key="k" * 32),
        good_fields(role="owner"),
        good_fields(role=None),
        good_fields(not_before=NOW + 1, not_after=NOW),
        good_fields(not_before="0"),
        good_fields(not_after=1.5),
    ],
)
def test_signed_but_malformed_certificate_is_rejected(fields: object) -> None:
    with pytest.raises(RemoteError):
        parse_certificate(signed_payload(fields), STORE.identity)


@pytest.mark.parametrize("role", [["cashier"], {"r": "cashier"}])
def test_unhashable_role_is_rejected_with_remote_error(role: object) -> None:
    # parse_certificate promises RemoteError for anything it cannot accept.
    with pytest.raises(RemoteError):
        parse_certificate(signed_payload(good_fields(role=role)), STORE.identity)


def test_signing_key_seed_must_be_32_bytes() -> None:
    seed = bytes(range(32))
    assert public_key_of(signing_key_from_seed(seed)) == public_key_of(SigningKey(seed))
    for bad in (b"", bytes(31), bytes(33)):
        with pytest.raises(ConfigError):
            signing_key_from_seed(bad)


def test_store_identity_is_what_terminals_check_against() -> None:
    identity = STORE.identity
    assert identity == StoreIdentity(StoreId("shop1"), public_key_of(STORE.authority), "UTC")
    cert = STORE.certificate("lane2", TERMINAL_KEY, Role.MANAGER)
    assert isinstance(parse_certificate(cert.encoded, identity), Certificate)


def test_certificate_key_names_the_certificate_content() -> None:
    """Config keys are content-addressed: two certificates of one terminal, even for one key,
    never share a key, and a certificate's key does not depend on who computes it."""
    cashier = STORE.certificate("lane1", TERMINAL_KEY)
    manager = STORE.certificate("lane1", TERMINAL_KEY, Role.MANAGER)
    content = hashlib.blake2b(cashier.encoded, digest_size=16).hexdigest()
    assert certificate_key(cashier) == f"cert:lane1:{content}"
    assert certificate_key(cashier) != certificate_key(manager)
    assert certificate_key(parse_certificate(cashier.encoded, STORE.identity)) == (
        certificate_key(cashier)
    )
    assert certificate_key(STORE.certificate("lane2", TERMINAL_KEY)).startswith("cert:lane2:")
