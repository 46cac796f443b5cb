"""The simulated transport: connections made of two in-order pipes, like TCP.

A pipe delivers its frames in the order they were sent, each after the connection's latency
(plus jitter, plus any delay spike), never before the frame sent ahead of it. A silent
partition *holds* a pipe: nothing is delivered (TCP retransmits in vain) until either the
partition heals (everything held arrives, late but complete, as TCP would deliver it) or the
keepalive notices (the connection resets and what was held is lost with it). The end of a
stream (``Fin``) travels behind the frames sent before it, as TCP's FIN does.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# msgpack of [PROTOCOL_VERSION=1, FrameType.SEALED=4, seq, box] starts with these three bytes
# (fixarray of 4, positive fixint 1, positive fixint 4): only sealed frames get raw faults, so a
# handshake never hangs on a lost hello (which real TCP could not lose either).
SEALED_PREFIX = b"\x94\x01\x04"


@dataclass(frozen=True, slots=True)
class Fin:
    """The end of a stream, with the reason the receiving end is given."""

    reason: str


Item = bytes | Fin


@dataclass(eq=False, slots=True)
class Pipe:
    """One direction of a connection: frames waiting, each with its earliest delivery time."""

    items: deque[tuple[int, Item]] = field(default_factory=deque)
    gen: int = 0  # bumped when the pipe is cleared: scheduled deliveries become stale
    armed: bool = False  # a delivery of the head is scheduled
    last_due: int = 0

    def clear(self) -> None:
        self.items.clear()
        self.gen += 1
        self.armed = False


@dataclass(eq=False, slots=True)
class Conn:
    """One transport connection between two endpoints, known to both by ``conn_id``."""

    conn_id: int
    dialer: str
    listener: str
    latency_ms: int
    jitter_ms: int
    opened_ms: int
    ends: list[str] = field(default_factory=list)  # ends whose node still holds the link
    pipes: dict[str, Pipe] = field(default_factory=dict)  # by destination
    tainted: bool = False  # a raw fault hit it: a protocol failure on it is expected
    held: bool = False  # silently partitioned
    spike_ms: int = 0
    spike_until_ms: int = 0

    def __post_init__(self) -> None:
        self.pipes = {self.dialer: Pipe(), self.listener: Pipe()}

    def other(self, name: str) -> str:
        return self.listener if name == self.dialer else self.dialer

    @property
    def pair(self) -> tuple[str, str]:
        return (self.dialer, self.listener)

    def in_flight(self) -> int:
        return sum(len(pipe.items) for pipe in self.pipes.values())
