"""The level and message of each node event (shell/logs.py); real daemons' logs are checked in
tests/mesh/test_logs.py and tests/cloud/test_logs.py."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lanesync.core.link import DUPLICATE_CONNECTION
from lanesync.shell.logs import LOG_LEVELS, node_event


def closed(peer: str | None, reason: str, *, by_peer: bool) -> dict[str, Any]:
    return {"peer": peer, "reason": reason, "by_peer": by_peer}


@pytest.mark.parametrize(
    ("event", "fields", "level", "says"),
    [
        ("peer.connected", {"peer": "lane2", "dialer": True}, logging.INFO, None),
        ("peer.closed", closed("lane2", "connection closed", by_peer=True), logging.INFO, None),
        ("peer.closed", closed("lane2", "shutting down", by_peer=False), logging.INFO, None),
        ("peer.closed", closed("lane2", DUPLICATE_CONNECTION, by_peer=False), logging.DEBUG, None),
        (
            "peer.closed",
            closed("lane2", "refused by peer: terminal r is revoked", by_peer=True),
            logging.WARNING,
            "the peer refused this terminal",
        ),
        (
            "peer.closed",
            closed("cloud", "connection closed", by_peer=True),
            logging.WARNING,
            "the link to the cloud is lost",
        ),
        # leadership moved: this lane closed its own cloud link, as it should
        ("peer.closed", closed("cloud", "no longer the leader", by_peer=False), logging.INFO, None),
        (
            "peer.closed",
            closed(None, "terminal r is revoked", by_peer=False),
            logging.WARNING,
            "this lane refused the connection",
        ),
        # a stranger that hung up during the handshake: nothing to act on
        ("peer.closed", closed(None, "connection closed", by_peer=True), logging.INFO, None),
        (
            "peer.violation",
            {"reason": "bad update from lane2"},
            logging.WARNING,
            "a peer sent what the protocol forbids",
        ),
    ],
)
def test_node_events_have_the_level_they_mean(
    event: str, fields: dict[str, Any], level: int, says: str | None
) -> None:
    got_level, message = node_event(event, fields)
    assert got_level == level
    # the event and its fields first, as key=value: what operators and tests grep for
    assert message.startswith(" ".join([event, *(f"{k}={v}" for k, v in fields.items())]))
    if says is None:
        assert ": " not in message.split(" by_peer=")[-1]
    else:
        assert says in message


def test_log_levels_are_the_four_documented() -> None:
    assert list(LOG_LEVELS) == ["debug", "info", "warning", "error"]
    assert sorted(LOG_LEVELS.values()) == list(LOG_LEVELS.values())
