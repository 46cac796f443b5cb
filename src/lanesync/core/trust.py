"""Trust: the store's terminal certificates and revocations, and which of them signed a record.

A record is believed only when a certificate of its terminal, valid at the record's time, covering
the record's seq, and whose revocations (if any) admit the record's position in its chain,
verifies its signature.

A certificate covers seqs from its ``first_seq`` (1, or just past where a re-key took over) up to
where a newer key of the same terminal takes over: after a re-key the old key signs nothing more,
and a renewal (a new certificate for the same key) changes nothing but the validity period.

A revocation cuts a chain at a seq (and the hash of the record there, when the revoking replica
held it): the signer chooses a record's time, never its position, so a stolen key cannot write
its way back in. It cuts every key of the terminal, or one key only (``key``): a re-keyed
terminal's old key revoked that way signs nothing past the cut, while the new key's records
count as the re-key says. Several revocations of one scope meet: only what all of them admit
counts. Revocations of the first format (a time) are still judged by the record's time.

``Trust`` holds what the replica has learnt of both (certificates and revocations only ever
accumulate) and answers ``signer(record)``; it also remembers which signatures it verified, so
the shell can persist those verdicts and a rebuild or a reopen need not verify a record twice.
Deciding what a believed record then counts for is the business of ``core.chains`` and
``core.views``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.identity import AnyRevocation, Certificate, Revocation
from lanesync.core.ids import TerminalId
from lanesync.core.records import PriceChange, Record

EVERY_KEY = b""  # a revocation's ``key`` when it revokes every certificate of its terminal


@dataclass(frozen=True, slots=True)
class Cut:
    """Where revocations cut a chain: its records up to ``after_seq`` count; at ``after_seq``
    only the one whose hash is ``after_hash`` when that is given."""

    after_seq: int
    after_hash: bytes = b""

    def admits(self, record: Record) -> bool:
        if record.seq != self.after_seq:
            return record.seq < self.after_seq
        return not self.after_hash or record.hash == self.after_hash

    def meet(self, other: Cut) -> Cut:
        """The cut admitting exactly what both admit (commutative and associative, so the
        result does not depend on the order revocations arrive in)."""
        if self.after_seq != other.after_seq:
            return self if self.after_seq < other.after_seq else other
        if self.after_hash == other.after_hash or not other.after_hash:
            return self
        if not self.after_hash:
            return other
        # Two different records named at one seq: neither is admitted.
        return Cut(max(self.after_seq - 1, 0))


class Trust:
    """Certificates and revocations of one store, and the signature verdicts made with them."""

    def __init__(self, crypto: Crypto = SODIUM) -> None:
        self._crypto = crypto
        self._certs: dict[TerminalId, list[Certificate]] = defaultdict(list)
        # Cuts by (terminal, revoked public key or EVERY_KEY), and format-1 revocations by time.
        self._cuts: dict[tuple[TerminalId, bytes], Cut] = {}
        self._revoked_from: dict[TerminalId, int] = {}
        self._revoked_terminals: set[TerminalId] = set()  # with any revocation at all
        self._new_verdicts: list[bytes] = []
        # Hashes of records whose signature verified before a rebuild (the rebuild forgets
        # every view, not what was verified): see ``remember_checked``.
        self._checked: set[bytes] = set()

    # -- certificates and revocations ------------------------------------------------------------

    def add_certificate(self, cert: Certificate) -> bool:
        """Learn ``cert``; False when it was known already."""
        known = self._certs[cert.terminal_id]
        if any(c.encoded == cert.encoded for c in known):
            return False
        known.append(cert)
        return True

    def add_revocation(self, revocation: AnyRevocation) -> bool:
        """Believe a store-signed revocation. False when it changes nothing (what it refuses
        was refused already)."""
        terminal = revocation.terminal_id
        self._revoked_terminals.add(terminal)
        if isinstance(revocation, Revocation):
            scope = (terminal, revocation.key)
            cut = Cut(revocation.after_seq, revocation.after_hash)
            current = self._cuts.get(scope)
            met = cut if current is None else current.meet(cut)
            if met == current:
                return False
            self._cuts[scope] = met
            return True
        revoked_from = self._revoked_from.get(terminal)
        if revoked_from is not None and revoked_from <= revocation.revoked_at_ms:
            return False
        self._revoked_from[terminal] = revocation.revoked_at_ms
        return True

    def cut_of(self, terminal: TerminalId, key: bytes = EVERY_KEY) -> Cut | None:
        """The cut of ``terminal``'s chain for certificates of ``key`` (EVERY_KEY: the cut that
        applies to all of them), or None if none applies."""
        wide = self._cuts.get((terminal, EVERY_KEY))
        if key == EVERY_KEY:
            return wide
        own = self._cuts.get((terminal, key))
        if wide is None or own is None:
            return wide or own
        return wide.meet(own)

    def is_revoked(self, terminal: TerminalId, now_ms: int) -> bool:
        """Is every certificate of ``terminal`` revoked (at ``now_ms``, which matters only for
        a format-1 revocation)?"""
        revoked_from = self._revoked_from.get(terminal)
        return (terminal, EVERY_KEY) in self._cuts or (
            revoked_from is not None and now_ms >= revoked_from
        )

    def revokes(self, cert: Certificate, now_ms: int) -> bool:
        """Is ``cert`` revoked, by a revocation of its terminal or of its key?"""
        return self.is_revoked(cert.terminal_id, now_ms) or (
            (cert.terminal_id, cert.public_key) in self._cuts
        )

    def _admits(self, cert: Certificate, record: Record) -> bool:
        revoked_from = self._revoked_from.get(record.terminal)
        if revoked_from is not None and record.hlc.wall_ms >= revoked_from:
            return False
        cut = self.cut_of(record.terminal, cert.public_key)
        return cut is None or cut.admits(record)

    def revocation_refusal(self, record: Record) -> str | None:
        """Why revocations refuse ``record``: a certificate of its terminal, valid at its time,
        whose key made the signature, is revoked for it. None when that is not so (the record
        is then simply unverified). Verifies a signature: for reports, not for the fold."""
        if record.terminal not in self._revoked_terminals:
            return None
        for cert in self._certs.get(record.terminal, ()):
            if (
                cert.valid_at(record.hlc.wall_ms)
                and not self._admits(cert, record)
                and self._crypto.verify_record(cert.public_key, record.payload, record.signature)
            ):
                return self._refusal(cert, record)
        return None

    def _refusal(self, cert: Certificate, record: Record) -> str:
        cut = self.cut_of(record.terminal, cert.public_key)
        if cut is None or cut.admits(record):
            revoked_from = self._revoked_from[record.terminal]
            return f"{record.terminal} is revoked from {revoked_from} ms on (record time)"
        whose = str(record.terminal)
        if self.cut_of(record.terminal) != cut:
            whose += f" key {cert.key_fingerprint}"
        if record.seq > cut.after_seq:
            return f"after the revocation cut of {whose} at seq {cut.after_seq}"
        return f"not the record at seq {cut.after_seq} that the revocation of {whose} names"

    def cuts(self) -> dict[tuple[TerminalId, bytes], Cut]:
        """Every cut in force, by (terminal, public key or EVERY_KEY)."""
        return dict(self._cuts)

    def time_revocations(self) -> dict[TerminalId, int]:
        """Every format-1 revocation in force: terminal -> from when (ms, record time)."""
        return dict(self._revoked_from)

    def export_revocations(self) -> list[Any]:
        """Every revocation in force as plain msgpack-able values (for a checkpoint, which fits
        only views judged under the same ones): format-1 ones as ``[terminal, ms]`` first, then
        the cuts as ``[terminal, key, after_seq, after_hash]``."""
        return [
            *sorted([t, ms] for t, ms in self._revoked_from.items()),
            *sorted([t, k, c.after_seq, c.after_hash] for (t, k), c in self._cuts.items()),
        ]

    def certificates(self) -> Iterator[Certificate]:
        for certs in self._certs.values():
            yield from certs

    def next_takeover(self, cert: Certificate) -> int | None:
        """The first seq of ``cert``'s terminal that another, newer key signs (a re-key), or
        None: ``cert``'s key may sign up to just before it."""
        # A re-key outranks a plain certificate from the same seq on: a re-key of a terminal
        # that never wrote (at seq 0) still closes the old key.
        rank = (cert.first_seq, cert.is_rekey)
        later = [
            c.first_seq
            for c in self._certs.get(cert.terminal_id, ())
            if c.public_key != cert.public_key and (c.first_seq, c.is_rekey) > rank
        ]
        return min(later) if later else None

    def covers(self, cert: Certificate, seq: int) -> bool:
        if seq < cert.first_seq:
            return False
        takeover = self.next_takeover(cert)
        return takeover is None or seq < takeover

    def signing_keys(self) -> dict[TerminalId, tuple[bytes, ...]]:
        """Every terminal's known public keys (a copy: ``core.preverify`` reads it elsewhere)."""
        return {
            terminal: tuple(cert.public_key for cert in certs)
            for terminal, certs in self._certs.items()
        }

    # -- signatures -----------------------------------------------------------------------------

    def signer(self, record: Record, *, trusted: bool) -> Certificate | None:
        """A certificate of the record's terminal, valid at the record's time, whose key made
        the signature; None if there is none (yet). Every candidate is tried, so the answer does
        not depend on the order certificates arrived in; for a price change a manager
        certificate is preferred, since only that authorises it. ``trusted``: the signature was
        verified before (verdict cache) or made by this very replica."""
        at_ms = record.hlc.wall_ms
        known: list[Certificate] = self._certs.get(record.terminal, [])
        certs = known
        if record.terminal in self._revoked_terminals:
            certs = [c for c in known if self._admits(c, record)]
        checked_before = trusted or record.hash in self._checked
        if len(known) == 1 and certs:
            # The common case: one certificate, so there is no choice between signers (and no
            # other key to take over from it). One left of several by revocations still needs
            # ``covers`` below: an old key whose successor is revoked does not sign again.
            (cert,) = certs
            if not cert.valid_at(at_ms) or (
                cert.succeeds is not None and record.seq < cert.first_seq
            ):
                return None
            if checked_before:
                return cert  # on a reopen
            if not self._crypto.verify_record(cert.public_key, record.payload, record.signature):
                return None
            self._new_verdicts.append(record.verdict_key)
            return cert
        candidates = [c for c in certs if c.valid_at(at_ms) and self.covers(c, record.seq)]
        if not candidates:
            return None
        # Over every certificate of the terminal, revoked or not: the verdict says some key of
        # the terminal verified the signature, not that an admitted one did.
        one_key = len({c.public_key for c in known}) == 1
        if (
            checked_before
            and one_key
            and (len(candidates) == 1 or not isinstance(record.body, PriceChange))
        ):
            # The signature was verified before, by some key of this terminal: by this one if
            # the terminal has one key (after a re-key, the key decides which seqs it covers).
            # Only for a price change with several candidate certificates does it matter which
            # one signed (their roles may differ).
            return candidates[0]
        signers = [
            c
            for c in candidates
            if self._crypto.verify_record(c.public_key, record.payload, record.signature)
        ]
        if signers and not trusted:
            self._new_verdicts.append(record.verdict_key)
        managers = [c for c in signers if c.role.may_set_prices]
        if managers:
            return managers[0]
        return signers[0] if signers else None

    def drain_new_verdicts(self) -> list[bytes]:
        """Verdict keys (``records.verdict_key``) of records whose signature was verified since
        the last call (to persist)."""
        verdicts, self._new_verdicts = self._new_verdicts, []
        return verdicts

    def remember_checked(self, hashes: Iterable[bytes]) -> None:
        """Start a rebuild: the signatures of ``hashes`` verified before and are not checked
        again, and verdicts not drained yet are dropped (the rebuild makes its own)."""
        self._checked = set(hashes)
        self._new_verdicts = []

    def forget_checked(self) -> None:
        """End a rebuild: only a rebuild needs to know what was verified before (it forgets the
        views); after it the set would hold one hash per record for nothing."""
        self._checked = set()
