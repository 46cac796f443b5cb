"""A node with a merge budget merges a large catch-up over several turns, to the same state."""

from __future__ import annotations

import pytest

from lanesync.core.mergequeue import MergeQueue
from lanesync.core.node import Node
from lanesync.core.records import Sale, SaleLine

from .helpers import Store
from .node_network import ACK_DELAY_MS, ANTI_ENTROPY_MS, NodeNetwork, make_nodes, seeded_bytes

BUDGET = 8 * 1024  # a 600-sale catch-up is ~90 KB: a dozen turns or so


def budgeted(node: Node, budget: int = BUDGET) -> Node:
    """The same replica behind a node with a merge budget (as the cloud's nodes have)."""
    return Node(
        node.replica,
        random_bytes=seeded_bytes(7),
        anti_entropy_ms=ANTI_ENTROPY_MS,
        ack_delay_ms=ACK_DELAY_MS,
        merge_budget_bytes=budget,
    )


def writer_with_sales(count: int) -> tuple[NodeNetwork, Node]:
    """lane1 holding ``count`` sales written offline, and lane2 (budgeted) holding none."""
    _, (writer, reader) = make_nodes(Store(), ["lane1", "lane2"])
    for n in range(count):
        writer.replica.append(Sale.of((SaleLine("A", 1, 100 + n),)), 1_000 + n)
    reader = budgeted(reader)
    return NodeNetwork([writer, reader]), reader


def turns_until_merged(mesh: NodeNetwork, reader: Node) -> int:
    """Deliver everything, then give the reader turns while it asks for one at once."""
    turns = 0
    mesh.run()
    while (due := reader.next_deadline()) is not None and due <= mesh.now:
        turns += 1
        mesh.advance(0)
        mesh.run()
        assert turns < 1_000
    return turns


def test_a_catch_up_over_the_budget_is_merged_over_several_turns_to_the_same_state() -> None:
    mesh, reader = writer_with_sales(600)
    merged_per_turn: list[int] = []
    persisted = mesh.persisted[1]
    mesh.connect(0, 1)
    mesh.run()
    while (due := reader.next_deadline()) is not None and due <= mesh.now:
        mesh.advance(0)
        mesh.run()
        merged_per_turn.append(mesh.persisted[1] - persisted)
        persisted = mesh.persisted[1]

    assert len(merged_per_turn) >= 8  # ~90 KB in slices of about 8 KB
    assert reader.take_large_updates() == []  # nobody took it; all merged, none kept
    assert mesh.digests()[0] == mesh.digests()[1]
    assert reader.replica.views.accepted_count() == mesh.nodes[0].replica.views.accepted_count()


def test_the_peer_is_not_asked_again_while_its_catch_up_is_still_being_merged() -> None:
    # Each turn of the loop that merges takes longer than anti-entropy's interval here; asking
    # the writer then would have it send again the unmerged rest, which our state does not
    # show yet.
    mesh, reader = writer_with_sales(600)
    mesh.connect(0, 1)
    received = turns = 0
    while True:
        turns += 1
        received += mesh.turn()
        merging = (due := reader.next_deadline()) is not None and due <= mesh.now
        if not merging and mesh.digests()[0] == mesh.digests()[1]:
            break
        if merging:
            mesh.advance(ANTI_ENTROPY_MS + 1)
        assert turns < 200
    while mesh.in_flight:  # what was sent meanwhile counts too
        received += mesh.turn()

    one_copy = sum(len(update) for update in mesh.nodes[0].replica.updates_since({}).values())
    assert turns > 8
    assert received < 1.5 * one_copy
    assert mesh.digests()[0] == mesh.digests()[1]


def test_peers_deferred_behind_a_catch_up_are_asked_once_it_is_all_merged() -> None:
    _, (writer, reader, third) = make_nodes(Store(), ["lane1", "lane2", "lane3"])
    for n in range(400):
        writer.replica.append(Sale.of((SaleLine("A", 1, 100 + n),)), 1_000 + n)
    reader = budgeted(reader)
    mesh = NodeNetwork([writer, reader, third])
    mesh.connect(1, 0)  # asked first: its answer is the catch-up
    late = mesh.connect(1, 2)  # deferred behind it
    merging_turns = 0
    while mesh.in_flight:
        mesh.deliver(mesh.in_flight.pop(0))
        if reader.next_deadline() == mesh.now:  # slices are left to merge
            merging_turns += 1
            assert reader.links[late].state_request_deferred

    turns_until_merged(mesh, reader)

    assert merging_turns > 3
    assert not reader.links[late].state_request_deferred
    assert len(set(mesh.digests())) == 1


def test_without_a_budget_everything_received_is_merged_at_once() -> None:
    mesh, reader = writer_with_sales(600)
    mesh.nodes[1] = reader = budgeted(reader, budget=10**9)
    mesh.connect(0, 1)
    mesh.run()
    assert reader.next_deadline() != mesh.now or reader.next_deadline() is None
    assert mesh.digests()[0] == mesh.digests()[1]


def test_a_budget_below_one_byte_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        MergeQueue(0)
