"""What a connection may cost before it has proved who it is.

Anyone who can reach a lane's peer port (or the cloud's, which faces the WAN) can open
connections. Until the lanesync handshake has authenticated the peer, a connection may carry
messages of at most ``MAX_UNAUTHENTICATED_MESSAGE`` bytes (websockets refuses a larger one from
its frame header, before buffering it, and closes with 1009), and a process keeps at most
``MAX_HANDSHAKES`` such connections. Together they bound what strangers can make a process hold
to a few megabytes, whoever they are.

Which connection goes when one more arrives at the limit: the oldest, once it has had
``HANDSHAKE_GRACE_S`` to finish; before that, the newcomer. Refusing the oldest at once (as
this did until issue 19) churned under a legitimate burst: when 200 stores' leaders dialled a
cloud at the same instant, each newcomer killed a handshake about to finish, and the killed
leader dialled again, killing another (100 of 200 uplinks closed in `lanesync bench
cloud-chain`). A newcomer refused costs both ends nothing yet (no signature was checked), and
its dialler tries again after its backoff. A stranger that holds a slot without finishing still
loses it to the next newcomer once its grace is over (and to ``mesh.HANDSHAKE_TIMEOUT_S`` in
any case), so a flood of stalled connections cannot keep real peers out for longer than the
grace, while a real peer admitted is never cut short by the flood.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable

log = logging.getLogger("lanesync.admission")

# The handshake's own frames are at most wire.MAX_HANDSHAKE_FRAME (2 KiB). The limit is raised
# when OUR side has verified the peer, but the peer may finish first and send its first
# messages (Peers, its state vectors, a few fresh sales) right behind its last handshake frame;
# websockets parses those before we have seen that frame. Their size is what this covers:
# state vectors are ~50 B a document, so 64 KiB holds a year of daily documents. A larger one
# in that window costs a reconnect, never data (anti-entropy sends it again).
MAX_UNAUTHENTICATED_MESSAGE = 64 * 1024
# Connections still in the handshake, per process. A real store has at most 31 other lanes
# dialling at once (a cloud: its stores' leaders reconnecting after a WAN outage, spread by
# their jittered backoff); 64 of 64 KiB bound strangers to 4 MiB.
MAX_HANDSHAKES = 64
# How long a connection in the handshake is safe from newcomers. A handshake is three round
# trips (the cloud's hello, then two frames each way): 0.9 s across a 300 ms WAN round trip;
# twice that leaves room for a process busy with a burst of them.
HANDSHAKE_GRACE_S = 2.0
TOO_MANY_HANDSHAKES = "too many connections in the handshake"


class HandshakeGate:
    """Connections that have not authenticated yet, oldest first.

    Guarantee: at most ``limit`` connections are admitted and not ``done``. Past the limit,
    ``admit`` refuses the oldest through the ``refuse`` callback it was admitted with (called
    once, never for a connection already done) if that one has waited ``grace_s`` or more, and
    otherwise refuses the newcomer by returning False (its callback is never called)."""

    def __init__(
        self,
        limit: int = MAX_HANDSHAKES,
        grace_s: float = HANDSHAKE_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limit = limit
        self._grace_s = grace_s
        self._clock = clock
        self._waiting: dict[Hashable, tuple[float, Callable[[], None]]] = {}
        self.refused = 0

    def admit(self, key: Hashable, refuse: Callable[[], None]) -> bool:
        """Track ``key`` (a connection) until ``done``; False when it is refused instead (the
        caller closes it). Admitting a key again only replaces its ``refuse`` (it keeps its
        age): the cloud reads the hello, then hands the connection to a store's mesh, which
        takes it over."""
        now = self._clock()
        if key in self._waiting:
            self._waiting[key] = (self._waiting[key][0], refuse)
            return True
        if len(self._waiting) >= self._limit:
            oldest = next(iter(self._waiting))
            admitted_at, refuse_oldest = self._waiting[oldest]
            self.refused += 1
            if now - admitted_at < self._grace_s:
                log.warning(
                    "connection refused: %s (%d, the oldest for %.1f s): the newcomer",
                    TOO_MANY_HANDSHAKES,
                    self._limit,
                    now - admitted_at,
                )
                return False
            del self._waiting[oldest]
            log.warning(
                "connection refused: %s (%d): the oldest, after %.1f s",
                TOO_MANY_HANDSHAKES,
                self._limit,
                now - admitted_at,
            )
            refuse_oldest()
        self._waiting[key] = (now, refuse)
        return True

    def done(self, key: Hashable) -> None:
        """``key`` authenticated or closed."""
        self._waiting.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)
