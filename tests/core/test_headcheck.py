"""The first-write check (core/headcheck.py): writes wait for a peer's answer, or for the bound,
and the first write made without an answer is remembered."""

from __future__ import annotations

import pytest

from lanesync.core.headcheck import HeadCheck, HeadState
from lanesync.core.ids import Sku
from lanesync.core.node import Node
from lanesync.core.records import Receipt
from lanesync.core.replica import Replica

from .helpers import NOW, Store, no_problems
from .node_network import NodeNetwork, make_nodes

WAIT_MS = 3_000
SKU = Sku("milk")


def test_writes_wait_until_a_peer_answers() -> None:
    check = HeadCheck(NOW, WAIT_MS)
    assert not check.may_write(NOW)
    assert check.wait_ms(NOW + 1_000) == WAIT_MS - 1_000
    assert check.next_deadline() == NOW + WAIT_MS
    check.answered()
    assert check.state is HeadState.CONFIRMED
    assert check.may_write(NOW + 1)
    assert check.next_deadline() is None
    check.wrote(NOW + 1)
    assert check.unheard_write_ms is None


def test_writes_go_ahead_once_the_wait_ran_out_and_the_first_is_remembered() -> None:
    check = HeadCheck(NOW, WAIT_MS)
    assert not check.may_write(NOW + WAIT_MS - 1)
    check.handle_timer(NOW + WAIT_MS)
    assert check.state is HeadState.UNHEARD
    assert check.next_deadline() is None
    assert check.may_write(NOW + WAIT_MS)
    check.wrote(NOW + WAIT_MS + 5)
    check.wrote(NOW + WAIT_MS + 9)
    assert check.unheard_write_ms == NOW + WAIT_MS + 5
    check.answered()  # too late: the write went out without an answer
    assert check.unheard_write_ms == NOW + WAIT_MS + 5


def test_an_answer_after_the_wait_but_before_any_write_leaves_nothing_to_report() -> None:
    check = HeadCheck(NOW, WAIT_MS)
    check.handle_timer(NOW + WAIT_MS)
    check.answered()
    check.wrote(NOW + WAIT_MS + 1)
    assert check.unheard_write_ms is None


def test_a_wait_of_zero_skips_the_check_and_says_so_at_the_first_write() -> None:
    check = HeadCheck(NOW, 0)
    assert check.state is HeadState.SKIPPED
    assert check.may_write(NOW)
    assert check.next_deadline() is None
    check.answered()  # no state to confirm: the check was not made
    assert check.state is HeadState.SKIPPED
    check.wrote(NOW + 2)
    assert check.unheard_write_ms == NOW + 2


def test_a_negative_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        HeadCheck(NOW, -1)


def test_a_restored_lane_takes_its_later_head_from_the_first_answer() -> None:
    """The node's side of the check: ``caught_up`` turns True once a peer's answer is merged,
    and by then the replica restored from an old copy holds its own later records."""
    store = Store()
    terminals, nodes = make_nodes(store, ["lane1", "lane3"])
    lane3 = terminals[1]
    mesh = NodeNetwork(nodes)
    conn = mesh.connect(0, 1)
    mesh.run()
    mesh.append(1, Receipt(SKU, 5))
    backup = {name: [lane3.replica.full_state(name)] for name in lane3.replica.doc_names()}
    mesh.append(1, Receipt(SKU, 1))
    mesh.append(1, Receipt(SKU, 1))
    mesh.run()
    assert terminals[0].replica.views.head(lane3.name).seq == 3
    mesh.drop_transport(conn)

    restored = Replica(store.identity, store.client_id(), lane3.replica.me)
    restored.restore(backup, (), mesh.now)
    node = Node(restored)
    assert restored.views.head(lane3.name).seq == 1
    assert not node.caught_up
    again = NodeNetwork([nodes[0], node], now_ms=mesh.now)
    again.connect(1, 0)
    again.run()
    assert node.caught_up
    assert restored.views.head(lane3.name).seq == 3
    record, change = restored.append(Receipt(SKU, 1), again.now + 1)
    assert record.seq == 4
    node.local_change(change, again.now + 1)
    again.collect()
    again.run()
    assert terminals[0].replica.views.head(lane3.name).seq == 4
    assert no_problems(terminals[0].replica)
    assert terminals[0].replica.views.on_hand_of(SKU) == 8


def test_a_node_alone_is_never_caught_up() -> None:
    store = Store()
    _, nodes = make_nodes(store, ["lane1", "lane3"])
    mesh = NodeNetwork(nodes)
    mesh.connect(0, 1)
    mesh.take()  # the hellos are lost: the handshake never completes
    mesh.advance(10_000)
    mesh.run()
    assert not nodes[0].caught_up
    assert not nodes[1].caught_up
