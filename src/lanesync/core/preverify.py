"""The records of a large upload checked ahead of its merge, so the check can run elsewhere.

The cloud merges a large upload a slice per turn of its event loop (``core.mergequeue``), and
decoding, validating and verifying its records was about half of that turn's work (the
in-process figures of docs/how-to/cloud.md, "WAN outages"). PyNaCl releases the GIL while
libsodium verifies, so a worker thread checks the upload's records on the other core while the
loop merges earlier slices and serves other stores (``cloud.verifier``).

The check is the one the merge would make: the record decodes and its body is valid
(``parse_record``), and one of its terminal's known keys verifies the signature. The merge then
takes those records as checked before (``Replica.merge_batch``'s ``trusted``, as for records
whose verdicts storage kept): the certificate's validity at the record's time, revocations, the
chain and every count are judged at the merge as always, and a terminal with more than one key
has its signature checked again there (which key signed decides what the record may do). A
record whose terminal's certificate comes in the same upload, or that the worker has not reached
when its slice is merged, is checked by the merge itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from lanesync.core.crypto import Crypto
from lanesync.core.ids import TerminalId
from lanesync.core.records import Rejection, parse_record
from lanesync.core.slices import entry_values

# Records per batch of verdicts handed back: ~25 ms of checking, so the first slices of an
# upload find their records checked soon after it arrived.
CHUNK_RECORDS = 500


def verified_verdict_keys(
    values: Iterable[bytes], keys: Mapping[TerminalId, tuple[bytes, ...]], crypto: Crypto
) -> list[bytes]:
    """The verdict keys (``records.verdict_key``) of the records among ``values`` that decode,
    hold a valid body, and whose signature one of their terminal's ``keys`` verifies."""
    verified: list[bytes] = []
    for value in values:
        record = parse_record(value)
        if isinstance(record, Rejection):
            continue
        if any(
            crypto.verify_record(key, record.payload, record.signature)
            for key in keys.get(record.terminal, ())
        ):
            verified.append(record.verdict_key)
    return verified


def verified_in_chunks(
    update: bytes,
    keys: Mapping[TerminalId, tuple[bytes, ...]],
    crypto: Crypto,
    chunk: int = CHUNK_RECORDS,
) -> Iterator[list[bytes]]:
    """``verified_verdict_keys`` of the entries ``update`` sets, ``chunk`` records at a time, in the
    update's order (the order its slices are merged in)."""
    values = entry_values(update)
    for start in range(0, len(values), chunk):
        yield verified_verdict_keys(values[start : start + chunk], keys, crypto)
