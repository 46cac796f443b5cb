"""A terminal in the mesh: its replica plus every peer connection, as one pure state machine.

The shell feeds it transport events and time; it returns frames to send, connections to close,
and changes to make durable, as an ``Output``. This module is the node's handling of events,
messages and timers; the ideas it applies have their own modules: ``core.output`` (the output
contract, and the outbox the node gathers it in), ``core.link`` (what it keeps per peer),
``core.catchup`` (how much state exchange runs at once) and ``core.relay`` (which peers a
merged update goes on to).

Acknowledgements go out on a later timer, all links at once, so a peer is never told we hold
data we have not committed and a busy terminal commits peers' data about once per
``ack_delay_ms``.

Received ``Updates`` are merged in ``take_output``, every frame received since the last call in
one batch (one pycrdt transaction per document, one fold): the shell drains output at the end
of each event-loop iteration, so under load many frames share the merge's fixed cost. A node
given a merge budget (the cloud, which serves many stores on one loop) merges at most about that
many bytes a call, large updates cut into slices, and asks to be called again at once
(``core.mergequeue``).

Sync, per connection:

* On connect both sides send ``Peers`` (who they are connected to) and ``State(reply=True)``.
* ``State(reply=True)`` is answered with ``Updates`` holding exactly what the sender lacks
  (state-vector diff per document, new documents whole) and our own ``State(reply=False)``;
  one answer per peer is in flight (``core.catchup``).
* One catch-up at a time: a question to a newly connected peer waits while another peer's
  answer to it is on its way (``core.catchup``).
* Local writes go out as ``Updates`` once committed, batched per connection until the shell
  flushes (end of the event-loop iteration).
* Relay: an update that changed our state goes on to the peers that do not hear it first
  hand (``core.relay``).
* ``State(reply=False)`` acknowledges: it records how far the peer has durably got.
* Anti-entropy: every ``anti_entropy_ms`` each connection exchanges state vectors again, which
  repairs anything lost (a dropped link, a buffered update whose predecessor arrived late).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lanesync.core.catchup import CatchUp, answer_merged
from lanesync.core.change import Change
from lanesync.core.connection import Closed, Established, PeerConnection, Received
from lanesync.core.election import Election
from lanesync.core.identity import Certificate, Role
from lanesync.core.ids import CONFIG_DOC, TerminalId
from lanesync.core.link import DUPLICATE_CONNECTION, NOT_LEADER, SHUTTING_DOWN, CloseCode, Link
from lanesync.core.mergequeue import MergeQueue
from lanesync.core.output import Outbox, Output
from lanesync.core.relay import Frame, forward
from lanesync.core.replica import Replica
from lanesync.core.sealdays import PeerState
from lanesync.core.wire import ElectionGossip, Message, Peers, State, Update, Updates
from lanesync.errors import RemoteError

# Anti-entropy repairs what live sync missed; 5 s bounds repair time at the cost of one small
# state message per link and interval (~200 B for 8 lanes and 3 documents).
ANTI_ENTROPY_MS = 5_000
# Acknowledge received data at most this often per link: acks only feed `status`, so a short
# delay saves a state message per received frame under load.
ACK_DELAY_MS = 200


class _Policy:
    def __init__(self, replica: Replica) -> None:
        self._replica = replica

    def refusal(self, peer: Certificate, now_ms: int) -> str | None:
        if self._replica.views.revokes(peer, now_ms):
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
        merge_budget_bytes: int | None = None,
    ) -> None:
        """``merge_budget_bytes``: about how much of what peers sent one ``take_output``
        merges (None: everything received since the last call)."""
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
        self._out = Outbox()
        # Updates messages received and not merged yet (take_output merges them).
        self._inbox = MergeQueue(merge_budget_bytes)
        self._inbox_ms = 0
        # Hashes of waiting records checked ahead of their merge (``verified_ahead``).
        self._verified: set[bytes] = set()
        self._catch_up = CatchUp(replica, self._out, anti_entropy_ms)

    @property
    def caught_up(self) -> bool:
        """Has a peer's (or the cloud's) answer to our catch-up been merged since we started?"""
        return self._catch_up.answered

    @property
    def merging(self) -> bool:
        """Are received updates waiting for their merge (received since the last
        ``take_output``, or held back by a merge budget)? With some held back the node is due
        at once (``next_deadline``): each call merges the next part."""
        return bool(self._inbox)

    def take_large_updates(self) -> list[bytes]:
        """Received updates too large for one merge, since the last call: their records may be
        checked ahead of their slices' merges, elsewhere (``core.preverify``)."""
        return self._inbox.take_large()

    def verified_ahead(self, hashes: list[bytes]) -> None:
        """Records of waiting updates were checked elsewhere (``core.preverify``): their
        merge takes them as checked. Ignored once nothing waits (the records are merged
        already: they were checked then)."""
        if self._inbox:
            self._verified.update(hashes)

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

    def announce_state(self) -> None:
        """Tell every peer our state now, asking nothing back (after sealing days: a peer in a
        store with a cloud may seal a day once a lane says it sealed it, and should not wait
        for the next anti-entropy round)."""
        for link in self.links.values():
            if link.is_open:
                self._out.send(
                    link, State(self.replica.state_vectors(link.peer_state), reply=False)
                )

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
            if link.is_cloud:
                self.close_link(conn_id, NOT_LEADER, now_ms, CloseCode.GOING_AWAY)

    # -- timers ----------------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        deadlines = [
            d
            for link in self.links.values()
            if link.is_open
            for d in (
                link.ack_due_ms,
                link.anti_entropy_due_ms,
                self._catch_up.owed_answer_due(link),
            )
            if d is not None
        ]
        if self.election is not None:
            deadlines.append(self.election.next_deadline())
        if self._inbox:
            deadlines.append(self._inbox_ms)  # over budget: merge the rest on the next turn
        return min(deadlines, default=None)

    def handle_timer(self, now_ms: int) -> None:
        if self.election is not None and self.election.handle_timer(now_ms):
            gossip = ElectionGossip(tuple(self.election.gossip(now_ms)))
            for link in self.links.values():
                if link.is_open:
                    self._out.send(link, gossip)  # to the cloud too: it carries our term
        # One ack due means one commit of everything merged: acknowledge every link then.
        acking = any(
            link.is_open and link.ack_due_ms is not None and now_ms >= link.ack_due_ms
            for link in self.links.values()
        )
        waiting = {link.conn_id for link in self._inbox.links()}
        for link in list(self.links.values()):
            if not link.is_open:
                continue
            due = link.anti_entropy_due_ms
            if due is not None and now_ms >= due and link.conn_id in waiting:
                # Its updates are still being merged: asking now would have it send again
                # what is waiting here, which our state does not show yet. It is sending:
                # one round of repair later is no loss.
                link.anti_entropy_due_ms = now_ms + self._anti_entropy_ms
            elif due is not None and now_ms >= due:
                # Also for a deferred link: a catch-up slower than a round costs a partial
                # copy, but a peer that never answers cannot keep us from the others' data.
                link.state_request_deferred = False
                self._out.send(link, State(self.replica.state_vectors(link.peer_state), reply=True))
                link.anti_entropy_due_ms = now_ms + self._anti_entropy_ms
                link.ack_due_ms = None  # the state just sent acknowledges too
            if link.ack_due_ms is not None and acking:
                self._out.send(
                    link, State(self.replica.state_vectors(link.peer_state), reply=False)
                )
                link.ack_due_ms = None
            due = self._catch_up.owed_answer_due(link)
            if due is not None and now_ms >= due and link.peer_state is not None:
                self._answer(link, link.peer_state, now_ms)
            self._pump(link, now_ms)

    # -- output ----------------------------------------------------------------------------------

    def inbox_roles(self) -> set[Role]:
        """The roles of the peers whose updates the next ``take_output`` merges (a lane's
        change feed says where a record came from)."""
        return {link.peer.role for link in self._inbox.links() if link.peer is not None}

    def take_output(self) -> Output:
        """Everything to do now. Updates received since the last call are merged first, in one
        batch (up to the merge budget); pending updates are packed into as few frames as
        possible."""
        self._merge_inbox()
        if not self._inbox:  # an answer still being merged has not brought its state yet
            self._catch_up.ask_deferred(self.links)
        for link in self.links.values():
            if link.pending and link.is_open:
                self._out.send_pending(link)
        return self._out.take()

    # -- protocol events -------------------------------------------------------------------------

    def _pump(self, link: Link, now_ms: int) -> None:
        self._out.collect(link)
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
        self._out.log("peer.connected", {"peer": peer.terminal_id, "dialer": link.dialer})
        link.anti_entropy_due_ms = now_ms + self._anti_entropy_ms
        self._out.send(link, Peers(self._open_peers()))
        self._catch_up.request(link, self.links)
        self._announce_peers()

    def _on_closed(self, link: Link, reason: str, by_peer: bool, now_ms: int) -> None:
        self._out.collect(link)  # a Refuse frame explaining why, if any
        self._out.close(link, reason)
        was_open = link.peer is not None and link.established_ms is not None
        del self.links[link.conn_id]
        self._catch_up.ended(link, answered=False)
        if was_open:
            # Peers may have skipped relaying to others on the strength of this link (their
            # Peers lists said it reached the origin): exchange state with everyone now.
            # Everyone but deferred peers: the catch-up that takes over asks them in turn.
            for other in self.links.values():
                if other.is_open and not other.state_request_deferred:
                    other.anti_entropy_due_ms = now_ms
        peer = link.peer.terminal_id if link.peer else None
        self._out.log("peer.closed", {"peer": peer, "reason": reason, "by_peer": by_peer})
        if was_open:
            self._announce_peers()

    def _on_message(self, link: Link, message: Message, now_ms: int) -> None:
        match message:
            case ElectionGossip(candidates):
                if self.election is not None and not link.is_cloud:
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
                    self._catch_up.ended(link, answered=True)
                if link.answer_brings is not None and answer_merged(vectors, link.answer_brings):
                    link.answer_brings = None
                if reply or link.reply_owed:
                    self._answer(link, vectors, now_ms)
            case Updates(items):
                # Merged in take_output, with every other frame received until then (the shell
                # drains output at the end of the event-loop iteration): one transaction and
                # one fold for all of them. Messages are still handled in order per link:
                # nothing else a peer sends depends on its updates being merged already.
                self._inbox.add(link, items)
                self._inbox_ms = now_ms  # the latest arrival: time as the shell last saw it

    def _answer(self, link: Link, vectors: dict[str, bytes], now_ms: int) -> None:
        try:
            self._catch_up.answer(link, vectors, now_ms)
        except RemoteError as exc:  # the peer's state vectors do not decode
            self._violation(link, str(exc), now_ms)

    def _merge_inbox(self) -> None:
        inbox = self._inbox.take()
        if len(inbox) == 1:
            self._on_updates(*inbox[0], self._inbox_ms)
        elif inbox:
            self._merge_frames(inbox, self._inbox_ms)

    def _on_updates(self, link: Link, items: tuple[Update, ...], now_ms: int) -> None:
        self._merge_frames([(link, items)], now_ms)

    def _merge_frames(self, frames: list[Frame], now_ms: int) -> None:
        """Merge received Updates frames in one batch, all or nothing per frame; then relay."""
        updates = [(item.doc, item.update) for _, items in frames for item in items]
        try:
            # One transaction per document and one fold for the lot (Replica.merge_batch).
            merged = self.replica.merge_batch(updates, now_ms, verified=self._verified)
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
        if not self._inbox:
            self._verified.clear()
        if merged.change:
            self._out.persist(merged.change)
        forward(frames, merged, self.links, self.replica, now_ms)
        for link, _ in frames:
            if link.ack_due_ms is None:
                link.ack_due_ms = now_ms + self._ack_delay_ms
        self._close_revoked(now_ms)

    def _violation(self, link: Link, reason: str, now_ms: int) -> None:
        self._out.log("peer.violation", {"reason": reason})
        link.connection.close(reason)
        self._pump(link, now_ms)

    def _close_revoked(self, now_ms: int) -> None:
        for link in list(self.links.values()):
            if link.peer and self.replica.views.revokes(link.peer, now_ms):
                if link.is_open:
                    # Its last frame: our config document, its revocation in it. Every peer
                    # refuses it from now on, so this is the only way it learns it live, and
                    # then it refuses its POS's writes (Replica.revoked). Certificates and
                    # revocations only; none of the store's records go to it any more.
                    config = Update(CONFIG_DOC, self.replica.full_state(CONFIG_DOC), "")
                    self._out.send(link, Updates((config,)))
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
                self._out.send(link, peers)

    # -- status ----------------------------------------------------------------------------------

    def peer_states(self) -> list[PeerState]:
        """Every open connection's last state, as sealing reads it (``sealdays.acknowledged``)."""
        return [
            PeerState(link.is_cloud, link.peer_state)
            for link in self.links.values()
            if link.is_open and link.peer is not None
        ]

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
            rows.append(link.status(link.peer, unacked))
        return sorted(rows, key=lambda r: str(r["terminal_id"]))
