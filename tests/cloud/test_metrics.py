"""The cloud's ``GET /metrics`` (cloud/metrics.py): Prometheus text behind the bearer token,
read from a real ``cloud serve`` while a real lane uploads to it."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import wait_until
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from .conftest import STORE_ID, World
from .procs import Cloud, Procs
from .test_inventory import _forge_into_cloud_replica

UPLOAD_TIMEOUT_S = 30.0


def samples(cloud: Cloud) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the cloud's /metrics: (name, sorted labels) -> value."""
    response = cloud.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def store_sample(name: str, **labels: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted({"store": STORE_ID, **labels}.items()))


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_metrics_count_uploads_merges_bytes_failures_and_lag(world: World, procs: Procs) -> None:
    ghost_key = _forge_into_cloud_replica(world)
    assert ghost_key
    cloud = procs.cloud(world.cloud, world.db)
    before = samples(cloud)
    # No leader has connected: the store is served but not resident, so nothing of it is held.
    assert before[("lanesync_cloud_stores_resident", ())] == 0
    assert before[("lanesync_cloud_stores_registered", ())] == 1
    assert before[("lanesync_cloud_uploads_total", ())] == 0
    assert before[("lanesync_cloud_merge_seconds_count", ())] == 0
    assert not [key for key in before if ("store", STORE_ID) in key[1]]

    # A stranger's text frame is refused at the hello, and counted.
    with connect(cloud.listen, proxy=None) as stranger:
        stranger.send("hello?")
        with pytest.raises(ConnectionClosed):
            stranger.recv(timeout=10)
    wait_until(lambda: samples(cloud)[("lanesync_cloud_uplinks_refused_total", ())] == 1, 10)

    lane = procs.ready(procs.spawn_lane(world.enroll("lane1"), cloud=cloud.listen))
    lane.sell([("milk", 1, 149)])
    wait_until(lambda: cloud.sales(STORE_ID)["count"] == 1, UPLOAD_TIMEOUT_S, lane.log_text)
    after = samples(cloud)
    assert after[("lanesync_cloud_stores_resident", ())] == 1
    assert after[store_sample("lanesync_cloud_uncounted_records", reason="unverified")] == 1
    assert after[store_sample("lanesync_cloud_uncounted_records", reason="rejected")] == 0
    assert after[("lanesync_cloud_uploads_total", ())] >= 1
    merges = after[store_sample("lanesync_cloud_merges_total")]
    assert merges >= 1
    assert after[("lanesync_cloud_merge_seconds_count", ())] == merges
    assert after[("lanesync_cloud_merge_seconds_sum", ())] > 0
    assert after[store_sample("lanesync_cloud_received_bytes_total")] > 0
    assert after[store_sample("lanesync_cloud_records")] == cloud.stores()[0]["records"]
    lag = after[store_sample("lanesync_cloud_store_lag_seconds")]
    assert 0 <= lag < UPLOAD_TIMEOUT_S
    # An idle leader uploads nothing: the lag grows (the lane's gossip is not an upload).
    wait_until(
        lambda: samples(cloud)[store_sample("lanesync_cloud_store_lag_seconds")] > lag + 1, 10
    )
    assert samples(cloud)[store_sample("lanesync_cloud_merges_total")] == merges

    # The token guards it like every other route.
    anonymous = httpx.get(f"{cloud.api}/metrics", timeout=10)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthorized"
