"""A terminal's lifecycle in the simulated store: backups, a restore from an old backup (which
can fork the lane's chain), a re-key, a revocation, and what the store authority does about a
fork once the store has settled: it resolves it and the forked lane goes on under a replacement
terminal id.

Each does what the real commands do, on the simulated hosts:

* a backup copies a lane's committed log (``durable``) and its signature verdicts;
* a restore kills the lane and puts its last backup back in place of its committed log, so it
  restarts with its own chain shorter than the records it signed and acknowledged. Its network
  may come back late (``isolated_until_ms``) while the POS sells on it: those sales sign seqs it
  already used, a fork, once its peers hold the lost records. A restore is only made when every
  record it takes away is committed on another host: the simulator holds the store to every
  acknowledged record, and a record that no longer exists anywhere cannot be counted;
* a re-key (``lanesync enroll --replaces LANE --terminal-id LANE``): a new key whose certificate
  continues the lane's chain after its head, published through the lane, which then restarts
  with the new key (a re-keyed lane starts from a new directory: its backups are gone);
* a revocation (``lanesync revoke STORE LANE --via VIA``) cuts the lane's chain at the head VIA
  holds of it, the command's default; in the quiet phase the revoked lane's documents are
  imported on another lane (a bundle: its records up to the cut count, whoever held them) and a
  new terminal replaces it;
* once the store settles, every open fork is resolved as ``lanesync store resolve-fork`` does
  (the resolution is built from a replica that holds every branch: at that point every replica
  holds the same records) and published through a lane; each lane whose chain a resolution
  closed is replaced as ``lanesync enroll --replaces`` does: a new terminal id whose certificate
  names the old chain's last record, published through a lane, the new lane seeded with that
  lane's documents (a bundle) and put in the old one's place in the topology. It then sells.

``Lifecycle`` is a part of ``Simulator`` (see ``loop.py``); its choices come from the seeded
``rng``, its keys from ``keys``.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from nacl.signing import SigningKey

from lanesync.core import archive_codec, bodies, reports
from lanesync.core.change import Change
from lanesync.core.forks import issue_fork_resolution
from lanesync.core.identity import (
    Role,
    Succession,
    issue_certificate,
    issue_revocation,
    public_key_of,
)
from lanesync.core.ids import LEDGER_PREFIX, TerminalId, sku
from lanesync.errors import UsageError
from lanesync.sim.faults import Faults
from lanesync.sim.host import CERT_NOT_AFTER_MS, STORE_ID, Backup, Dialer, Host
from lanesync.sim.model import SKUS, EventKind

if TYPE_CHECKING:
    from lanesync.core.records import Body

# How long a restored lane's network stays down after the restore, at most: its restart takes
# 0.3 to 4 s (``HostShell._crash``), so it is up and selling alone for part of this in most
# restores. The POS tries this many sales on it meanwhile.
ISOLATION_MS = (2_000, 5_500)
SALES_WHILE_ISOLATED = 3


class Lifecycle(Faults):
    """The ``Simulator``'s terminal lifecycle: backups, restores, re-keys, and the store's
    repair of forks in the quiet phase."""

    authority: SigningKey
    retired: list[Host]

    if TYPE_CHECKING:  # defined by a part above this one (see loop.py)

        def _write(self, host: Host, kind: EventKind, body: Body) -> None: ...

    # -- enrolling -----------------------------------------------------------------------------

    def _make_host(
        self,
        keys: random.Random,
        name: str,
        role: Role,
        succeeds: Succession | None = None,
    ) -> Host:
        key = SigningKey(keys.randbytes(32))
        cert = issue_certificate(
            self.authority,
            STORE_ID,
            TerminalId(name),
            public_key_of(key),
            role,
            0,
            CERT_NOT_AFTER_MS,
            succeeds,
        )
        rng = random.Random(f"lanesync-sim-{name}:{self.seed}")  # noqa: S311 - simulated nonces
        return Host(name, role, key, cert, rng)

    def _publish(self, host: Host, change: Change, what: str) -> None:
        """Write what the store hands a lane (a certificate, a resolution, a revocation, a
        bundle) through it: committed, then offered to its peers, as its daemon's API does.
        ``host`` is up: the store acts through a running lane."""
        driver = host.driver
        assert driver is not None  # the callers chose a lane that is up

        def commit() -> None:
            self._commit_deferred(host)
            self._commit(host, change)

        if self._call(host, what, lambda: driver.write([change], commit, self.local_ms(host))):
            self._flush(host)

    def _own_records(self, host: Host) -> int:
        """How many records of its own chain ``host`` signed and committed (acknowledged)."""
        return sum(1 for record in self.acked if record.terminal == host.name)

    # -- faults --------------------------------------------------------------------------------

    def _first_backups(self) -> None:
        """Every lane is backed up as it is installed (the oldest backup there can be)."""
        for host in self.lanes:
            self._back_up(host)

    def _fault_backup(self) -> None:
        lanes = [h for h in self.lanes if h.alive and not h.restored]
        if lanes:
            self._back_up(self.rng.choice(lanes))

    def _back_up(self, host: Host) -> None:
        own = self._own_records(host)
        host.backup = Backup(
            {doc: tuple(rows) for doc, rows in host.durable.items()},
            frozenset(host.verified),
            own,
            self.now,
            dict(host.archives),
        )
        self._note(EventKind.BACKUP, host.name, detail=f"own chain to seq {own}")

    def _restorable(self, host: Host) -> bool:
        """May ``host`` be put back to its backup without destroying an acknowledged record?
        Every acknowledged record it committed since (its own or another lane's: its own
        signatures are among its verdicts) must be committed on another host too. Nor is a
        lane the store published a revocation through: the revocation may be held nowhere
        else yet, and the store holds the checks to it (seed 9119 of `--topology chain
        --lanes 3 --ops 30 --fault-ms 8000` restored the only holder)."""
        backup = host.backup
        if (
            backup is None
            or not host.alive
            or host.restored
            or host.name in self.revoked
            or host.name in self.revoked_via
        ):
            return False
        others = [h for h in self.by_name.values() if h is not host and not h.retired]
        return all(
            any(r.verdict_key in h.verified for h in others)
            for r in self.acked
            if r.verdict_key in host.verified and r.verdict_key not in backup.verified
        )

    def _fault_restore(self) -> None:
        lanes = [h for h in self.lanes if self._restorable(h)]
        # Prefer a lane whose backup lacks records it signed since: restoring it can fork.
        behind = [h for h in lanes if h.backup and h.backup.own_seq < self._own_records(h)]
        if not lanes:
            return
        host = self.rng.choice(behind or lanes)
        backup = host.backup
        assert backup is not None  # _restorable checked it
        own = self._own_records(host)
        host.restored = True
        self._crash(host, "restored from a backup")
        host.durable = {doc: list(rows) for doc, rows in backup.durable.items()}
        host.archives = dict(backup.archives)
        host.verified = set(backup.verified)
        self._note(
            EventKind.RESTORE,
            host.name,
            detail=f"backup of t={backup.taken_ms}: own chain to seq {backup.own_seq} of {own}",
        )
        if self.rng.random() < 0.25:
            return  # its network is up at once: it learns its own later records from peers
        host.isolated_until_ms = self.now + self.rng.randint(*ISOLATION_MS)
        self._note(EventKind.ISOLATED, host.name, detail=f"until t={host.isolated_until_ms}")
        for _ in range(SALES_WHILE_ISOLATED):
            at = self.rng.randint(self.now + 300, host.isolated_until_ms)
            self._at(at, self._sell_alone, host)

    def _sell_alone(self, host: Host) -> None:
        """The POS of a restored lane sells while its network is down."""
        if self.faulty:
            self._sell(host)

    def _sell(self, host: Host) -> None:
        """A sale of one line at an explicit price (no catalog needed)."""
        replica = host.replica
        if replica is None:
            self._note(EventKind.REFUSED, host.name, detail="sale: terminal is down")
            return
        line = bodies.LineRequest(
            sku(self.rng.choice(SKUS)), self.rng.randint(1, 3), self.rng.randint(50, 999)
        )
        self._write(host, EventKind.SALE, bodies.build_sale(replica.views, [line]))

    def _fault_rekey(self) -> None:
        """``lanesync enroll STORE NEWDIR --terminal-id LANE --replaces LANE --via LANE``: the
        lane's chain goes on after its head under a new key; the lane restarts with it."""
        lanes = [
            h
            for h in self.lanes
            if h.alive
            and not h.restored
            and h.name not in self.revoked
            and h.replica is not None
            and h.replica.views.is_broken(TerminalId(h.name)) is None
            and h.replica.views.fork_resolution(TerminalId(h.name)) is None
        ]
        if not lanes:
            return
        host = self.rng.choice(lanes)
        replica = host.replica
        assert replica is not None  # chosen alive
        terminal = TerminalId(host.name)
        head = replica.views.head(terminal)
        keys = random.Random(f"lanesync-sim-rekey-{host.name}:{self.seed}:{self.now}")  # noqa: S311
        fresh = self._make_host(
            keys, host.name, host.role, Succession(terminal, head.seq, head.hash)
        )
        self._publish(host, replica.publish_certificate(fresh.cert, self.local_ms(host)), "rekey")
        host.key, host.cert = fresh.key, fresh.cert
        host.backup = None  # a new directory: the old one's backups hold the old key
        self._note(EventKind.REKEY, host.name, detail=f"new key from seq {head.seq + 1}")
        self._crash(host, "re-keyed: restarts with its new key")

    def _fault_revoke(self) -> None:
        """``lanesync revoke STORE LANE --via VIA``: the store cuts LANE's chain at the head VIA
        holds of it (the command's default cut). Never the manager (``revoke`` refuses the last
        manager) nor a lane restored or forked; one per schedule, so enough lanes carry on."""
        if self.revoked:
            return
        lanes = [h for h in self.lanes[1:] if h.alive and not h.restored]
        if not lanes:
            return
        host = self.rng.choice(lanes)
        vias = [h for h in self.lanes if h is not host and h.replica is not None]
        if not vias:
            return
        via = self.rng.choice(vias)
        assert via.replica is not None  # chosen up
        terminal = TerminalId(host.name)
        head = reports.chain(via.replica, terminal)["head"]
        cut_hash = b"" if head["hash"] is None else bytes.fromhex(head["hash"])
        revocation = issue_revocation(self.authority, STORE_ID, terminal, head["seq"], cut_hash)
        change = via.replica.publish_revocation(revocation, self.local_ms(via))
        self._publish(via, change, "publish_revocation")
        self.revoked[host.name] = head["seq"]
        self.revoked_via.add(via.name)
        own = self._own_records(host)
        self._note(EventKind.REVOKE, via.name, host.name, f"cut after seq {head['seq']} of {own}")

    def _decommission(self) -> None:
        """The quiet phase: a revoked lane is taken out of service. What it holds comes in by a
        bundle imported on another lane (its records up to the cut that nobody else holds, when
        its peers cut it off before they had them), and a new terminal replaces it."""
        for host in [h for h in self.lanes if h.name in self.revoked]:
            # lane1 is never revoked, and every lane is up again when the quiet phase begins.
            via = next(h for h in self.lanes if h.name not in self.revoked)
            assert via.replica is not None
            rows = [(doc, row) for doc in sorted(host.durable) for row in host.durable[doc]]
            # Its sealed days travel in the bundle as their archived state (``export``).
            rows += [
                (LEDGER_PREFIX + day, archive_codec.decompress(stored.archive))
                for day, stored in sorted(host.archives.items())
                if not stored.reopened
            ]
            change = via.replica.merge(rows, self.local_ms(via))
            self._publish(via, change, "import_bundle")
            self._note(EventKind.BUNDLE, host.name, via.name, f"{len(rows)} updates")
            terminal = TerminalId(host.name)
            head = via.replica.views.head(terminal)
            self._replace(host, Succession(terminal, head.seq, head.hash), via)

    # -- the store authority, once the store settles --------------------------------------------

    def _store_acts(self) -> bool:
        """Resolve every open fork and replace every lane whose chain a resolution closed, as
        the store's IT would on reading ``lanesync verify``. True when it did anything."""
        via = self._via()
        assert via.replica is not None  # every host is up when the replicas agree
        acted = False
        names = sorted({h.name for h in self.lanes} | {h.name for h in self.retired})
        for name in names:
            try:
                fork = via.replica.open_fork(TerminalId(name))
            except UsageError:
                continue
            issued = issue_fork_resolution(
                self.authority,
                STORE_ID,
                fork.terminal,
                fork.fork_seq,
                fork.base_hash,
                fork.branches,
            )
            change = via.replica.publish_fork_resolution(issued, self.local_ms(via))
            self._publish(via, change, "publish_fork_resolution")
            heads = " ".join(f"{b.head_seq}:{b.head_hash.hex()[:8]}" for b in issued.branches)
            self._note(
                EventKind.FORK_RESOLVED, via.name, name, f"seq {fork.fork_seq} heads {heads}"
            )
            acted = True
        views = via.replica.views
        closed = [(h, views.fork_resolution(TerminalId(h.name))) for h in self.lanes]
        for host, resolution in closed:
            if resolution is not None:
                # Through another lane: the closed one is about to go (a lane it replaced
                # earlier in this loop holds everything its via held).
                other = next(h for h in self.lanes if h is not host)
                # ``enroll --replaces`` closes a resolved chain at its highest branch head.
                last = max(resolution.branches, key=lambda b: (b.head_seq, b.head_hash))
                succession = Succession(TerminalId(host.name), last.head_seq, last.head_hash)
                self._replace(host, succession, other)
                acted = True
        return acted

    def _via(self) -> Host:
        """The lane the store acts through: the first whose own chain is neither forked nor
        resolved, else the first (every lane holds every record once the replicas agree)."""
        return next((h for h in self.lanes if self._intact(h)), self.lanes[0])

    @staticmethod
    def _intact(host: Host) -> bool:
        views = host.replica.views if host.replica is not None else None
        terminal = TerminalId(host.name)
        return (
            views is not None
            and views.is_broken(terminal) is None
            and views.fork_resolution(terminal) is None
        )

    def _replace(self, old: Host, succession: Succession, via: Host) -> None:
        """``lanesync enroll STORE NEWDIR --terminal-id NEW --replaces OLD --via VIA``."""
        replica = via.replica
        assert replica is not None  # chosen up
        # A replacement is made in the quiet phase and never replaced itself: the name is new.
        name = old.name + "r"
        keys = random.Random(f"lanesync-sim-keys-{name}:{self.seed}")  # noqa: S311
        new = self._make_host(keys, name, old.role, succession)
        self._publish(via, replica.publish_certificate(new.cert, self.local_ms(via)), "enroll")
        # The new directory is seeded with a bundle of everything ``via`` holds, its sealed
        # days as their archived state.
        new.durable = {doc: [replica.full_state(doc)] for doc in replica.all_doc_names()}
        new.priority, new.offset_ms = old.priority, old.offset_ms
        old.retired = True
        self._note(EventKind.REPLACED, old.name, name, f"after seq {succession.seq}")
        self._crash(old, f"replaced by {name}")
        self.retired.append(old)
        del self.hosts[old.name]
        self.hosts[name] = self.by_name[name] = new
        self.lanes[self.lanes.index(old)] = new
        self.pairs = [
            (name if a == old.name else a, name if b == old.name else b) for a, b in self.pairs
        ]
        self.neighbors = {h.name: [] for h in self.lanes}
        for a, b in self.pairs:
            self.neighbors[a].append(b)
            self.neighbors[b].append(a)
        # Its neighbours dial the new lane instead (each up one holds a dialer for every
        # neighbour; a peer that is down dials its neighbours as it restarts).
        for peer in [self.hosts[n] for n in self.neighbors[name] if self.hosts[n].alive]:
            stale = peer.dialers.pop(old.name)
            stale.stopped = True
            stale.gen += 1
            dialer = peer.dialers[name] = Dialer(name)
            self._at(self.now, self._dial, peer, dialer, dialer.gen, peer.sessions)
        self._start(new)
        self._at(self.now + self.rng.randint(200, 1_500), self._sell, new)
