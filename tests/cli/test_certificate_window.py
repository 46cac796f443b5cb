"""Through the real CLI: a lane whose clock is outside its certificate's validity is refused
every write in one line and writes nothing (it used to answer ``sale lane1:1``, exit 0, for a
sale no replica would count, and give the next sale the same id)."""

from __future__ import annotations

from lanesync.core.identity import Role
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import wall_clock_ms

from .helpers import Cli, assert_error, digest_of

DAY_MS = 86_400_000


def test_a_lane_whose_clock_is_before_its_certificate_writes_nothing(cli: Cli) -> None:
    store = StoreDirectory.init(cli.cwd / "store", "s1")
    # Enrolled by a machine whose clock is three days ahead: the certificate is valid from two
    # days after this lane's clock.
    store.enroll(cli.cwd / "lane1", "lane1", Role.MANAGER, wall_clock_ms() + 3 * DAY_MS, 30)
    before = digest_of(cli.cwd / "lane1")
    for command in (
        ("sell", "lane1", "milk:1:149"),
        ("receive", "lane1", "milk", "5"),
        ("price", "lane1", "milk", "149"),
    ):
        assert_error(cli.run(*command), "is not valid before")
    assert digest_of(cli.cwd / "lane1") == before
    assert cli.json("sales", "lane1") == {"sales": [], "next_cursor": None}
    assert cli.ok("verify", "lane1").returncode == 0
