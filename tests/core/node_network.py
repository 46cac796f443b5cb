"""A socket-free harness for mesh nodes, in the style of h11's ConnectionPair.

``NodeNetwork`` wires ``Node`` objects together the way the shell's websocket pump does: it calls
``connection_made`` on both ends of a connection, takes every node's output, carries each frame
to the other end's ``data_received`` and turns a close into ``connection_lost`` there. Frames in
flight are kept in one queue, so a test can deliver them in order (a perfect network), or drop,
duplicate, reorder and delay them (a faulty one), or tamper with them before delivery.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from lanesync.core.change import Change
from lanesync.core.ids import StoreId
from lanesync.core.node import Node
from lanesync.core.records import Body

from .helpers import NOW, CoreTerminal, Store

# Small timers keep simulated time short; the logic does not depend on the values.
ANTI_ENTROPY_MS = 1_000
ACK_DELAY_MS = 50


def seeded_bytes(seed: int) -> Callable[[int], bytes]:
    """Deterministic ``random_bytes`` for a node (nonces and ephemeral keys), so hypothesis can
    replay an example exactly."""
    rng = random.Random(seed)
    return rng.randbytes


def seeded_key(seed: int) -> SigningKey:
    return SigningKey(random.Random(seed).randbytes(32))


@dataclass
class Wire:
    """One transport connection. Both ends know it by the same ``conn_id``."""

    conn_id: int
    dialer: int
    listener: int
    closed_by: dict[int, str] = field(default_factory=dict)

    def other(self, node: int) -> int:
        return self.listener if node == self.dialer else self.dialer

    @property
    def closed(self) -> bool:
        return bool(self.closed_by)

    @property
    def pair(self) -> frozenset[int]:
        return frozenset((self.dialer, self.listener))


@dataclass
class Packet:
    """A frame (``data``) or the end of the transport (``data is None``) on its way to ``dst``."""

    dst: int
    conn_id: int
    data: bytes | None
    reason: str = ""


@dataclass
class Closure:
    node: int
    conn_id: int
    reason: str


class NodeNetwork:
    def __init__(self, nodes: list[Node], now_ms: int = NOW) -> None:
        self.nodes = nodes
        self.now = now_ms
        self.wires: dict[int, Wire] = {}
        self.in_flight: list[Packet] = []
        self.closures: list[Closure] = []
        self.persisted: list[int] = [0] * len(nodes)  # changes handed out to persist
        self.log: list[tuple[int, str, dict[str, object]]] = []
        self._next_conn = 1

    # -- wiring ----------------------------------------------------------------------------------

    def connect(self, dialer: int, listener: int) -> int:
        """Open a transport between two nodes (both ends at once) and queue their hellos."""
        conn_id = self._next_conn
        self._next_conn += 1
        self.wires[conn_id] = Wire(conn_id, dialer, listener)
        self.nodes[dialer].connection_made(conn_id, dialer=True, now_ms=self.now)
        self.nodes[listener].connection_made(conn_id, dialer=False, now_ms=self.now)
        self.collect()
        return conn_id

    def drop_transport(self, conn_id: int, reason: str = "transport timeout") -> None:
        """The transport dies under both ends (a timeout in the shell), whatever their state."""
        wire = self.wires[conn_id]
        for end in (wire.dialer, wire.listener):
            wire.closed_by.setdefault(end, reason)
            self.nodes[end].connection_lost(conn_id, reason, self.now)
        self.in_flight = [p for p in self.in_flight if p.conn_id != conn_id]
        self.collect()

    def live_wires(self) -> list[Wire]:
        return [w for w in self.wires.values() if not w.closed]

    def is_open(self, node: int, conn_id: int) -> bool:
        link = self.nodes[node].links.get(conn_id)
        return link is not None and link.is_open

    def established(self, a: int, b: int) -> list[int]:
        """Connections between ``a`` and ``b`` open on both ends."""
        return [
            w.conn_id
            for w in self.live_wires()
            if w.pair == {a, b} and self.is_open(a, w.conn_id) and self.is_open(b, w.conn_id)
        ]

    def reconnect(self, pairs: list[tuple[int, int]]) -> list[int]:
        """Dial every pair that has no transport left, with fresh connection ids (the daemon's
        dialer does the same after a close)."""
        opened = []
        for a, b in pairs:
            if not any(w.pair == {a, b} for w in self.live_wires()):
                opened.append(self.connect(min(a, b), max(a, b)))
        return opened

    def reset_stuck(self) -> None:
        """Close transports whose handshake cannot finish any more (a hello or auth was lost):
        the shell's open timeout does that."""
        for wire in self.live_wires():
            if not (
                self.is_open(wire.dialer, wire.conn_id)
                and self.is_open(wire.listener, wire.conn_id)
            ):
                self.drop_transport(wire.conn_id, "handshake timeout")

    # -- output and delivery ---------------------------------------------------------------------

    def collect(self) -> None:
        """Take every node's output: frames go in flight, closes end the transport (after the
        frames already sent on it, as TCP does)."""
        for index, node in enumerate(self.nodes):
            out = node.take_output()
            self.persisted[index] += len(out.persist)
            self.log.extend((index, name, fields) for name, fields in out.log)
            for conn_id, frames in out.frames.items():
                wire = self.wires.get(conn_id)
                if wire is None or index in wire.closed_by:
                    continue
                dst = wire.other(index)
                self.in_flight.extend(Packet(dst, conn_id, frame) for frame in frames)
            for conn_id, close in out.closes.items():
                reason = close.reason
                self.closures.append(Closure(index, conn_id, reason))
                wire = self.wires.get(conn_id)
                if wire is None or index in wire.closed_by:
                    continue
                wire.closed_by[index] = reason
                self.in_flight.append(Packet(wire.other(index), conn_id, None, reason))

    def deliver(self, packet: Packet) -> None:
        node = self.nodes[packet.dst]
        if packet.data is None:
            wire = self.wires[packet.conn_id]
            wire.closed_by.setdefault(packet.dst, f"closed by peer: {packet.reason}")
            node.connection_lost(packet.conn_id, packet.reason, self.now)
        else:
            node.data_received(packet.conn_id, packet.data, self.now)
        self.collect()

    def turn(self) -> int:
        """One turn of every node's event loop: every frame in flight is received, then each
        node's output is taken once (``deliver`` takes it after each frame). Returns how many
        bytes were received."""
        packets, self.in_flight = self.in_flight, []
        received = 0
        for packet in packets:
            node = self.nodes[packet.dst]
            if packet.data is None:
                self.wires[packet.conn_id].closed_by.setdefault(packet.dst, packet.reason)
                node.connection_lost(packet.conn_id, packet.reason, self.now)
            else:
                received += len(packet.data)
                node.data_received(packet.conn_id, packet.data, self.now)
        self.collect()
        return received

    def take(self, dst: int | None = None) -> list[Packet]:
        """Remove and return the frames in flight (to ``dst``), to deliver them by hand."""
        taken = [p for p in self.in_flight if dst is None or p.dst == dst]
        self.in_flight = [p for p in self.in_flight if p not in taken]
        return taken

    def run(self, limit: int = 20_000) -> int:
        """A perfect network: deliver everything in order until nothing is in flight."""
        delivered = 0
        while self.in_flight:
            self.deliver(self.in_flight.pop(0))
            delivered += 1
            assert delivered <= limit, "the nodes keep talking: a message loop"
        return delivered

    def advance(self, ms: int) -> None:
        """Let ``ms`` pass and run every node's timers."""
        self.now += ms
        for node in self.nodes:
            node.handle_timer(self.now)
        self.collect()

    def settle(self, rounds: int = 3) -> None:
        """Deliver everything, then let anti-entropy run ``rounds`` times on a perfect network."""
        self.run()
        for _ in range(rounds):
            self.advance(ANTI_ENTROPY_MS + 1)
            self.run()

    # -- local writes ----------------------------------------------------------------------------

    def append(self, node: int, body: Body) -> Change:
        """A local record on ``node``: committed, then handed to the node to send."""
        _, change = self.nodes[node].replica.append(body, self.now)
        self.nodes[node].local_change(change, self.now)
        self.collect()
        return change

    # -- reading ---------------------------------------------------------------------------------

    def digests(self) -> list[str]:
        return [node.replica.digest() for node in self.nodes]

    def reasons(self, node: int | None = None) -> list[str]:
        return [c.reason for c in self.closures if node is None or c.node == node]


def make_nodes(
    store: Store,
    names: list[str],
    *,
    seed: int = 0,
    deterministic_keys: bool = False,
) -> tuple[list[CoreTerminal], list[Node]]:
    terminals = [
        store.terminal(name, key=seeded_key(seed * 100 + i) if deterministic_keys else None)
        for i, name in enumerate(names)
    ]
    nodes = [
        Node(
            t.replica,
            random_bytes=seeded_bytes(seed * 100 + i),
            anti_entropy_ms=ANTI_ENTROPY_MS,
            ack_delay_ms=ACK_DELAY_MS,
        )
        for i, t in enumerate(terminals)
    ]
    return terminals, nodes


def deterministic_store(seed: int = 0, store_id: str = "shop1") -> Store:
    return Store(store_id=StoreId(store_id), authority=seeded_key(10_000 + seed))
