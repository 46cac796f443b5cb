"""A terminal that holds its own revocation signs nothing more (``Replica.revoked``,
``check_writable``), however the revocation reached it, and is told why in one line."""

from __future__ import annotations

import pytest

from lanesync.core.identity import issue_revocation
from lanesync.core.ids import Sku
from lanesync.core.records import Receipt
from lanesync.errors import PermissionDenied, TerminalRevoked

from .helpers import NOW, Store, restarted, sync

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
