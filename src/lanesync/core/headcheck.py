"""Before its first write after opening, a lane asks whether anyone holds a later head of its
own chain: the rule that keeps a lane restored from a backup from forking its chain.

A terminal directory restored from an old backup holds an old head of its own chain. If it
signed its next record from there, it would reuse a seq the original already used: a fork, and
the chain stops counting on every replica. Its peers (and the cloud) hold every record the
original sent, signed with this very key; the first catch-up a peer answers brings them all, and
the replica adopts them as its head like any record. So the lane lets no write through until one
peer (or the cloud) has answered its catch-up, or until ``wait_ms`` after opening passed. After
that it writes anyway (a lane must sell when it is alone), and remembers when it first did so
without having heard from anyone: a restored lane that writes then can still fork (the fork is
then reported by ``verify`` and repairable), and the status says so.

Pure: the owner reports the catch-up answer (``answered``) and passes the time in; the owner's
writes wait while ``may_write`` is False and call ``wrote`` when one goes through.
"""

from __future__ import annotations

import enum

# How long the first write after opening waits for a peer's answer (issue 16 asks for 3 s). A
# peer on the LAN answers well within it: a --peer address is dialled at once and a catch-up is
# one round trip plus the diff; mDNS discovery needs its ~1.2 s of probing first (RFC 6762
# section 8.1, shell/discovery.py). 0 skips the check.
DEFAULT_HEAD_WAIT_MS = 3_000


class HeadState(enum.Enum):
    ASKING = "asking"  # waiting for an answer: writes wait
    CONFIRMED = "confirmed"  # someone answered: our head is at least what it holds
    UNHEARD = "unheard"  # the wait ran out with no answer: writes go ahead
    SKIPPED = "skipped"  # the wait is 0: writes never waited


class HeadCheck:
    """The first-write check of one opening of a lane (see the module docstring)."""

    def __init__(self, opened_ms: int, wait_ms: int) -> None:
        if wait_ms < 0:
            raise ValueError("the head check's wait cannot be negative")
        self.state = HeadState.SKIPPED if wait_ms == 0 else HeadState.ASKING
        self._deadline_ms = opened_ms + wait_ms
        # The first write that went through before anyone answered (or with the check off).
        self.unheard_write_ms: int | None = None

    def answered(self) -> None:
        """A peer's (or the cloud's) answer to our catch-up is merged: every record of our own
        chain it held is ours now."""
        if self.state is not HeadState.SKIPPED:
            self.state = HeadState.CONFIRMED

    def next_deadline(self) -> int | None:
        return self._deadline_ms if self.state is HeadState.ASKING else None

    def handle_timer(self, now_ms: int) -> None:
        if self.state is HeadState.ASKING and now_ms >= self._deadline_ms:
            self.state = HeadState.UNHEARD

    def wait_ms(self, now_ms: int) -> int | None:
        """How long writes must still wait (at most), or None when they may go through."""
        self.handle_timer(now_ms)
        return self._deadline_ms - now_ms if self.state is HeadState.ASKING else None

    def may_write(self, now_ms: int) -> bool:
        return self.wait_ms(now_ms) is None

    def wrote(self, now_ms: int) -> None:
        """A write went through (``may_write`` was True)."""
        unheard = self.state in (HeadState.UNHEARD, HeadState.SKIPPED)
        if unheard and self.unheard_write_ms is None:
            self.unheard_write_ms = now_ms
