"""A terminal that holds its own revocation signs nothing more (``Replica.revoked``,
``check_writable``), however the revocation reached it, and is told why in one line."""

from __future__ import annotations

import pytest

from lanesync.core.identity import Role, issue_revocation
from lanesync.core.ids import CLOUD_TERMINAL_ID, Sku, TerminalId
from lanesync.core.records import PriceChange, Receipt
from lanesync.errors import PermissionDenied, TerminalRevoked

from .helpers import NOW, Store, restarted, sync
from .node_network import NodeNetwork, make_nodes

SKU = Sku("milk")


@pytest.mark.parametrize("reaches", ["published here", "synced from a peer", "after a restart"])
def test_a_revoked_terminal_refuses_to_append(reaches: str) -> None:
    store = Store()
    lane1, lane3 = store.terminal("lane1"), store.terminal("lane3")
    first, _ = lane3.replica.append(Receipt(SKU, 5), NOW)
    # the store accepts lane3's first record and nothing after it
    revocation = issue_revocation(store.authority, store.store_id, lane3.name, 1, first.hash)
    replica = lane3.replica
    if reaches == "published here":
        replica.publish_revocation(revocation, NOW + 20)
    else:
        lane1.replica.publish_revocation(revocation, NOW + 20)
        sync(lane1.replica, replica, NOW + 20)
        if reaches == "after a restart":
            replica = restarted(replica, now_ms=NOW + 30)
    assert replica.revoked()
    digest, head = replica.digest(), replica.views.head(lane3.name)
    with pytest.raises(TerminalRevoked) as refused:
        replica.append(Receipt(SKU, 1), NOW + 40)
    assert isinstance(refused.value, PermissionDenied)  # the API's 403
    message = str(refused.value)
    assert "\n" not in message
    assert "lane3 is revoked" in message
    assert "enroll a replacement" in message
    assert replica.digest() == digest
    assert replica.views.head(lane3.name) == head
    assert replica.views.on_hand_of(SKU) == 5  # its record before the revocation still counts


def test_another_terminals_revocation_changes_nothing_here() -> None:
    store = Store()
    lane1, lane3 = store.terminal("lane1"), store.terminal("lane3")
    revocation = issue_revocation(store.authority, store.store_id, lane1.name, 0)
    lane3.replica.publish_revocation(revocation, NOW)
    assert not lane3.replica.revoked()
    lane3.replica.check_writable()
    record, _ = lane3.replica.append(Receipt(SKU, 1), NOW + 1)
    assert record.seq == 1


def test_a_replica_without_an_identity_is_never_revoked() -> None:
    store = Store()
    assert not store.observer().revoked()


@pytest.mark.parametrize("arrives", ["published locally", "relayed by a peer"])
def test_a_connected_terminal_learns_its_revocation_as_it_is_cut_off(arrives: str) -> None:
    """The peer that cuts a revoked terminal off sends it the config document first: the
    terminal then holds its revocation and refuses to write, though nobody accepts it again."""
    store = Store()
    terminals, nodes = make_nodes(store, ["lane1", "lane2", "lane3"])
    mesh = NodeNetwork(nodes)
    cut = mesh.connect(0, 1)
    mesh.connect(0, 2)
    mesh.run()
    lane2 = terminals[1].replica
    revocation = issue_revocation(store.authority, store.store_id, TerminalId("lane2"), 0)
    origin = 0 if arrives == "published locally" else 2
    change = terminals[origin].replica.publish_revocation(revocation, mesh.now)
    nodes[origin].local_change(change, mesh.now)
    if origin == 0:
        nodes[0].request_sync(mesh.now)
    mesh.collect()
    mesh.run()
    assert cut not in nodes[0].links
    assert lane2.revoked()
    with pytest.raises(TerminalRevoked):
        lane2.append(Receipt(SKU, 1), mesh.now + 1)
    # nothing but the config document went to it: a sale made now never reaches it
    mesh.append(0, Receipt(SKU, 7))
    mesh.run()
    assert lane2.views.on_hand_of(SKU) is None


def test_a_revoked_cloud_is_told_to_certify_a_new_cloud_key_not_to_enroll_a_lane() -> None:
    """A cloud is not enrolled (``enroll --replaces cloud`` refuses it): the way on is a new
    cloud key certified by the store (docs/how-to/cloud.md)."""
    store = Store()
    cloud = store.terminal(CLOUD_TERMINAL_ID, Role.CLOUD)
    revocation = issue_revocation(
        store.authority, store.store_id, cloud.name, 0, key=cloud.cert.public_key
    )
    cloud.replica.publish_revocation(revocation, NOW + 10)
    with pytest.raises(TerminalRevoked) as refused:
        cloud.replica.append(PriceChange(SKU, 149), NOW + 20)
    message = str(refused.value)
    assert "\n" not in message
    assert "certify-cloud" in message
    assert "enroll" not in message
