"""A lane under issue 14's memory attacks keeps its memory and its API (items 2 and 3).

Each test starts a real lane holding a day of sales and runs an attacker of attacker.py against
its peer port while watching the lane's RSS (psutil, every 50 ms) and its API latency (GET
/v1/status every 10 ms, corrected for coordinated omission): see attacker.py.

* Item 2: an enrolled terminal floods ``FRAMES`` tiny sealed frames (half State(reply=True),
  half Peers) and never reads. The lane must close it (its log says why) before the attacker
  gives up after ``HOLD_S``; its RSS must stay under 2x idle and its API p99 under 100 ms.
* Item 3: 4 connections each send one 60 MiB hello before authenticating. The lane must close
  each one before the message is complete (within ``HELLO_PAUSE_S`` of its header) and grow by
  less than 32 MiB.

These fail on 4fbf20c, where the lane queues every answer (RSS 65 -> 264 MiB with the CI
defaults, API p99 ~300 ms, the attacker never closed) and buffers whole hellos (65 -> 360 MiB).

CI runs a smaller flood than the issue's (1,000 frames); ``LANESYNC_ATTACK_FRAMES=5000`` runs
the issue's own. benchmarks/attack.py reports the same figures over several runs.
"""

from __future__ import annotations

import os

import pytest
from websockets.frames import Frame, Opcode
from websockets.protocol import OPEN
from websockets.server import ServerProtocol

from lanesync.core.wire import Hello, decode_frame

from .attacker import (
    HELLO_CHUNK,
    HELLO_PAUSE_S,
    MIB,
    Figures,
    FloodAndStall,
    OversizedHellos,
    hello_message,
    hello_parts,
    measure,
    scene,
)
from .cluster import Cluster

# 1,000 frames (500 catch-up questions, ~200 MB of answers on today's code) already take a lane
# that does not bound its queues past 2x its idle RSS, at a tenth of the lane's work of the
# issue's 5,000. Prefilling 2,000 sales takes ~0.2 s, so CI keeps the day of data
# (~400 KB per answer).
FRAMES = int(os.environ.get("LANESYNC_ATTACK_FRAMES", "1000"))
PREFILL = int(os.environ.get("LANESYNC_ATTACK_PREFILL", "2000"))
# The attacker stalls this long: the lane may cut it off on its send-queue bound, or else through
# its keepalive (a ping every 2 s, 2 s to answer, 1 s to close: shell/mesh.py), ~5 s after the
# handshake, once its queue is short enough for the ping to go out (websockets sends pings
# through the same flow control); both must fall well inside the window.
HOLD_S = float(os.environ.get("LANESYNC_ATTACK_HOLD_S", "10"))
# The bounds (issue 14, "Expected").
RSS_FACTOR = 2.0
API_P99_S = 0.100
HELLO_GROWTH = 32 * MIB
# The latency bound is judged on the best of this many attacks, each on a freshly started lane:
# on a shared 2-core machine other work only ever adds latency (`lanesync bench receive-path`
# takes its minimum for the same reason), while a lane that stalls under the attack fails every
# time. Closing the attacker and the RSS bound must hold in every attempt.
LATENCY_ATTEMPTS = 3


def describe(figures: list[Figures]) -> str:
    return "\n".join(f.describe() for f in figures)


@pytest.mark.slow
def test_a_peer_that_floods_and_never_reads_is_closed_and_costs_little(cluster: Cluster) -> None:
    attack = scene(cluster, PREFILL)
    runs: list[Figures] = []
    for _ in range(LATENCY_ATTEMPTS):
        lane = cluster.start(attack.lane)
        figures = measure(lane, FloodAndStall(lane, attack.attacker, FRAMES, hold_s=HOLD_S))
        runs.append(figures)
        cluster.stop(lane)
        assert figures.lane_alive, describe(runs)
        (end,) = figures.ends
        assert end.closed_after_s is not None, (
            f"the lane never closed the attacker\n{describe(runs)}"
        )
        assert figures.rss_peak < RSS_FACTOR * figures.rss_idle, describe(runs)
        if figures.api_p99 < API_P99_S:
            return
    pytest.fail(f"API p99 over {API_P99_S * 1000:.0f} ms in every attempt\n{describe(runs)}")


@pytest.mark.slow
def test_oversized_hellos_are_closed_at_their_header(cluster: Cluster) -> None:
    attack = scene(cluster, PREFILL)
    lane = cluster.start(attack.lane)
    figures = measure(lane, OversizedHellos(lane, attack.store.identity.store_id))
    assert figures.lane_alive, describe([figures])
    assert figures.ends, describe([figures])
    for end in figures.ends:
        assert end.closed_after_s is not None, describe([figures])
        assert end.closed_after_s < HELLO_PAUSE_S, describe([figures])
    assert not any(figures.detail["whole_message_sent"]), describe([figures])
    assert figures.rss_peak - figures.rss_idle < HELLO_GROWTH, describe([figures])


# -- the attacker's own wire format (no daemon) ----------------------------------------------------


def server_reads(data: bytes) -> bytes:
    """The one binary message a websockets server reads from ``data``."""
    server = ServerProtocol(state=OPEN, max_size=None)
    server.receive_data(data)
    (frame,) = server.events_received()
    assert isinstance(frame, Frame)
    assert frame.opcode is Opcode.BINARY
    return bytes(frame.data)


def test_a_small_oversized_hello_is_a_well_formed_hello() -> None:
    message = hello_message("s1", 600)
    payload = server_reads(message.first + b"".join(message.rest()))
    assert len(payload) == 600
    hello = decode_frame(payload)
    assert isinstance(hello, Hello)
    assert hello.store_id == "s1"
    assert hello.certificate == bytes(len(hello.certificate))


def test_a_large_oversized_hello_is_masked_right_across_its_chunks() -> None:
    size = 2 * HELLO_CHUNK + 12345
    message = hello_message("store-7", size)
    payload = server_reads(message.first + b"".join(message.rest()))
    head, zeros, suffix = hello_parts("store-7", size)
    assert len(payload) == size
    assert payload[: len(head)] == head
    assert payload[len(head) : len(head) + zeros] == bytes(zeros)
    assert len(payload) - len(head) - zeros == len(suffix)
