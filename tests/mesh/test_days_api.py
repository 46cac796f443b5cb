"""Closing business days through a running daemon: ``POST /v1/close``, ``GET /v1/reports``,
``GET /v1/days``, the CLI through the daemon, the daemon closing the days it missed, and a
sealed day's report, check and bundle (``GET /v1/days/{day}/verify``,
``POST /v1/days/{day}/export``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pycrdt import Doc, Map

from lanesync.core import bodies
from lanesync.core.bundle import parse_bundle
from lanesync.core.identity import Role
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .cluster import Cluster, wait_until

pytestmark = pytest.mark.slow

DAY_MS = 86_400_000


def today() -> str:
    return datetime.now(UTC).date().isoformat()  # the cluster's stores keep UTC days


def days_ago(n: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=n)).isoformat()


def test_two_lanes_close_and_print_the_same_report(cluster: Cluster) -> None:
    store = cluster.store()
    a, b = cluster.stocked_pair(store, price=250, received=20)
    first = a.sell("milk", 2)
    b.sell("milk", 1)
    wait_until(lambda: a.on_hand("milk") == b.on_hand("milk") == 17, 15, "both sales everywhere")
    assert b.write(f"/v1/sales/{first}/void") == {"record_id": "b:2"}
    day = today()
    assert a.write("/v1/close") == {"closed": [day]}
    assert a.write("/v1/close", {"day": day}) == {"closed": []}  # closing again: a no-op
    wait_until(lambda: a.chain_head("b") == 2, 15, "a holds b's void")
    report = a.get(f"/v1/reports/{day}")
    assert (report["complete"], report["missing_terminals"]) == (False, ["b"])
    assert a.get("/v1/days")["days"] == [
        {"day": day, "state": "open", "records": 5, "report_hash": None}
    ]
    # b closes through the CLI, which goes through its daemon
    assert cluster.cli_json("close", b.path) == {"closed": [day]}

    def same_bytes() -> bool:
        one = a.client.get(f"/v1/reports/{day}")
        two = b.client.get(f"/v1/reports/{day}")
        return one.content == two.content and one.json()["complete"]

    def sealed_on_both() -> bool:
        # Connected to each other with no cloud, each acknowledges the day once the other's
        # state covers it, and seals it within a second (shell.dayclosing).
        return all(d.get("/v1/days")["days"][0]["state"] == "sealed" for d in (a, b))

    wait_until(sealed_on_both, 15, lambda: "a and b sealed the day\n" + cluster.describe())
    wait_until(same_bytes, 15, lambda: "a and b print the same report\n" + cluster.describe())
    report = a.get(f"/v1/reports/{day}")
    assert report["sealed"] is True
    assert report["totals"] == {
        "sales": 2,
        "voids": 1,
        "gross_cents": 750,
        "voided_cents": 500,
        "net_cents": 250,
    }
    assert [t["terminal_id"] for t in report["terminals"]] == ["a", "b"]
    assert a.get("/v1/reports") == report  # a's last closed day
    assert cluster.cli_json("report", b.path) == report
    assert cluster.cli_json("report", a.path, "--day", day) == report
    listed = cluster.cli_json("days", b.path)
    assert listed == {
        "days": [
            {"day": day, "state": "sealed", "records": 6, "report_hash": report["report_hash"]}
        ]
    }
    assert a.verify()["ok"] is True
    assert b.verify()["day_end_mismatches"] == []


def test_bad_days_are_4xx_and_change_nothing(cluster: Cluster) -> None:
    store = cluster.store()
    a = cluster.start(cluster.enroll(store, "a", Role.MANAGER))
    a.sell("milk", 1, 100)
    digest = a.digest()
    for path, code in (
        ("/v1/reports/2026-13-01", 400),
        ("/v1/reports/latest", 400),
        ("/v1/reports/9999-12-31", 400),  # a day that has not begun
    ):
        response = a.client.get(path)
        assert response.status_code == code, response.text
        assert response.json()["error"]["code"] == "bad_request"
    none_closed = a.client.get("/v1/reports")
    assert none_closed.status_code == 400
    assert "closed no day" in none_closed.json()["error"]["message"]
    for body in ({"day": "tomorrow"}, {"day": "2999-01-01"}, {"day": 5}, {"until": "x"}):
        response = a.post("/v1/close", body)
        assert response.status_code == 400, (body, response.text)
        assert set(response.json()) == {"error"}
    assert a.digest() == digest
    unauthorized = a.client.post("/v1/close", headers={"Authorization": "Bearer wrong"})
    assert unauthorized.status_code == 401


def test_a_revoked_lane_cannot_close(cluster: Cluster) -> None:
    store = cluster.store()
    r_path = cluster.enroll(store, "r")
    cluster.cli_json("sell", r_path, "milk:1:100")
    # the revocation reaches r directly (--force): it holds its own revocation from the start
    cluster.cli_json("revoke", store.path, "r", "--via", r_path, "--force")
    r = cluster.start(r_path, extra=["--close-at", "off"])
    response = r.post("/v1/close")
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "terminal_revoked"


def test_the_daemon_closes_the_days_it_missed_when_it_starts(cluster: Cluster) -> None:
    store = cluster.store()
    back = wall_clock_ms() - 2 * DAY_MS
    path = cluster.root / "a"
    store.enroll(path, "a", Role.MANAGER, back - DAY_MS, 30)  # enrolled three days ago
    with Terminal.open(path, clock=lambda: back) as terminal:  # sold two days ago, then off
        terminal.write(lambda views: bodies.build_sale(views, [bodies.parse_line("milk:2:300")]))
    a = cluster.start(path, extra=["--close-at", "00:00", "--head-wait", "0"])
    # Alone, the lane acknowledges its own days: it seals each one once it closed it.
    wait_until(
        lambda: [d["state"] for d in a.get("/v1/days")["days"]] == ["sealed", "sealed"],
        15,
        lambda: "a closed and sealed the days it missed\n" + a.describe(),
    )
    listed = a.get("/v1/days")["days"]
    assert [(d["day"], d["state"], d["records"]) for d in listed] == [
        (days_ago(2), "sealed", 2),
        (days_ago(1), "sealed", 1),
    ]
    assert a.get(f"/v1/reports/{days_ago(2)}")["totals"]["gross_cents"] == 600
    assert a.get("/v1/reports")["day"] == days_ago(1)
    assert '"days.closed' in a.log_text() or "days.closed" in a.log_text()


def test_run_refuses_a_malformed_close_at(cluster: Cluster, tmp_path: Path) -> None:
    store = cluster.store()
    path = cluster.enroll(store, "a")
    result = cluster.cli("run", path, "--close-at", "25:00", "--no-discovery")
    assert result.returncode == 1, result.describe()
    assert result.stderr.startswith("error: --close-at: invalid time '25:00'"), result.describe()
    del tmp_path


def test_a_sealed_day_through_the_daemon(cluster: Cluster) -> None:
    """A lane alone acknowledges its own days: its daemon seals a day right after the close.
    The report, the check and the bundle of the sealed day, through the API and the CLI."""
    store = cluster.store()
    a = cluster.start(cluster.enroll(store, "a", Role.MANAGER))
    sale = a.sell("milk", 2, 150)
    day = today()
    assert a.write("/v1/close") == {"closed": [day]}
    wait_until(
        lambda: a.get("/v1/days")["days"][0]["state"] == "sealed",
        15,
        lambda: "a sealed its day\n" + a.describe(),
    )
    report = a.get(f"/v1/reports/{day}")
    assert (report["sealed"], report["complete"]) == (True, True)
    assert report["totals"]["gross_cents"] == 300
    assert "amended" not in report
    assert a.get("/v1/reports") == report
    assert a.get("/v1/days") == {
        "days": [
            {"day": day, "state": "sealed", "records": 2, "report_hash": report["report_hash"]}
        ]
    }
    checked = a.get(f"/v1/days/{day}/verify")
    assert (checked["state"], checked["ok"], checked["problems"]) == ("sealed", True, [])
    assert cluster.cli_json("verify", a.path, "--day", day) == checked
    assert cluster.cli_json("report", a.path, "--day", day) == report
    response = a.post(f"/v1/days/{day}/export")
    assert response.status_code == 200, response.text
    bundle = parse_bundle(response.content, store.identity)
    assert [name for name, _ in bundle.updates] == [f"ledger/{day}"]
    archived: Doc[Any] = Doc()
    archived.apply_update(bundle.updates[0][1])  # the day's CRDT state, from its archive
    keys = list(archived.get("records", type=Map).keys())
    assert len(keys) == 2  # the sale and the day-end
    assert any(key.startswith(f"{sale}#") for key in keys), keys
    written = cluster.cli_json("export", a.path, cluster.root / "day.bundle", "--day", day)
    assert written["bytes"] == len((cluster.root / "day.bundle").read_bytes())
    for path, code in (
        (f"/v1/days/{days_ago(400)}/verify", 404),
        ("/v1/days/2026-13-01/verify", 400),
    ):
        answer = a.client.get(path)
        assert answer.status_code == code, answer.text
    missing = a.post(f"/v1/days/{days_ago(400)}/export")
    assert missing.status_code == 404, missing.text
    assert missing.json()["error"]["code"] == "not_found"
