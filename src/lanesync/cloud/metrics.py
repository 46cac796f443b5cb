"""The cloud's ``GET /metrics`` (Prometheus text): what an operator watches on a ``cloud serve``.

As on a lane (shell/api.py), a collector reads the service's state at scrape time, so nothing is
counted twice or drifts from the truth; per-store series exist for resident stores only (an
evicted store's counters start again from zero when it is opened again). Only the merge
latency, which no state holds, is a histogram fed as merges happen (``CloudService`` hands every
store's mesh ``observe_merge``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lanesync.shell.terminal import wall_clock_ms

if TYPE_CHECKING:
    from lanesync.cloud.service import CloudService

# From a lane's commit (~1 ms) to the 15 s a 50k-sale day's catch-up took in one merge before
# merges were cut into slices (docs/how-to/cloud.md, section 5): the buckets span both, so a
# stalled loop shows in the top ones.
MERGE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)


class _ServiceCollector(Collector):
    def __init__(self, service: CloudService) -> None:
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service
        stores = service.stores
        yield GaugeMetricFamily(
            "lanesync_cloud_stores_resident",
            "Stores whose replica this process holds (opened on demand, evicted when idle)",
            len(stores),
        )
        yield GaugeMetricFamily(
            "lanesync_cloud_stores_registered",
            "Stores this process serves (added to its directory before it started)",
            len(service.registered),
        )
        yield CounterMetricFamily(
            "lanesync_cloud_uploads",
            "Uplink connections accepted (their hello named a store this cloud serves)",
            value=service.uploads_accepted,
        )
        yield CounterMetricFamily(
            "lanesync_cloud_uplinks_refused",
            "Uplink connections refused at the hello (unknown store, not a hello, no room)",
            value=service.uplinks_refused,
        )
        yield CounterMetricFamily(
            "lanesync_cloud_handshakes_refused",
            "Connections refused because MAX_HANDSHAKES were already in the handshake (a burst "
            "of dials or a flood: shell/admission.py)",
            value=service.gate.refused,
        )
        yield CounterMetricFamily(
            "lanesync_cloud_records_checked_ahead",
            "Records of large uploads whose signatures the worker thread checked ahead of "
            "their merge (cloud/verifier.py)",
            value=service.verifier.records_checked,
        )
        merges = CounterMetricFamily(
            "lanesync_cloud_merges", "Batches of leaders' records merged", labels=["store"]
        )
        received = CounterMetricFamily(
            "lanesync_cloud_received_bytes", "Frame bytes received from leaders", labels=["store"]
        )
        records = GaugeMetricFamily(
            "lanesync_cloud_records", "Records counted in a store's replica", labels=["store"]
        )
        uncounted = GaugeMetricFamily(
            "lanesync_cloud_uncounted_records",
            "Records held but not counted: failed verification (rejected, unverified) or "
            "signed by a role that may not make them (unauthorized)",
            labels=["store", "reason"],
        )
        lag = GaugeMetricFamily(
            "lanesync_cloud_store_lag_seconds",
            "Seconds since the cloud last merged records from the store's leader "
            "(absent until the first upload this process serves)",
            labels=["store"],
        )
        now_ms = wall_clock_ms()
        for store_id, runtime in sorted(stores.items()):
            merges.add_metric([store_id], runtime.mesh.merges)
            received.add_metric([store_id], runtime.mesh.bytes_in)
            views = runtime.terminal.replica.views
            records.add_metric([store_id], views.accepted_count())
            for reason, count in views.uncounted_counts().items():
                uncounted.add_metric([store_id, reason], count)
            if runtime.last_upload_ms is not None:
                lag.add_metric([store_id], max(0, now_ms - runtime.last_upload_ms) / 1000)
        yield from (merges, received, records, uncounted, lag)


def cloud_registry(service: CloudService) -> CollectorRegistry:
    """A registry of the service's metrics; sets ``service.observe_merge`` for the latency."""
    registry = CollectorRegistry()
    registry.register(_ServiceCollector(service))
    latency = Histogram(
        "lanesync_cloud_merge_seconds",
        "Time to merge, verify, commit and project one batch of a leader's records",
        registry=registry,
        buckets=MERGE_BUCKETS_S,
    )
    service.observe_merge = latency.observe
    return registry
