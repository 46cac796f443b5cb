import lzma

import msgpack
import pytest

from lanesync.core import eventpack
from lanesync.core.eventpack import PackedEvent
from lanesync.core.feed import Origin

KEYS = eventpack.order(
    ["lane2:10#bb", "lane1:2#aa", "lane2:9#cc", "lane1:10#dd", "lane2:9#ab", "stray"]
)


def test_keys_are_ordered_by_chain_and_seq_then_anything_else() -> None:
    assert KEYS == ["lane1:2#aa", "lane1:10#dd", "lane2:9#ab", "lane2:9#cc", "lane2:10#bb", "stray"]


def test_events_round_trip_by_their_records_place_in_the_archive() -> None:
    events = [
        PackedEvent(107, "lane2:9#cc", Origin.PEER),
        PackedEvent(100, "lane1:2#aa", Origin.LOCAL),
        PackedEvent(101, "lane1:10#dd", Origin.LOCAL),
        PackedEvent(108, "lane2:10#bb", Origin.BUNDLE),
        PackedEvent(120, "lane9:1#ee", Origin.CLOUD),  # not in this archive
    ]
    pack, left_out = eventpack.pack(events, KEYS)
    assert pack is not None
    assert (pack.first_id, pack.last_id, pack.event_ids) == (100, 108, (100, 101, 107, 108))
    assert left_out == [120]
    assert eventpack.unpack(pack.data, KEYS) == sorted(events[:4], key=lambda e: e.event_id)
    assert eventpack.pack(events[4:], KEYS) == (None, [120])


def _packed(columns: object) -> bytes:
    return lzma.compress(msgpack.packb(columns))


@pytest.mark.parametrize(
    "data",
    [
        b"not a pack",
        _packed([2, [1], [0], [0]]),  # a layout this version does not know
        _packed([1, [1, 1], [0], [0]]),  # columns of different lengths
        _packed([1, [5, 0], [0, 1], [0, 0]]),  # an id that does not grow
        _packed([1, [5], [len(KEYS)], [0]]),  # a place past the archive's keys
        _packed([1, [5], [-1], [0]]),
        _packed([1, [5], [0], [len(Origin)]]),  # an origin no lanesync wrote
        _packed([1, ["5"], [0], [0]]),
    ],
)
def test_bytes_pack_did_not_write_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="events"):
        eventpack.unpack(data, KEYS)
