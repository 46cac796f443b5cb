"""The daemon closes its lane's business days on its own (``lanesync run --close-at``), and
seals them once they are complete and acknowledged.

At start it closes every day it missed (up to ``core.dayclose.due_day``), then each day at the
closing time (store time) the day before. It checks once a minute rather than sleeping until the
closing time, so a wall clock that jumps (NTP, a suspended machine) delays a close by a minute
at most. Closing signs through the group committer like any write.

Sealing (``core.sealdays``) is checked every second: a day becomes sealable when the last lane's
day-end and the acknowledgement arrive, and issue #17 asks for a sealed store within 5 s of the
last close. A check with no closed day open costs a list of the open documents; a closed day's
completeness is folded again only when the replica's content changed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from lanesync.core import dayclose, sealdays
from lanesync.core.records import DayEnd
from lanesync.core.sealdays import PeerState
from lanesync.errors import LanesyncError, StorageError, TerminalRevoked
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.terminal import Terminal

log = logging.getLogger("lanesync.days")

CHECK_EVERY_S = 60.0  # how late a close may be after a wall-clock jump
SEAL_CHECK_EVERY_S = 1.0  # how late a seal may be after its day became sealable


async def close_days_on_schedule(
    terminal: Terminal,
    committer: GroupCommitter,
    close_at_minute: int,
    clock: Callable[[], int],
    check_every_s: float = CHECK_EVERY_S,
) -> None:
    """Run until cancelled, or until the terminal may sign nothing more (revoked, storage
    failed). ``check_every_s``: how often it looks at the clock (tests shorten it)."""
    replica = terminal.replica
    me = terminal.terminal_id
    while True:
        due = dayclose.due_day(clock(), replica.tz, close_at_minute)
        last = replica.views.last_closed_day(me)
        if last is None or last < due:
            try:
                records = await committer.close_days(due)
            except TerminalRevoked:
                log.warning("days.close terminal=%s: revoked, closes no more days", me)
                return
            except StorageError:
                return  # the terminal reported it; the daemon is stopping
            except LanesyncError as exc:
                log.error("days.close terminal=%s failed: %s", me, exc)
            else:
                closed = [r.body.day for r in records if isinstance(r.body, DayEnd)]
                if closed:
                    log.info("days.closed terminal=%s days=%s", me, ",".join(closed))
        await asyncio.sleep(check_every_s)


async def seal_days_when_due(
    terminal: Terminal,
    peers: Callable[[], Sequence[PeerState]],
    sealed_some: Callable[[], None],
    check_every_s: float = SEAL_CHECK_EVERY_S,
    *,
    cloud: bool = False,
    first_check_after_s: float = 0.0,
) -> None:
    """Run until cancelled, or until the terminal's storage failed: seal every day that is
    complete and acknowledged by ``peers`` (the mesh's connected peers, as sealing reads them),
    and call ``sealed_some`` after sealing any (the mesh tells its peers at once). ``cloud``:
    the lane was given a cloud (``--cloud``), so only the cloud's acknowledgement counts, even
    before the cloud's certificate reached this lane (``sealdays.acknowledged``).
    ``first_check_after_s``: a lane that has peers to find waits that long before its first
    check: with none connected yet it would acknowledge its own days alone and seal its own
    version of a day its peers hold more of (found by black-box QA: a lane run with --peer
    sealed 11 ms before it connected), which later reopens as an amendment.
    """
    await asyncio.sleep(first_check_after_s)
    replica = terminal.replica
    me = terminal.terminal_id

    def acknowledged(day: str) -> bool:
        return sealdays.acknowledged(replica, day, peers(), cloud=cloud)

    reported: set[str] = set()
    while True:
        for doc in sorted(replica.damaged_archives() - reported):
            day = doc.removeprefix("ledger/")
            log.error(
                "days.damaged terminal=%s day=%s: its archive does not read; peers are not "
                "sent that day: run `lanesync verify --day %s`",
                me,
                day,
                day,
            )
            reported.add(doc)
        try:
            sealed = terminal.seal_due(acknowledged)
        except StorageError:
            return  # the terminal reported it; the daemon is stopping
        if sealed:
            log.info("days.sealed terminal=%s days=%s", me, ",".join(sealed))
            sealed_some()
        await asyncio.sleep(check_every_s)
