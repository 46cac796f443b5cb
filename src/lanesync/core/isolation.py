"""Is this lane cut off from the store? The rule behind the status's ``isolated_since``.

A lane keeps selling when it is alone (that is the design), but a POS should warn its cashier
when the lane's sales are not reaching anyone: the stock it shows drifts from the store's, and
if the store revoked the lane, none of them will ever count. Two facts say so:

* **Refused as revoked.** A peer refused our handshake because it holds the store's revocation
  of this terminal. Peers refuse before anything is exchanged, so a lane that was not connected
  when its peers learnt the revocation (the node that cuts a connected one off sends it the
  revocation first) may never receive it; the refusal is how it hears of it. It stays isolated
  from the first such refusal on (a revocation is never withdrawn; a peer that still accepts the
  lane has only not heard of it yet). A refusal is not proof (the refuse frame comes before the
  handshake authenticates anyone), so it only warns: the lane refuses its own writes once it
  holds the signed revocation itself (``Replica.revoked``).
* **Silence.** No verified connection to a peer or to the cloud has been open for longer than
  the bound. An open connection counts as hearing the peer: the shell's websocket keepalive
  closes a connection whose peer stopped answering within seconds. The lane is isolated since
  the moment its last connection closed (or since it started, when it never had one).

``isolated_since(now_ms)`` is the earlier of the two moments that apply, or None. The shell
only reports connections opening and closing (with the reason the core gave) and asks; the
rule is here, with time passed in.
"""

from __future__ import annotations

from lanesync.core.ids import TerminalId

# A lane alone for this long is reported isolated. Longer than every routine gap between two
# connections: a dead link is noticed within 4 s (shell/mesh.py's keepalive, 2 s interval and
# 2 s timeout), a lost peer is redialled at least every 5 s (shell/dialing.py BACKOFF_MAX_S), a
# peer daemon restarts within its 15 s start-up wait (shell/runtime.py STARTUP_WAIT_S). Short
# enough that a cashier is warned within a minute of the lane's sales stopping to reach the store.
DEFAULT_ISOLATION_AFTER_MS = 60_000

# How a peer's refusal of a revoked terminal reads once our connection closed on it: the
# ``Refuse`` reason of core/node.py's peer policy (``terminal <id> is revoked``) behind the
# prefix core/connection.py gives every refusal. tests/core/test_isolation.py runs a real
# handshake against a node holding the revocation, so the two cannot drift apart unseen.
_REFUSED_AS_REVOKED = "refused by peer: terminal {terminal} is revoked"


def refused_as_revoked(reason: str, terminal: TerminalId) -> bool:
    """Did a connection of ``terminal`` end because its peer refused it as revoked?"""
    return reason == _REFUSED_AS_REVOKED.format(terminal=terminal)


class Isolation:
    """The isolation rule of one lane (see the module docstring). Pure: time is passed in."""

    def __init__(self, terminal: TerminalId, started_ms: int, after_ms: int) -> None:
        """``after_ms``: how long the lane may hear nobody before it is isolated."""
        if after_ms <= 0:
            raise ValueError("the isolation bound must be positive")
        self.terminal = terminal
        self.after_ms = after_ms
        self._open: set[int] = set()
        self._last_contact_ms = started_ms  # when the last open connection closed, or the start
        self.refused_ms: int | None = None  # the first refusal as revoked

    def opened(self, conn_id: int, now_ms: int) -> None:
        """A connection was verified: a peer (or the cloud) hears us and we hear it."""
        self._open.add(conn_id)
        self._last_contact_ms = now_ms

    def closed(self, conn_id: int, reason: str, now_ms: int) -> bool:
        """A connection ended, verified or not, for ``reason`` (the core's close reason).
        True when this is the first refusal of this terminal as revoked."""
        if conn_id in self._open:
            self._open.discard(conn_id)
            self._last_contact_ms = now_ms
        if self.refused_ms is None and refused_as_revoked(reason, self.terminal):
            self.refused_ms = now_ms
            return True
        return False

    @property
    def connected(self) -> bool:
        return bool(self._open)

    def isolated_since(self, now_ms: int) -> int | None:
        """Since when the lane is isolated (ms), or None while it is not."""
        moments = [] if self.refused_ms is None else [self.refused_ms]
        if not self._open and now_ms - self._last_contact_ms > self.after_ms:
            moments.append(self._last_contact_ms)
        return min(moments, default=None)
