"""The daemon: ``run``, and what it shows (``status``, ``peers``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from lanesync.core import dayclose, reports
from lanesync.core.headcheck import DEFAULT_HEAD_WAIT_MS
from lanesync.core.isolation import DEFAULT_ISOLATION_AFTER_MS
from lanesync.errors import UsageError
from lanesync.shell.directories import TerminalDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .common import (
    DIR,
    JSON_OPTION,
    LOG_LEVEL_OPTION,
    LOOP_OPTION,
    daemon_client,
    handed_collaborators,
    reports_errors,
    serves_until_storage_fails,
)
from .output import console, emit_json, revocation_lines, when


@click.command("run")
@click.argument("terminal_dir", type=DIR)
@click.option(
    "--listen", default="127.0.0.1:0", show_default=True, help="Peer websocket HOST:PORT."
)
@click.option("--api", default="127.0.0.1:0", show_default=True, help="Local HTTP API HOST:PORT.")
@click.option("--peer", "peers", multiple=True, help="A peer to dial, ws://HOST:PORT (repeat).")
@click.option("--no-discovery", is_flag=True, help="Do not use mDNS (only --peer addresses).")
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    help="Use mDNS only on this network interface (repeat). Default: all, or loopback only "
    "when --listen is a loopback address.",
)
@click.option("--cloud", "cloud_url", help="The store's cloud, wss://HOST:PORT (leader uses it).")
@click.option(
    "--priority",
    type=click.IntRange(-1000, 1000),
    default=0,
    show_default=True,
    help="Preference as the store's uplink (higher wins among lanes that reach the cloud).",
)
@click.option(
    "--isolated-after",
    "isolated_after_s",
    type=click.IntRange(1, 86_400),
    default=DEFAULT_ISOLATION_AFTER_MS // 1000,
    show_default=True,
    help="Seconds without any peer or cloud connection after which the status reports the "
    "lane isolated (isolated_since).",
)
@click.option(
    "--head-wait",
    "head_wait_s",
    type=click.FloatRange(0, 600),
    default=DEFAULT_HEAD_WAIT_MS / 1000,
    show_default=True,
    help="Seconds the first write after the start waits for a peer or the cloud to answer with "
    "this lane's own chain head (a lane restored from a backup then continues its chain); 0: "
    "do not wait.",
)
@LOG_LEVEL_OPTION
@LOOP_OPTION
@click.option(
    "--close-at",
    default="04:00",
    show_default=True,
    help="Store time (HH:MM) at which the daemon closes the day before on its own (it also "
    "closes the days it missed when it starts); 'off': only `lanesync close` closes days.",
)
@click.option("--anti-entropy-ms", type=click.IntRange(50, 3_600_000), default=None, hidden=True)
# Tests only: the change feed's keep-alive interval and per-client queue (shell.feed).
@click.option("--feed-keepalive-ms", type=click.IntRange(10, 3_600_000), default=None, hidden=True)
@click.option("--feed-queue-bytes", type=click.IntRange(1024, 2**30), default=None, hidden=True)
@click.option("--feed-max-clients", type=click.IntRange(1, 1024), default=None, hidden=True)
@reports_errors
@serves_until_storage_fails
def run_command(
    terminal_dir: Path,
    listen: str,
    api: str,
    peers: tuple[str, ...],
    no_discovery: bool,
    interfaces: tuple[str, ...],
    cloud_url: str | None,
    priority: int,
    isolated_after_s: int,
    head_wait_s: float,
    log_level: str,
    loop: str,
    close_at: str,
    anti_entropy_ms: int | None,
    feed_keepalive_ms: int | None,
    feed_queue_bytes: int | None,
    feed_max_clients: int | None,
) -> None:
    """Run the terminal: serve peers, dial --peer addresses, serve the local API."""
    from lanesync.shell.daemon import DaemonConfig, daemon_main, parse_address, parse_peer_url
    from lanesync.shell.discovery import interface_addresses
    from lanesync.shell.eventloop import LoopChoice

    config = DaemonConfig(
        terminal_dir,
        listen=parse_address(listen, "--listen"),
        api=parse_address(api, "--api"),
        peers=tuple(parse_peer_url(p) for p in peers),
        discovery=not no_discovery,
        interfaces=interfaces,
        cloud=None if cloud_url is None else parse_peer_url(cloud_url, "cloud URL"),
        priority=priority,
        anti_entropy_ms=anti_entropy_ms,
        isolation_after_ms=isolated_after_s * 1000,
        head_wait_ms=round(head_wait_s * 1000),
        close_at_minute=_close_at(close_at),
        collaborators=handed_collaborators(),
        log_level=log_level,
        loop=LoopChoice(loop),
    )
    if feed_keepalive_ms is not None:
        config = replace(config, feed_keepalive_s=feed_keepalive_ms / 1000)
    if feed_queue_bytes is not None:
        config = replace(config, feed_queue_bytes=feed_queue_bytes)
    if feed_max_clients is not None:
        config = replace(config, feed_max_clients=feed_max_clients)
    if interfaces and no_discovery:
        raise UsageError("--interface only applies to mDNS discovery; drop --no-discovery")
    if interfaces:
        interface_addresses(interfaces)  # an unknown interface is a clear error before start
    daemon_main(config)


def _close_at(text: str) -> int | None:
    if text == "off":
        return None
    try:
        return dayclose.parse_close_at(text)
    except ValueError as exc:
        raise UsageError(f"--close-at: {exc}, or off") from None


@click.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def status(terminal_dir: Path, as_json: bool) -> None:
    """Show the terminal: identity, digest, addresses and peers (live when the daemon runs)."""
    daemon = daemon_client(terminal_dir)
    if daemon is not None:
        report = daemon.call("GET", "/v1/status")
        report["running"] = True
    else:
        with Terminal.open(terminal_dir) as terminal:
            report = {
                "terminal_id": terminal.terminal_id,
                "store_id": terminal.store_id,
                "role": terminal.role.value,
                "digest": terminal.digest(),
                "records": terminal.replica.views.accepted_count(),
                "api": None,
                "listen": None,
                "leader": None,
                "term": None,
                "cloud": None,
                "peers": [],
                "revoked": terminal.revoked,
                "isolated_since": None,  # only a running daemon hears peers
                "first_write_unheard_ms": None,
                "succeeds": terminal.succession(),
                "running": False,
                "revocations": reports.revocations(terminal.replica),
            }
    if as_json:
        emit_json(report)
        return
    _print_status(report, wall_clock_ms())


def _print_status(report: dict[str, Any], now_ms: int) -> None:
    """``status`` for people: every moment as local time and age (``when``), never epoch ms."""
    state_text = "not running"
    if report["running"]:
        started = report.get("started_ms")
        state_text = "running" if started is None else f"running since {when(started, now_ms)}"
    console.print(
        f"terminal {report['terminal_id']} of store {report['store_id']} ({report['role']}), "
        f"{state_text}; {report['records']} records, digest {report['digest'][:16]}",
        markup=False,
    )
    succeeds = report.get("succeeds")
    if succeeds:
        console.print(
            f"  continues {succeeds['predecessor']} after seq {succeeds['after_seq']} "
            f"({succeeds['kind']})",
            markup=False,
        )
    if report["revoked"]:
        console.print(
            "  REVOKED by the store: every write is refused; enroll a replacement terminal",
            markup=False,
        )
    if report["first_write_unheard_ms"] is not None:
        console.print(
            f"  WROTE UNHEARD at {when(report['first_write_unheard_ms'], now_ms)}: before any "
            "peer answered; if this lane was restored from a backup, run verify on a peer",
            markup=False,
        )
    if report["isolated_since"] is not None:
        console.print(
            f"  ISOLATED since {when(report['isolated_since'], now_ms)}: its sales do not reach "
            "the store",
            markup=False,
        )
    if report["running"]:
        console.print(f"  local API: {report['api']}", markup=False)
        console.print(f"  listening for peers on: {report['listen']}", markup=False)
        console.print(f"  leader {report['leader']} (term {report['term']})", markup=False)
        if report.get("cloud"):
            cloud = report["cloud"]
            acked = cloud["last_ack_ms"]
            pending = cloud["pending_bytes"]
            console.print(
                f"  cloud {cloud['url']}: {'connected' if cloud['connected'] else 'not connected'}"
                f", last acknowledged {'never' if acked is None else when(acked, now_ms)}, "
                f"pending {'unknown' if pending is None else f'{pending} bytes'}",
                markup=False,
            )
    for peer in report["peers"]:
        if peer["connected"]:
            state = f"connected, unacknowledged {peer['unacked_bytes']} bytes"
            seen = peer.get("last_seen_ms")
            if seen is not None:
                state += f", last heard {when(seen, now_ms)}"
        else:
            state = f"not connected (last error: {peer.get('last_error') or 'none'})"
        console.print(f"  peer {peer['terminal_id']}: {state}", markup=False)
    for line in revocation_lines(report["revocations"]):
        console.print(f"  {line}", markup=False)


@click.command()
@click.argument("terminal_dir", type=DIR)
@JSON_OPTION
@reports_errors
def peers(terminal_dir: Path, as_json: bool) -> None:
    """Show the peers the running daemon knows (--peer, mDNS, inbound) and their links."""
    daemon = daemon_client(terminal_dir)
    if daemon is None:
        TerminalDirectory.open(terminal_dir)  # a wrong path is an error, not "not running"
        if as_json:
            emit_json({"running": False, "peers": []})
        else:
            console.print("not running")
        return
    rows: list[dict[str, Any]] = daemon.call("GET", "/v1/peers")["peers"]
    if as_json:
        emit_json({"running": True, "peers": rows})
        return
    if not rows:
        console.print("no peers known yet", markup=False)
        return
    console.print(_peers_table(rows, wall_clock_ms()))


def _peers_table(rows: list[dict[str, Any]], now_ms: int) -> Table:
    table = Table(title="Peers")
    for column in ("Terminal", "Found by", "Addresses", "Connected", "Last seen", "Last error"):
        table.add_column(column)
    for row in rows:
        seen = row.get("last_seen_ms")
        table.add_row(
            escape(str(row["terminal_id"] or "?")),
            escape(", ".join(row["found_by"])),
            escape("\n".join(row["addresses"]) or "-"),
            Text("yes", style="green") if row["connected"] else Text("no", style="red"),
            "-" if seen is None else f"{max(0, now_ms - int(seen)) / 1000:.1f} s ago",
            escape(str(row["last_error"] or "")),
        )
    return table
