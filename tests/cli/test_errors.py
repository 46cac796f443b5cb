"""Bad input on the command line: one clear error line, a non-zero exit, nothing changed.

Every case runs on a fresh copy of the shop (see ``conftest``). A lanesync refusal must exit 1
with exactly one stderr line starting with ``error: `` (and nothing on stdout, so ``--json``
readers never parse half an answer); a malformed command line may instead get click's usage
block and exit 2. Either way: no traceback, no file appears, changes or disappears (databases
and locks excepted), and the digest of the terminal involved is unchanged afterwards. (The
digest is computed in the test process: it is the value ``lanesync digest`` prints, which the
template fixture checks, and a second process per case would double the suite's runtime.)
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Shop
from .helpers import assert_error, assert_usage_error, digest_of, tree

NOT_A_TERMINAL = "is not a terminal directory (run `lanesync enroll` first)"
# A refusal needs no waiting: nothing is locked here. (Far above one run, even on a busy box;
# far below the 10-15 s a command waits for a busy directory or a starting daemon.)
REFUSED_WITHIN_S = 8.0
MAX_LINE = "gold:1000000:100000000000"  # the largest quantity at the largest unit price


def error(name: str, *args: str, says: str | None, terminal: str | None = "lane1") -> Any:
    """A command lanesync refuses (exit 1); ``terminal``'s digest is checked afterwards."""
    return pytest.param(args, False, says, terminal, id=name)


def usage(name: str, *args: str, says: str | None = None) -> Any:
    """A command line click refuses (exit 2) before any lanesync code runs."""
    return pytest.param(args, True, says, None, id=name)


SALES = [
    error("sell-no-qty", "sell", "lane1", "milk", says="bad sale line 'milk': expected SKU:QTY"),
    error("sell-qty-not-int", "sell", "lane1", "milk:x", says="bad sale line 'milk:x'"),
    error("sell-price-not-int", "sell", "lane1", "milk:1:abc", says="bad sale line 'milk:1:abc'"),
    error(
        "sell-qty-zero",
        *("sell", "lane1", "milk:0:100"),
        says="quantity must be between 1 and 1000000, got 0",
    ),
    error(
        "sell-price-too-big",
        *("sell", "lane1", "milk:1:100000000001"),
        says="unit price must be between 0 and 100000000000 cents",
    ),
    error("sell-bad-sku", "sell", "lane1", "bad sku!:1:1", says="invalid SKU 'bad sku!'"),
    error(
        "sell-unknown-price",
        *("sell", "lane1", "eggs:1"),
        says="no catalog price known for SKU 'eggs'",
    ),
    error(
        "sell-cashier-unknown-price",
        *("sell", "lane2", "eggs:1", "--json"),
        says="no catalog price known for SKU 'eggs'",
        terminal="lane2",
    ),
    # one bad line refuses the whole sale: the good line before it is not written either
    error(
        "sell-good-then-unpriced",
        *("sell", "lane1", "milk:1", "eggs:2"),
        says="no catalog price known for SKU 'eggs'",
    ),
    usage("sell-no-lines", "sell", "lane1", says="missing argument 'LINES...'"),
    # Error lines of 5000+ characters (the 80 columns rich sees must not wrap them); these were
    # a ValueError traceback (int() of more than 4300 digits) until the parser was fixed.
    error("sell-qty-5000-digits", "sell", "lane1", "milk:" + "1" * 5000, says=None),
    error("sell-price-5000-digits", "sell", "lane1", "milk:1:" + "9" * 5000, says=None),
]

PRICES = [
    error(
        "price-by-cashier",
        *("price", "lane2", "milk", "100"),
        says="a cashier terminal may not set prices",
        terminal="lane2",
    ),
    error(
        "price-too-big",
        *("price", "lane1", "milk", "100000000001"),
        says="unit price must be between 0 and 100000000000 cents",
    ),
    error("price-negative", "price", "lane1", "milk", "-5", says="unit price must be between"),
]

VOIDS = [
    error("void-unknown", "void", "lane1", "lane1:99", says="no sale lane1:99 is known"),
    error("void-not-a-sale", "void", "lane1", "lane1:2", says="no sale lane1:2 is known"),
    error("void-malformed", "void", "lane1", "garbage", says="invalid record id 'garbage'"),
    error("void-twice", "void", "lane1", "lane1:4", says="sale lane1:4 is already voided"),
]

RECEIPTS = [
    error(
        "receive-zero",
        *("receive", "lane1", "milk", "0"),
        says="quantity must be between 1 and 1000000, got 0",
    ),
    # click reads "-1" as an unknown option ("No such option: -1"): exit 2, not a crash
    error("receive-negative", "receive", "lane1", "milk", "-1", says="quantity must be between"),
]

ADJUSTMENTS = [
    error(
        "adjust-zero",
        *("adjust", "lane1", "milk", "0", "--reason", "recount"),
        says="an adjustment must be non-zero",
    ),
    error(
        "adjust-blank-reason",
        *("adjust", "lane1", "milk", "3", "--reason", "   "),
        says="an adjustment needs a reason of 1 to 200 characters",
    ),
    usage("adjust-no-reason", "adjust", "lane1", "milk", "-3", says="missing option '--reason'"),
]

STOCK = [
    error("stock-bad-sku", "stock", "lane1", "bad sku!", "--json", says="invalid SKU 'bad sku!'"),
]

JOURNAL = [
    error(
        "sales-bad-day", "sales", "lane1", "--day", "2026-02-30", says="invalid day '2026-02-30'"
    ),
    error("sales-limit-zero", "sales", "lane1", "--limit", "0", says="limit must be 1 to 1000"),
    error("sales-limit-huge", "sales", "lane1", "--limit", "1001", says="limit must be 1 to 1000"),
    error("sales-bad-cursor", "sales", "lane1", "--cursor", "abc!", says="invalid cursor"),
    error("sales-bad-terminal", "sales", "lane1", "--terminal", "a b", says="invalid terminal id"),
    error("sales-store", "sales", "store", says="store " + NOT_A_TERMINAL, terminal=None),
    usage("sales-limit-not-int", "sales", "lane1", "--limit", "ten", says="is not a valid integer"),
]

NOT_TERMINALS = [
    error("sell-plain", "sell", "plain", "milk:1:1", says="plain " + NOT_A_TERMINAL, terminal=None),
    error("stock-store", "stock", "store", "--json", says="store " + NOT_A_TERMINAL, terminal=None),
    error("digest-plain", "digest", "plain", says=NOT_A_TERMINAL, terminal=None),
    error("export-plain", "export", "plain", "out.bundle", says=NOT_A_TERMINAL, terminal=None),
    error("import-plain", "import", "plain", "lane1.bundle", says=NOT_A_TERMINAL, terminal=None),
]

FILES = [
    error(
        "export-into-missing-dir",
        *("export", "lane1", "nowhere/out.bundle"),
        says="error: nowhere/out.bundle.tmp: no such file or directory",
    ),
    usage("import-missing", "import", "lane1", "missing.bundle", says="does not exist"),
]

STORES = [
    error(
        "store-init-twice",
        *("store", "init", "store", "--store-id", "shop-1"),
        says="store already holds a store (found store.key)",
        terminal=None,
    ),
    error(
        "store-init-bad-zone",
        *("store", "init", "store2", "--store-id", "s2", "--timezone", "Mars/Olympus_Mons"),
        says="unknown time zone 'Mars/Olympus_Mons'",
        terminal=None,
    ),
    error(
        "enroll-duplicate-id",
        *("enroll", "store", "lane9", "--terminal-id", "lane1"),
        says="terminal id 'lane1' is already enrolled in store shop-1",
        terminal=None,
    ),
    error(
        "enroll-into-terminal",
        *("enroll", "store", "lane1", "--terminal-id", "lane9"),
        says="lane1 is not empty",
        terminal=None,
    ),
]

# Found by these tests; failing until src is fixed (see each comment).
FOUND = [
    # Each line is within limits but the total exceeds a signed 64-bit integer: build_sale does
    # not check it, make_record's validate_body raises ValueError("total out of range") and
    # Terminal.write lets it escape as a traceback.
    error("sell-total-overflows-int64", "sell", "lane1", *[MAX_LINE] * 93, says=None),
    # rich replaces emoji codes even with markup=False: the line quotes 'x🐮', not the input.
    error("sell-quotes-input-verbatim", "sell", "lane1", "x:cow:", says="bad sale line 'x:cow:'"),
    # A path is printed raw inside the message: a newline in it splits the error line in two.
    error("stock-newline-in-path", "stock", "bad\nname", says=NOT_A_TERMINAL, terminal=None),
    # The daemon probe (shell.runtime._daemon_alive) runs before the directory is checked: it
    # creates a stray "lock" file in any existing directory (see the NOT_TERMINALS cases, whose
    # tree check fails on plain/lock and store/lock), and for a directory that does not exist
    # it takes "cannot open lock file" for a live daemon and waits STARTUP_WAIT_S (15 s).
    error("stock-missing-dir", "stock", "nowhere", says="nowhere " + NOT_A_TERMINAL, terminal=None),
]

CASES = [
    *SALES,
    *PRICES,
    *VOIDS,
    *RECEIPTS,
    *ADJUSTMENTS,
    *STOCK,
    *JOURNAL,
    *NOT_TERMINALS,
    *FILES,
    *STORES,
    *FOUND,
]


@pytest.mark.parametrize(("args", "is_usage", "says", "terminal"), CASES)
def test_bad_input_is_refused_and_changes_nothing(
    shop: Shop, args: tuple[str, ...], is_usage: bool, says: str | None, terminal: str | None
) -> None:
    if "bad\nname" in args:
        shop.path("bad\nname").mkdir()
    before = tree(shop.root)
    result = shop.cli.run(*args)
    if is_usage:
        assert_usage_error(result, says)
    else:
        assert_error(result, says)
    assert tree(shop.root) == before
    if terminal is not None:
        assert digest_of(shop.path(terminal)) == shop.digests[terminal]
    assert result.elapsed_s < REFUSED_WITHIN_S, result.describe()


def test_refusals_leave_the_digest_lanesync_prints_unchanged(shop: Shop) -> None:
    """The same guarantee, checked with ``lanesync digest`` itself after a volley of refusals
    that reach the terminal (an unpriced line after a good one, a cashier's price, a double
    void)."""
    cli = shop.cli
    assert_error(cli.run("sell", "lane2", "milk:1", "eggs:1", "--json"), "no catalog price")
    assert_error(cli.run("price", "lane2", "milk", "1"), "may not set prices")
    assert_error(cli.run("void", "lane1", "lane1:4"), "already voided")
    assert cli.digest("lane1") == shop.digests["lane1"]
    assert cli.digest("lane2") == shop.digests["lane2"]
