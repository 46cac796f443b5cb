"""What a connection may cost before it has proved who it is.

Anyone who can reach a lane's peer port (or the cloud's, which faces the WAN) can open
connections. Until the lanesync handshake has authenticated the peer, a connection may carry
messages of at most ``MAX_UNAUTHENTICATED_MESSAGE`` bytes (websockets refuses a larger one from
its frame header, before buffering it, and closes with 1009), and a process keeps at most
``MAX_HANDSHAKES`` such connections: one more refuses the oldest. Together they bound what
strangers can make a process hold to a few megabytes, whoever they are.
"""

from __future__ import annotations

import logging
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
TOO_MANY_HANDSHAKES = "too many connections in the handshake"


class HandshakeGate:
    """Connections that have not authenticated yet, oldest first.

    Guarantee: after ``admit`` returns, at most ``limit`` connections are admitted and not
    ``done``; the ones over the limit were refused, oldest first, through the ``refuse``
    callback they were admitted with (called once, never for a connection already done)."""

    def __init__(self, limit: int = MAX_HANDSHAKES) -> None:
        self._limit = limit
        self._waiting: dict[Hashable, Callable[[], None]] = {}
        self.refused = 0

    def admit(self, key: Hashable, refuse: Callable[[], None]) -> None:
        """Track ``key`` (a connection) until ``done``. Admitting a key again only replaces its
        ``refuse`` (it keeps its age): the cloud reads the hello, then hands the connection
        to a store's mesh, which takes it over."""
        self._waiting[key] = refuse
        while len(self._waiting) > self._limit:
            oldest = next(iter(self._waiting))
            refuse_oldest = self._waiting.pop(oldest)
            self.refused += 1
            log.warning("connection refused: %s (%d)", TOO_MANY_HANDSHAKES, self._limit)
            refuse_oldest()

    def done(self, key: Hashable) -> None:
        """``key`` authenticated or closed."""
        self._waiting.pop(key, None)

    def __len__(self) -> int:
        return len(self._waiting)
