"""Records checked ahead of their merge: the same verdicts, kept, and nothing checked twice."""

from __future__ import annotations

from nacl.signing import SigningKey
from support import CountingCrypto

from lanesync.core.crypto import SODIUM
from lanesync.core.identity import LocalIdentity
from lanesync.core.ids import CONFIG_DOC, TerminalId
from lanesync.core.preverify import verified_in_chunks, verified_verdict_keys
from lanesync.core.records import Record, Sale, SaleLine
from lanesync.core.replica import Replica

from .helpers import NOW, Store, record_chain


def sales(count: int) -> list[Sale]:
    return [Sale.of((SaleLine("A", 1, 100 + n),)) for n in range(count)]


def tampered(record: Record) -> bytes:
    signature = bytearray(record.signature)
    signature[0] ^= 1
    return record.payload + bytes(signature)


def test_only_well_formed_records_signed_by_a_key_of_their_terminal_are_verified() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    good, forged, stranger = record_chain(key, "lane1", sales(3))
    (unknown,) = record_chain(other, "lane9", sales(1))
    keys = {TerminalId("lane1"): (bytes(other.verify_key), bytes(key.verify_key))}

    verified = verified_verdict_keys(
        [good.encoded, tampered(forged), stranger.encoded, unknown.encoded, b"garbage" * 20],
        keys,
        SODIUM,
    )

    assert verified == [good.verdict_key, stranger.verdict_key]  # by the terminal's second key


def test_an_updates_records_are_checked_in_its_order_a_chunk_at_a_time() -> None:
    store = Store()
    writer = store.terminal("lane1")
    for body in sales(12):
        writer.replica.append(body, NOW)
    (day,) = [doc for doc in writer.replica.doc_names() if doc != CONFIG_DOC]
    update = writer.replica.updates_since({})[day]
    keys = {TerminalId("lane1"): (writer.cert.public_key,)}

    chunks = list(verified_in_chunks(update, keys, SODIUM, chunk=5))

    assert [len(chunk) for chunk in chunks] == [5, 5, 2]
    records = sorted(writer.replica.records([day]), key=lambda item: item[2].seq)
    assert [h for chunk in chunks for h in chunk] == [r.verdict_key for _, _, r in records]


def receiver_of(store: Store, crypto: CountingCrypto, key: SigningKey) -> Replica:
    cert = store.certificate("cloud-side", key)
    replica = Replica(store.identity, 4242, LocalIdentity(cert, key), crypto=crypto)
    replica.restore({}, set(), NOW)
    return replica


def test_a_merge_takes_records_checked_ahead_as_checked_and_keeps_their_verdicts() -> None:
    store = Store()
    writer = store.terminal("lane1")
    for body in sales(30):
        writer.replica.append(body, NOW)
    diff = writer.replica.updates_since({})
    config = diff.pop(CONFIG_DOC)
    crypto, control_crypto = CountingCrypto(), CountingCrypto()
    key = SigningKey.generate()
    receiver, control = receiver_of(store, crypto, key), receiver_of(store, control_crypto, key)
    for replica in (receiver, control):
        replica.merge_batch([(CONFIG_DOC, config)], NOW)  # the lanes' certificates first
    keys = receiver.views.signing_keys()
    ahead = {h for update in diff.values() for h in verified_verdict_keys_of(update, keys)}
    crypto.verified.clear()
    control_crypto.verified.clear()

    merged = receiver.merge_batch(list(diff.items()), NOW, verified=ahead)
    checked_here = control.merge_batch(list(diff.items()), NOW)

    assert crypto.verified == []  # not one signature checked again
    assert len(control_crypto.verified) == 30
    assert len(ahead) == 30
    assert set(merged.change.verdicts) == ahead == set(checked_here.change.verdicts)
    assert receiver.views.accepted_count() == writer.replica.views.accepted_count()
    assert receiver.digest() == control.digest()


def verified_verdict_keys_of(
    update: bytes, keys: dict[TerminalId, tuple[bytes, ...]]
) -> list[bytes]:
    return [h for chunk in verified_in_chunks(update, keys, SODIUM) for h in chunk]
