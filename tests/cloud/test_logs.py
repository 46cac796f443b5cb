"""The lane's log when the link to the cloud is lost (docs/reference/logs.md): a warning that
says so in plain words, where the link coming up was routine (info)."""

from __future__ import annotations

import json

import pytest
from support import wait_until

from .conftest import World
from .procs import Lane, Procs

pytestmark = pytest.mark.slow


def cloud_lines(lane: Lane) -> list[tuple[str, str]]:
    """(level, msg) of the lane's log lines about its peer ``cloud``."""
    lines = [json.loads(text) for text in lane.log_text().splitlines()]
    return [(line["level"], line["msg"]) for line in lines if "peer=cloud" in line["msg"]]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_losing_the_cloud_link_is_a_warning(world: World, procs: Procs) -> None:
    cloud = procs.cloud(world.cloud, world.db)
    lane = procs.ready(procs.spawn_lane(world.enroll("lane1"), cloud=cloud.listen))
    wait_until(lambda: lane.status()["cloud"]["connected"], 30, lambda: str(lane.status()))
    assert [level for level, _ in cloud_lines(lane)] == ["info"]  # peer.connected
    procs.stop(cloud)
    wait_until(lambda: len(cloud_lines(lane)) >= 2, 30, lane.log_text)
    level, msg = cloud_lines(lane)[1]
    assert msg.startswith("peer.closed peer=cloud"), msg
    assert level == "warning", msg
    assert msg.endswith("the link to the cloud is lost; sales wait on this lane until it is back")
