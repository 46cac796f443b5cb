"""A lane's change feed (``GET /v1/events``) with the store's cloud: a price head office sets
in the cloud reaches the lane's feed as a ``price`` event from the cloud, and the lane's cloud
link is a ``cloud_link`` status event. Real processes on loopback (SQLite cloud)."""

from __future__ import annotations

import pytest
from mesh.feedclient import FEED_OPTIONS, FeedClient

from .conftest import STORE_ID, World
from .procs import Procs, cli_json

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_a_head_office_price_is_a_cloud_event_and_the_link_a_status(
    world: World, procs: Procs
) -> None:
    cloud = procs.cloud(world.cloud, world.db)
    lane = procs.ready(
        procs.spawn_lane(world.enroll("lane1"), cloud=cloud.listen, extra=FEED_OPTIONS)
    )
    feed = FeedClient(lane)
    try:
        assert feed.status_code == 200
        up = feed.until(lambda e: e.type == "cloud_link" and e.data["up"] is True, 30)
        assert up[-1].id is None  # status: not replayed, no id
        result = cli_json("cloud", "set-price", world.cloud, STORE_ID, "milk", 175, cwd=world.root)
        (price,) = feed.records(1, 30)
        assert price.type == "price"
        assert price.data["id"] == result["record_id"]
        assert (price.data["origin"], price.data["terminal"]) == ("cloud", "cloud")
        assert (price.data["sku"], price.data["unit_cents"]) == ("milk", 175)
    finally:
        feed.close()
