"""Attacks on a running lane's peer port, and what they cost the lane (issue 14, items 2 and 3).

Used by tests/mesh/test_attacks.py and benchmarks/attack.py, against a real ``lanesync run``
daemon on 127.0.0.1 (a ``Daemon`` of tests/mesh/cluster.py):

* ``FloodAndStall`` (item 2): an enrolled terminal completes the real handshake (the project's
  own ``PeerConnection``), sends a burst of tiny sealed frames, half ``State({}, reply=True)``
  (each asks for the whole day) and half ``Peers(())``, and then never reads again; after
  ``HOLD_S`` it resets the connection. Its socket's receive buffer is made small before
  connecting, so the TCP window is full after a few frames and everything else the lane answers
  stays in the lane.
* ``OversizedHellos`` (item 3): parallel connections each send one huge binary message as their
  hello, before any authentication. The header goes first with a little of the body; then the
  attacker waits ``pause_s`` for the lane to close the connection, which a lane that enforces the
  hello limit on the header does at once, and only then sends the rest.

``measure`` runs one attack while two threads watch the lane: ``RssSampler`` (psutil RSS every
50 ms) and ``ApiProbe`` (GET /v1/status every 10 ms, each on a new connection, with a timeout).
Phases: idle (``IDLE_S`` before the attack), the attack (from its first byte until the attacker
let go of its last connection, at least ``MIN_WINDOW_S``), after (``AFTER_S`` later).

The probe waits for each answer before it sends the next request, so while the lane's event loop
is stuck it sends one request where it meant to send hundreds: a p99 of its raw samples hides a
3 s stall among a thousand quick answers (coordinated omission). Its latencies are therefore
corrected as HdrHistogram's ``recordValueWithExpectedInterval`` does: an answer that took L adds
the requests that should have gone out meanwhile, at L - 10 ms, L - 20 ms, ... down to 10 ms;
what a client sending every 10 ms would have waited.

Both attackers talk websocket through websockets' sans-I/O ``ClientProtocol`` over a plain
blocking socket rather than its asyncio or threading client: those clients read (and answer
pings) in the background, which is exactly what a stalled peer must not do. Everything the
attack sends is built before its window opens, so during it this process only waits on sockets
and leaves the probes' timings alone.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import random
import re
import select
import socket
import statistics
import struct
import termios
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import httpx
import msgpack
import psutil
from shell.helpers import write_together  # tests/ is on sys.path, as for `support`
from support import FRESH_CONNECTIONS, peer_connection
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import State as WsState
from websockets.uri import parse_uri
from websockets.utils import apply_mask

from lanesync.bench.stats import percentile
from lanesync.core.bodies import LineRequest, build_sale
from lanesync.core.connection import Closed, PeerConnection, Received
from lanesync.core.identity import Role
from lanesync.core.ids import Sku
from lanesync.core.wire import (
    NONCE_SIZE,
    PROTOCOL_VERSION,
    X25519_KEY_SIZE,
    FrameType,
    Peers,
    Refuse,
    State,
    decode_frame,
)
from lanesync.errors import ProtocolViolation
from lanesync.shell.directories import StoreDirectory, TerminalDirectory
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .cluster import Cluster, Daemon

MIB = 1024 * 1024
# Issue 14 asks for these: RSS sampled every 50 ms, and once more 5 s after the attack.
SAMPLE_INTERVAL_S = 0.05
AFTER_S = 5.0
# The idle baseline: RSS (median) and API latency over this long before the first attacking byte.
IDLE_S = 1.0
# A request the lane has not answered by then counts as this long. Issue 14 saw 6.7 s at worst
# under the item-2 flood; 10 s keeps that visible without one request stalling a whole run.
PROBE_TIMEOUT_S = 10.0
# The probe means to send one request every 10 ms: hundreds in a window of a few seconds (enough
# for a p99) without becoming a load of its own (a /v1/status costs the lane a few ms).
PROBE_INTERVAL_S = 0.01
# Every phase the API is judged on lasts at least this long, so that a p99 rests on hundreds of
# requests even when the lane ends the attack in milliseconds.
MIN_WINDOW_S = 5.0
IO_TIMEOUT_S = 30.0
READ_SIZE = 65536

# The attacker's receive buffer (SO_RCVBUF, set before connect so the window is announced that
# small; Linux doubles the value for its bookkeeping). The lane's first answers fill it at once.
RECEIVE_BUFFER = 16 * 1024
# Item 2's attacker stalls this long from its first byte, whatever the lane does (a fixed window:
# figures of runs and of versions compare); then it resets its socket.
HOLD_S = 10.0
LOG_POLL_S = 0.05

# Item 3: issue 14's figures are for 4 parallel 60 MiB hellos (the transport limit is 64 MiB).
HELLO_CONNECTIONS = 4
HELLO_SIZE = 60 * MIB
# Sent with the header before the pause: a lane that checks the size on the header has closed
# the connection long before the pause ends; one that waits for the whole message has not.
# The pause stays short of the lane's keepalive (a ping 2 s after the connection opened, 2 s to
# answer it: shell/mesh.py), which would otherwise close a silent attacker before the rest of
# its message went out and hide what the lane does with a whole one.
HELLO_FIRST_PART = 64 * 1024
HELLO_PAUSE_S = 1.0
HELLO_CHUNK = MIB  # a multiple of 4, so every chunk of the body starts at the same mask offset

# The lane's log line for a closed link (core/node.py; docs/how-to/operations.md, "Logs and
# metrics").
PEER_CLOSED = re.compile(r"^peer\.closed peer=(\S+) reason=(.*) by_peer=(True|False)$")

ATTACKER = "mallory"
# The workload of `lanesync bench foundation`: 1-3 lines over 500 SKUs, quantities 1-5, prices
# 50-4999 cents. ``prefill`` of 2,000 such sales makes a 412 KB ledger document (measured with
# ``Replica.updates_since({})``, 2026-12-07; about 200 B per sale), a busy lane's day: what one
# State(reply=True) with empty vectors gets as its answer.
SKU_COUNT = 500
PREFILL_BATCH = 500


class AttackError(Exception):
    """The attack itself could not be carried out (not a defence of the lane: a broken run)."""


# -- the scene: a store, a lane holding a day of sales, an enrolled attacker ---------------------


def prefill(path: Path, sales: int, seed: int = 42) -> None:
    """Write ``sales`` sales into a terminal directory no daemon runs on (``Terminal``'s
    group-commit path, ``PREFILL_BATCH`` per commit: seconds, where `lanesync sell` takes one
    process per sale)."""
    rng = random.Random(seed)
    with Terminal.open(path) as terminal:
        for start in range(0, sales, PREFILL_BATCH):
            builders = []
            for _ in range(min(PREFILL_BATCH, sales - start)):
                lines = [
                    LineRequest(
                        Sku(f"sku-{rng.randrange(SKU_COUNT):03d}"),
                        rng.randint(1, 5),
                        rng.randint(50, 4999),
                    )
                    for _ in range(rng.randint(1, 3))
                ]
                builders.append(partial(build_sale, requests=lines))
            write_together(terminal, builders)  # a refused sale raises


@dataclass(frozen=True, slots=True)
class Scene:
    store: StoreDirectory
    lane: Path  # the lane's terminal directory, prefilled
    attacker: Path  # an enrolled cashier of the same store: a real key


def scene(cluster: Cluster, sales: int) -> Scene:
    store = cluster.store()
    lane = cluster.enroll(store, "lane")
    attacker = cluster.enroll(store, ATTACKER, Role.CASHIER)
    prefill(lane, sales)
    return Scene(store, lane, attacker)


# -- what happened: close events, figures ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConnectionEnd:
    """How one attacking connection ended."""

    closed_after_s: float | None  # from its first attacking byte until the lane closed it
    reason: str  # as the lane logged it or as the attacker saw it; why it is open, when it is


@dataclass(frozen=True, slots=True)
class Outcome:
    ends: list[ConnectionEnd]
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Figures:
    """One attack against one lane. Sizes in bytes, times in seconds."""

    attack: str
    rss_idle: int
    rss_peak: int
    rss_held: int  # the last sample before the attacker let go (what it kept the lane holding)
    rss_after: int
    api_idle_p99: float
    api_p50: float  # latencies corrected for coordinated omission (module docstring)
    api_p99: float
    api_max: float
    api_requests: int  # requests actually sent during the attack window
    api_failed: int  # timed out or failed; each counted as PROBE_TIMEOUT_S in the figures
    attack_s: float  # the attack window: first attacking byte to the end of the window
    ends: list[ConnectionEnd]
    detail: dict[str, Any]
    lane_alive: bool  # still running once the figures were taken

    @property
    def closed(self) -> list[float | None]:
        return [end.closed_after_s for end in self.ends]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        closed = ", ".join(
            "open" if end.closed_after_s is None else f"{end.closed_after_s:.2f} s"
            for end in self.ends
        )
        reasons = sorted({end.reason for end in self.ends})
        return (
            f"{self.attack}: RSS idle {self.rss_idle / MIB:.0f} MiB, peak "
            f"{self.rss_peak / MIB:.0f} MiB, held {self.rss_held / MIB:.0f} MiB, after "
            f"{self.rss_after / MIB:.0f} MiB; "
            f"API p50 {self.api_p50 * 1000:.1f} ms, p99 {self.api_p99 * 1000:.1f} ms, max "
            f"{self.api_max * 1000:.1f} ms over {self.api_requests} requests "
            f"({self.api_failed} failed; idle p99 {self.api_idle_p99 * 1000:.1f} ms); attack "
            f"{self.attack_s:.1f} s; closed by the lane: {closed}; reasons: {reasons}; "
            f"{json.dumps(self.detail, default=str)}"
            + ("" if self.lane_alive else "; THE LANE DIED")
        )


@dataclass(frozen=True, slots=True)
class Closure:
    at: float  # the lane's wall clock (its log's ts)
    peer: str
    reason: str
    by_peer: bool


def closures(log: str) -> list[Closure]:
    """Every ``peer.closed`` line of a lane's JSON log."""
    found = []
    for line in log.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a traceback or another process's output in the same file
        if not isinstance(entry, dict):
            continue
        match = PEER_CLOSED.match(str(entry.get("msg", "")))
        if match:
            peer, reason, by_peer = match.groups()
            found.append(Closure(float(entry["ts"]), peer, reason, by_peer == "True"))
    return found


# -- watching the lane ---------------------------------------------------------------------------


class RssSampler:
    """The lane process's RSS every ``interval_s``, in a thread: (monotonic time, bytes)."""

    def __init__(self, pid: int, interval_s: float = SAMPLE_INTERVAL_S) -> None:
        self._process = psutil.Process(pid)
        self._interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(IO_TIMEOUT_S)

    def _run(self) -> None:
        while True:
            try:
                rss = int(self._process.memory_info().rss)
            except psutil.NoSuchProcess:
                return  # the lane died: the samples end here; Figures.lane_alive says so
            self.samples.append((time.monotonic(), rss))
            if self._stop.wait(self._interval_s):
                return

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]


@dataclass(frozen=True, slots=True)
class Probe:
    started: float  # monotonic
    seconds: float  # PROBE_TIMEOUT_S when it failed
    ok: bool


def corrected(seconds: Sequence[float], interval_s: float) -> list[float]:
    """Latencies with the requests a blocked sequential client did not send (see the module
    docstring): HdrHistogram's ``recordValueWithExpectedInterval``."""
    out = []
    for value in seconds:
        out.append(value)
        missing = value - interval_s
        while missing >= interval_s:
            out.append(missing)
            missing -= interval_s
    return out


class ApiProbe:
    """GET /v1/status on the lane's API every ``interval_s`` (or as soon as the previous answer
    came, when it came late), in a thread, on a client of its own with a new connection per
    request (as support.FRESH_CONNECTIONS: no figure depends on the API's keep-alive policy). A
    request that times out or fails counts as the timeout: the lane did not answer it."""

    def __init__(
        self,
        api: str,
        token: str,
        *,
        timeout_s: float = PROBE_TIMEOUT_S,
        interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._api = api
        self._token = token
        self._timeout_s = timeout_s
        self.interval_s = interval_s
        self.samples: list[Probe] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="api-probe", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self._timeout_s + IO_TIMEOUT_S)

    def _run(self) -> None:
        with httpx.Client(
            base_url=self._api,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=self._timeout_s,
            trust_env=False,
            limits=FRESH_CONNECTIONS,
        ) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get("/v1/status").status_code == 200
                except httpx.TransportError:  # timeouts included
                    ok = False
                seconds = time.monotonic() - started if ok else self._timeout_s
                self.samples.append(Probe(started, seconds, ok))
                self._stop.wait(max(0.0, started + self.interval_s - time.monotonic()))

    def between(self, start: float, end: float) -> list[Probe]:
        return [p for p in self.samples if start <= p.started <= end]


class Attack(Protocol):
    name: str

    def prepare(self) -> None:
        """Connect and build everything to send; before the measurement starts."""

    def run(self) -> Outcome:
        """The attack; returns once the attacker let go of every connection."""

    def close(self) -> None:
        """Release whatever is still open (idempotent; also after a failure)."""


def measure(
    lane: Daemon,
    attack: Attack,
    *,
    idle_s: float = IDLE_S,
    after_s: float = AFTER_S,
    min_window_s: float = MIN_WINDOW_S,
) -> Figures:
    """Run ``attack`` against ``lane`` and report its RSS and API latency before, during and
    after it."""
    sampler = RssSampler(lane.pid)
    probe = ApiProbe(lane.api, lane.token)
    try:
        sampler.start()
        probe.start()
        idle_start = time.monotonic()
        time.sleep(idle_s)
        idle_end = time.monotonic()
        # Connected only now: the lane pings every 2 s and drops a peer whose pong is 2 s late
        # (shell/mesh.py), so an attacker connected during the idle phase, not reading, would
        # be dropped before it attacked. Neither phase counts the preparation (item 2's
        # handshake and the sealing of its frames: about 0.2 s).
        attack.prepare()
        start = time.monotonic()
        outcome = attack.run()
        attack.close()
        released = time.monotonic()
        time.sleep(max(0.0, start + min_window_s - time.monotonic()))
        end = time.monotonic()
        time.sleep(after_s)
        after = time.monotonic()
    finally:
        attack.close()
        probe.stop()
        sampler.stop()
    idle = sampler.between(idle_start, idle_end)
    during = sampler.between(start, after)
    held = sampler.between(start, released) or during[:1]
    if not idle or not during:
        raise AttackError(f"no RSS samples (did the lane die?)\n{lane.describe()}")
    idle_probes = corrected(
        [p.seconds for p in probe.between(idle_start, idle_end)], probe.interval_s
    )
    probes = probe.between(start, end)
    latencies = corrected([p.seconds for p in probes], probe.interval_s)
    return Figures(
        attack=attack.name,
        rss_idle=int(statistics.median(idle)),
        rss_peak=max(during),
        rss_held=held[-1],
        rss_after=during[-1],
        api_idle_p99=percentile(sorted(idle_probes), 99),
        api_p50=percentile(sorted(latencies), 50),
        api_p99=percentile(sorted(latencies), 99),
        api_max=max(latencies, default=math.nan),
        api_requests=len(probes),
        api_failed=sum(not p.ok for p in probes),
        attack_s=end - start,
        ends=outcome.ends,
        detail=outcome.detail,
        lane_alive=lane.alive(),
    )


# -- a websocket that reads only when told to ----------------------------------------------------


class RawPeer:
    """One websocket connection to a lane's peer port: a blocking socket driven through
    websockets' sans-I/O ``ClientProtocol``. Nothing is read unless a method says so."""

    def __init__(self, url: str, *, receive_buffer: int | None = None) -> None:
        uri = parse_uri(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(IO_TIMEOUT_S)
        self.protocol = ClientProtocol(uri, max_size=None)
        self.inbox: list[bytes] = []  # binary messages read and not taken yet
        self.refusals: list[str] = []  # Refuse frames the lane sent (its reasons)
        self.ended: tuple[float, str] | None = None  # (monotonic, how) once the lane let go
        self._closed = False
        try:
            self.sock.connect((uri.host, uri.port))
            self.protocol.send_request(self.protocol.connect())
            self.flush()
            deadline = time.monotonic() + IO_TIMEOUT_S
            while self.protocol.state is WsState.CONNECTING:
                if not self.read(deadline - time.monotonic()):
                    raise AttackError(f"no websocket handshake from {url}")
            if self.protocol.handshake_exc is not None:
                raise AttackError(f"websocket handshake failed: {self.protocol.handshake_exc}")
        except BaseException:
            self.abort()
            raise

    def flush(self) -> None:
        """Send what the protocol has queued (requests, pongs, messages)."""
        for data in self.protocol.data_to_send():
            if data:
                self.sock.sendall(data)

    def send_messages(self, messages: Sequence[bytes]) -> None:
        self.sock.sendall(self.encode(messages))

    def encode(self, messages: Sequence[bytes]) -> bytes:
        """The bytes of ``messages`` as binary websocket messages (masked, as a client must)."""
        for message in messages:
            self.protocol.send_binary(message)
        return b"".join(self.protocol.data_to_send())

    def read(self, timeout: float) -> bool:
        """Read what arrives within ``timeout``, once; False if nothing did."""
        if self.ended is not None or timeout <= 0:
            return False
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            data = self.sock.recv(READ_SIZE)
        except (ConnectionResetError, BrokenPipeError):
            self.ended = (time.monotonic(), "connection reset")
            return True
        if not data:
            self.protocol.receive_eof()
            self.ended = (
                time.monotonic(),
                self._close_seen() or "connection closed (no close frame)",
            )
            return True
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Frame) and event.opcode is Opcode.BINARY:
                self.inbox.append(bytes(event.data))
                self._note_refusal(bytes(event.data))
            # The handshake's Response needs nothing: handshake_exc says if it failed.
        seen = self._close_seen()
        if seen is not None and self.ended is None:
            self.ended = (time.monotonic(), seen)
        return True

    def next_message(self, deadline: float) -> bytes:
        while not self.inbox:
            if self.ended is not None:
                raise AttackError(f"the lane closed the connection: {self.ended[1]}")
            if not self.read(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AttackError("timed out waiting for the lane")
        return self.inbox.pop(0)

    def wait_ended(self, timeout: float) -> tuple[float, str] | None:
        """Read (and drop) whatever comes until the lane closes the connection, or None after
        ``timeout``. Sends nothing: a pong in the middle of an unfinished message would be
        garbage on the wire."""
        deadline = time.monotonic() + timeout
        while self.ended is None and time.monotonic() < deadline:
            self.read(deadline - time.monotonic())
            self.inbox.clear()
        return self.ended

    def unread_bytes(self) -> int:
        """Bytes waiting in this socket's receive buffer (FIONREAD, i.e. SIOCINQ on TCP)."""
        if self._closed:
            return 0
        raw = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", raw)[0]
        return count

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0): the lane learns at once, nothing lingers."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            self.sock.close()

    def _close_seen(self) -> str | None:
        close = self.protocol.close_rcvd
        if close is None:
            return None
        told = "; ".join(self.refusals)
        return f"close {close.code} {close.reason!r}" + (f" after refusal: {told}" if told else "")

    def _note_refusal(self, data: bytes) -> None:
        try:
            frame = decode_frame(data)
        except ProtocolViolation:
            return  # the lane's own frames always decode; this is about their reasons
        if isinstance(frame, Refuse):
            self.refusals.append(frame.reason)


# -- item 2: an enrolled peer that floods and never reads ----------------------------------------


def authenticate(peer: RawPeer, directory: TerminalDirectory) -> PeerConnection:
    """A real handshake with the lane as ``directory``'s terminal, over ``peer``; returns the
    open connection (AttackError if the lane refused it)."""
    connection = peer_connection(directory)
    connection.start()
    peer.send_messages(connection.data_to_send())
    # Established on our side means the lane accepted our hello; the lane is established once
    # our auth arrives, and then sends its first sealed message (Peers): wait for it.
    deadline = time.monotonic() + IO_TIMEOUT_S
    while True:
        connection.receive_data(peer.next_message(deadline), wall_clock_ms())
        peer.send_messages(connection.data_to_send())
        events = connection.events_received()
        closed = [e.reason for e in events if isinstance(e, Closed)]
        if closed:
            raise AttackError(f"the lane refused the attacker's handshake: {closed}")
        if any(isinstance(e, Received) for e in events):
            return connection


class FloodAndStall:
    """An enrolled terminal's key, a real handshake, ``frames`` tiny sealed frames at once
    (alternately ``State({}, reply=True)`` and ``Peers(())``), then not one more byte read."""

    name = "A: flood and never read"

    def __init__(
        self,
        lane: Daemon,
        attacker: Path,
        frames: int,
        *,
        receive_buffer: int = RECEIVE_BUFFER,
        hold_s: float = HOLD_S,
    ) -> None:
        self._lane = lane
        self._attacker = attacker
        self._frames = frames
        self._receive_buffer = receive_buffer
        self._hold_s = hold_s
        self._peer: RawPeer | None = None
        self._flood = b""
        self._terminal = ""
        self._log_offset = 0

    def prepare(self) -> None:
        directory = TerminalDirectory.open(self._attacker)  # reads the keys, takes no lock
        self._terminal = directory.terminal_id
        peer = self._peer = RawPeer(self._lane.listen, receive_buffer=self._receive_buffer)
        connection = authenticate(peer, directory)
        for i in range(self._frames):
            connection.send(State({}, reply=True) if i % 2 == 0 else Peers(()))
        self._flood = peer.encode(connection.data_to_send())
        self._log_offset = len(self._lane.log_path.read_bytes())

    def run(self) -> Outcome:
        peer = self._peer
        if peer is None:
            raise AttackError("run() before prepare()")
        wall_start = time.time()
        start = time.monotonic()
        view = memoryview(self._flood)
        sent = 0
        cut = None
        try:
            while sent < len(view):
                sent += peer.sock.send(view[sent:])
        except OSError as exc:  # reset or broken pipe: the lane closed it during the flood
            cut = f"{type(exc).__name__} after {sent} of {len(view)} bytes"
        flood_s = time.monotonic() - start
        mine: list[Closure] = []
        while True:
            log = self._lane.log_path.read_bytes()[self._log_offset :].decode(errors="replace")
            mine = [c for c in closures(log) if c.peer == self._terminal]
            if time.monotonic() - start >= self._hold_s:
                break
            time.sleep(LOG_POLL_S)
        unread = peer.unread_bytes()
        peer.abort()
        end = (
            ConnectionEnd(mine[0].at - wall_start, f"{mine[0].reason} (by_peer={mine[0].by_peer})")
            if mine
            else ConnectionEnd(
                None, f"still open after {self._hold_s:.0f} s (then reset by the attacker)"
            )
        )
        return Outcome(
            [end],
            {
                "frames": self._frames,
                "flood_bytes": len(view),
                "flood_sent_bytes": sent,
                "flood_s": round(flood_s, 3),
                "flood_cut": cut,
                "unread_at_end": unread,
                "receive_buffer": self._receive_buffer,
            },
        )

    def close(self) -> None:
        if self._peer is not None:
            self._peer.abort()


# -- item 3: huge hellos before any authentication -----------------------------------------------


def binary_frame_header(length: int, mask: bytes) -> bytes:
    """RFC 6455 section 5.2: FIN and opcode 2 (binary); the MASK bit with length code 127 and a
    64-bit length; then the masking key (a client masks every frame, section 5.3)."""
    return struct.pack("!BBQ", 0x80 | Opcode.BINARY, 0x80 | 127, length) + mask


def masked(data: bytes, mask: bytes, offset: int) -> bytes:
    """``data`` masked as the bytes at ``offset`` of a payload masked with ``mask``."""
    turn = offset % 4
    return apply_mask(data, mask[turn:] + mask[:turn])


def hello_parts(store_id: str, size: int) -> tuple[bytes, int, bytes]:
    """A Hello frame (the layout of wire.encode_frame) exactly ``size`` bytes long whose
    certificate is zero bytes: (the msgpack before the certificate's bytes, how many, the
    msgpack after them). In parts, so nobody holds the whole message. msgpack spec: 0x96 is an
    array of 6, 0xc6 a bin 32 (big-endian 32-bit length)."""
    suffix = msgpack.packb(os.urandom(NONCE_SIZE)) + msgpack.packb(os.urandom(X25519_KEY_SIZE))
    head = b"\x96" + msgpack.packb(PROTOCOL_VERSION) + msgpack.packb(int(FrameType.HELLO))
    head += msgpack.packb(store_id)
    zeros = size - len(head) - 5 - len(suffix)
    if zeros < 0:
        raise ValueError(f"a hello cannot be as small as {size} bytes")
    return head + b"\xc6" + struct.pack("!I", zeros), zeros, suffix


@dataclass(slots=True)
class _Hello:
    """One connection's whole message, masked, as the few buffers that make it up."""

    first: bytes  # frame header, msgpack head, the first zeros: sent before the pause
    zeros_left: int
    zero_chunk: bytes  # HELLO_CHUNK masked zeros; every chunk of the body starts aligned alike
    suffix: bytes

    def rest(self) -> Iterator[bytes]:
        left = self.zeros_left
        while left > 0:
            piece = min(left, len(self.zero_chunk))
            yield self.zero_chunk[:piece]
            left -= piece
        yield self.suffix


def hello_message(store_id: str, size: int) -> _Hello:
    head, zeros, suffix = hello_parts(store_id, size)
    mask = os.urandom(4)
    first = min(zeros, HELLO_FIRST_PART)
    return _Hello(
        first=binary_frame_header(size, mask)
        + masked(head, mask, 0)
        + masked(bytes(first), mask, len(head)),
        zeros_left=zeros - first,
        zero_chunk=masked(bytes(HELLO_CHUNK), mask, len(head) + first),
        suffix=masked(suffix, mask, len(head) + zeros),
    )


class OversizedHellos:
    """``connections`` parallel connections, each sending one ``size``-byte binary message as
    its hello (a well-formed Hello with a huge certificate), before any authentication."""

    name = "B: oversized hellos"

    def __init__(
        self,
        lane: Daemon,
        store_id: str,
        *,
        connections: int = HELLO_CONNECTIONS,
        size: int = HELLO_SIZE,
        pause_s: float = HELLO_PAUSE_S,
    ) -> None:
        self._lane = lane
        self._store_id = store_id
        self._connections = connections
        self._size = size
        self._pause_s = pause_s
        self._peers: list[RawPeer] = []
        self._messages: list[_Hello] = []

    def prepare(self) -> None:
        for _ in range(self._connections):
            self._peers.append(RawPeer(self._lane.listen))
            self._messages.append(hello_message(self._store_id, self._size))

    def run(self) -> Outcome:
        barrier = threading.Barrier(self._connections)
        with ThreadPoolExecutor(self._connections, thread_name_prefix="hello") as pool:
            futures = [
                pool.submit(self._one, peer, message, barrier)
                for peer, message in zip(self._peers, self._messages, strict=True)
            ]
            results = [future.result() for future in futures]
        ends = [end for end, _ in results]
        return Outcome(
            ends,
            {
                "connections": self._connections,
                "message_bytes": self._size,
                "pause_s": self._pause_s,
                "sent_bytes": [sent for _, sent in results],
                "whole_message_sent": [sent == self._size for _, sent in results],
            },
        )

    def _one(
        self, peer: RawPeer, message: _Hello, barrier: threading.Barrier
    ) -> tuple[ConnectionEnd, int]:
        """(how the connection ended, how many bytes of the message the kernel accepted)."""
        barrier.wait(IO_TIMEOUT_S)
        start = time.monotonic()
        header = len(binary_frame_header(0, b"\0" * 4))
        sent = 0
        try:
            peer.sock.sendall(message.first)
            sent = len(message.first) - header
            ended = peer.wait_ended(self._pause_s)
            if ended is None:
                for piece in message.rest():
                    peer.sock.sendall(piece)
                    sent += len(piece)
                ended = peer.wait_ended(IO_TIMEOUT_S)
        except OSError as exc:  # reset or broken pipe while sending: the lane closed it
            ended = peer.ended or (time.monotonic(), f"{type(exc).__name__} while sending")
        if ended is None:
            return ConnectionEnd(None, f"still open {IO_TIMEOUT_S:.0f} s after the message"), sent
        return ConnectionEnd(ended[0] - start, ended[1]), sent

    def close(self) -> None:
        for peer in self._peers:
            peer.abort()
