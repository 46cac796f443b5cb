"""Fixtures of the mesh tests: a ``Cluster`` of real daemons (fault proxies, ``proxies``, come
from tests/conftest.py).

Both are torn down whatever the test did: every daemon gets SIGTERM, then SIGKILL after a
timeout; every proxy is stopped. When a test fails, the tail of every daemon log still alive in
a cluster is attached to the failure report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from support import attach_logs

from .cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(tmp_path / "cluster")
    try:
        yield group
    finally:
        group.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    used = [getattr(value, "cluster", value) for value in getattr(item, "funcargs", {}).values()]
    attach_logs(report, call, [g for g in Cluster.live if g in used], "lanesync daemon logs")
    return report
