"""Fixtures of the mesh tests: a ``Cluster`` of real daemons and a loop of fault proxies.

Both are torn down whatever the test did: every daemon gets SIGTERM, then SIGKILL after a
timeout; every proxy is stopped. When a test fails, the tail of every daemon log still alive in
a cluster is attached to the failure report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from support import ProxyLoop

from .cluster import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    group = Cluster(tmp_path / "cluster")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def proxies() -> Iterator[ProxyLoop]:
    loop = ProxyLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and call.when in ("setup", "call"):
        funcargs = getattr(item, "funcargs", {})
        used = [getattr(value, "cluster", value) for value in funcargs.values()]
        logs = "\n".join(group.describe() for group in Cluster.live if group in used)
        if logs:
            report.sections.append(("lanesync daemon logs", logs))
    return report
