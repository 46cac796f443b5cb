"""Who and what a running lane refuses, and that a refusal changes nothing.

Two real lanes, ``a`` (manager) and ``b`` (cashier, dials a), are connected and syncing. Each
attack below is refused: the attacker never becomes a peer of ``a``, ``a``'s digest is what
it was, and ``a`` keeps serving ``b`` (a sale rung on ``b`` afterwards still reaches ``a``).

Attackers: a terminal of another store; a terminal signed by another authority that claims our
store id (and b's terminal id); a revoked terminal (revoked through the CLI while ``a`` runs);
raw websocket clients sending garbage, text, a bogus hello, ``a``'s own hello, a sealed frame
before any handshake, an oversized frame; an enrolled terminal that completes the handshake
and then replays a sealed frame. The replay is also checked in-process on the pure core.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support import hold_for, peer_connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from lanesync.core.connection import (
    Closed,
    ConnState,
    Established,
    PeerConnection,
    Received,
)
from lanesync.core.identity import Role
from lanesync.core.ids import CATALOG_DOC
from lanesync.core.wire import (
    MAX_FRAME_SIZE,
    Hello,
    Peers,
    Refuse,
    Sealed,
    Update,
    Updates,
    decode_frame,
    encode_frame,
)
from lanesync.shell.admission import (
    HANDSHAKE_GRACE_S,
    MAX_HANDSHAKES,
    MAX_UNAUTHENTICATED_MESSAGE,
)
from lanesync.shell.directories import StoreDirectory, TerminalDirectory
from lanesync.shell.terminal import wall_clock_ms

from .cluster import Cluster, Daemon, wait_connected, wait_until

pytestmark = pytest.mark.slow

PRICE = 100
RECEIVED = 500
# An attacker's daemon redials with backoff from 0.2 s; this sees several attempts.
WATCH_S = 1.5
IO_TIMEOUT_S = 10.0
POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009


@dataclass
class Pair:
    cluster: Cluster
    store: StoreDirectory
    a: Daemon
    b: Daemon
    sold_on_b: int = 0
    spare: dict[str, Path] = field(default_factory=dict)  # enrolled, never started yet

    def sell_on_b_reaches_a(self) -> None:
        """The liveness check after every attack: a still serves b."""
        assert "b" in self.a.peers(), self.a.status()["peers"]
        self.b.sell("milk", 1)
        self.sold_on_b += 1
        expected = RECEIVED - self.sold_on_b
        wait_until(
            lambda: self.a.on_hand("milk") == expected and self.a.digest() == self.b.digest(),
            15,
            lambda: (
                f"b's sale reached a (a: {self.a.on_hand('milk')}, want {expected})\n"
                + self.cluster.describe()
            ),
        )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    cluster = Cluster(tmp_path_factory.mktemp("refusals"))
    try:
        store = cluster.store()
        a, b = cluster.stocked_pair(store, PRICE, RECEIVED)
        spare = {name: cluster.enroll(store, name) for name in ("r", "r2", "q")}
        yield Pair(cluster, store, a, b, spare=spare)
    finally:
        cluster.close()


def settled(pair: Pair) -> str:
    """a's digest once b holds the same state (nothing in flight)."""
    wait_until(lambda: pair.a.digest() == pair.b.digest(), 15, "a and b settled")
    return pair.a.digest()


# -- terminals that must never become peers --------------------------------------------------------


@pytest.mark.parametrize(
    ("store_id", "terminal", "reason"),
    [
        ("s2", "x", "peer belongs to store 's2'"),  # another store altogether
        ("s1", "b", "peer certificate rejected"),  # our id and b's terminal id, another authority
    ],
    ids=["other store", "forged authority with b's id"],
)
def test_terminal_of_another_authority_is_refused(
    pair: Pair, tmp_path: Path, store_id: str, terminal: str, reason: str
) -> None:
    before = settled(pair)
    log_before = len(pair.a.log_text())
    other = StoreDirectory.init(tmp_path / "other-store", store_id)
    path = tmp_path / "intruder"
    other.enroll(path, terminal, Role.MANAGER, wall_clock_ms(), 30)
    intruder = pair.cluster.start(path, [pair.a.listen])
    intruder.receive("caviar", 5)  # its own data must never reach a
    wait_until(
        lambda: pair.a.log_text().count("peer.closed", log_before) >= 2,
        15,
        lambda: "a refused the intruder twice\n" + pair.cluster.describe(),
    )
    hold_for(
        lambda: (
            pair.a.listed_peers() == {"b"} and pair.a.peers() == {"b"} and intruder.peers() == set()
        ),
        WATCH_S,
        "the intruder became a peer",
    )
    refusals = pair.a.log_text()[log_before:]
    assert reason in refusals, refusals
    assert pair.a.digest() == before
    assert "caviar" not in pair.a.stock()
    pair.cluster.stop(intruder)
    pair.sell_on_b_reaches_a()


def test_revoked_terminal_never_connects(pair: Pair) -> None:
    r_dir = pair.spare["r"]
    # r rings a sale of its own while offline, before it is revoked.
    offline = pair.cluster.cli_json("sell", r_dir, "gum:1:50")
    assert offline["sale_id"] == "r:1"
    revoked = pair.cluster.cli_json("revoke", pair.store.path, "r", "--via", pair.a.path)
    # a (through its daemon) holds nothing of r: nothing of r ever counts, r:1 included
    assert revoked == {
        "revoked": "r", "after_seq": 0, "hash": None, "held_seq": 0, "keys": [], "via": "a",
    }  # fmt: skip
    cut = {"after_seq": 0, "hash": None, "revoked_at_ms": None, "keys": {}}
    assert pair.a.status()["revocations"] == {"r": cut}
    assert pair.a.get("/v1/chains/r")["revocation"] == cut
    before = settled(pair)  # b holds the revocation too
    assert pair.b.status()["revocations"] == {"r": cut}
    log_before = len(pair.a.log_text())
    r = pair.cluster.start(r_dir, [pair.a.listen])
    wait_until(
        lambda: pair.a.log_text().count("revoked", log_before) >= 2,
        15,
        lambda: "a refused r (revoked) twice\n" + pair.cluster.describe(),
    )
    hold_for(
        lambda: "r" not in pair.a.listed_peers() and r.peers() == set(),
        WATCH_S,
        "the revoked terminal became a peer",
    )
    assert "terminal r is revoked" in pair.a.log_text()[log_before:]
    assert pair.a.digest() == before
    assert "gum" not in pair.a.stock()
    assert pair.a.chain_head("r") == 0
    pair.cluster.stop(r)
    pair.sell_on_b_reaches_a()


def test_terminal_revoked_while_connected_is_dropped(pair: Pair) -> None:
    """Revocation takes effect at once: an open connection of the revoked terminal is closed
    (it must not keep reading the store's data) and it cannot reconnect."""
    r2 = pair.cluster.start(pair.spare["r2"], [pair.a.listen])
    wait_connected(pair.a, {"b", "r2"})
    pair.cluster.cli_json("revoke", pair.store.path, "r2", "--via", pair.a.path)
    wait_until(
        lambda: "r2" not in pair.a.listed_peers(),
        10,
        lambda: (
            f"a dropped revoked r2; a's peers: {pair.a.status()['peers']}\n"
            + pair.cluster.describe()
        ),
    )
    hold_for(lambda: "r2" not in pair.a.listed_peers(), WATCH_S, "revoked r2 reconnected")
    pair.b.sell("milk", 1)
    pair.sold_on_b += 1
    hold_for(
        lambda: r2.on_hand("milk") != RECEIVED - pair.sold_on_b,
        1.0,
        "a sale made after the revocation reached the revoked terminal",
    )
    pair.cluster.stop(r2)
    pair.sell_on_b_reaches_a()


# -- raw websocket clients -------------------------------------------------------------------------


def raw_client(daemon: Daemon) -> ClientConnection:
    return connect(
        daemon.listen,
        proxy=None,
        compression=None,
        max_size=None,
        open_timeout=IO_TIMEOUT_S,
        close_timeout=2,
        ping_interval=None,
    )


def drain(ws: ClientConnection) -> tuple[list[bytes | str], ConnectionClosed]:
    """Everything the server sends until it closes the connection."""
    frames: list[bytes | str] = []
    while True:
        try:
            frames.append(ws.recv(timeout=IO_TIMEOUT_S))
        except ConnectionClosed as closed:
            return frames, closed


def refusal_reasons(frames: list[bytes | str]) -> list[str]:
    reasons = []
    for frame in frames:
        if isinstance(frame, bytes):
            decoded = decode_frame(frame)
            if isinstance(decoded, Refuse):
                reasons.append(decoded.reason)
    return reasons


def hello_of(certificate: bytes, store_id: str = "s1") -> bytes:
    return encode_frame(Hello(store_id, certificate, os.urandom(32), os.urandom(32)))


def forged_certificate(tmp_path: Path) -> bytes:
    """A well-formed certificate for terminal b, signed by an authority that is not ours."""
    other = StoreDirectory.init(tmp_path / "forger", "s1")
    return other.enroll(tmp_path / "forged", "b", Role.MANAGER, wall_clock_ms(), 30).encoded


Attack = Callable[[ClientConnection, bytes, Path], None]


def send_garbage(ws: ClientConnection, _: bytes, __: Path) -> None:
    ws.send(b"\x00\xffthis is not msgpack at all\xc1")


def send_text(ws: ClientConnection, _: bytes, __: Path) -> None:
    ws.send("hello, I am a terminal")


def send_bogus_hello(ws: ClientConnection, _: bytes, __: Path) -> None:
    ws.send(hello_of(b"not a certificate" * 4))


def send_forged_hello(ws: ClientConnection, _: bytes, tmp_path: Path) -> None:
    ws.send(hello_of(forged_certificate(tmp_path)))


def send_foreign_store_hello(ws: ClientConnection, _: bytes, tmp_path: Path) -> None:
    other = StoreDirectory.init(tmp_path / "s9", "s9")
    cert = other.enroll(tmp_path / "s9-lane", "x", Role.CASHIER, wall_clock_ms(), 30)
    ws.send(hello_of(cert.encoded, "s9"))


def replay_own_hello(ws: ClientConnection, server_hello: bytes, _: Path) -> None:
    ws.send(server_hello)  # a's own hello, sent back to it


def send_sealed_first(ws: ClientConnection, _: bytes, __: Path) -> None:
    ws.send(encode_frame(Sealed(0, os.urandom(64))))


def send_oversized(ws: ClientConnection, _: bytes, __: Path) -> None:
    # The server may close before the whole frame is written.
    with contextlib.suppress(ConnectionClosed):
        ws.send(b"\x00" * (MAX_FRAME_SIZE + 1))


def send_oversized_hello(ws: ClientConnection, _: bytes, __: Path) -> None:
    # Refused from its frame header: a stranger cannot make a lane buffer 64 MiB.
    with contextlib.suppress(ConnectionClosed):
        ws.send(b"\x00" * (MAX_UNAUTHENTICATED_MESSAGE + 1))


ATTACKS: dict[str, tuple[Attack, int, str | None]] = {
    "garbage bytes": (send_garbage, POLICY_VIOLATION, "msgpack"),
    "text frame": (send_text, POLICY_VIOLATION, "text frames are not part of the protocol"),
    "bogus certificate": (send_bogus_hello, POLICY_VIOLATION, "certificate rejected"),
    "forged authority": (send_forged_hello, POLICY_VIOLATION, "not signed by the authority"),
    "foreign store": (send_foreign_store_hello, POLICY_VIOLATION, "belongs to store 's9'"),
    "own hello replayed": (replay_own_hello, POLICY_VIOLATION, "our own terminal id"),
    "sealed before handshake": (send_sealed_first, POLICY_VIOLATION, "unexpected sealed frame"),
    "oversized frame": (send_oversized, MESSAGE_TOO_BIG, None),
    "hello over the handshake limit": (send_oversized_hello, MESSAGE_TOO_BIG, None),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_raw_client_is_cut_off(pair: Pair, tmp_path: Path, name: str) -> None:
    attack, code, reason = ATTACKS[name]
    before = settled(pair)
    with raw_client(pair.a) as ws:
        server_hello = ws.recv(timeout=IO_TIMEOUT_S)  # a speaks first: its hello
        assert isinstance(server_hello, bytes)
        assert isinstance(decode_frame(server_hello), Hello)
        attack(ws, server_hello, tmp_path)
        frames, closed = drain(ws)
    assert closed.rcvd is not None, f"no close frame from a: {closed!r}"
    assert closed.rcvd.code == code, closed.rcvd
    if reason is not None:
        told = [*refusal_reasons(frames), closed.rcvd.reason]
        assert any(reason in text for text in told), told
    assert pair.a.digest() == before
    assert pair.a.peers() == {"b"}
    pair.sell_on_b_reaches_a()


def test_connections_stuck_in_the_handshake_are_capped_newcomers_first_then_the_oldest(
    pair: Pair,
) -> None:
    """Strangers that connect and never say hello: past MAX_HANDSHAKES the newcomer is refused
    while the oldest is within its HANDSHAKE_GRACE_S, and the oldest once it is past it."""
    before = settled(pair)
    with contextlib.ExitStack() as stack:
        first_started = time.monotonic()
        clients = [stack.enter_context(raw_client(pair.a)) for _ in range(MAX_HANDSHAKES)]
        first_opened = time.monotonic()
        late = stack.enter_context(raw_client(pair.a))
        late_opened = time.monotonic()
        for ws in clients:
            assert isinstance(ws.recv(timeout=IO_TIMEOUT_S), bytes)  # a's hello: it is open
        # Whether the newcomer came within the oldest's grace, from the client's clocks: the
        # server admitted the oldest between first_started and first_opened.
        if late_opened - first_started < HANDSHAKE_GRACE_S:
            frames, closed = drain(late)
            assert frames == [], frames  # refused before a's hello
            assert_refused(closed)
            with pytest.raises(TimeoutError):
                clients[0].recv(timeout=0.5)  # the oldest still waits
        else:  # a machine so slow that the oldest may have had its grace: one of them went
            try:
                late.recv(timeout=IO_TIMEOUT_S)  # a's hello: the newcomer took the oldest's place
                assert_refused(drain(clients.pop(0))[1])
            except ConnectionClosed as closed:
                assert_refused(closed)
        # Once the oldest has had its grace, a newcomer takes its place.
        time.sleep(max(0.0, first_opened + HANDSHAKE_GRACE_S - time.monotonic()))
        later = stack.enter_context(raw_client(pair.a))
        assert isinstance(later.recv(timeout=IO_TIMEOUT_S), bytes)  # a's hello: admitted
        frames, closed = drain(clients[0])
        assert_refused(closed, refusal_reasons(frames))
        with pytest.raises(TimeoutError):
            clients[1].recv(timeout=0.5)  # the younger ones are still waiting
    assert pair.a.digest() == before
    pair.sell_on_b_reaches_a()


def assert_refused(closed: ConnectionClosed, reasons: list[str] | None = None) -> None:
    assert closed.rcvd is not None, closed
    assert closed.rcvd.code == POLICY_VIOLATION
    told = [*(reasons or []), closed.rcvd.reason]
    assert any("too many connections in the handshake" in t for t in told), told


# -- replayed frames -------------------------------------------------------------------------------


def authenticate(q: PeerConnection, ws: ClientConnection, pair: Pair) -> None:
    """Complete a real handshake of q with a over ``ws``."""
    q.start()
    for frame in q.data_to_send():
        ws.send(frame)
    while q.state is not ConnState.OPEN:
        received = ws.recv(timeout=IO_TIMEOUT_S)
        assert isinstance(received, bytes)
        q.receive_data(received, wall_clock_ms())
        for frame in q.data_to_send():
            ws.send(frame)
        assert q.state is not ConnState.CLOSED, q.close_reason
    assert any(isinstance(e, Established) for e in q.events_received())
    wait_connected(pair.a, {"q"})


def test_an_authenticated_peer_may_send_messages_over_the_handshake_limit(pair: Pair) -> None:
    """The handshake's size limit is lifted once a has verified the peer: a 1 MiB message is
    read and judged on its content (here garbage updates: a policy violation), not refused by
    size (1009)."""
    before = settled(pair)
    q = peer_connection(TerminalDirectory.open(pair.spare["q"]))
    with raw_client(pair.a) as ws:
        authenticate(q, ws, pair)
        q.send(Updates((Update(CATALOG_DOC, os.urandom(1024 * 1024), "q"),)))
        (sealed,) = q.data_to_send()
        assert len(sealed) > MAX_UNAUTHENTICATED_MESSAGE
        ws.send(sealed)
        _, closed = drain(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == POLICY_VIOLATION, closed.rcvd
    wait_until(lambda: pair.a.peers() == {"b"}, 10, "a dropped q")
    assert pair.a.digest() == before
    pair.sell_on_b_reaches_a()


def test_replayed_frame_over_a_real_socket_is_refused(pair: Pair) -> None:
    """An enrolled terminal (q, run here on the pure core) completes a real handshake with a,
    sends one sealed message, then sends the very same frame again."""
    before = settled(pair)
    q = peer_connection(TerminalDirectory.open(pair.spare["q"]))
    with raw_client(pair.a) as ws:
        authenticate(q, ws, pair)
        q.send(Peers(()))
        (sealed,) = q.data_to_send()
        ws.send(sealed)
        ws.send(sealed)  # the replay
        frames, closed = drain(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == POLICY_VIOLATION
    told = [closed.rcvd.reason]
    for reply in frames:  # what a sealed for q, then its clear-text refusal
        assert isinstance(reply, bytes)
        q.receive_data(reply, wall_clock_ms())
    told += [e.reason for e in q.events_received() if isinstance(e, Closed)]
    assert any("out of sequence" in text for text in told), told
    wait_until(lambda: pair.a.peers() == {"b"}, 10, "a dropped q")
    assert pair.a.digest() == before
    pair.sell_on_b_reaches_a()


def handshake(left: PeerConnection, right: PeerConnection, now_ms: int) -> None:
    left.start()
    right.start()
    for _ in range(4):
        for src, dst in ((left, right), (right, left)):
            for frame in src.data_to_send():
                dst.receive_data(frame, now_ms)
    assert left.state is ConnState.OPEN, left.close_reason
    assert right.state is ConnState.OPEN, right.close_reason
    assert any(isinstance(e, Established) for e in left.events_received())
    assert any(isinstance(e, Established) for e in right.events_received())


def test_replayed_frame_closes_the_connection_in_the_core(pair: Pair) -> None:
    now = wall_clock_ms()
    sender = peer_connection(TerminalDirectory.open(pair.spare["q"]))
    # Reads a's keys only; a's daemon keeps its lock.
    receiver = peer_connection(TerminalDirectory.open(pair.a.path))
    handshake(sender, receiver, now)
    sender.send(Peers(("b",)))
    (sealed,) = sender.data_to_send()
    receiver.receive_data(sealed, now)
    assert receiver.events_received() == [Received(Peers(("b",)))]
    receiver.receive_data(sealed, now)  # the replay
    events = receiver.events_received()
    assert len(events) == 1
    assert isinstance(events[0], Closed)
    assert "out of sequence" in events[0].reason
    assert receiver.state is ConnState.CLOSED
    (refusal,) = receiver.data_to_send()
    decoded = decode_frame(refusal)
    assert isinstance(decoded, Refuse)
    assert "out of sequence" in decoded.reason
    # A closed connection ignores anything further, even a valid next frame.
    sender.send(Peers(()))
    receiver.receive_data(sender.data_to_send()[0], now)
    assert receiver.events_received() == []
