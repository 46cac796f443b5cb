"""Fixtures every process-level suite shares (tests/mesh, tests/cloud)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support import ProxyLoop


@pytest.fixture
def proxies() -> Iterator[ProxyLoop]:
    """Fault proxies on loopback, all stopped when the test ends."""
    loop = ProxyLoop()
    try:
        yield loop
    finally:
        loop.close()
