"""When a lane dials a peer again: the redial schedule of one peer.

A lane keeps one connection to each peer it knows how to reach (``shell/dialing.py``: one
dialler task per peer; ``sim/dialing.py`` pumps the same schedule in simulated time). After an
attempt fails or a connection ends it waits a random time drawn from a window, then dials again.
The window depends on how the attempt ended (``Attempt``):

* **The peer was never reached** (connection refused or reset, no route, timed out, a websocket
  upgrade that did not complete): trying again costs the dialler about 0.12 ms of CPU and the
  peer nothing, so the window stays short (``UNREACHED_MAX_MS``): a link that returns after a
  split of minutes is used within half a second, not after the backoff it grew while it was down.
* **The peer answered, then the connection ended** (a refused handshake, a failed identity check,
  a connection that dropped): the next attempt costs both ends a handshake with its signatures,
  so the window doubles up to ``BACKOFF_MAX_MS``, unless the connection had been up for a while
  (``WAS_UP_MS``): then the first window again.
* **The cloud** is dialled by the leader of every store: when it restarts, a short window would
  bring thousands of stores' handshakes on it at once, and a WAN outage lasts hours, not seconds.
  Its schedule (``Redial.uplink()``) keeps the long cap whether or not it was reached.
* **A sign of life** of the peer (an mDNS announcement of it, with its addresses) starts over
  from the first window and ends the wait now, unless an attempt is under way
  (``sign_of_life``). Only the peer itself can send one, so a peer that announces often can
  only bring more of our attempts on itself.

The wait is drawn uniformly from ``[0, window]`` by the caller ("full jitter": AWS architecture
blog, "Exponential Backoff and Jitter", 2015): 32 lanes that lost the same switch do not all
redial in the same millisecond when it returns. The schedule is pure: time comes in as
``now_ms``, the random draw is the caller's, and what it answers is the window.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# The first window: a dropped connection is redialled within 0.2 s.
BACKOFF_INITIAL_MS = 200
# The cap for a peer that answered and ended the connection quickly: at most one handshake
# every 5 s (2.5 s on average) with a peer that keeps refusing us.
BACKOFF_MAX_MS = 5_000
# The cap while the peer is not reached at all. A failed attempt to a refused loopback port
# cost the dialler 122 us of CPU and 144 us of wall time (500 attempts of websockets 17's
# ``connect`` as the daemon calls it, 2026-12-07; the snippet is in benchmarks/README.md,
# "Catch-up after a heal"), so with 31 unreachable peers a lane redials all of them for 1.5 % of
# a core (one attempt per peer every 0.25 s on average). An attempt to a silent host waits for
# its TCP timeout instead (``shell/dialing.py`` CONNECTION_OPEN_TIMEOUT_S), so a dead host is
# never dialled faster than that. The heal is used after the rest of the wait under way: a third
# of the window on average (the mean residual of a uniform wait), 0.17 s here against up to
# 1.7 s with the 5 s cap that ruled before: `lanesync bench mesh --lanes 2` measured the
# reconnect 0.07-0.30 s after the heal, against 3.56-3.99 s (same README section).
UNREACHED_MAX_MS = 500
# A connection that was up this long had worked: its end is news, redial from the first window.
WAS_UP_MS = 2 * BACKOFF_MAX_MS


class Attempt(enum.Enum):
    """How a dial attempt ended (the whole attempt: every address of the peer tried)."""

    UNREACHED = "unreached"  # no websocket opened: refused, reset, timed out, unreachable
    ENDED = "ended"  # a websocket opened; the connection (or its handshake) ended since


@dataclass(slots=True)
class Redial:
    """The redial schedule of one peer: ``started`` before each attempt, ``ended`` after it
    (which answers the window to draw the wait from), ``sign_of_life`` when the peer shows up."""

    window_ms: int = BACKOFF_INITIAL_MS  # the window the next wait is drawn from (before caps)
    attempting: bool = False
    started_ms: int = 0  # when the last attempt started
    unreached_max_ms: int = UNREACHED_MAX_MS  # the cap while the peer is not reached

    @classmethod
    def uplink(cls) -> Redial:
        """The schedule of the cloud uplink: the long cap, reached or not."""
        return cls(unreached_max_ms=BACKOFF_MAX_MS)

    def started(self, now_ms: int) -> None:
        self.attempting = True
        self.started_ms = now_ms

    def ended(self, attempt: Attempt, now_ms: int) -> int:
        """The attempt started last ended so: the window (ms) to draw the wait before the next
        attempt from, uniformly from 0."""
        self.attempting = False
        if attempt is Attempt.ENDED and now_ms - self.started_ms > WAS_UP_MS:
            self.window_ms = BACKOFF_INITIAL_MS  # it was up for a while: retry promptly
        cap = self.unreached_max_ms if attempt is Attempt.UNREACHED else BACKOFF_MAX_MS
        window = min(cap, self.window_ms)
        self.window_ms = min(cap, window * 2)
        return window

    def sign_of_life(self) -> bool:
        """The peer showed up (an mDNS announcement of it): start over from the first window.
        True when the dialler should end its wait and dial now (no attempt is under way)."""
        self.window_ms = BACKOFF_INITIAL_MS
        return not self.attempting
