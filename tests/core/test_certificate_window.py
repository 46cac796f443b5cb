"""A terminal signs nothing its own certificate does not cover at the record's time.

Every replica judges a record by the certificate valid at the record's timestamp
(``trust``); a record signed outside that window verifies nowhere. Found from the outside: a
lane whose clock was two days behind the enrolment (its certificate is valid from a day before
it) answered ``sale lane1:1``, exit 0, for a sale that never counted, and gave the next sale
the same id. The write must be refused instead, saying why, and change nothing."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from lanesync.core.identity import Role, issue_certificate, public_key_of
from lanesync.core.ids import Sku, TerminalId
from lanesync.core.records import Receipt
from lanesync.errors import PermissionDenied, TerminalRevoked

from .helpers import HOUR_MS, NOW, Store, no_problems

SKU = Sku("milk")
DAY_MS = 24 * HOUR_MS


@pytest.mark.parametrize(
    ("clock", "hint"),
    [(NOW - 2 * DAY_MS, "not valid before"), (NOW + 400 * DAY_MS, "expired")],
    ids=["clock behind the certificate", "certificate expired"],
)
def test_a_write_outside_the_certificate_is_refused_and_changes_nothing(
    clock: int, hint: str
) -> None:
    store = Store()
    key = SigningKey.generate()
    cert = issue_certificate(
        store.authority,
        store.store_id,
        TerminalId("lane1"),
        public_key_of(key),
        Role.CASHIER,
        NOW - DAY_MS,
        NOW + 365 * DAY_MS,
    )
    lane = store.terminal("lane1", key=key, cert=cert)
    digest = lane.replica.digest()
    with pytest.raises(PermissionDenied) as refused:
        lane.replica.append(Receipt(SKU, 5), clock)
    assert not isinstance(refused.value, TerminalRevoked)
    message = str(refused.value)
    assert "\n" not in message
    assert hint in message
    assert "clock" in message
    assert lane.replica.digest() == digest
    assert lane.replica.views.head(lane.name).seq == 0
    # Once the clock is right again, the first record is seq 1, and it counts everywhere.
    record, _ = lane.replica.append(Receipt(SKU, 5), NOW)
    assert record.seq == 1
    assert lane.replica.views.on_hand_of(SKU) == 5
    assert no_problems(lane.replica)


def test_a_renewed_certificate_held_by_the_replica_lets_the_lane_write_on() -> None:
    """``lanesync store renew`` publishes the renewal to a running lane, which goes on with
    the certificate it loaded at start until restarted: the renewal held in its config
    document verifies its records, so it must not refuse them."""
    store = Store()
    key = SigningKey.generate()
    lane1 = TerminalId("lane1")
    expiring = issue_certificate(
        store.authority, store.store_id, lane1, public_key_of(key), Role.CASHIER, 0, NOW
    )
    lane = store.terminal("lane1", key=key, cert=expiring)
    with pytest.raises(PermissionDenied, match="expired"):
        lane.replica.append(Receipt(SKU, 5), NOW + HOUR_MS)
    renewed = issue_certificate(
        store.authority, store.store_id, lane1, public_key_of(key), Role.CASHIER, 0, NOW + DAY_MS
    )
    lane.replica.publish_certificate(renewed, NOW + HOUR_MS)
    record, _ = lane.replica.append(Receipt(SKU, 5), NOW + HOUR_MS)
    assert record.seq == 1
    assert lane.replica.views.on_hand_of(SKU) == 5
    assert no_problems(lane.replica)
