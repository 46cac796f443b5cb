"""What a ``Node`` hands its shell (``Output``), and the ``Outbox`` it gathers it in.

A node never does I/O. Each call to ``Node.take_output`` returns an ``Output``, and
``core.driver.Driver`` carries it out for every shell (the lane's, the cloud's and the
simulator's), in this order every time: hand ``persist`` to storage, then send ``frames``, then
close ``closes``. ``persist`` holds peers' updates, durable at their origin already, so the
shell may commit them a little later (one fsync for many frames), except when ``acknowledges``
is set: those frames tell a peer what we hold, and everything merged must be committed before
they leave.

Between two calls the node (and ``core.catchup`` for it) adds to an ``Outbox``: it sends
messages on links, which is where ``acknowledges`` gets set, and packs queued updates into
frames of a bounded size.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lanesync.core.change import Change
from lanesync.core.link import Close, Link
from lanesync.core.slices import update_slices
from lanesync.core.wire import Message, State, Update, Updates

# Keep frames well below wire.MAX_FRAME_SIZE even when a catch-up diff is large.
MAX_BATCH_BYTES = 4 * 1024 * 1024


def diff_items(diff: Mapping[str, bytes], max_bytes: int = MAX_BATCH_BYTES) -> Iterator[Update]:
    """A catch-up diff (one update per document) as items of about ``max_bytes`` at most, so
    that ``Outbox.send_pending`` packs it into frames of that size: a day's diff is ~204 B a
    sale (docs/how-to/cloud.md, "WAN outages"), so a day of ~300,000 sales would pass
    ``MAX_FRAME_SIZE``, which the receiver refuses."""
    for doc, update in diff.items():
        for piece in update_slices(update, max_bytes):
            yield Update(doc, piece, "")


@dataclass(slots=True)
class Output:
    persist: list[Change] = field(default_factory=list)
    frames: dict[int, list[bytes]] = field(default_factory=dict)
    # ``frames`` hold a State (our state vectors): commit everything merged before sending.
    acknowledges: bool = False
    closes: dict[int, Close] = field(default_factory=dict)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Outbox:
    """The ``Output`` a node gathers until the shell takes it."""

    def __init__(self) -> None:
        self._output = Output()

    def take(self) -> Output:
        output, self._output = self._output, Output()
        return output

    def send(self, link: Link, message: Message) -> None:
        if isinstance(message, State):
            self._output.acknowledges = True
        link.connection.send(message)
        frames = link.connection.data_to_send()
        self._output.frames.setdefault(link.conn_id, []).extend(frames)

    def send_pending(self, link: Link) -> None:
        """Send the updates queued on ``link``, packed into as few frames as possible."""
        batch: list[Update] = []
        size = 0
        for item in link.pending:
            if batch and size + len(item.update) > MAX_BATCH_BYTES:
                self.send(link, Updates(tuple(batch)))
                batch, size = [], 0
            batch.append(item)
            size += len(item.update)
        link.pending = []
        if batch:
            self.send(link, Updates(tuple(batch)))

    def collect(self, link: Link) -> None:
        """Take the frames ``link``'s connection produced on its own (handshake, refusal)."""
        frames = link.connection.data_to_send()
        if frames:
            self._output.frames.setdefault(link.conn_id, []).extend(frames)

    def close(self, link: Link, reason: str) -> None:
        self._output.closes[link.conn_id] = Close(link.close_code, reason)

    def persist(self, change: Change) -> None:
        self._output.persist.append(change)

    def log(self, event: str, fields: dict[str, Any]) -> None:
        self._output.log.append((event, fields))
