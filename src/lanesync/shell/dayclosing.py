"""The daemon closes its lane's business days on its own (``lanesync run --close-at``).

At start it closes every day it missed (up to ``core.dayclose.due_day``), then each day at the
closing time (store time) the day before. It checks once a minute rather than sleeping until the
closing time, so a wall clock that jumps (NTP, a suspended machine) delays a close by a minute
at most. Closing signs through the group committer like any write.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from lanesync.core import dayclose
from lanesync.core.records import DayEnd
from lanesync.errors import LanesyncError, StorageError, TerminalRevoked
from lanesync.shell.committer import GroupCommitter
from lanesync.shell.terminal import Terminal

log = logging.getLogger("lanesync.days")

CHECK_EVERY_S = 60.0  # how late a close may be after a wall-clock jump


async def close_days_on_schedule(
    terminal: Terminal,
    committer: GroupCommitter,
    close_at_minute: int,
    clock: Callable[[], int],
) -> None:
    """Run until cancelled, or until the terminal may sign nothing more (revoked, storage
    failed)."""
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
        await asyncio.sleep(CHECK_EVERY_S)
