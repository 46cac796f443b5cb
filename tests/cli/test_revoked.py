"""A lane that holds its own revocation (here: reached by a bundle) refuses every write.

The shop's cashier lane2 sells, lane1 imports that sale, the store revokes lane2 through
lane1, and lane1's bundle brings the revocation to lane2. From then on every command that
would sign a record on lane2 exits 1 with one ``error:`` line that says lane2 is revoked and
what to do, and changes nothing; its sale from before the revocation still counts, its status
says ``"revoked": true``, and it can still hand its records over (export).
"""

from __future__ import annotations

import pytest

from .conftest import Shop
from .helpers import assert_error, digest_of

REVOKED = "terminal lane2 is revoked by the store"
WHAT_TO_DO = "enroll a replacement terminal"


@pytest.fixture
def revoked(shop: Shop) -> Shop:
    cli = shop.cli
    assert cli.json("sell", "lane2", "milk:1") == {"sale_id": "lane2:1", "total": 149}
    cli.ok("export", "lane2", "lane2.bundle")
    cli.ok("import", "lane1", "lane2.bundle")
    assert cli.json("revoke", "store", "lane2", "--via", "lane1")["revoked"] == "lane2"
    status = cli.json("status", "lane2")
    assert status["revoked"] is False
    assert status["isolated_since"] is None
    cli.ok("export", "lane1", "revocation.bundle")
    cli.ok("import", "lane2", "revocation.bundle")  # no error line: learning it is not an error
    return shop


@pytest.mark.parametrize(
    "command",
    [
        ("sell", "lane2", "milk:1"),
        ("sell", "lane2", "milk:1", "--json"),
        ("receive", "lane2", "milk", "5"),
        ("adjust", "lane2", "milk", "-1", "--reason", "count"),
        ("void", "lane2", "lane2:1"),
        ("price", "lane2", "milk", "99"),  # a cashier may not anyway: it hears the bigger news
    ],
    ids=lambda c: " ".join(c[:1] + c[3:]),
)
def test_every_write_of_a_revoked_lane_fails_in_one_line(
    revoked: Shop, command: tuple[str, ...]
) -> None:
    before = digest_of(revoked.path("lane2"))
    for _ in range(2):  # again: a POS retrying gets the same answer
        result = revoked.cli.run(*command)
        assert_error(result, REVOKED)
        assert WHAT_TO_DO in result.stderr, result.describe()
    assert digest_of(revoked.path("lane2")) == before


def test_a_revoked_lane_says_so_and_keeps_what_it_sold_before(revoked: Shop) -> None:
    cli = revoked.cli
    status = cli.json("status", "lane2")
    assert status["revoked"] is True
    assert status["isolated_since"] is None  # not running: it hears nobody to judge by
    assert status["running"] is False
    assert "REVOKED" in cli.ok("status", "lane2").stdout
    # its sale from before the revocation counts, here and at the lane that revoked it
    for lane in ("lane1", "lane2"):
        assert cli.json("stock", lane, "milk")["items"] == [{"sku": "milk", "on_hand": 8}]
    # reads and handing its records over still work
    cli.ok("export", "lane2", "handover.bundle")
    assert cli.json("verify", "lane2")["ok"] is True
    assert cli.json("status", "lane1")["revoked"] is False
    assert cli.json("sell", "lane1", "milk:1")["sale_id"] == "lane1:6"
