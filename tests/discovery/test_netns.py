"""The test network itself: it is private, it is removed whatever happens, it skips cleanly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from lanesync.errors import NetnsError, NetnsUnavailable, UsageError
from lanesync.tools.netns import Host, TestNet, run_ip, unavailable_reason


def test_without_root_namespaces_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert unavailable_reason() == "not root (ip netns add needs CAP_SYS_ADMIN)"
    with pytest.raises(NetnsUnavailable, match="not root"):
        TestNet.create()


@pytest.mark.timeout(60)
def test_network_is_private_and_fully_removed(net: TestNet) -> None:
    h1, h2 = net.add_host("h1"), net.add_host("h2")
    assert net.prefix.startswith("lst")
    assert len(net.prefix) == 9
    # Nothing of it in the host's own namespace: no link, no 10.213 address.
    assert not any(net.prefix in line for line in run_ip("-o", "link").stdout.splitlines())
    assert "10.213." not in run_ip("-o", "addr").stdout
    # Inside: lo up, the address, a default route (zeroconf needs one), and the bridge works.
    addresses = h1.run("ip", "-o", "addr").stdout
    assert "inet 127.0.0.1/8" in addresses
    assert f"inet {h1.address}/24" in addresses
    assert h1.run("ip", "route").stdout.startswith("default dev eth0")
    reach = h2.run(
        sys.executable, "-c", f"import socket; socket.create_connection(('{h1.address}', 9), 2)"
    )
    assert "Connection refused" in reach.stderr  # answered by h1's kernel: the bridge carries it

    sleeper = h1.popen(["sleep", "300"])
    net.close()
    assert sleeper.poll() is not None  # processes inside are ended
    assert net.leftovers() == []
    listed = run_ip("netns", "list").stdout
    assert net.prefix not in listed


def test_without_iproute2_namespaces_are_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("PATH", str(tmp_path))  # no `ip` there
    assert unavailable_reason() == "iproute2 (`ip`) is not installed"


def test_a_failing_ip_command_is_a_netns_error() -> None:
    # A subcommand `ip` does not know: no privilege needed, nothing changed.
    with pytest.raises(NetnsError, match="ip no-such-object -> exit"):
        run_ip("no-such-object")


def test_a_host_outside_the_test_network_has_no_address() -> None:
    with pytest.raises(NetnsError, match="no address"):
        _ = Host(None, "loopback", None).address


@pytest.mark.timeout(60)
def test_a_host_needs_an_existing_segment(net: TestNet) -> None:
    with pytest.raises(UsageError, match="at least one segment"):
        net.add_host("h1", segments=())
    with pytest.raises(UsageError, match="no segment 3"):
        net.add_host("h2", segments=(3,))
