"""The isolation rule (core/isolation.py): when a lane's status says ``isolated_since``.

Time is passed in; connections are reported as the shell reports them (verified, ended with the
core's close reason). The last test runs a real handshake between two nodes, so the refusal
the rule recognises is the one a peer holding the revocation actually sends.
"""

from __future__ import annotations

import pytest

from lanesync.core.identity import issue_revocation
from lanesync.core.ids import TerminalId
from lanesync.core.isolation import Isolation, refused_as_revoked

from .helpers import NOW, Store
from .node_network import NodeNetwork, make_nodes

LANE = TerminalId("lane3")
BOUND_MS = 60_000
REFUSAL = "refused by peer: terminal lane3 is revoked"


def test_a_lane_that_never_connects_is_isolated_since_its_start_once_the_bound_passed() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    assert rule.isolated_since(NOW) is None
    assert rule.isolated_since(NOW + BOUND_MS) is None  # "longer than" the bound
    assert rule.isolated_since(NOW + BOUND_MS + 1) == NOW
    assert not rule.connected


def test_an_open_connection_is_hearing_however_long_it_lasts() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    rule.opened(1, NOW + 5)
    assert rule.connected
    assert rule.isolated_since(NOW + 100 * BOUND_MS) is None
    assert not rule.closed(1, "transport closed (1006)", NOW + 100 * BOUND_MS)
    closed_at = NOW + 100 * BOUND_MS
    assert rule.isolated_since(closed_at + BOUND_MS) is None
    assert rule.isolated_since(closed_at + BOUND_MS + 1) == closed_at


def test_one_connection_left_open_keeps_the_lane_in_touch() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    rule.opened(1, NOW)
    rule.opened(2, NOW)
    rule.closed(1, "duplicate connection", NOW + 1)
    assert rule.isolated_since(NOW + 10 * BOUND_MS) is None
    rule.closed(2, "transport closed (1006)", NOW + 2 * BOUND_MS)
    assert rule.isolated_since(NOW + 3 * BOUND_MS + 1) == NOW + 2 * BOUND_MS


def test_a_handshake_that_never_completes_is_not_hearing_anyone() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    for conn_id in range(1, 5):  # refused for other reasons, or timed out
        assert not rule.closed(conn_id, "handshake not completed in time", NOW + conn_id)
    assert rule.isolated_since(NOW + BOUND_MS + 1) == NOW


def test_refused_as_revoked_isolates_at_once_and_for_good() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    rule.opened(1, NOW)
    assert rule.closed(2, REFUSAL, NOW + 10)  # the first refusal is news
    assert not rule.closed(3, REFUSAL, NOW + 20)  # the next ones are not
    assert rule.isolated_since(NOW + 10) == NOW + 10
    rule.opened(4, NOW + 30)  # a peer that has not heard of the revocation yet
    assert rule.isolated_since(NOW + 40) == NOW + 10
    assert rule.refused_ms == NOW + 10


def test_isolated_since_is_the_earlier_moment() -> None:
    rule = Isolation(LANE, NOW, BOUND_MS)
    rule.closed(1, REFUSAL, NOW + 3 * BOUND_MS)
    assert rule.isolated_since(NOW + 3 * BOUND_MS) == NOW  # silent since the start already


@pytest.mark.parametrize(
    "reason",
    [
        "refused by peer: terminal lane33 is revoked",  # another terminal's revocation
        "refused by peer: terminal lane is revoked",
        "terminal lane3 is revoked",  # without the prefix of a refusal received
        "refused by peer: peer certificate rejected: bad signature",
        "transport closed (1008)",
    ],
)
def test_other_closes_are_not_a_revocation(reason: str) -> None:
    assert not refused_as_revoked(reason, LANE)
    rule = Isolation(LANE, NOW, BOUND_MS)
    assert not rule.closed(1, reason, NOW)
    assert rule.isolated_since(NOW + 1) is None


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Isolation(LANE, NOW, 0)


def test_the_refusal_a_revoked_lane_meets_is_recognised() -> None:
    store = Store()
    terminals, nodes = make_nodes(store, ["lane1", "lane3"])
    revocation = issue_revocation(store.authority, store.store_id, LANE, 0)
    terminals[0].replica.publish_revocation(revocation, NOW)
    mesh = NodeNetwork(nodes)
    conn = mesh.connect(1, 0)
    mesh.run()
    reasons = mesh.reasons(1)  # how lane3's own node closed the connection
    assert reasons, mesh.closures
    rule = Isolation(LANE, NOW, BOUND_MS)
    assert any(rule.closed(conn, reason, NOW) for reason in reasons), reasons
    assert rule.isolated_since(NOW) == NOW
    # lane1 closed it for a reason of its own, which is not lane1's revocation
    assert not any(refused_as_revoked(r, TerminalId("lane1")) for r in mesh.reasons(0))
