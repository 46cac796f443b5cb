"""A terminal in the mesh: its replica plus every peer connection, as one pure state machine.

The shell feeds it transport events and time; it returns frames to send, connections to close,
and changes to make durable. ``core.driver.Driver`` carries out the output contract for every
shell (the lane's, the cloud's and the simulator's), in this order every time: hand ``persist`` to
storage, then send ``frames``, then close ``closes``. ``persist`` holds peers' updates, durable
at their origin already, so the shell may commit them a little later (one fsync for many
frames), except when ``acknowledges`` is set: those frames tell a peer what we hold, and
everything merged must be committed before they leave. Acknowledgements go out on a later
timer, all links at once, so a peer is never told we hold data we have not committed and a
busy terminal commits peers' data about once per ``ack_delay_ms``.

Received ``Updates`` are merged in ``take_output``, every frame received since the last call in
one batch (one pycrdt transaction per document, one fold): the shell drains output at the end
of each event-loop iteration, so under load many frames share the merge's fixed cost.

Sync, per connection:

* On connect both sides send ``Peers`` (who they are connected to) and ``State(reply=True)``.
* ``State(reply=True)`` is answered with ``Updates`` holding exactly what the sender lacks
  (state-vector diff per document, new documents whole) and our own ``State(reply=False)``.
  One answer per peer is in flight: a question that comes before the peer's state shows it
  merged the last answer (or before ``anti_entropy_ms`` passed) is answered then (``_answer``).
* One catch-up at a time: connections opened while the answer to our first question on another
  one is on its way are asked once it is merged, so a joining lane downloads the day once, not
  once per peer (``_request_state``).
* Local writes go out as ``Updates`` once committed, batched per connection until the shell
  flushes (end of the event-loop iteration).
* Relay: an update that changed our state is forwarded to every other peer, except peers that
  told us they are connected to the update's origin (they hear it first hand). Updates that
  change nothing are never forwarded, so cycles die out. A catch-up diff (no single origin) is
  instead pushed to each other peer as what its acknowledged state lacks, except to peers that
  have it already (they hear its writers, or every peer it came from, first hand).
* ``State(reply=False)`` acknowledges: it records how far the peer has durably got.
* Anti-entropy: every ``anti_entropy_ms`` each connection exchanges state vectors again, which
  repairs anything lost (a dropped link, a buffered update whose predecessor arrived late).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lanesync.core.connection import (
    Closed,
    ConnState,
    Established,
    PeerConnection,
    Received,
)
from lanesync.core.election import Election
from lanesync.core.identity import Certificate, Role
from lanesync.core.ids import TerminalId
from lanesync.core.replica import Change, Replica, covered_by
from lanesync.core.statevector import StateVector, covers, decode_state_vector
from lanesync.core.wire import ElectionGossip, Message, Peers, State, Update, Updates
from lanesync.errors import RemoteError

# Anti-entropy repairs what live sync missed; 5 s bounds repair time at the cost of one small
# state message per link and interval (~200 B for 8 lanes and 3 documents).
ANTI_ENTROPY_MS = 5_000
# Acknowledge received data at most this often per link: acks only feed `status`, so a short
# delay saves a state message per received frame under load.
ACK_DELAY_MS = 200
# Keep frames well below wire.MAX_FRAME_SIZE even when a catch-up diff is large.
MAX_BATCH_BYTES = 4 * 1024 * 1024


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


class Ask(enum.Enum):
    """Whom to ask for their state once a catch-up ended."""

    EVERY_DEFERRED = "every deferred peer"  # it was answered: the others send only the rest
    NEXT_DEFERRED = "the next deferred peer"  # its link closed first: one full answer again


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


@dataclass(slots=True)
class Output:
    persist: list[Change] = field(default_factory=list)
    frames: dict[int, list[bytes]] = field(default_factory=dict)
    # ``frames`` hold a State (our state vectors): commit everything merged before sending.
    acknowledges: bool = False
    closes: dict[int, Close] = field(default_factory=dict)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class _Policy:
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        if self._replica.views.is_revoked(peer.terminal_id, now_ms):
            return f"terminal {peer.terminal_id} is revoked"
        return None


class Node:
    def __init__(
        self,
        replica: Replica,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
        anti_entropy_ms: int = ANTI_ENTROPY_MS,
        ack_delay_ms: int = ACK_DELAY_MS,
        election: Election | None = None,
    ) -> None:
        if replica.me is None:
            raise ValueError("a mesh node needs a replica with a terminal identity")
        self.replica = replica
        self.me = replica.me
        self._random = random_bytes
        self._policy = _Policy(replica)
        self._anti_entropy_ms = anti_entropy_ms
        self._ack_delay_ms = ack_delay_ms
        self.links: dict[int, Link] = {}
        self.election = election
        self._out = Output()
        # Updates messages received since the last take_output, merged there as one batch.
        self._inbox: list[tuple[Link, tuple[Update, ...]]] = []
        self._inbox_ms = 0
        # The link whose answer to our first State(reply=True) we wait for (see _request_state).
        self._catching_up_from: int | None = None
        # Set when that answer came (or the link closed): ask the deferred links in take_output,
        # once the answer's updates are merged, so they see the state it brought.
        self._ask_deferred: Ask | None = None

    @property
    def terminal_id(self) -> TerminalId:
        return self.me.certificate.terminal_id

    # -- transport events ------------------------------------------------------------------------

    def connection_made(self, conn_id: int, *, dialer: bool, now_ms: int) -> None:
        connection = PeerConnection(
            self.me,
            self.replica.store,
            self._policy,
            random_bytes=self._random,
            crypto=self.replica.crypto,
        )
        self.links[conn_id] = Link(conn_id, connection, dialer, now_ms)
        connection.start()
        self._pump(self.links[conn_id], now_ms)

    def data_received(self, conn_id: int, data: bytes, now_ms: int) -> None:
        link = self.links.get(conn_id)
        if link is None:
            return
        link.last_seen_ms = now_ms
        link.connection.receive_data(data, now_ms)
        self._pump(link, now_ms)

    def connection_lost(self, conn_id: int, reason: str, now_ms: int) -> None:
        link = self.links.get(conn_id)
        if link is None:
            return
        link.connection.transport_closed(reason)
        self._pump(link, now_ms)

    # -- local events ----------------------------------------------------------------------------

    def local_change(self, change: Change, now_ms: int) -> None:
        """A committed local change (records written here): send it to every peer."""
        items = [Update(doc, update, self.terminal_id) for doc, update in change.updates]
        for link in self.links.values():
            if link.is_open:
                link.pending.extend(items)

    def request_sync(self, now_ms: int) -> None:
        """Exchange state with every peer now (after state changed outside the mesh)."""
        for link in self.links.values():
            if link.is_open:
                link.anti_entropy_due_ms = now_ms
        self._close_revoked(now_ms)

    def close_link(
        self,
        conn_id: int,
        reason: str,
        now_ms: int,
        code: CloseCode = CloseCode.POLICY_VIOLATION,
    ) -> None:
        link = self.links.get(conn_id)
        if link is not None:
            link.close_code = code
            link.connection.close(reason)
            self._pump(link, now_ms)

    def close_all(self, reason: str = SHUTTING_DOWN) -> None:
        for link in list(self.links.values()):
            link.close_code = CloseCode.GOING_AWAY
            link.connection.close(reason)
            self._pump(link, 0)

    def close_cloud_links(self, now_ms: int) -> None:
        """We stopped leading: the cloud link is the new leader's to hold."""
        for conn_id, link in list(self.links.items()):
            if self._is_cloud(link):
                self.close_link(conn_id, NOT_LEADER, now_ms, CloseCode.GOING_AWAY)

    # -- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        deadlines = [
            d
            for link in self.links.values()
            if link.is_open
            for d in (link.ack_due_ms, link.anti_entropy_due_ms, self._owed_answer_due(link))
            if d is not None
        ]
        if self.election is not None:
            deadlines.append(self.election.next_deadline())
        return min(deadlines, default=None)

    def handle_timer(self, now_ms: int) -> None:
        if self.election is not None and self.election.handle_timer(now_ms):
            gossip = ElectionGossip(tuple(self.election.gossip(now_ms)))
            for link in self.links.values():
                if link.is_open:
                    self._send(link, gossip)  # to the cloud too: it carries our term
        # One ack due means one commit of everything merged: acknowledge every link then.
        acking = any(
            link.is_open and link.ack_due_ms is not None and now_ms >= link.ack_due_ms
            for link in self.links.values()
        )
        for link in list(self.links.values()):
            if not link.is_open:
                continue
            if link.anti_entropy_due_ms is not None and now_ms >= link.anti_entropy_due_ms:
                # Also for a deferred link: a catch-up slower than a round costs a partial
                # copy, but a peer that never answers cannot keep us from the others' data.
                link.state_request_deferred = False
                self._send(link, State(self.replica.state_vectors(), reply=True))
                link.anti_entropy_due_ms = now_ms + self._anti_entropy_ms
                link.ack_due_ms = None  # the state just sent acknowledges too
            if link.ack_due_ms is not None and acking:
                self._send(link, State(self.replica.state_vectors(), reply=False))
                link.ack_due_ms = None
            due = self._owed_answer_due(link)
            if due is not None and now_ms >= due and link.peer_state is not None:
                self._answer(link, link.peer_state, now_ms)
            self._pump(link, now_ms)

    # -- output ----------------------------------------------------------------------------------

    def take_output(self) -> Output:
        """Everything to do now. Updates received since the last call are merged first, all in
        one batch; pending updates are packed into as few frames as possible."""
        self._merge_inbox()
        if self._ask_deferred is not None:
            self._ask_deferred_links(self._ask_deferred)
        for link in self.links.values():
            if link.pending and link.is_open:
                self._flush_pending(link)
        out, self._out = self._out, Output()
        return out

    def _flush_pending(self, link: Link) -> None:
        batch: list[Update] = []
        size = 0
        for item in link.pending:
            if batch and size + len(item.update) > MAX_BATCH_BYTES:
                self._send(link, Updates(tuple(batch)))
                batch, size = [], 0
            batch.append(item)
            size += len(item.update)
        link.pending = []
        if batch:
            self._send(link, Updates(tuple(batch)))

    @staticmethod
    def _is_cloud(link: Link) -> bool:
        return link.peer is not None and link.peer.role is Role.CLOUD

    def _send(self, link: Link, message: Message) -> None:
        if isinstance(message, State):
            self._out.acknowledges = True
        link.connection.send(message)
        frames = link.connection.data_to_send()
        self._out.frames.setdefault(link.conn_id, []).extend(frames)

    # -- protocol events -------------------------------------------------------------------------

    def _pump(self, link: Link, now_ms: int) -> None:
        frames = link.connection.data_to_send()
        if frames:
            self._out.frames.setdefault(link.conn_id, []).extend(frames)
        for event in link.connection.events_received():
            match event:
                case Established(peer):
                    self._on_established(link, peer, now_ms)
                case Received(message):
                    self._on_message(link, message, now_ms)
                case Closed(reason, by_peer):
                    self._on_closed(link, reason, by_peer, now_ms)

    def _on_established(self, link: Link, peer: Certificate, now_ms: int) -> None:
        twin = next(
            (
                other
                for other in self.links.values()
                if other is not link
                and other.is_open
                and other.peer is not None
                and other.peer.terminal_id == peer.terminal_id
            ),
            None,
        )
        link.peer = peer
        link.established_ms = now_ms
        if twin is not None:
            # One connection per pair: both ends keep the one dialed by the smaller terminal id,
            # so they agree without talking about it.
            keep_dialed_by_me = self.terminal_id < peer.terminal_id
            loser = link if link.dialer != keep_dialed_by_me else twin
            loser.close_code = CloseCode.NORMAL
            loser.connection.close(DUPLICATE_CONNECTION)
            self._pump(loser, now_ms)
            if loser is link:
                return
        self._out.log.append(("peer.connected", {"peer": peer.terminal_id, "dialer": link.dialer}))
        link.anti_entropy_due_ms = now_ms + self._anti_entropy_ms
        self._send(link, Peers(self._open_peers()))
        self._request_state(link)
        self._announce_peers()

    def _request_state(self, link: Link) -> None:
        """Ask a newly connected peer for what we lack, unless another peer's answer to the
        same question is on its way: every peer answers with everything we lack, so a lane
        joining N peers at once would download the day N times. Deferred peers are asked once
        that answer is in (``take_output``), with the state it brought."""
        if self._catching_up_from in self.links and self._catching_up_from != link.conn_id:
            link.state_request_deferred = True
            return
        self._catching_up_from = link.conn_id
        self._send(link, State(self.replica.state_vectors(), reply=True))

    def _catch_up_ended(self, link: Link, *, answered: bool) -> None:
        if link.conn_id != self._catching_up_from:
            return
        self._catching_up_from = None
        self._ask_deferred = Ask.EVERY_DEFERRED if answered else Ask.NEXT_DEFERRED

    def _ask_deferred_links(self, ask: Ask) -> None:
        self._ask_deferred = None
        for link in list(self.links.values()):
            if link.state_request_deferred and link.is_open:
                link.state_request_deferred = False
                if ask is Ask.NEXT_DEFERRED:
                    # That catch-up broke off: the next peer answers in full, the rest wait.
                    self._request_state(link)
                else:
                    # We hold what the answering peer held: the others send only the rest.
                    self._send(link, State(self.replica.state_vectors(), reply=True))

    def _on_closed(self, link: Link, reason: str, by_peer: bool, now_ms: int) -> None:
        frames = link.connection.data_to_send()  # a Refuse frame explaining why, if any
        if frames:
            self._out.frames.setdefault(link.conn_id, []).extend(frames)
        self._out.closes[link.conn_id] = Close(link.close_code, reason)
        was_open = link.peer is not None and link.established_ms is not None
        del self.links[link.conn_id]
        self._catch_up_ended(link, answered=False)
        if was_open:
            # Peers may have skipped relaying to others on the strength of this link (their
            # Peers lists said it reached the origin): exchange state with everyone now.
            # Everyone but deferred peers: the catch-up that takes over asks them in turn.
            for other in self.links.values():
                if other.is_open and not other.state_request_deferred:
                    other.anti_entropy_due_ms = now_ms
        peer = link.peer.terminal_id if link.peer else None
        self._out.log.append(("peer.closed", {"peer": peer, "reason": reason, "by_peer": by_peer}))
        if was_open:
            self._announce_peers()

    def _on_message(self, link: Link, message: Message, now_ms: int) -> None:
        match message:
            case ElectionGossip(candidates):
                if self.election is not None and not self._is_cloud(link):
                    self.election.receive(list(candidates), now_ms)
                elif self.election is None and candidates:
                    # We are the cloud: the gossip's first candidate is the uplink's sender; its
                    # term is the fencing token of its leadership (recorded, not enforced: the
                    # merge is idempotent, so a stale leader's upload does no harm).
                    link.uplink_term = max(link.uplink_term, candidates[0].term)
            case Peers(terminals):
                link.neighbors = frozenset(terminals)
            case State(vectors, reply):
                link.peer_state = vectors
                link.peer_acked_ms = now_ms
                if not reply:
                    # The first State(reply=False) on a new link answers our request: the
                    # peer sends its diff, then its state (acks need our updates, which follow
                    # our request on the link).
                    self._catch_up_ended(link, answered=True)
                if link.answer_brings is not None and _merged(vectors, link.answer_brings):
                    link.answer_brings = None
                if reply or link.reply_owed:
                    self._answer(link, vectors, now_ms)
            case Updates(items):
                # Merged in take_output, with every other frame received until then (the shell
                # drains output at the end of the event-loop iteration): one transaction and
                # one fold for all of them. Messages are still handled in order per link:
                # nothing else a peer sends depends on its updates being merged already.
                self._inbox.append((link, items))
                self._inbox_ms = now_ms  # the latest arrival: time as the shell last saw it

    def _answer(self, link: Link, vectors: dict[str, bytes], now_ms: int) -> None:
        """Answer a State(reply=True): what the peer lacks, then our state. At most one
        answer per peer is in flight: until the peer's state shows it merged the last one (or
        ``anti_entropy_ms`` passed), a new question is owed an answer instead of getting a
        second copy of the same diff. A peer that asks faster than it reads (thousands of
        60-byte questions, each answered with the whole day) gets one answer, not thousands."""
        if link.answer_brings is not None and now_ms < link.answer_sent_ms + self._anti_entropy_ms:
            link.reply_owed = True
            return
        link.reply_owed = False
        link.answer_brings = None
        try:
            diff = self.replica.updates_since(vectors)
        except RemoteError as exc:
            self._violation(link, str(exc), now_ms)
            return
        ours = self.replica.state_vectors()
        if diff:
            link.answer_brings = {
                doc: decode_state_vector(ours[doc]) or {} for doc in diff if doc in ours
            }
            link.answer_sent_ms = now_ms
            link.pending.extend(Update(d, u, "") for d, u in diff.items())
            self._flush_pending(link)
        self._send(link, State(ours, reply=False))

    def _owed_answer_due(self, link: Link) -> int | None:
        """When a question held back behind an answer in flight is answered anyway."""
        if not link.reply_owed:
            return None
        return link.answer_sent_ms + self._anti_entropy_ms

    def _merge_inbox(self) -> None:
        inbox, self._inbox = self._inbox, []
        if len(inbox) == 1:
            self._on_updates(*inbox[0], self._inbox_ms)
        elif inbox:
            self._merge_frames(inbox, self._inbox_ms)

    def _on_updates(self, link: Link, items: tuple[Update, ...], now_ms: int) -> None:
        self._merge_frames([(link, items)], now_ms)

    def _merge_frames(self, frames: list[tuple[Link, tuple[Update, ...]]], now_ms: int) -> None:
        """Merge received Updates frames in one batch, all or nothing per frame; then relay."""
        updates = [(item.doc, item.update) for _, items in frames for item in items]
        try:
            # One transaction per document and one fold for the lot (Replica.merge_batch).
            merged = self.replica.merge_batch(updates, now_ms)
        except RemoteError as exc:
            if len(frames) > 1:
                # Somebody sent a bad update (nothing was applied): frame by frame, so only
                # its sender is cut off.
                for frame in frames:
                    self._merge_frames([frame], now_ms)
                return
            link = frames[0][0]
            source = link.peer.terminal_id if link.peer else ""
            if self.links.get(link.conn_id) is link:
                self._violation(link, f"bad update from {source}: {exc}", now_ms)
            return
        if merged.change:
            self._out.persist.append(merged.change)
        fresh = iter(merged.fresh)
        integrated: dict[str, bytes] = {}
        catch_up_from: dict[int, Link] = {}
        for link, items in frames:
            others = [
                other
                for other in self.links.values()
                if other is not link and other.is_open and other.peer is not None
            ]
            for item in items:
                if not next(fresh):
                    continue  # a duplicate: it changes nothing, so it goes nowhere
                if not item.origin:
                    # Pushing diffs after a catch-up that changed nothing is only wasted work;
                    # one that changed something (perhaps with a sibling item) is worth it.
                    if merged.change.entries > 0:
                        catch_up_from[link.conn_id] = link
                    continue
                targets = [
                    other
                    for other in others
                    if other.peer is not None
                    and other.peer.terminal_id != item.origin
                    and item.origin not in other.neighbors
                ]
                # Only what changed our state travels on (an update still waiting for its
                # parent does not), so relay cycles die out; in a full mesh nobody needs a
                # relay, and the check is skipped.
                if targets and self._integrated(item, integrated):
                    for other in targets:
                        other.pending.append(item)
            if link.ack_due_ms is None:
                link.ack_due_ms = now_ms + self._ack_delay_ms
        if catch_up_from:
            # A catch-up has no single origin to relay by: push each other peer exactly what
            # its last acknowledged state lacks (or ask for its state when we have none yet).
            sources = list(catch_up_from.values())
            for other in self.links.values():
                if not other.is_open or catch_up_from.keys() == {other.conn_id}:
                    continue
                if self._peer_of_every(other, sources):
                    # It has what they hold: each of them sends every catch-up it gets to
                    # its peers, and a peer connecting to it asks for everything. Without
                    # this, a catch-up in one half of a healed split went from every lane of
                    # that half to every other (a heal moved 2.2x the bytes it needs).
                    continue
                if self._hears_first_hand(other, merged.writers):
                    # The relay rule, applied to a catch-up: a peer connected to every
                    # terminal whose records it brought gets them from those terminals. Without
                    # this, in a full mesh under load each push (a diff against the peer's last
                    # acknowledged state) often held an in-flight sale new to its receiver,
                    # which pushed again to all its peers: a storm of ~10 KB per sale.
                    continue
                if other.peer_state is None:
                    other.anti_entropy_due_ms = now_ms
                    continue
                try:
                    diff = self.replica.updates_since(other.peer_state)
                except RemoteError:
                    other.anti_entropy_due_ms = now_ms
                    continue
                other.pending.extend(Update(d, u, "") for d, u in diff.items())
        self._close_revoked(now_ms)

    @staticmethod
    def _peer_of_every(link: Link, sources: list[Link]) -> bool:
        """Did every source of a catch-up say (in ``Peers``) that ``link``'s peer is its peer?"""
        if link.peer is None:
            return False
        peer = link.peer.terminal_id
        return all(peer in source.neighbors for source in sources)

    @staticmethod
    def _hears_first_hand(link: Link, writers: frozenset[str] | None) -> bool:
        if writers is None or link.peer is None:
            return False
        peer = link.peer.terminal_id
        return all(w == peer or w in link.neighbors for w in writers)

    def _integrated(self, item: Update, vectors: dict[str, bytes]) -> bool:
        """Is ``item`` now part of our state (not held back waiting for a missing parent)?
        ``vectors`` caches state vectors per document for one received frame."""
        vector = vectors.get(item.doc)
        if vector is None:
            vector = vectors[item.doc] = self.replica.state_vectors().get(item.doc, b"")
        return covered_by(item.update, vector)

    def _violation(self, link: Link, reason: str, now_ms: int) -> None:
        self._out.log.append(("peer.violation", {"reason": reason}))
        link.connection.close(reason)
        self._pump(link, now_ms)

    def _close_revoked(self, now_ms: int) -> None:
        for link in list(self.links.values()):
            if link.peer and self.replica.views.is_revoked(link.peer.terminal_id, now_ms):
                link.connection.close(f"terminal {link.peer.terminal_id} is revoked")
                self._pump(link, now_ms)

    def _open_peers(self) -> tuple[str, ...]:
        return tuple(
            sorted(
                link.peer.terminal_id for link in self.links.values() if link.is_open and link.peer
            )
        )

    def _announce_peers(self) -> None:
        peers = Peers(self._open_peers())
        for link in self.links.values():
            if link.is_open:
                self._send(link, peers)

    # -- status ----------------------------------------------------------------------------------

    def peer_status(self) -> list[dict[str, Any]]:
        """Each open connection: who, since when, and how much it has not acknowledged."""
        rows = []
        for link in self.links.values():
            if not link.is_open or link.peer is None:
                continue
            unacked = None
            if link.peer_state is not None:
                diff = self.replica.updates_since(link.peer_state)
                unacked = sum(len(u) for u in diff.values())
            rows.append(
                {
                    "terminal_id": link.peer.terminal_id,
                    "connected": True,
                    "dialer": link.dialer,
                    "established_ms": link.established_ms,
                    "acked_ms": link.peer_acked_ms,
                    "last_seen_ms": link.last_seen_ms,
                    "role": link.peer.role.value,
                    "term": link.uplink_term or None,
                    "unacked_bytes": unacked,
                    "frames_sent": link.connection.frames_sent,
                    "frames_received": link.connection.frames_received,
                    "bytes_sent": link.connection.bytes_sent,
                    "bytes_received": link.connection.bytes_received,
                }
            )
        return sorted(rows, key=lambda r: str(r["terminal_id"]))


def _merged(vectors: dict[str, bytes], brings: dict[str, StateVector]) -> bool:
    """Do a peer's state vectors show it holds everything an answer brought it?"""
    for doc, wanted in brings.items():
        held = decode_state_vector(vectors.get(doc, b""))
        if held is None or not covers(held, wanted):
            return False
    return True
