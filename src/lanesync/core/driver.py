"""What a shell does with a ``Node``, as code both shells run: ``shell/mesh.py`` (a lane, the
cloud) and ``sim/host.py`` (the simulator). The shell supplies the effects (storage, transport,
timers) through ``Effects``; the driver decides when and in which order they happen, so the
simulator exercises exactly the rules a lane runs.

The rules:

* Output is handled in one order: hand peers' updates to storage (``defer``), commit what must be
  durable before anything leaves, send frames, close connections, log, re-arm the timer.
* Peers' updates are durable at their origin already, so committing them may wait up to
  ``commit_delay_ms`` (one fsync for many frames), except when the output acknowledges
  (a ``State``): a peer must never be told we hold what we have not committed. A commit that
  fails stops the flush: nothing more is sent (the shell stops the process).
* A local record is committed before it is offered to any peer (``write``): a record sent and
  then lost in a crash would be written again under the same sequence number, a fork.
* Only the elected leader holds the cloud link (``steer_uplink``); one that stops leading closes
  it (``Node.close_cloud_links``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from lanesync.core.change import Change
from lanesync.core.link import Close
from lanesync.core.node import Node


class Effects(Protocol):
    """What a shell does when the driver says so. Each call returns once it is done."""

    def defer(self, changes: Sequence[Change]) -> None:
        """Hold peers' merged updates for the next commit."""

    def has_deferred(self) -> bool:
        """Are updates held that no commit has made durable yet?"""

    def commit_deferred(self) -> bool:
        """Make every held update durable; False when storage failed (the shell stops)."""

    def commit_after(self, delay_ms: int) -> None:
        """Call ``Driver.commit_due`` in ``delay_ms``."""

    def send(self, conn_id: int, frames: Sequence[bytes]) -> None:
        """Queue ``frames`` on the connection, in order."""

    def close(self, conn_id: int, close: Close) -> None:
        """Close the connection after the frames queued on it."""

    def note(self, event: str, fields: dict[str, Any]) -> None:
        """Log a node event."""

    def wake_at(self, deadline_ms: int | None) -> None:
        """Call ``Node.handle_timer`` then ``Driver.flush`` at ``deadline_ms`` (None: never)."""


class Driver:
    def __init__(self, node: Node, effects: Effects, *, commit_delay_ms: int) -> None:
        """``commit_delay_ms``: how long peers' updates may wait for a commit (0: in the flush
        that merged them, as the cloud does, whose head-office tables follow every commit)."""
        self.node = node
        self._effects = effects
        self._commit_delay_ms = commit_delay_ms
        self._commit_armed = False

    def flush(self) -> None:
        """Do everything the node's output asks for, in the one safe order."""
        effects = self._effects
        out = self.node.take_output()
        effects.defer(out.persist)
        if effects.has_deferred():
            if out.acknowledges or self._commit_delay_ms <= 0:
                if not effects.commit_deferred():
                    return
            elif not self._commit_armed:
                self._commit_armed = True
                effects.commit_after(self._commit_delay_ms)
        for conn_id, frames in out.frames.items():
            effects.send(conn_id, frames)
        for conn_id, close in out.closes.items():
            effects.close(conn_id, close)
        for event, fields in out.log:
            effects.note(event, fields)
        effects.wake_at(self.node.next_deadline())

    def commit_due(self) -> bool:
        """The delay of ``commit_after`` is over: commit what is held (False: storage failed)."""
        self._commit_armed = False
        return self._effects.commit_deferred()

    def write(self, changes: Sequence[Change], commit: Callable[[], None], now_ms: int) -> None:
        """Local records: ``commit`` makes ``changes`` durable (with everything held before
        them, so the log keeps the order of memory) or raises, and only then are they offered
        to peers. The caller acknowledges its writers once this returns, and flushes (at once,
        or at the end of its event-loop iteration so that bursts share frames)."""
        commit()
        for change in changes:
            self.node.local_change(change, now_ms)


class UplinkStep(enum.Enum):
    START = "start"  # we lead and hold no cloud link: dial the cloud
    STOP = "stop"  # we hold one and do not lead: stop dialling, close it
    KEEP = "keep"


def steer_uplink(is_leader: bool, holds_uplink: bool) -> UplinkStep:
    """Only the elected leader holds the cloud link: two leaders during a split would upload
    twice (harmless, merges are idempotent), a store without one not at all."""
    if is_leader and not holds_uplink:
        return UplinkStep.START
    if holds_uplink and not is_leader:
        return UplinkStep.STOP
    return UplinkStep.KEEP
