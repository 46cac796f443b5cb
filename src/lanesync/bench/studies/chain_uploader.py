"""An uploader process of ``lanesync bench cloud-chain``:
``python -m lanesync.bench.studies.chain_uploader SPEC`` opens its share of the active stores'
terminals, answers one ``ready`` JSON line, dials the cloud on ``go`` (a line on stdin), stops on
``stop`` (or when its stdin closes) and prints its figures as one JSON line.

Each store uploads with lanesync's own code, as ``ingest_uploader`` does (a ``Node`` and a
``Mesh`` dialing the cloud with ``Mesh.add_uplink``); a store marked ``ticks`` also sells: once
the cloud has acknowledged everything it held at ``go``, it writes one sale every
``interval_s`` through a ``GroupCommitter`` publishing to its mesh (the daemon's write path).

Acknowledgement latency: the cloud acknowledges with ``State(reply=False)``, its state vectors,
sent only once what it merged is committed (``core.node``); the uplink keeps the last one as the
cloud link's ``peer_state`` (what ``shell.uplink.Uplink`` reports as ``last_ack_ms``). After each
sale's commit returns, the store notes the clock of its own CRDT client in every document;
after every flush of its mesh (``MeshObserver.flushed``: every frame received is followed by
one) it checks whether the cloud's last state covers that. Each sale's commit and acknowledgement
times (``time.time()``) go to the ``acks`` file as one JSON line, as they happen, so the parent
can follow a restarted cloud's first served upload live.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from lanesync.bench.load import seeded
from lanesync.bench.studies.ingest_fleet import sale_builder
from lanesync.bench.studies.ingest_uploader import UplinkEvents
from lanesync.core.identity import Role
from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.core.node import Node
from lanesync.core.records import Sale
from lanesync.core.statevector import StateVector, covers, decode_state_vector
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.mesh import Mesh, MeshObserver
from lanesync.shell.terminal import Terminal

# After ``stop``, how long the stores wait for the cloud to acknowledge their last sales.
ACK_WAIT_S = 60.0


def vectors_of(terminal: Terminal, client: int | None = None) -> dict[str, StateVector]:
    """The replica's state vectors, decoded (the sealed days' summary is none); with
    ``client``, only that CRDT client's clock, in the documents that hold any of it."""
    out: dict[str, StateVector] = {}
    for doc, encoded in terminal.replica.state_vectors().items():
        vector = decode_state_vector(encoded)
        if vector is None:
            continue
        if client is None:
            out[doc] = vector
        elif client in vector:
            out[doc] = {client: vector[client]}
    return out


@dataclass(slots=True)
class Pending:
    committed: float  # time.time() once the commit returned
    wanted: dict[str, StateVector]


@dataclass
class AckWatch(MeshObserver):
    """One store's sales waiting for the cloud's acknowledgement (observation only)."""

    store_id: str
    terminal: Terminal
    out: TextIO
    mesh: Mesh | None = None
    initial: dict[str, StateVector] | None = None  # everything held at ``go``
    caught_up: asyncio.Event = field(default_factory=asyncio.Event)
    pending: list[Pending] = field(default_factory=list)
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # nothing pending

    def expect(self, sale: Pending) -> None:
        self.pending.append(sale)
        self.settled.clear()

    def cloud_state(self) -> dict[str, bytes] | None:
        if self.mesh is None:
            return None
        for link in self.mesh.node.links.values():
            if link.is_open and link.peer is not None and link.peer.role is Role.CLOUD:
                return link.peer_state
        return None

    def flushed(self) -> None:
        if self.initial is None or (self.caught_up.is_set() and not self.pending):
            return
        state = self.cloud_state()
        if state is None:
            return
        now = time.time()
        held = {doc: decode_state_vector(v) or {} for doc, v in state.items()}

        def acked(wanted: dict[str, StateVector]) -> bool:
            return all(covers(held.get(doc, {}), vector) for doc, vector in wanted.items())

        if not self.caught_up.is_set() and acked(self.initial):
            self.caught_up.set()
            self.write({"store": self.store_id, "caught_up": now})
        still = []
        for sale in self.pending:
            if acked(sale.wanted):
                self.write({"store": self.store_id, "commit": sale.committed, "ack": now})
            else:
                still.append(sale)
        self.pending = still
        if not still:
            self.settled.set()

    def write(self, line: dict[str, Any]) -> None:
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()


@dataclass
class Store:
    store_id: str
    url: str
    ticks: bool
    terminal: Terminal
    mesh: Mesh
    watch: AckWatch
    committer: GroupCommitter
    sold: int = 0
    sold_cents: int = 0


async def sell(store: Store, interval_s: float, seed: int, stopping: asyncio.Event) -> None:
    """One sale every ``interval_s`` (a random phase first) once the store has caught up."""
    rng = seeded(seed)
    await store.watch.caught_up.wait()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), rng.uniform(0, interval_s))
    client = store.terminal.replica.client_id
    while not stopping.is_set():
        record = await store.committer.write(sale_builder(rng))
        store.watch.expect(Pending(time.time(), vectors_of(store.terminal, client)))
        store.sold += 1
        if isinstance(record.body, Sale):
            store.sold_cents += record.body.total_cents
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval_s)


async def run_uploader(spec: dict[str, Any], acks: TextIO) -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(created).3f %(name)s %(message)s"
    )
    logging.getLogger("websockets").setLevel(logging.WARNING)
    events = UplinkEvents()
    logging.getLogger("lanesync.mesh").addHandler(events)
    fatal: list[str] = []
    opened = time.perf_counter()
    stores: list[Store] = []
    stopping = asyncio.Event()
    try:
        for entry in spec["stores"]:
            terminal = Terminal.open(Path(entry["terminal"]), lock_wait_s=0)
            terminal.on_failure = lambda exc: fatal.append(str(exc))
            watch = AckWatch(str(entry["store_id"]), terminal, acks)
            mesh = Mesh(Node(terminal.replica), terminal, observer=watch)
            watch.mesh = mesh
            mesh.start()
            committer = GroupCommitter(terminal, publish=mesh.write)
            url, ticks = str(entry["url"]), bool(entry["ticks"])
            stores.append(Store(watch.store_id, url, ticks, terminal, mesh, watch, committer))
        print(json.dumps({"ready": len(stores), "open_s": time.perf_counter() - opened}))
        sys.stdout.flush()
        command = await asyncio.to_thread(sys.stdin.readline)
        tasks: list[asyncio.Task[None]] = []
        sellers: list[asyncio.Task[None]] = []
        if command.strip() == "go":
            for i, store in enumerate(stores):
                store.watch.initial = vectors_of(store.terminal)
                tasks.append(asyncio.create_task(store.committer.run()))
                if store.ticks:
                    seller = sell(store, spec["interval_s"], i, stopping)
                    sellers.append(asyncio.create_task(seller))
                # What shell.uplink.Uplink._steer does once its lane leads the store.
                store.mesh.add_uplink(store.url, CLOUD_TERMINAL_ID, Role.CLOUD)
            await asyncio.to_thread(sys.stdin.readline)  # "stop", or EOF if the parent died
        stopping.set()
        # Each seller ends once its sale in flight, if any, is committed (one that never
        # caught up is cancelled after the wait).
        if sellers:
            await asyncio.wait(sellers, timeout=ACK_WAIT_S)
        tasks += sellers
        with contextlib.suppress(TimeoutError):
            settled = [s.watch.settled.wait() for s in stores if s.watch.pending]
            await asyncio.wait_for(asyncio.gather(*settled), ACK_WAIT_S)
        unacked = sum(len(s.watch.pending) for s in stores)
        # Uplinks that closed before we were told to stop (our own shutdown closes them all).
        dropped, dropped_at = dict(events.closed), list(events.closed_at)
        unverified_at = list(events.unverified_at)
        for task in tasks:
            task.cancel()
        for store in stores:
            for peer in store.mesh.peers:
                peer.gone = True
                if peer.task is not None:
                    peer.task.cancel()
            store.mesh.close_all()
        await asyncio.sleep(0.5)  # let the close frames go out
        figures = {
            "stores": len(stores),
            "uplink_bytes_out": sum(s.mesh.bytes_out for s in stores),
            "uplinks_connected": events.connected,
            "uplinks_closed_at": dropped_at,
            "uplinks_closed": dropped,
            "unverified_closed_at": unverified_at,
            "sold": {s.store_id: [s.sold, s.sold_cents] for s in stores if s.sold},
            "unacked": unacked,
            "fatal": fatal,
        }
    finally:
        for store in stores:
            store.terminal.close()
    print(json.dumps(figures))
    sys.stdout.flush()


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m lanesync.bench.studies.chain_uploader SPEC")
    spec = json.loads(Path(argv[0]).read_text())
    with Path(spec["acks"]).open("a") as acks:
        asyncio.run(run_uploader(spec, acks))


if __name__ == "__main__":
    main(sys.argv[1:])
