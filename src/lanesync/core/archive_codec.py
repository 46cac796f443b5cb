"""A sealed day's archive as bytes: its CRDT state, compressed (``core.sealing``).

Most of a day's CRDT state cannot be compressed: a record's 64 B signature and the 32 B hash of
the record before it on its chain are random. Some of it only looks random to a compressor: a
record's map key ends in ``#`` and 32 hex digits of the record's own hash (``records.record_key``),
and the next record of the same chain carries those 16 bytes again, in binary, as the first half
of its ``prev_hash``, a few hundred bytes further on. lzma matches repeated bytes, not a hex
spelling of them, so before compressing, every key hash is written in binary (``pack_key_hashes``)
and the two copies become one match.

Measured on a day of 2,500 sales of a ``lanesync bench year`` lane (2026-12-07): the CRDT state
holds 209 B a record; lzma alone (preset 6) 140 B, with the key hashes in binary 120 B; preset
9e and other literal/position settings moved either by less than 3 B. zlib -9 took 154 B.

Two formats are read: ``FORMAT_PACKED_KEYS`` (written since then) and the plain lzma of the
first sealed days, which starts with the xz magic; the signature covers the stored bytes, so an
archive is never rewritten in another format.
"""

from __future__ import annotations

import lzma
import re

from lanesync.core.records import KEY_HASH_BYTES

LZMA_PRESET = 6
# The first byte of an archive of key hashes written in binary; an xz stream starts with 0xFD.
FORMAT_PACKED_KEYS = b"\x02"
_XZ_MAGIC = b"\xfd7zXZ\x00"

_HASH_MARK = ord("#")
_PACKED, _LITERAL = 1, 0  # the byte after each "#" in the packed form
_KEY_HASH = re.compile(rb"#([0-9a-f]{%d})?" % (2 * KEY_HASH_BYTES))


def pack_key_hashes(data: bytes) -> bytes:
    """``data`` with every ``#`` followed by one flag byte: 1 and the 16 bytes the 32 lowercase
    hex digits after it spelled, or 0 (anything else). Reversible for any bytes."""

    def packed(match: re.Match[bytes]) -> bytes:
        digits = match.group(1)
        if digits is None:
            return b"#\x00"
        return b"#\x01" + bytes.fromhex(digits.decode("ascii"))

    return _KEY_HASH.sub(packed, data)


def unpack_key_hashes(data: bytes) -> bytes:
    """The inverse of ``pack_key_hashes``; ``ValueError`` for bytes it did not write."""
    out = bytearray()
    start = 0
    while (mark := data.find(_HASH_MARK, start)) >= 0:
        out += data[start : mark + 1]
        flag = data[mark + 1 : mark + 2]
        if flag == b"\x00":
            start = mark + 2
        elif flag == b"\x01" and len(data) >= mark + 2 + KEY_HASH_BYTES:
            out += data[mark + 2 : mark + 2 + KEY_HASH_BYTES].hex().encode("ascii")
            start = mark + 2 + KEY_HASH_BYTES
        else:
            raise ValueError("a sealed day's archive has a damaged key hash")
    out += data[start:]
    return bytes(out)


def compress(update: bytes) -> bytes:
    return FORMAT_PACKED_KEYS + lzma.compress(pack_key_hashes(update), preset=LZMA_PRESET)


def decompress(archive: bytes) -> bytes:
    """The CRDT update an archive holds; ``ValueError`` for bytes ``compress`` did not write."""
    try:
        if archive.startswith(FORMAT_PACKED_KEYS):
            return unpack_key_hashes(lzma.decompress(archive[len(FORMAT_PACKED_KEYS) :]))
        if archive.startswith(_XZ_MAGIC):
            return lzma.decompress(archive)
    except lzma.LZMAError as exc:
        raise ValueError(f"a sealed day's archive does not decompress: {exc}") from exc
    raise ValueError("a sealed day's archive has an unknown format")
