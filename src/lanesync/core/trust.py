"""Trust: the store's terminal certificates and revocations, and which of them signed a record.

A record is believed only when a certificate of its terminal, valid at the record's time and
not revoked then, verifies its signature. ``Trust`` holds what the replica has learnt of both
(certificates and revocations only ever accumulate) and answers ``signer(record)``; it also
remembers which signatures it verified, so the shell can persist those verdicts and a rebuild
or a reopen need not verify a record twice. Deciding what a believed record then counts for is
the business of ``core.chains`` and ``core.views``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator

from lanesync.core.crypto import SODIUM, Crypto
from lanesync.core.identity import Certificate
from lanesync.core.ids import TerminalId
from lanesync.core.records import PriceChange, Record


class Trust:
    """Certificates and revocations of one store, and the signature verdicts made with them."""

    def __init__(self, crypto: Crypto = SODIUM) -> None:
        self._crypto = crypto
        self._certs: dict[TerminalId, list[Certificate]] = defaultdict(list)
        self._revoked: dict[TerminalId, int] = {}
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

    def add_revocation(self, terminal: TerminalId, revoked_at_ms: int) -> bool:
        """From ``revoked_at_ms`` on, no certificate of ``terminal`` is valid. False when an
        equal or earlier revocation of it was known already (nothing changes)."""
        current = self._revoked.get(terminal)
        if current is not None and current <= revoked_at_ms:
            return False
        self._revoked[terminal] = revoked_at_ms
        return True

    def revoked_at(self, terminal: TerminalId) -> int | None:
        return self._revoked.get(terminal)

    def is_revoked(self, terminal: TerminalId, at_ms: int) -> bool:
        revoked = self._revoked.get(terminal)
        return revoked is not None and at_ms >= revoked

    def revocations(self) -> dict[TerminalId, int]:
        """Every revocation in force: terminal -> from when (ms)."""
        return dict(self._revoked)

    def certificates(self) -> Iterator[Certificate]:
        for certs in self._certs.values():
            yield from certs

    # -- signatures -----------------------------------------------------------------------------

    def signer(self, record: Record, *, trusted: bool) -> Certificate | None:
        """A certificate of the record's terminal, valid at the record's time, whose key made
        the signature; None if there is none (yet). Every candidate is tried, so the answer does
        not depend on the order certificates arrived in; for a price change a manager
        certificate is preferred, since only that authorises it. ``trusted``: the signature was
        verified before (verdict cache) or made by this very replica."""
        at_ms = record.hlc.wall_ms
        if self.is_revoked(record.terminal, at_ms):
            return None
        certs = self._certs.get(record.terminal, ())
        checked_before = trusted or record.hash in self._checked
        if len(certs) == 1:
            # The common case: one certificate, so there is no choice between signers.
            (cert,) = certs
            if not cert.valid_at(at_ms):
                return None
            if checked_before:
                return cert  # on a reopen
            if not self._crypto.verify_record(cert.public_key, record.payload, record.signature):
                return None
            self._new_verdicts.append(record.hash)
            return cert
        candidates = [c for c in certs if c.valid_at(at_ms)]
        if not candidates:
            return None
        if checked_before and (len(candidates) == 1 or not isinstance(record.body, PriceChange)):
            # The signature was verified before. Only for a price change with several candidate
            # certificates does it matter which one signed (their roles may differ).
            return candidates[0]
        signers = [
            c
            for c in candidates
            if self._crypto.verify_record(c.public_key, record.payload, record.signature)
        ]
        if signers and not trusted:
            self._new_verdicts.append(record.hash)
        managers = [c for c in signers if c.role.may_set_prices]
        if managers:
            return managers[0]
        return signers[0] if signers else None

    def drain_new_verdicts(self) -> list[bytes]:
        """Hashes of records whose signature was verified since the last call (to persist)."""
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
