"""The change feed's events as data (core.feed): record events, status diffs, the wire frame
and the resume header."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.feed import (
    KEEPALIVE_FRAME,
    EventType,
    FeedEvent,
    Origin,
    StatusSnapshot,
    parse_last_event_id,
    record_event,
    revocation_event,
    status_events,
)
from lanesync.core.ids import RecordId, Sku, TerminalId
from lanesync.core.records import Adjustment, Body, PriceChange, Receipt, Sale, SaleLine, Void
from lanesync.errors import UsageError

from .helpers import NOW, record_chain

MILK = Sku("milk")
BODIES: list[tuple[Body, EventType, dict[str, object]]] = [
    (
        Sale.of((SaleLine(MILK, 2, 150), SaleLine(Sku("bread"), 1, 299))),
        EventType.SALE,
        {
            "lines": [
                {"sku": "milk", "qty": 2, "unit_cents": 150},
                {"sku": "bread", "qty": 1, "unit_cents": 299},
            ],
            "total_cents": 599,
        },
    ),
    (Void(RecordId(TerminalId("lane1"), 1)), EventType.VOID, {"sale_id": "lane1:1"}),
    (Receipt(MILK, 40), EventType.RECEIPT, {"sku": "milk", "qty": 40}),
    (
        Adjustment(MILK, -3, "broken"),
        EventType.ADJUSTMENT,
        {"sku": "milk", "delta": -3, "reason": "broken"},
    ),
    (PriceChange(MILK, 175), EventType.PRICE, {"sku": "milk", "unit_cents": 175}),
]


@pytest.mark.parametrize(("body", "kind", "fields"), BODIES, ids=[k for _, k, _ in BODIES])
def test_a_record_event_has_the_common_fields_and_those_of_its_kind(
    body: Body, kind: EventType, fields: dict[str, object]
) -> None:
    (record,) = record_chain(SigningKey.generate(), "lane1", [body])
    event = record_event(7, record, "2026-11-18", Origin.PEER)
    assert event.event_id == 7
    assert event.type is kind
    assert event.data == {
        "id": "lane1:1",
        "terminal": "lane1",
        "seq": 1,
        "kind": kind.value,
        "at_ms": NOW,
        "day": "2026-11-18",
        "origin": "peer",
        **fields,
    }


def test_the_frame_is_one_sse_event_with_one_data_line() -> None:
    (record,) = record_chain(SigningKey.generate(), "lane1", [Adjustment(MILK, 1, "a\nb")])
    frame = record_event(12, record, "2026-11-18", Origin.LOCAL).frame().decode()
    assert frame.endswith("\n\n")
    lines = frame[:-2].split("\n")
    assert lines[:2] == ["id: 12", "event: adjustment"]
    assert len(lines) == 3  # a newline inside a field stays escaped in the one data line
    assert json.loads(lines[2].removeprefix("data: "))["reason"] == "a\nb"
    status = FeedEvent(None, EventType.LEADER, {"leader": "lane1", "term": 2}).frame()
    assert status == b'event: leader\ndata: {"leader":"lane1","term":2}\n\n'  # no id line
    assert KEEPALIVE_FRAME.startswith(b":")


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_every_event_id_reads_back(event_id: int) -> None:
    assert parse_last_event_id(str(event_id)) == event_id
    assert parse_last_event_id(f" {event_id} ") == event_id


@pytest.mark.parametrize("header", [None, "", "  "])
def test_no_last_event_id_means_from_the_start(header: str | None) -> None:
    assert parse_last_event_id(header) == 0


@pytest.mark.parametrize("header", ["abc", "-1", "1.5", "1e3", "9" * 20, "١٢"])
def test_a_last_event_id_not_ours_is_refused(header: str) -> None:
    with pytest.raises(UsageError, match="Last-Event-ID"):
        parse_last_event_id(header)


def snapshot(
    peers: Iterable[str] = (),
    leader: str | None = "a",
    term: int = 1,
    cloud_up: bool | None = None,
    oversold: tuple[str, ...] = (),
) -> StatusSnapshot:
    return StatusSnapshot(frozenset(peers), leader, term, cloud_up, oversold)


def test_a_connect_gets_the_whole_status() -> None:
    events = status_events(None, snapshot({"c", "b"}, cloud_up=False, oversold=("milk",)))
    assert [(e.type.value, e.data) for e in events] == [
        ("peer_up", {"peer": "b", "connected": True}),
        ("peer_up", {"peer": "c", "connected": True}),
        ("leader", {"leader": "a", "term": 1}),
        ("cloud_link", {"up": False}),
        ("oversold", {"skus": ["milk"]}),
    ]
    assert all(e.event_id is None for e in events)
    # A lane without a cloud says nothing about one.
    assert EventType.CLOUD_LINK not in {e.type for e in status_events(None, snapshot())}


def test_only_what_changed_is_sent() -> None:
    before = snapshot({"b", "c"}, cloud_up=True)
    assert status_events(before, before) == []
    after = snapshot({"c", "d"}, leader="c", term=2, cloud_up=False, oversold=("milk",))
    assert [(e.type.value, e.data) for e in status_events(before, after)] == [
        ("peer_down", {"peer": "b", "connected": False}),
        ("peer_up", {"peer": "d", "connected": True}),
        ("leader", {"leader": "c", "term": 2}),
        ("cloud_link", {"up": False}),
        ("oversold", {"skus": ["milk"]}),
    ]


def test_a_revocation_event_names_the_cut() -> None:
    event = revocation_event(9, "lane2", 4, b"\x01\x02", "ab12", NOW, "2026-11-18", Origin.LOCAL)
    assert (event.event_id, event.type) == (9, EventType.REVOCATION)
    assert event.data == {
        "id": "revocation:lane2",
        "terminal": "lane2",
        "seq": 4,
        "kind": "revocation",
        "at_ms": NOW,
        "day": "2026-11-18",
        "origin": "local",
        "after_seq": 4,
        "hash": "0102",
        "key": "ab12",
    }
    whole = revocation_event(1, "lane2", 0, b"", None, NOW, "2026-11-18", Origin.PEER).data
    assert (whole["hash"], whole["key"]) == (None, None)
