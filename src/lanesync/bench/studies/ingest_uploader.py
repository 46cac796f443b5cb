"""An uploader process of ``lanesync bench cloud-ingest``:
``python -m lanesync.bench.studies.ingest_uploader SPEC`` opens its share of the stores'
terminals, answers one ``ready`` JSON line, dials the cloud on ``go`` (a line on stdin), stops on
``stop`` (or when its stdin closes) and prints its figures as one JSON line.

Each store's uploader is lanesync's own code: the terminal's replica, a ``core.node.Node`` and a
``shell.mesh.Mesh`` that dials the cloud with ``Mesh.add_uplink(url, "cloud", Role.CLOUD)``,
exactly what ``shell.uplink.Uplink`` does once its lane is the store's leader. The election, the
probe and mDNS are left out: they choose *which* lane uploads, not how.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from lanesync.core.identity import Role
from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.core.node import Node
from lanesync.shell.mesh import Mesh
from lanesync.shell.terminal import Terminal


class UplinkEvents(logging.Handler):
    """Counts the mesh's uplink events (``peer.connected peer=cloud``, ``peer.closed ...``;
    ``peer.closed peer=None``: a connection that ended before its peer was verified)."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = 0
        self.closed: Counter[str] = Counter()
        # Each close: its wall-clock time (as time.time()) and reason.
        self.closed_at: list[tuple[float, str]] = []
        # Connections that closed before the cloud was verified (a dial refused in the
        # handshake: the cloud's handshake gate, or its timeout).
        self.unverified_at: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("peer.connected peer=cloud"):
            self.connected += 1
        elif message.startswith("peer.closed peer=None"):
            self.unverified_at.append(record.created)
        elif message.startswith("peer.closed peer=cloud"):
            match = re.search(r"reason=(.*) by_peer=", message)
            reason = match.group(1) if match else message
            self.closed[reason] += 1
            self.closed_at.append((record.created, reason))


async def run_uploader(spec: dict[str, Any]) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(created).3f %(name)s %(message)s"
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    events = UplinkEvents()
    logging.getLogger("lanesync.mesh").addHandler(events)
    fatal: list[str] = []
    opened = time.perf_counter()
    stores: list[tuple[Terminal, Mesh, str]] = []
    try:
        for entry in spec["stores"]:
            terminal = Terminal.open(Path(entry["terminal"]), lock_wait_s=0)
            terminal.on_failure = lambda exc: fatal.append(str(exc))
            mesh = Mesh(Node(terminal.replica), terminal)
            mesh.start()
            stores.append((terminal, mesh, str(entry["url"])))
        print(json.dumps({"ready": len(stores), "open_s": time.perf_counter() - opened}))
        sys.stdout.flush()
        command = await asyncio.to_thread(sys.stdin.readline)
        if command.strip() == "go":
            for _, mesh, url in stores:
                # What shell.uplink.Uplink._steer does once its lane leads the store.
                mesh.add_uplink(url, CLOUD_TERMINAL_ID, Role.CLOUD)
            await asyncio.to_thread(sys.stdin.readline)  # "stop", or EOF if the parent died
        # Uplinks that closed before we were told to stop (our own shutdown closes them all).
        dropped = dict(events.closed)
        for _, mesh, _ in stores:
            for peer in mesh.peers:
                peer.gone = True
                if peer.task is not None:
                    peer.task.cancel()
            mesh.close_all()
        await asyncio.sleep(0.5)  # let the close frames go out
        figures = {
            "stores": len(stores),
            "uplink_bytes_out": sum(mesh.bytes_out for _, mesh, _ in stores),
            "uplinks_connected": events.connected,
            "uplinks_closed": dropped,
            "fatal": fatal,
        }
    finally:
        for terminal, _, _ in stores:
            terminal.close()
    print(json.dumps(figures))
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m lanesync.bench.studies.ingest_uploader SPEC")
    asyncio.run(run_uploader(json.loads(Path(argv[0]).read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
