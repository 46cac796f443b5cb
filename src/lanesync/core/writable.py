"""May this terminal sign its next record, and where does it go in its chain?

``Replica.append`` (and so every local write: sales, voids, prices, day-ends) asks these
questions before it signs anything, in this order: is the terminal revoked (``check_writable``),
is its own chain closed or broken, or short of where its key may sign (``next_head``), and is
the timestamp it would sign at inside one of its key's certificates (``check_certificate``).
Each refusal names the way on for the person at the lane.

Apart from ``replica.py`` because the answers come from the views and the terminal's identity
alone, never from the replica's documents: pure functions of both.
"""

from __future__ import annotations

from collections.abc import Iterator

from lanesync.core.chains import ChainHead
from lanesync.core.identity import Certificate, LocalIdentity, Role, outside_certificate
from lanesync.core.views import Views
from lanesync.errors import ConfigError, PermissionDenied, TerminalRevoked


def revoked(me: LocalIdentity | None, views: Views) -> bool:
    """What ``Replica.revoked`` answers (its docstring states the question)."""
    if me is None:
        return False
    cert = me.certificate
    _, by_time = views.revocations()
    return (
        views.cut_of(cert.terminal_id, cert.public_key) is not None or cert.terminal_id in by_time
    )


def check_writable(me: LocalIdentity | None, views: Views) -> None:
    """Raise ``TerminalRevoked`` when this terminal may sign nothing more (``revoked``)."""
    if me is not None and revoked(me, views):
        terminal = me.certificate.terminal_id
        if me.certificate.role is Role.CLOUD:
            # A cloud is not enrolled: a new cloud key, certified by the store, goes on.
            way_on = (
                "the store certifies a new cloud key (lanesync cloud init NEW_CLOUD_DIR; "
                "lanesync store certify-cloud STORE_DIR NEW_CLOUD_DIR/cloud.json CERT_FILE)"
            )
        else:
            way_on = (
                "enroll a replacement terminal (lanesync enroll STORE_DIR NEW_DIR "
                f"--terminal-id NEW_ID --replaces {terminal} --via LANE_DIR) and contact the "
                "store authority"
            )
        raise TerminalRevoked(
            f"terminal {terminal} is revoked by the store and may record nothing more: {way_on}"
        )


def next_head(cert: Certificate, views: Views) -> ChainHead:
    """The head this terminal's next record links to; ``ConfigError`` when its chain is
    closed, broken, or held only below the seq its key signs from."""
    terminal = cert.terminal_id
    closed = views.closed_reason(cert)
    if closed is not None:
        raise ConfigError(
            f"this terminal's chain is closed: {closed}; this lane goes on under the "
            "terminal that `lanesync enroll --replaces` created"
        )
    broken = views.is_broken(terminal)
    if broken is not None:
        raise ConfigError(
            f"this terminal's own chain is broken at seq {broken[0]} ({broken[1]}): its "
            "directory was probably restored from a copy; resolve the fork with "
            "`lanesync store resolve-fork` and enroll a replacement with --replaces"
        )
    head = views.head(terminal)
    if head.seq + 1 < cert.first_seq:
        # A re-keyed lane writes after the record its certificate continues from, linked to
        # it: it must hold the old chain up to there (a bundle or a peer brings it), or it
        # would sign seqs the old key used.
        raise ConfigError(
            f"this terminal's key signs from seq {cert.first_seq} on, and it holds its chain "
            f"only up to seq {head.seq}; import a bundle of another lane first"
        )
    return head


def check_certificate(cert: Certificate, views: Views, at_ms: int) -> None:
    """``PermissionDenied`` unless a certificate of this terminal's key is valid at ``at_ms``:
    every replica judges a record by a certificate valid at its timestamp, so one signed
    outside them all would be acknowledged here and count nowhere."""
    if not any(c.valid_at(at_ms) for c in _own_key_certificates(cert, views)):
        raise PermissionDenied(outside_certificate(cert, at_ms))


def _own_key_certificates(cert: Certificate, views: Views) -> Iterator[Certificate]:
    """``cert``, then every certificate held for its key (a renewal published to a running
    lane verifies its records before it is restarted with it); lazily: the write path
    asks only until one fits."""
    yield cert
    for held in views.certificates():
        if (held.terminal_id, held.public_key) == (cert.terminal_id, cert.public_key):
            yield held
