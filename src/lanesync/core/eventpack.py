"""A sealed day's change-feed events, packed beside its archive (``shell.feedlog``).

A lane's change feed numbers every record it accepts (an event id, its origin) so that a client
resuming from an old id misses nothing. Kept as one SQLite row a record, that is 83 B a sale on
disk, more than half of what a sealed day costs; packed with the day's archive, ~1 B.

What makes it small: an event names its record by the record's place in the archive (``order``:
the archive's keys by terminal and seq), and a day's events come mostly in runs of one chain, so
the ids, the places and the origins are each a column of small, repeated differences. A pack is
read only with the archive it was made with (both are stored by one transaction): a record that
reaches a sealed day later opens the day again, and sealing it again packs its events anew
against the new archive.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from pycrdt import Doc, Map

from lanesync.core.documents import RECORDS_ROOT
from lanesync.core.feed import Origin

PACK_FORMAT = 1
# The events of one day are a few thousand small integers: lzma's default preset packs them to
# about one byte an event, and a pack is written once a day.
LZMA_PRESET = 6
_ORIGINS = tuple(Origin)  # an origin is stored as its place here: append, never reorder


@dataclass(frozen=True, slots=True)
class PackedEvent:
    """An event of a sealed day: its id, the key of its record in the day's document, and
    where the lane got the record from."""

    event_id: int
    key: str
    origin: Origin


@dataclass(frozen=True, slots=True)
class Pack:
    """A day's packed events and the range of their ids (what storage indexes them by)."""

    first_id: int
    last_id: int
    data: bytes
    event_ids: tuple[int, ...]  # the events it holds (storage drops their rows)


def _order_key(key: str) -> tuple[int, str, int, str]:
    record_id, _, _ = key.partition("#")
    terminal, _, seq = record_id.rpartition(":")
    if seq.isdigit():
        return (0, terminal, int(seq), key)
    return (1, "", 0, key)  # not a record's key: after them all, by its text


def order(keys: Iterable[str]) -> list[str]:
    """An archive's keys in the order a pack names them by: each chain in seq order."""
    return sorted(keys, key=_order_key)


def archive_keys(update: bytes) -> list[str]:
    """The keys of an archived day document (its CRDT ``update``), in ``order``."""
    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    records = doc.get(RECORDS_ROOT, type=Map)
    return order(records.keys())


def _deltas(values: Sequence[int]) -> list[int]:
    return [b - a for a, b in zip((0, *values), values, strict=False)]


def _sums(deltas: Sequence[int]) -> list[int]:
    total, out = 0, []
    for delta in deltas:
        total += delta
        out.append(total)
    return out


def pack(events: Iterable[PackedEvent], keys: Sequence[str]) -> tuple[Pack | None, list[int]]:
    """The events whose record is in ``keys`` (an archive's, in ``order``), packed; and the ids
    of those that are not (none, unless a record's event outlived its entry): None when no
    event could be packed."""
    place = {key: index for index, key in enumerate(keys)}
    packed = sorted((e for e in events if e.key in place), key=lambda e: e.event_id)
    left_out = sorted({e.event_id for e in events if e.key not in place})
    if not packed:
        return None, left_out
    ids = [e.event_id for e in packed]
    columns = [
        PACK_FORMAT,
        _deltas(ids),
        _deltas([place[e.key] for e in packed]),
        [_ORIGINS.index(e.origin) for e in packed],
    ]
    data = lzma.compress(msgpack.packb(columns), preset=LZMA_PRESET)
    return Pack(ids[0], ids[-1], data, tuple(ids)), left_out


def unpack(data: bytes, keys: Sequence[str]) -> list[PackedEvent]:
    """The events of a pack, in id order, named by ``keys`` (those of the archive it was made
    with, in ``order``); ``ValueError`` for bytes ``pack`` did not write with them."""
    try:
        columns = msgpack.unpackb(lzma.decompress(data))
        match columns:
            case [1, list(id_deltas), list(place_deltas), list(origins)] if (
                len(id_deltas) == len(place_deltas) == len(origins)
            ):
                ids, places = _sums(id_deltas), _sums(place_deltas)
                if any(d <= 0 for d in id_deltas[1:]):
                    raise ValueError("its ids do not grow")
                if not all(0 <= p < len(keys) for p in places):
                    raise ValueError("it names a record its archive does not hold")
                if not all(0 <= o < len(_ORIGINS) for o in origins):
                    raise ValueError("it names an unknown origin")
                return [
                    PackedEvent(event_id, keys[place], _ORIGINS[origin])
                    for event_id, place, origin in zip(ids, places, origins, strict=True)
                ]
    except (lzma.LZMAError, msgpack.UnpackException, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"a sealed day's events do not unpack: {exc}") from exc
    raise ValueError("a sealed day's events have an unknown layout")
