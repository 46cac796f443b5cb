"""A large CRDT update cut into slices that a replica merges one at a time.

A catch-up after a long outage arrives as one update per document (``Replica.updates_since``):
a day of 50,000 sales is one 10 MB update, and merging it (verifying, folding and, in the cloud,
projecting every record) held the cloud's event loop for ~15 s, during which no other store was
answered (docs/how-to/cloud.md, "WAN outages"). ``update_slices`` cuts an update into updates of
at most about ``max_bytes`` each, in the order the update lists its structs; merged one after the
other they leave a document exactly as the whole update would. ``core.node`` merges a bounded
number of bytes per turn of the event loop.

Why the slices add up to the update: a lib0 v1 update is, per client, a run of structs with
consecutive clocks, then a delete set. A slice takes a contiguous part of one or more clients'
runs, each part with its first clock, and only the last slice carries the delete set. A document
integrates a struct once it holds the clocks before it (slices come in clock order) and keeps it
pending otherwise, until they come (an origin in a later slice): the rule it applies to updates
arriving from several peers in any order. pycrdt has no call that cuts an update (it diffs from a
state vector, which gives the tail of a run, never its head), hence this reader.

Only struct boundaries are read: each struct's length in clocks gives the next part's first
clock, so its content is decoded as far as its length needs (the v1 encoding ``Doc.get_update``
writes). Every slice is checked against pycrdt's own decoding before it is handed out (the clock
after each part must be the one pycrdt reads). Anything this reader does not know, and any check
that fails, ends the cutting: the rest of the update goes out as one last slice, as received, so
an unusual update is merged whole as before, never cut wrong.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pycrdt

from lanesync.core.updates import read_varuint, write_varuint

# The first byte of a struct: its kind, and which references follow it (Yjs's encoding, which
# yrs keeps: ``Item.write`` and ``readItemContent`` in Yjs).
_GC, _SKIP = 0, 10
_HAS_ORIGIN, _HAS_RIGHT_ORIGIN, _HAS_PARENT_SUB = 0x80, 0x40, 0x20
_CONTENT_MASK = 0x1F
_DELETED, _JSON, _BINARY, _STRING, _EMBED, _FORMAT, _TYPE, _ANY = range(1, 9)
# Type references of shared types that carry no more data, and the two that carry a name.
_PLAIN_TYPES = frozenset({0, 1, 2, 4, 6})  # array, map, text, xml fragment, xml text
_NAMED_TYPES = frozenset({3, 5})  # xml element, xml hook
# lib0's tags for ``Any`` values (``writeAny``).
_ANY_FIXED = {127: 0, 126: 0, 121: 0, 120: 0, 124: 4, 123: 8, 122: 8}
_ANY_VARINT, _ANY_STRING, _ANY_MAP, _ANY_ARRAY, _ANY_BYTES = 125, 119, 118, 117, 116
_EMPTY_DELETE_SET = b"\x00"
# A clock no document reaches (Yjs clocks are below 2**53, JavaScript's safe integers).
_BEYOND_ANY_CLOCK = 2**53


class _Unreadable(Exception):
    """A struct this reader does not decode: the rest of the update goes out whole."""


def update_slices(update: bytes, max_bytes: int) -> Iterator[bytes]:
    """``update`` as updates of at most about ``max_bytes`` of structs each (a struct larger
    than that is a slice of its own), in order. An update of ``max_bytes`` or less, one
    without structs, or one this reader does not know is handed out whole."""
    if max_bytes < 1:
        raise ValueError("max_bytes must be at least 1")
    data = bytes(update)
    if len(data) <= max_bytes:
        yield data
        return
    yield from _Cutter(data, max_bytes).slices()


@dataclass(slots=True)
class _Part:
    """Consecutive structs of one client: ``data[start:end]``, ``count`` of them from
    ``clock`` to ``end_clock``."""

    client: int
    clock: int
    start: int
    end: int = 0
    count: int = 0
    end_clock: int = 0


class _Cutter:
    def __init__(self, data: bytes, max_bytes: int) -> None:
        self.data = data
        self.max_bytes = max_bytes

    def slices(self) -> Iterator[bytes]:
        data = self.data
        clients_left, pos = read_varuint(data, 0)
        parts: list[_Part] = []
        size = 0
        # Where the slice being gathered began, to hand out the rest from there if need be:
        # (position, clients not yet begun, structs left of the current client, its client
        # and clock there).
        resume = (pos, clients_left, 0, 0, 0)
        left = client = clock = 0
        try:
            while clients_left or left:
                if not left:
                    left, pos = read_varuint(data, pos)
                    client, pos = read_varuint(data, pos)
                    clock, pos = read_varuint(data, pos)
                    clients_left -= 1
                    parts.append(_Part(client, clock, pos, pos, 0, clock))
                    continue
                end, length = _struct(data, pos)
                if size and size + end - pos > self.max_bytes:
                    cut = self._encode(parts, _EMPTY_DELETE_SET)
                    self._check(cut, parts)
                    yield cut
                    resume = (pos, clients_left, left, client, clock)
                    parts = [_Part(client, clock, pos, pos, 0, clock)]
                    size = 0
                part = parts[-1]
                size += end - pos
                pos = part.end = end
                part.count += 1
                clock = part.end_clock = clock + length
                left -= 1
            cut = self._encode(parts, data[pos:])
            self._check(cut, parts)
        except (_Unreadable, IndexError, UnicodeDecodeError):
            yield self._rest(*resume)
            return
        yield cut

    def _encode(self, parts: list[_Part], delete_set: bytes) -> bytes:
        out = bytearray()
        kept = [part for part in parts if part.count]
        write_varuint(out, len(kept))
        for part in kept:
            write_varuint(out, part.count)
            write_varuint(out, part.client)
            write_varuint(out, part.clock)
            out += self.data[part.start : part.end]
        out += delete_set
        return bytes(out)

    def _rest(self, pos: int, clients_left: int, left: int, client: int, clock: int) -> bytes:
        """The update from ``pos`` on, unread: the current client's remaining structs (if
        any are left), then the other clients' runs and the delete set as received."""
        out = bytearray()
        write_varuint(out, clients_left + (1 if left else 0))
        if left:
            write_varuint(out, left)
            write_varuint(out, client)
            write_varuint(out, clock)
        out += self.data[pos:]
        return bytes(out)

    @staticmethod
    def _check(cut: bytes, parts: list[_Part]) -> None:
        """pycrdt must read each part of the slice as ending where this reader counted: the
        slice diffed against a state holding the part's client up to that clock must be as
        long as the slice without that client, and one clock earlier longer. (Lengths, not
        bytes: yrs writes a map value's entries in its hash table's order, which can change
        from one encoding to the next.)"""
        for part in parts:
            if not part.count:
                continue
            try:
                at_end, before_end, without = (
                    pycrdt.get_update(cut, _state(part.client, clock))
                    for clock in (part.end_clock, part.end_clock - 1, _BEYOND_ANY_CLOCK)
                )
            except (ValueError, RuntimeError) as exc:
                raise _Unreadable("pycrdt does not decode the slice") from exc
            if len(at_end) != len(without) or len(before_end) <= len(at_end):
                raise _Unreadable("the slice does not end where this reader counted")


def _state(client: int, clock: int) -> bytes:
    """A state vector holding one client up to ``clock``."""
    out = bytearray()
    for value in (1, client, clock):
        write_varuint(out, value)
    return bytes(out)


def entry_values(update: bytes) -> list[bytes]:
    """The byte values ``update`` sets (map entries holding bytes: lanesync's records and
    certificates), in the update's order, as far as this reader gets (it stops at a struct it
    does not read). For work that may be done ahead of the merge (``core.preverify``)."""
    data = bytes(update)
    values: list[bytes] = []
    try:
        clients, pos = read_varuint(data, 0)
        for _ in range(clients):
            count, pos = read_varuint(data, pos)
            pos = _skip_varuints(data, pos, 2)  # the client and its first clock
            for _ in range(count):
                pos = _struct(data, pos, values)[0]
    except (_Unreadable, IndexError, UnicodeDecodeError):
        pass
    return values


def _struct(data: bytes, pos: int, values: list[bytes] | None = None) -> tuple[int, int]:
    """The end of the struct at ``pos`` and its length in clocks; the byte values it holds are
    appended to ``values``, if given."""
    info = data[pos]
    pos += 1
    if info in (_GC, _SKIP):
        return read_varuint(data, pos)[::-1]
    if info & _HAS_ORIGIN:
        pos = _skip_varuints(data, pos, 2)
    if info & _HAS_RIGHT_ORIGIN:
        pos = _skip_varuints(data, pos, 2)
    if not info & (_HAS_ORIGIN | _HAS_RIGHT_ORIGIN):
        named, pos = read_varuint(data, pos)
        pos = _skip_bytes(data, pos) if named == 1 else _skip_varuints(data, pos, 2)
        if info & _HAS_PARENT_SUB:
            pos = _skip_bytes(data, pos)
    content = info & _CONTENT_MASK
    if content == _DELETED:
        return read_varuint(data, pos)[::-1]
    if content in (_JSON, _ANY):
        count, pos = read_varuint(data, pos)
        for _ in range(count):
            if content == _JSON:
                pos = _skip_bytes(data, pos)
            elif values is not None and data[pos] == _ANY_BYTES:
                end = _skip_bytes(data, pos + 1)
                values.append(data[read_varuint(data, pos + 1)[1] : end])
                pos = end
            else:
                pos = _skip_any(data, pos)
        return pos, count
    if content in (_BINARY, _EMBED):
        end = _skip_bytes(data, pos)
        if values is not None and content == _BINARY:
            values.append(data[read_varuint(data, pos)[1] : end])
        return end, 1
    if content == _STRING:
        end = _skip_bytes(data, pos)
        text = data[read_varuint(data, pos)[1] : end].decode("utf-8")
        return end, len(text.encode("utf-16-le")) // 2  # Yjs counts UTF-16 units
    if content == _FORMAT:
        return _skip_bytes(data, _skip_bytes(data, pos)), 1
    if content == _TYPE:
        kind, pos = read_varuint(data, pos)
        if kind in _NAMED_TYPES:
            return _skip_bytes(data, pos), 1
        if kind in _PLAIN_TYPES:
            return pos, 1
    raise _Unreadable(f"struct content {content} is not read here")


def _skip_varuints(data: bytes, pos: int, count: int) -> int:
    for _ in range(count):
        pos = read_varuint(data, pos)[1]
    return pos


def _skip_bytes(data: bytes, pos: int) -> int:
    """Past a length-prefixed string or byte array."""
    size, pos = read_varuint(data, pos)
    if pos + size > len(data):
        raise IndexError("bytes past the end of the update")
    return pos + size


def _skip_any(data: bytes, pos: int) -> int:
    """Past one lib0 ``Any`` value, nested maps and arrays included (no recursion: a peer
    chooses the depth)."""
    frames = [[1, 0]]  # per open container: values left to skip, whether each has a key
    while frames:
        frame = frames[-1]
        if not frame[0]:
            frames.pop()
            continue
        frame[0] -= 1
        if frame[1]:
            pos = _skip_bytes(data, pos)  # a map entry's key
        tag = data[pos]
        pos += 1
        if tag in _ANY_FIXED:
            pos += _ANY_FIXED[tag]
        elif tag == _ANY_VARINT:
            pos = read_varuint(data, pos)[1]  # signed, but continued the same way
        elif tag in (_ANY_STRING, _ANY_BYTES):
            pos = _skip_bytes(data, pos)
        elif tag in (_ANY_MAP, _ANY_ARRAY):
            count, pos = read_varuint(data, pos)
            frames.append([count, 1 if tag == _ANY_MAP else 0])
        else:
            raise _Unreadable(f"value tag {tag} is not read here")
    if pos > len(data):
        raise IndexError("value past the end of the update")
    return pos
