"""``Link``: one peer connection as a ``Node`` keeps it, and how a link the node closes ends.

``core.connection.PeerConnection`` is the connection itself (handshake, sealed frames); a
``Link`` wraps it with what the node's sync needs to remember about that peer: who it is, what
it last acknowledged, whom it said it is connected to, the updates queued for it, when its
acknowledgement and anti-entropy are due, and where it stands in catch-up (``core.catchup``).
It is plain bookkeeping: the node, the relay (``core.relay``) and catch-up flow control
(``core.catchup``) read and change it; ``status`` reads it out for ``Node.peer_status``.

``CloseCode`` and ``Close`` say how a link ends on the wire; the shells name them too (the cloud
closes a store's uplink with them, the simulator's transport reads them back).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from lanesync.core.connection import ConnState, PeerConnection
from lanesync.core.identity import Certificate, Role
from lanesync.core.statevector import StateVector
from lanesync.core.wire import Update


class CloseCode(enum.IntEnum):
    """How a connection the node closes ends on the wire (RFC 6455 section 7.4.1)."""

    NORMAL = 1000  # nothing wrong: the pair keeps another connection
    GOING_AWAY = 1001  # we are shutting down, or stop leading (the cloud link)
    POLICY_VIOLATION = 1008  # the protocol refused something; the reason says what


@dataclass(frozen=True, slots=True)
class Close:
    code: CloseCode
    reason: str  # one line for logs and the peer (the shell trims it to the close frame's size)


# Reasons of the closes that are not a refusal.
DUPLICATE_CONNECTION = "duplicate connection"
SHUTTING_DOWN = "peer is shutting down"
NOT_LEADER = "no longer the store's leader"


@dataclass(slots=True)
class Link:
    conn_id: int
    connection: PeerConnection
    dialer: bool  # we dialed this connection
    opened_ms: int
    peer: Certificate | None = None
    established_ms: int | None = None
    peer_state: dict[str, bytes] | None = None  # last state the peer acknowledged
    peer_acked_ms: int | None = None
    neighbors: frozenset[str] = frozenset()
    pending: list[Update] = field(default_factory=list)
    ack_due_ms: int | None = None
    anti_entropy_due_ms: int | None = None
    last_seen_ms: int | None = None
    uplink_term: int = 0  # on the cloud: the highest term this uplink presented
    # We owe this peer our State(reply=True): asked once another link's catch-up is in.
    state_request_deferred: bool = False
    close_code: CloseCode = CloseCode.POLICY_VIOLATION  # how a close we start ends
    # Our last catch-up answer to this peer, until its state shows it merged it: the state
    # vectors it brings the peer to, and when it was sent. A State(reply=True) that comes
    # meanwhile is owed an answer (``reply_owed``), sent once that one is in.
    answer_brings: dict[str, StateVector] | None = None
    answer_sent_ms: int = 0
    reply_owed: bool = False

    @property
    def is_open(self) -> bool:
        return self.connection.state is ConnState.OPEN and self.peer is not None

    @property
    def is_cloud(self) -> bool:
        return self.peer is not None and self.peer.role is Role.CLOUD

    def status(self, peer: Certificate, unacked_bytes: int | None) -> dict[str, Any]:
        """This link's row of ``Node.peer_status``: ``peer`` is ``self.peer`` (open links
        only), ``unacked_bytes`` what its last acknowledged state lacks (None before one)."""
        return {
            "terminal_id": peer.terminal_id,
            "connected": True,
            "dialer": self.dialer,
            "established_ms": self.established_ms,
            "acked_ms": self.peer_acked_ms,
            "last_seen_ms": self.last_seen_ms,
            "role": peer.role.value,
            "term": self.uplink_term or None,
            "unacked_bytes": unacked_bytes,
            "frames_sent": self.connection.frames_sent,
            "frames_received": self.connection.frames_received,
            "bytes_sent": self.connection.bytes_sent,
            "bytes_received": self.connection.bytes_received,
        }
