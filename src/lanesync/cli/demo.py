"""``lanesync demo``: the offline flow of a store, end to end, in a few seconds.

Three lanes of one store receive stock, sell the same SKUs while they cannot talk to each other,
then swap signed bundles (as a USB stick would) until every lane holds the same state: equal
digests, and stock exactly received - sold + voided back on every lane. (Live networking
between lanes arrives with the mesh; this demo will then run lanes as processes.)
"""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from lanesync.core import bodies, zreport
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.records import Body, Sale
from lanesync.core.views import Views
from lanesync.errors import LanesyncError
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .output import console, money, print_z_report

LANES = (("lane1", Role.MANAGER), ("lane2", Role.CASHIER), ("lane3", Role.CASHIER))
RECEIVED = {"milk": 24, "bread": 12, "eggs": 30}
PRICES = {"milk": 149, "bread": 299, "eggs": 35}
# While apart, every lane sells milk: a shared counter updated by read-modify-write would keep
# only one lane's decrement (5 of 12 lost in a probe with pycrdt 0.14, 2026-11-26); lanesync
# keeps them all.
SALES_APART = {
    "lane1": [["milk:3", "bread:1"], ["eggs:12"]],
    "lane2": [["milk:5"], ["milk:2", "bread:2"]],
    "lane3": [["milk:4", "eggs:6"], ["bread:1:250"]],
}


def _price(item: str, cents: int, _: Views) -> Body:
    return bodies.build_price_change(Role.MANAGER, item, cents)


def _receipt(item: str, qty: int, _: Views) -> Body:
    return bodies.build_receipt(item, qty)


def _stock_table(title: str, terminals: dict[str, Terminal]) -> Table:
    table = Table(title=title)
    table.add_column("SKU")
    for name in terminals:
        table.add_column(name, justify="right")
    skus = sorted({s for t in terminals.values() for s in t.replica.views.on_hand()})
    for item in skus:
        row = [str(t.replica.views.on_hand_of(Sku(item))) for t in terminals.values()]
        table.add_row(item, *row)
    table.add_row("digest", *(t.digest()[:12] for t in terminals.values()), style="dim")
    return table


def _exchange(root: Path, terminals: dict[str, Terminal]) -> int:
    """Every lane exports what each other lane lacks (state file + export --since)."""
    moved = 0
    for src_name, src in terminals.items():
        for dst_name, dst in terminals.items():
            if src_name == dst_name:
                continue
            bundle = src.export_bundle(since=dst.state_file())
            (root / f"{src_name}-to-{dst_name}.bundle").write_bytes(bundle)
            dst.import_bundle(bundle)
            moved += len(bundle)
    return moved


def run_demo(work_dir: Path | None) -> dict[str, Any]:
    """Run the offline demo; returns its summary (``lanesync demo --offline --json``)."""
    with tempfile.TemporaryDirectory(prefix="lanesync-demo-") as tmp:
        root = work_dir or Path(tmp)
        return _run(root)


def _run(root: Path) -> dict[str, Any]:
    now = wall_clock_ms()
    store = StoreDirectory.init(root / "store", "demo-store")
    console.rule(
        Text.assemble(("lanesync demo", "bold"), ": one store, three lanes, no server"),
        characters="─",
    )
    console.print(f"store {store.identity.store_id} created in {root / 'store'}")
    terminals: dict[str, Terminal] = {}
    for name, role in LANES:
        store.enroll(root / name, name, role, now, 30)
        terminals[name] = Terminal.open(root / name)
        console.print(f"enrolled {name} as {role.value}")
    try:
        lane1 = terminals["lane1"]
        for item, cents in PRICES.items():
            lane1.write(partial(_price, item, cents))
        for item, qty in RECEIVED.items():
            lane1.write(partial(_receipt, item, qty))
        console.print("lane1 set prices and received stock; bundles carry it to the others")
        _exchange(root, terminals)

        sold: dict[str, int] = {}
        for name, sales in SALES_APART.items():
            for lines in sales:
                requests = [bodies.parse_line(text) for text in lines]
                record = terminals[name].write(partial(bodies.build_sale, requests=requests))
                for request in requests:
                    sold[request.sku] = sold.get(request.sku, 0) + request.qty
                total = record.body.total_cents if isinstance(record.body, Sale) else 0
                console.print(
                    f"  {name} sold {' '.join(lines)} -> sale {record.id} ({money(total)})"
                )
        # A customer brings the first basket of lane3 back: its units return to the shelf once.
        terminals["lane3"].write(partial(bodies.build_void, sale_id="lane3:1"))
        console.print("  lane3 voided sale lane3:1 (milk:4 eggs:6 go back on the shelf)")
        sold["milk"] -= 4
        sold["eggs"] -= 6
        console.print(_stock_table("While apart: each lane sees only its own sales", terminals))

        moved = _exchange(root, terminals)
        console.print(f"lanes swapped signed bundles: {moved} bytes in all")
        console.print(_stock_table("After the exchange", terminals))

        digests = {t.digest() for t in terminals.values()}
        expected = {item: RECEIVED[item] - sold.get(item, 0) for item in RECEIVED}
        exact = all(
            t.replica.views.on_hand_of(Sku(item)) == qty
            for t in terminals.values()
            for item, qty in expected.items()
        )
        clean = all(t.integrity()["ok"] for t in terminals.values())
        if len(digests) != 1 or not exact or not clean:
            raise LanesyncError(
                f"demo failed: converged={len(digests) == 1} exact={exact} verified={clean}"
            )
        digest = digests.pop()
        summary = ", ".join(f"{item} {qty}" for item, qty in sorted(expected.items()))
        console.print(
            f"converged: {len(terminals)} lanes, one digest "
            f"{digest[:16]}; stock exact ({summary} = received - sold + voided back); "
            "every journal verifies"
        )
        # Each lane closes the day; one more exchange and every lane prints the same report.
        for terminal in terminals.values():
            terminal.close_days(None)
        _exchange(root, terminals)
        day = zreport.default_day(terminals["lane1"].replica)
        reports = [zreport.z_report(t.replica, day) for t in terminals.values()]
        if not reports[0]["complete"] or any(r != reports[0] for r in reports):
            raise LanesyncError("demo failed: the lanes print different Z-reports")
        closed = {t.digest() for t in terminals.values()}
        if len(closed) != 1:
            raise LanesyncError("demo failed: the lanes differ after closing the day")
        digest = closed.pop()  # the summary's digest is the lanes' last state
        # Every lane holds the same complete day (one digest): each seals it, the day leaves
        # memory and the state exchange and lives on as an archive (no connected peer, no
        # cloud: a lane acknowledges its own days, as a daemon alone would).
        sealed = {name: t.seal_due(lambda _day: True) for name, t in terminals.items()}
        if any(days != [day] for days in sealed.values()) or {
            t.digest() for t in terminals.values()
        } != {digest}:
            raise LanesyncError(f"demo failed: sealing {day} gave {sealed}")
        reports = [zreport.z_report(t.replica, day) for t in terminals.values()]
        console.print(
            f"every lane sealed {day}: its ledger is an archive now, the digest unchanged"
        )
        console.print()
        print_z_report(reports[0])
        return {
            "mode": "offline",
            "lanes": len(terminals),
            "converged": True,
            "digest": digest,
            "stock": dict(sorted(expected.items())),
            "bundle_bytes": moved,
            "verified": True,
            "z_report": reports[0],
        }
    finally:
        for terminal in terminals.values():
            terminal.close()
