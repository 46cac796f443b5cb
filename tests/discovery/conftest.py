"""Fixtures of the discovery tests: a private network of namespaces, and a ``Lan`` of daemons.

Both are torn down whatever the test did: every daemon and agent gets SIGTERM, then SIGKILL;
every namespace is deleted and checked gone. When a test fails, the tail of every daemon log
is attached to the report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from support import attach_logs

from lanesync.errors import NetnsUnavailable
from lanesync.tools.netns import TestNet

from .lan import Lan


@pytest.fixture
def net() -> Iterator[TestNet]:
    """An empty test network (one segment); tests add the hosts they need."""
    try:
        network = TestNet.create()
    except NetnsUnavailable as exc:
        pytest.skip(f"network namespaces unavailable: {exc}")
    try:
        yield network
    finally:
        network.close()


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    group = Lan(tmp_path / "lan")
    try:
        yield group
    finally:
        group.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    attach_logs(report, call, Lan.live, "lanesync daemon logs")
    return report
