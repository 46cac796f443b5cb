"""LAN discovery end to end: real daemons, real multicast DNS, real sockets.

Every multi-host test builds its own private network of namespaces (netns.py): a switch
namespace with a bridge and one namespace per terminal; daemons there listen on 0.0.0.0 of
their namespace and find each other with zeroconf on its default interfaces, none of which
exists outside the test network. The one test in the host's own namespace runs its daemons on
127.0.0.1, where lanesync binds mDNS to loopback only. No --peer anywhere: every connection
here comes from discovery. zeroconf's probe and announce timers are shortened through
quick_daemon.py (as python-zeroconf's own tests do); `lanesync bench discovery` measures the
real ones.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from lanesync.cli.main import cli
from lanesync.shell.discovery import multicast_interfaces
from lanesync.shell.terminal import wall_clock_ms
from lanesync.tools.netns import Host, TestNet, stop_process

from .lan import ENV, Lan, LanDaemon, wait_connected, wait_converged, wait_until

BROWSE = Path(__file__).resolve().parent / "browse.py"
SERVICE_TYPE = "_lanesync._tcp.local."
DISCONNECT_LIMIT_S = 10.0  # the issue: noticed within seconds, never after the mDNS TTL (1125 s+)
QUIET_S = 3.0  # longer than the 2 s grace before a discovered peer is dialled


def start_lanes(net: TestNet, lan: Lan, count: int) -> list[LanDaemon]:
    """``count`` namespaces h1.. with one daemon each (lane1..), fully connected."""
    hosts = [net.add_host(f"h{i}") for i in range(1, count + 1)]
    paths = [lan.enroll(f"lane{i}") for i in range(1, count + 1)]
    daemons = lan.start_many(zip(hosts, paths, strict=True))
    ids = {d.terminal_id for d in daemons}
    for daemon in daemons:
        wait_connected(daemon, ids - {daemon.terminal_id}, timeout=30)
    return daemons


def assert_discovered_row(row: dict[str, Any] | None, peer: LanDaemon) -> None:
    """A peer found by mDNS alone, at its address in the test network, connected, seen."""
    assert row is not None, f"no peer row for {peer.name}"
    assert row["terminal_id"] == peer.terminal_id
    assert row["found_by"] == ["mdns"], row
    assert row["addresses"] == [peer.url], row  # IPv4 only: the daemons listen on 0.0.0.0
    assert row["connected"] is True, row
    assert isinstance(row["last_seen_ms"], int), row
    assert abs(wall_clock_ms() - row["last_seen_ms"]) < 60_000, row


def hold(predicate: Any, seconds: float, describe: Any) -> None:
    """Assert ``predicate()`` stays true for ``seconds`` (polled)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), describe()
        time.sleep(0.1)


def browse(host: Host, seconds: float = 1.5) -> list[dict[str, Any]]:
    """Resolve every _lanesync._tcp instance visible from ``host`` with plain zeroconf."""
    proc = host.run(sys.executable, BROWSE, str(seconds), timeout=60, env=ENV)
    assert proc.returncode == 0, proc.stderr
    result: list[dict[str, Any]] = json.loads(proc.stdout)
    return result


def disconnect_time(
    observers: list[LanDaemon], gone: LanDaemon, since: float, timeout: float = 30.0
) -> float:
    """Seconds from ``since`` until every observer shows ``gone`` as not connected."""

    def all_see_it() -> bool:
        rows = [o.peer(gone.terminal_id) for o in observers]
        return all(row is not None and row["connected"] is False for row in rows)

    wait_until(
        all_see_it,
        timeout,
        lambda: f"{gone.name} disconnected: {[o.peer(gone.terminal_id) for o in observers]}",
        interval=0.02,
    )
    return time.monotonic() - since


# -- a. three lanes find each other, connect and converge -----------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_three_lanes_discover_connect_and_converge(net: TestNet, lan: Lan) -> None:
    daemons = start_lanes(net, lan, 3)
    for daemon in daemons:
        others = [d for d in daemons if d is not daemon]
        assert {p["terminal_id"] for p in daemon.peers()} == {d.terminal_id for d in others}
        for other in others:
            assert_discovered_row(daemon.peer(other.terminal_id), other)

    lane1, lane2, lane3 = daemons
    lane1.write("/v1/stock/receive", {"sku": "milk", "qty": 10})
    lane2.write("/v1/sales", {"lines": [{"sku": "milk", "qty": 3, "unit_price": 150}]})
    lane3.write("/v1/sales", {"lines": [{"sku": "milk", "qty": 1, "unit_price": 150}]})

    digest = wait_converged(daemons)
    wait_until(lambda: all(d.on_hand("milk") == 6 for d in daemons), 10, "6 milk everywhere")
    # `lanesync digest`, run inside each namespace, says the same.
    with ThreadPoolExecutor(len(daemons)) as pool:
        results = list(pool.map(lambda d: d.cli("digest", d.path), daemons))
    for result in results:
        assert result.returncode == 0, result.describe()
        assert result.stdout.strip() == digest

    # `lanesync peers`, inside lane3's namespace, lists the discovered peers.
    peers_json = lane3.cli("peers", lane3.path, "--json")
    peers_text = lane3.cli("peers", lane3.path)
    assert peers_json.returncode == 0, peers_json.describe()
    assert peers_json.stderr == ""
    report = peers_json.json()
    assert report["running"] is True
    assert [p["terminal_id"] for p in report["peers"]] == ["lane1", "lane2"]
    for row, other in zip(report["peers"], (lane1, lane2), strict=True):
        assert_discovered_row(row, other)
    assert peers_text.returncode == 0, peers_text.describe()
    for text in ("lane1", "lane2", "mdns", lane1.url, lane2.url, "yes"):
        assert text in peers_text.stdout, peers_text.describe()


@pytest.mark.timeout(10)  # three in-process CLI calls: milliseconds each
def test_peers_command_without_daemon(tmp_path: Path) -> None:
    lan = Lan(tmp_path / "lan")
    try:
        path = lan.enroll("lane1")
        runner = CliRunner()
        as_json = runner.invoke(cli, ["peers", str(path), "--json"])
        assert as_json.exit_code == 0, as_json.output
        assert json.loads(as_json.stdout) == {"running": False, "peers": []}
        as_text = runner.invoke(cli, ["peers", str(path)])
        assert as_text.exit_code == 0, as_text.output
        assert as_text.stdout.strip() == "not running"
        missing = runner.invoke(cli, ["peers", str(tmp_path / "nowhere"), "--json"])
        assert missing.exit_code == 1
        assert missing.stdout == ""
        lines = missing.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("error: ")
    finally:
        lan.close()


# -- b. a terminal of another store is seen on the LAN but never connected ------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_terminal_of_another_store_is_seen_but_never_connected(net: TestNet, lan: Lan) -> None:
    daemons = start_lanes(net, lan, 3)
    other_store = f"{lan.store_id}-x"
    # Same terminal id as one of ours: only the store in its TXT record tells them apart.
    foreign_path = lan.enroll("lane1", store_id=other_store, dirname="foreign-lane1")
    foreign = lan.start(net.add_host("h4"), foreign_path)
    foreign_instance = f"{other_store}-lane1.{SERVICE_TYPE}"

    # Every daemon of ours saw it and ignored it for its store (debug log of quick_daemon.py).
    for daemon in daemons:
        wait_until(
            lambda d=daemon: (
                f"instance={foreign_instance} reason=store {other_store}" in d.log_text()
            ),
            10,
            lambda d=daemon: f"{d.name} logged the ignored foreign announcement\n{d.describe()}",
        )
    # Its announcement is on the LAN: a plain zeroconf browser in lane1's namespace resolves it.
    seen = {s["name"]: s for s in browse(daemons[0].host)}
    assert foreign_instance in seen, seen
    assert seen[foreign_instance]["txt"]["store"] == other_store
    assert seen[foreign_instance]["addresses"] == [foreign.host.address]
    assert seen[foreign_instance]["port"] == foreign.port
    assert f"{lan.store_id}-lane2.{SERVICE_TYPE}" in seen  # and ours, for comparison

    ours = {d.terminal_id for d in daemons}

    def isolated() -> bool:
        for daemon in daemons:
            rows = daemon.peers()
            if {r["terminal_id"] for r in rows} != ours - {daemon.terminal_id}:
                return False
            if any(foreign.host.address in url for r in rows for url in r["addresses"]):
                return False
            if not all(r["connected"] for r in rows):
                return False
        return foreign.peers() == []

    hold(
        isolated,
        QUIET_S,
        lambda: f"ours {[d.peers() for d in daemons]} foreign {foreign.peers()}",
    )
    assert "peer.connected" not in foreign.log_text()


# -- c. a stopped lane and a killed lane are noticed within seconds -------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stopped_and_killed_lanes_show_disconnected_within_seconds(
    net: TestNet, lan: Lan, record_property: Any
) -> None:
    lane1, lane2, lane3, lane4 = start_lanes(net, lan, 4)

    started = time.monotonic()
    lane3.process.send_signal(signal.SIGTERM)
    after_sigterm = disconnect_time([lane1, lane2, lane4], lane3, started)
    assert lane3.process.wait(10) == 0  # a clean exit (no second signal: it is shutting down)

    started = time.monotonic()
    lane4.process.send_signal(signal.SIGKILL)
    after_sigkill = disconnect_time([lane1, lane2], lane4, started)
    lane4.process.wait(10)

    record_property("disconnect_after_sigterm_s", round(after_sigterm, 3))
    record_property("disconnect_after_sigkill_s", round(after_sigkill, 3))
    print(
        f"\nMEASURED disconnect after SIGTERM {after_sigterm:.3f} s, SIGKILL {after_sigkill:.3f} s"
    )
    assert after_sigterm < DISCONNECT_LIMIT_S
    assert after_sigkill < DISCONNECT_LIMIT_S
    # The survivors still hold each other.
    wait_connected(lane1, {"lane2"})
    assert lane1.peer("lane3")["connected"] is False  # type: ignore[index]
    assert lane2.peer("lane4")["connected"] is False  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigterm_sends_the_mdns_goodbye(net: TestNet, lan: Lan, record_property: Any) -> None:
    """RFC 6762 section 10.1: a clean shutdown announces its records with TTL 0, so that
    browsers drop it at once and peers stop redialling an address that is gone."""
    lane1, lane2 = start_lanes(net, lan, 2)
    watcher = lane1.host.popen(
        [sys.executable, BROWSE, "--watch", "60"],
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert watcher.stdout is not None
    assert watcher.stdin is not None
    assert json.loads(watcher.stdout.readline()) == {"ready": True}
    instance = f"{lan.store_id}-lane2.{SERVICE_TYPE}"
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in watcher.stdout], daemon=True)
    reader.start()
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    # The watcher must have seen lane2 before it stops (a loaded machine answers slowly).
    while not any(e["name"] == instance and e["change"] == "Added" for e in events):
        assert time.monotonic() < deadline, f"the watcher never saw {instance}: {events}"
        with contextlib.suppress(queue.Empty):
            events.append(json.loads(lines.get(timeout=0.5)))

    stopped = time.monotonic()
    assert lan.stop(lane2) == 0
    time.sleep(2.0)
    watcher.stdin.close()
    stop_process(watcher, 5.0, signalled=True)
    reader.join(5)
    while not lines.empty():
        events.append(json.loads(lines.get()))
    removed = [e for e in events if e["name"] == instance and e["change"] == "Removed"]
    row = lane1.peer("lane2")
    print(f"\nMEASURED goodbye events for {instance}: {events}; lane1's row {row}")

    assert removed, f"no mDNS goodbye for {instance} within 2 s of SIGTERM: events {events}"
    record_property("goodbye_seen_after_s", round(removed[0]["t"] - stopped, 3))
    assert row is not None
    assert "mdns" not in row["found_by"], row  # the goodbye reached lanesync too
    assert "mdns.goodbye terminal=lane2" in lane1.log_text()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_status_text_does_not_call_a_gone_peer_connected(net: TestNet, lan: Lan) -> None:
    """`lanesync status` (text) lists the peer table; a stopped lane is still in it, found by
    mDNS but no longer connected, and must not be printed as connected."""
    lane1, lane2 = start_lanes(net, lan, 2)
    assert lan.stop(lane2) == 0
    disconnect_time([lane1], lane2, time.monotonic())
    result = lane1.cli("status", lane1.path)
    assert result.returncode == 0, result.describe()
    line = next(x for x in result.stdout.splitlines() if "peer lane2" in x)
    assert "connected" not in line or "not connected" in line or "disconnected" in line, line
    assert "None" not in line, line


# -- d. a killed lane restarted with the same identity is found again ------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_restart_after_sigkill_is_rediscovered_and_converges(
    net: TestNet, lan: Lan, record_property: Any
) -> None:
    lane1, lane2, lane3 = start_lanes(net, lan, 3)
    lane1.write("/v1/stock/receive", {"sku": "bread", "qty": 20})
    wait_converged([lane1, lane2, lane3])

    lane2.process.kill()
    lane2.process.wait(10)
    disconnect_time([lane1, lane3], lane2, time.monotonic())
    # Sales on both sides while lane2 is down.
    lane1.write("/v1/sales", {"lines": [{"sku": "bread", "qty": 2, "unit_price": 300}]})
    lane3.write("/v1/sales", {"lines": [{"sku": "bread", "qty": 1, "unit_price": 300}]})

    again = lan.start(lane2.host, lane2.path)  # same directory: same identity, new port
    ready = time.monotonic()
    for daemon, others in ((again, {"lane1", "lane3"}), (lane1, {"lane2"}), (lane3, {"lane2"})):
        wait_connected(daemon, others, timeout=30)
    reconnected = time.monotonic() - ready
    digest = wait_converged([lane1, again, lane3])
    converged = time.monotonic() - ready
    record_property("reconnected_after_ready_s", round(reconnected, 3))
    print(
        f"\nMEASURED restart: process start -> ready {ready - again.started:.3f} s, "
        f"ready -> all reconnected {reconnected:.3f} s, -> converged {converged:.3f} s"
    )

    assert again.on_hand("bread") == 17
    for daemon in (lane1, again, lane3):
        result = daemon.cli("digest", daemon.path)
        assert result.returncode == 0, result.describe()
        assert result.stdout.strip() == digest
    # The survivors dial the restarted lane at its new address, learnt from mDNS.
    for daemon in (lane1, lane3):
        assert_discovered_row(daemon.peer("lane2"), again)
    for other in (lane1, lane3):
        assert_discovered_row(again.peer(other.terminal_id), other)


# -- e. --interface ----------------------------------------------------------------------------


def two_segments(net: TestNet) -> tuple[Host, Host, Host]:
    """m on both segments (eth0 on segment 0, eth1 on 1), a on segment 0, b on segment 1."""
    net.add_segment()
    return (
        net.add_host("m", segments=(0, 1)),
        net.add_host("a", segments=(0,)),
        net.add_host("b", segments=(1,)),
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_interface_limits_mdns_to_that_interface(net: TestNet, lan: Lan) -> None:
    """A host on two segments: with --interface eth0 its daemon is found on segment 0, at its
    eth0 address only, and never on segment 1, where the same host is found as soon as a
    daemon there uses every interface (the control)."""
    m, a, b = two_segments(net)
    lane1 = lan.spawn(m, lan.enroll("lane1"), ["--interface", "eth0"])
    lane2 = lan.spawn(a, lan.enroll("lane2"))
    lane3 = lan.spawn(b, lan.enroll("lane3"))
    for daemon in (lane1, lane2, lane3):
        lan.ready(daemon)

    wait_connected(lane1, {"lane2"})
    wait_connected(lane2, {"lane1"})
    row = lane2.peer("lane1")
    assert row is not None
    assert row["addresses"] == [f"ws://{m.interfaces['eth0']}:{lane1.port}"], row

    def never_across() -> bool:
        return lane3.peers() == [] and {p["terminal_id"] for p in lane1.peers()} == {"lane2"}

    hold(never_across, QUIET_S, lambda: f"lane3 {lane3.peers()} lane1 {lane1.peers()}")
    assert f"{lan.store_id}-lane1" not in lane3.log_text()

    # The control: a daemon on the same host without --interface is found on segment 1.
    lane4 = lan.start(m, lan.enroll("lane4"))
    wait_connected(lane3, {"lane4"})
    row = lane3.peer("lane4")
    assert row is not None
    assert f"ws://{m.interfaces['eth1']}:{lane4.port}" in row["addresses"], row


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_interface_limit_holds_beside_another_mdns_responder(net: TestNet, lan: Lan) -> None:
    """The same, while another mDNS user on the host listens on every interface (on a store PC:
    avahi-daemon, or a second lanesync). Linux delivers a multicast group joined by any socket
    on any interface to every socket bound to 0.0.0.0:5353 (IP_MULTICAST_ALL defaults to 1),
    so a daemon limited to eth0 must not answer or follow what arrives from eth1."""
    m, _, b = two_segments(net)
    everywhere = lan.start(m, lan.enroll("lane4"))  # the other responder, default interfaces
    lane1 = lan.start(m, lan.enroll("lane1"), ["--interface", "eth0"])
    # lane1 registered and browses (its "started" line follows the registration) before lane3.
    wait_until(lambda: "started terminal=lane1" in lane1.log_text(), 20, "lane1 started")
    lane3 = lan.start(b, lan.enroll("lane3"))
    wait_connected(lane3, {everywhere.terminal_id})

    def never_across() -> bool:
        return lane3.peer("lane1") is None and lane1.peer("lane3") is None

    hold(never_across, QUIET_S, lambda: f"lane3 {lane3.peers()} lane1 {lane1.peers()}")


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_unknown_interface_is_one_error_line(net: TestNet, lan: Lan) -> None:
    host = net.add_host("h1")
    path = lan.enroll("lane1")
    result = lan.cli(host, "run", path, "--listen", "0.0.0.0:0", "--interface", "nosuch0")
    assert result.returncode == 1, result.describe()
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.describe()
    assert lines[0].startswith("error: "), result.describe()
    assert "nosuch0" in lines[0]
    assert not (path / "runtime.json").exists()


# -- f. loopback in the host's own namespace ------------------------------------------------------


def udp_sockets(pid: int) -> list[tuple[str, int]]:
    return [
        (c.laddr.ip, c.laddr.port)
        for c in psutil.Process(pid).net_connections(kind="udp")
        if c.laddr
    ]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_loopback_daemons_discover_each_other_on_127_0_0_1_only(lan: Lan) -> None:
    assert multicast_interfaces("127.0.0.1", ()) == ["127.0.0.1"]
    here = Host(None, "local", None)  # the host's own namespace: loopback only
    lane1 = lan.spawn(here, lan.enroll("lane1"))  # default --listen 127.0.0.1:0, no --peer
    lane2 = lan.spawn(here, lan.enroll("lane2"))
    for daemon in (lane1, lane2):
        lan.ready(daemon)
    wait_connected(lane1, {"lane2"}, timeout=30)
    wait_connected(lane2, {"lane1"}, timeout=30)
    for daemon, other in ((lane1, lane2), (lane2, lane1)):
        # lane1 dials as soon as it hears of lane2, so lane2 may hold the connection (inbound)
        # before its own browser reports lane1; on a loaded machine that took over a second.
        wait_until(
            lambda d=daemon, o=other: (d.peer(o.terminal_id) or {}).get("found_by") == ["mdns"],
            15,
            lambda d=daemon, o=other: f"{d.name} found {o.name} by mDNS: {d.peer(o.terminal_id)}",
        )
        assert_discovered_row(daemon.peer(other.terminal_id), other)
        assert other.url.startswith("ws://127.0.0.1:")

    lane1.write("/v1/stock/receive", {"sku": "eggs", "qty": 12})
    wait_converged([lane1, lane2])

    # mDNS sockets: nothing bound to an address other than loopback (or the wildcard of the
    # shared port-5353 listener, whose multicast membership is on 127.0.0.1 only).
    for daemon in (lane1, lane2):
        mdns = [s for s in udp_sockets(daemon.process.pid) if s[1] == 5353]
        assert mdns, f"{daemon.name} has no mDNS socket"
        allowed = ("127.0.0.1", "0.0.0.0", "::", "::1")  # noqa: S104 - comparing, not binding
        assert all(ip in allowed for ip, _ in mdns), mdns
        assert ("127.0.0.1", 5353) in mdns, mdns
