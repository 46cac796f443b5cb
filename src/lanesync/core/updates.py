"""CRDT update bytes on their own, without a document: do they decode, and are they held?

Yjs updates travel between replicas as lib0-encoded bytes (pycrdt's ``Doc.get_update``). Before
a replica applies a peer's update it checks that the bytes decode (``check_update``), and it
asks whether a state vector already holds everything an update carries (``covered_by``): the
merge uses that to tell new updates from repeats, the relay to forward only what was integrated,
and compaction to find log rows a document holds. Neither touches a ``Doc``, so both are safe
off the document's owner thread.
"""

from __future__ import annotations

import pycrdt

from lanesync.errors import RemoteError

EMPTY_UPDATE = b"\x00\x00"  # lib0 encoding of an update with no structs and no deletions
EMPTY_STATE = b"\x00"  # lib0 encoding of the state vector of an empty document


def _is_panic(exc: BaseException) -> bool:
    # pyo3's PanicException derives from BaseException and lives in a module we cannot import
    # by name; match it by name so everything else (KeyboardInterrupt...) still propagates.
    return type(exc).__name__ == "PanicException"


def check_update(update: bytes) -> None:
    """Decode a CRDT update without applying it; RemoteError when it is not one."""
    if not isinstance(update, bytes | bytearray) or not update:
        raise RemoteError("CRDT update is empty or not bytes")
    try:
        pycrdt.get_state(bytes(update))
    except (ValueError, RuntimeError) as exc:
        raise RemoteError("CRDT update does not decode") from exc
    except BaseException as exc:
        if _is_panic(exc):
            raise RemoteError("CRDT update does not decode") from None
        raise


def covered_by(update: bytes, state_vector: bytes | None) -> bool:
    """True when a document whose state vector is ``state_vector`` (None: no such document)
    holds everything in ``update``. Pure bytes in, bytes out: touches no Doc, so it is safe off
    the document's owner thread (compaction uses it that way)."""
    if state_vector is None:
        return False
    try:
        return bytes(pycrdt.get_update(update, state_vector)) == EMPTY_UPDATE
    except (ValueError, RuntimeError):
        return False  # undecodable: merge's own checks reject it


# -- canonical forms ---------------------------------------------------------------------------
# pycrdt (yrs) writes a state vector's clients, and a delete set's, in the order of its hash
# table, which depends on the order the clients were first seen: two documents holding exactly
# the same entries can encode them differently (three clients applied in the six possible
# orders gave six different state vectors, measured with pycrdt 0.14.13). A checkpoint compares
# these encodings, so it compares canonical ones: clients in ascending order, each client's
# deleted ranges sorted and merged.


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """One lib0 variable-length unsigned integer at ``pos``: (value, next position)."""
    value = shift = 0
    while True:
        byte = data[pos]  # IndexError past the end: the caller's input is truncated
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def write_varuint(out: bytearray, value: int) -> None:
    """Append ``value`` as a lib0 variable-length unsigned integer."""
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def canonical_state(state: bytes) -> bytes:
    """The state vector ``state`` (lib0 v1) with its clients in ascending order."""
    count, pos = read_varuint(state, 0)
    clocks = []
    for _ in range(count):
        client, pos = read_varuint(state, pos)
        clock, pos = read_varuint(state, pos)
        clocks.append((client, clock))
    out = bytearray()
    write_varuint(out, count)
    for client, clock in sorted(clocks):
        write_varuint(out, client)
        write_varuint(out, clock)
    return bytes(out)


def canonical_deletions(update: bytes) -> bytes:
    """The delete set of ``update`` (lib0 v1) with clients ascending and each client's ranges
    sorted and merged; an update that also carries structs is returned as it is (its bytes are
    then compared as they are, which can only refuse a checkpoint, never accept a wrong one)."""
    structs, pos = read_varuint(update, 0)
    if structs:
        return update
    count, pos = read_varuint(update, pos)
    ranges: dict[int, list[tuple[int, int]]] = {}
    for _ in range(count):
        client, pos = read_varuint(update, pos)
        length, pos = read_varuint(update, pos)
        for _ in range(length):
            clock, pos = read_varuint(update, pos)
            size, pos = read_varuint(update, pos)
            ranges.setdefault(client, []).append((clock, clock + size))
    out = bytearray()
    write_varuint(out, 0)
    write_varuint(out, len(ranges))
    for client in sorted(ranges):
        merged: list[list[int]] = []
        for start, end in sorted(ranges[client]):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        write_varuint(out, client)
        write_varuint(out, len(merged))
        for start, end in merged:
            write_varuint(out, start)
            write_varuint(out, end - start)
    return bytes(out)
