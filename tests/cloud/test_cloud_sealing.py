"""Sealing in a store with a cloud, end to end: lanes (``lanesync run --cloud URL --close-at
off``) close the day through their API; no lane seals it while the cloud has not acknowledged it
(the WAN is cut), and once the WAN heals the leader seals it when the cloud's state covers the
day and the other lane when the leader says it sealed it (``core.sealdays.acknowledged``).
"""

from __future__ import annotations

from typing import Any

import pytest
from support import ProxyLoop, hold_for, port_of, wait_until

from .conftest import STORE_ID, World
from .procs import Lane, Procs
from .store import PRICES

pytestmark = pytest.mark.slow

# Without the cloud, a lane must keep the closed day unsealed: the daemon checks every second
# (shell.dayclosing.SEAL_CHECK_EVERY_S), so three seconds are three chances to seal too early.
UNACKNOWLEDGED_S = 3.0
SEALED_WITHIN_S = 30.0  # reconnecting the uplink (its probe interval) plus the seal, generously


def states(lane: Lane) -> dict[str, str]:
    return {d["day"]: d["state"] for d in lane.get("/v1/days")["days"]}


def describe(lanes: list[Lane]) -> str:
    return "; ".join(
        f"{lane.name}: days {states(lane)}, leader {lane.status()['leader']}, "
        f"cloud {lane.status()['cloud']}"
        for lane in lanes
    )


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the storage is not under test
def test_lanes_seal_a_closed_day_only_once_the_cloud_acknowledged_it(
    world: World, procs: Procs, proxies: ProxyLoop
) -> None:
    cloud = procs.cloud(world.cloud, world.db)
    wan = proxies.link(port_of(cloud.listen))
    proxies.partition(wan)  # the WAN is down: no lane reaches the cloud
    url = f"ws://127.0.0.1:{wan.port}"
    closing = ["--close-at", "off"]  # nothing closes on its own
    first = procs.ready(
        procs.spawn_lane(world.enroll("lane1"), cloud=url, priority=1, extra=closing)
    )
    second = procs.ready(
        procs.spawn_lane(world.enroll("lane2"), cloud=url, peers=[first.listen], extra=closing)
    )
    lanes = [first, second]
    wait_until(lambda: first.peers() == {"lane2"} and second.peers() == {"lane1"}, 20, "meshed")
    sold = [lane.sell([(sku, 1, cents)]) for lane in lanes for sku, cents in PRICES.items()]
    wait_until(
        lambda: (
            {lane.status()["records"] for lane in lanes} == {len(sold)}
            and first.digest() == second.digest()
        ),
        20,
        lambda: "both lanes hold every sale: " + describe(lanes),
    )
    (day,) = {lane.post("/v1/close")["closed"][0] for lane in lanes}
    wait_until(
        lambda: all(states(lane) == {day: "closed"} for lane in lanes),
        20,
        lambda: "both lanes hold both day-ends: " + describe(lanes),
    )

    # Complete and held by every lane, but the cloud has not acknowledged it: not sealed.
    hold_for(
        lambda: all(states(lane) == {day: "closed"} for lane in lanes),
        UNACKNOWLEDGED_S,
        "a lane sealed a day the cloud never acknowledged",
    )
    assert all(lane.get(f"/v1/reports/{day}")["sealed"] is False for lane in lanes)

    proxies.heal(wan)
    wait_until(
        lambda: all(states(lane) == {day: "sealed"} for lane in lanes),
        SEALED_WITHIN_S,
        lambda: "both lanes seal the day once the cloud holds it: " + describe(lanes),
        interval=0.2,
    )
    reports: list[dict[str, Any]] = [lane.get(f"/v1/reports/{day}") for lane in lanes]
    assert {r["report_hash"] for r in reports} == {reports[0]["report_hash"]}
    assert all(r["sealed"] and r["complete"] for r in reports)
    assert reports[0]["totals"]["sales"] == len(sold)
    assert reports[0]["totals"]["gross_cents"] == sum(int(s["total"]) for s in sold)
    # The cloud keeps every sale in its tables, sealed or not.
    assert cloud.sales(STORE_ID, day)["count"] == len(sold)
    for lane in lanes:
        assert f"days.sealed terminal={lane.name} days={day}" in lane.log_path.read_text()
