"""Yjs state vectors as numbers: which clock of each CRDT client a replica holds.

A state vector is lib0-encoded (the Yjs "encodeStateVector" format, which pycrdt's
``Doc.get_state()`` returns): a varuint count, then that many (client id, clock) varuint pairs.
A varuint is little-endian base 128, seven bits a byte, the high bit set on every byte but the
last. Parsing never raises: bytes from a peer that do not decode give None.
"""

from __future__ import annotations

StateVector = dict[int, int]  # CRDT client id -> number of items of it held

# Client ids are 53-bit (Yjs keeps them within JavaScript's safe integers) and clocks count
# items: neither needs more than 64 bits, i.e. ten varuint bytes.
_MAX_VARUINT_BYTES = 10


def decode_state_vector(data: bytes) -> StateVector | None:
    """The clocks in ``data``, or None when it is not a well-formed state vector."""
    position = 0

    def varuint() -> int | None:
        nonlocal position
        value = 0
        for shift in range(0, 7 * _MAX_VARUINT_BYTES, 7):
            if position >= len(data):
                return None
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
        return None

    count = varuint()
    if count is None or count > len(data):  # each entry takes at least two bytes
        return None
    vector: StateVector = {}
    for _ in range(count):
        client = varuint()
        clock = varuint()
        if client is None or clock is None:
            return None
        vector[client] = clock
    return vector if position == len(data) else None


def covers(held: StateVector, wanted: StateVector) -> bool:
    """Does a replica at ``held`` hold everything a replica at ``wanted`` held?"""
    return all(held.get(client, 0) >= clock for client, clock in wanted.items())
