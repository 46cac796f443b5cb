import lzma

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanesync.core import archive_codec
from lanesync.core.archive_codec import pack_key_hashes, unpack_key_hashes

KEY = b"lane2:3131#3202f6290a3d777893a81f9be0073536"
HASH = bytes.fromhex("3202f6290a3d777893a81f9be0073536")

# Bytes where "#" and hex digits are common, so keys, near-keys and stray marks all occur.
_PIECES = st.sampled_from([b"#", b"a", b"0", b"f", b"G", b"\x00", b"\x01", b"#" + b"ab" * 16])
_BYTES = st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=40).map(b"".join)


@settings(max_examples=200)
@given(_BYTES)
def test_packing_key_hashes_is_reversible_for_any_bytes(data: bytes) -> None:
    assert unpack_key_hashes(pack_key_hashes(data)) == data


def test_a_key_hash_is_written_in_binary_and_a_stray_mark_is_flagged() -> None:
    assert pack_key_hashes(KEY) == b"lane2:3131#\x01" + HASH
    assert pack_key_hashes(b"a#b") == b"a#\x00b"
    # Upper-case digits are not how record keys spell a hash: left as they are.
    assert pack_key_hashes(KEY.upper()) == KEY.upper().replace(b"#", b"#\x00")


def test_the_archive_round_trips_and_says_which_format_it_is() -> None:
    update = b"\x01\x02" + KEY + b"prev" + HASH + b"#" * 3
    packed = archive_codec.compress(update)
    assert packed.startswith(archive_codec.FORMAT_PACKED_KEYS)
    assert archive_codec.decompress(packed) == update


def test_an_archive_of_the_first_format_still_reads() -> None:
    update = b"day state " + KEY
    assert archive_codec.decompress(lzma.compress(update)) == update


@pytest.mark.parametrize(
    "stored",
    [
        b"",
        b"not an archive",
        archive_codec.FORMAT_PACKED_KEYS + b"garbage",
        archive_codec.FORMAT_PACKED_KEYS + lzma.compress(b"#\x01short"),
        archive_codec.FORMAT_PACKED_KEYS + lzma.compress(b"ends in a mark #"),
        lzma.compress(b"x")[:-4],
    ],
)
def test_bytes_compress_did_not_write_are_refused(stored: bytes) -> None:
    with pytest.raises(ValueError, match="archive"):
        archive_codec.decompress(stored)
