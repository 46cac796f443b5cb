"""Fixtures every process-level suite shares (tests/mesh, tests/cloud), and the umask the
tests of file modes set."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from support import ProxyLoop

# The umask of most Linux users: files created without an explicit mode come out 0644 and
# directories 0755. Under a stricter umask (077) a test of our modes could pass by accident.
USUAL_UMASK = 0o022


@pytest.fixture
def proxies() -> Iterator[ProxyLoop]:
    """Fault proxies on loopback, all stopped when the test ends."""
    loop = ProxyLoop()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """Run the test (and the processes it starts) with the umask 022."""
    previous = os.umask(USUAL_UMASK)
    try:
        yield
    finally:
        os.umask(previous)
