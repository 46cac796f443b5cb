"""Catch-up flow control: how much state exchange a ``Node`` lets run at once.

A peer answers ``State(reply=True)`` with everything the asker lacks (a state-vector diff per
document, new documents whole), so each question unchecked can cost a copy of the whole day.
There is one limit per direction:

* Our questions (``CatchUp``): one catch-up at a time. Connections opened while the answer to
  our first question on another one is on its way are asked once it is merged, so a joining
  lane downloads the day once, not once per peer.
* Their questions: one answer per peer in flight. A question that comes before the peer's state
  shows it merged our last answer (``answer_merged``), and before ``anti_entropy_ms`` passed,
  is owed an answer, sent then (``CatchUp.owed_answer_due``). A peer that asks faster than it
  reads (thousands of 60-byte questions, each answered with the whole day) gets one answer,
  not thousands.

The node calls in on its events (a link established or closed, a ``State`` received, a timer);
``CatchUp`` decides and sends through the node's ``Outbox``. The per-peer half of the
bookkeeping lives on ``core.link.Link`` (``state_request_deferred``, ``answer_brings``,
``answer_sent_ms``, ``reply_owed``).
"""

from __future__ import annotations

import enum
from collections.abc import Container, Mapping

from lanesync.core.link import Link
from lanesync.core.output import Outbox, diff_items
from lanesync.core.replica import Replica
from lanesync.core.statevector import StateVector, covers, decode_state_vector
from lanesync.core.wire import State


class Ask(enum.Enum):
    """Whom to ask for their state once a catch-up ended."""

    EVERY_DEFERRED = "every deferred peer"  # it was answered: the others send only the rest
    NEXT_DEFERRED = "the next deferred peer"  # its link closed first: one full answer again


class CatchUp:
    """A node's catch-up traffic: our questions one at a time, our answers one per peer in
    flight. It sends through the node's ``Outbox``."""

    def __init__(self, replica: Replica, outbox: Outbox, anti_entropy_ms: int) -> None:
        self._replica = replica
        self._outbox = outbox
        self._anti_entropy_ms = anti_entropy_ms
        # The link whose answer to our first State(reply=True) we wait for (its connection id).
        self.asking: int | None = None
        # Set when that answer came (or the link closed): ``ask_deferred`` asks the deferred
        # links, once the answer's updates are merged, so they see the state it brought.
        self._then: Ask | None = None
        # A peer's answer to one of our catch-ups has been merged: we hold everything it held
        # then, our own chain's records included (a lane's first write waits for this:
        # core.headcheck).
        self.answered = False

    # -- our questions ---------------------------------------------------------------------------

    def request(self, link: Link, links: Container[int]) -> None:
        """Ask a newly connected peer for what we lack, unless another peer's answer to the
        same question is on its way (``links``: the node's links by connection id): every peer
        answers with everything we lack, so a lane joining N peers at once would download the
        day N times. Deferred peers are asked once that answer is in (``ask_deferred``), with
        the state it brought."""
        if self.asking in links and self.asking != link.conn_id:
            link.state_request_deferred = True
            return
        self.asking = link.conn_id
        self._outbox.send(link, State(self._replica.state_vectors(link.peer_state), reply=True))

    def ended(self, link: Link, *, answered: bool) -> None:
        """``link`` answered our question, or closed; nothing if it was not the one asked."""
        if link.conn_id != self.asking:
            return
        self.asking = None
        self._then = Ask.EVERY_DEFERRED if answered else Ask.NEXT_DEFERRED

    def ask_deferred(self, links: Mapping[int, Link]) -> None:
        """If a catch-up ended since the last call, ask the peers deferred behind it."""
        ask, self._then = self._then, None
        if ask is None:
            return
        if ask is Ask.EVERY_DEFERRED:
            self.answered = True  # take_output merged the answer just before this call
        for link in list(links.values()):
            if link.state_request_deferred and link.is_open:
                link.state_request_deferred = False
                if ask is Ask.NEXT_DEFERRED:
                    # That catch-up broke off: the next peer answers in full, the rest wait.
                    self.request(link, links)
                else:
                    # We hold what the answering peer held: the others send only the rest.
                    state = State(self._replica.state_vectors(link.peer_state), reply=True)
                    self._outbox.send(link, state)

    # -- their questions -------------------------------------------------------------------------

    def answer(self, link: Link, vectors: dict[str, bytes], now_ms: int) -> None:
        """Answer a State(reply=True): what the peer lacks, then our state. Until the peer's
        state shows it merged our last answer (or ``anti_entropy_ms`` passed), a new question
        is owed an answer instead of getting a second copy of the same diff.

        Raises ``RemoteError`` if the peer's state vectors do not decode."""
        if link.answer_brings is not None and now_ms < link.answer_sent_ms + self._anti_entropy_ms:
            link.reply_owed = True
            return
        link.reply_owed = False
        link.answer_brings = None
        diff = self._replica.updates_since(vectors)
        ours = self._replica.state_vectors(vectors)
        if diff:
            link.answer_brings = {
                doc: decode_state_vector(ours[doc]) or {} for doc in diff if doc in ours
            }
            link.answer_sent_ms = now_ms
            link.pending.extend(diff_items(diff))
            self._outbox.send_pending(link)
        self._outbox.send(link, State(ours, reply=False))

    def owed_answer_due(self, link: Link) -> int | None:
        """When a question held back behind an answer in flight is answered anyway."""
        if not link.reply_owed:
            return None
        return link.answer_sent_ms + self._anti_entropy_ms


def answer_merged(vectors: Mapping[str, bytes], brings: Mapping[str, StateVector]) -> bool:
    """Do a peer's state vectors show it holds everything an answer brought it?"""
    for doc, wanted in brings.items():
        held = decode_state_vector(vectors.get(doc, b""))
        if held is None or not covers(held, wanted):
            return False
    return True
