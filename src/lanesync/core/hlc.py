"""Hybrid logical clock (Kulkarni et al., 2014): wall milliseconds plus a logical counter.

Timestamps order a terminal's records even when its wall clock steps backwards, and order
records of different terminals consistently with causality when they have exchanged data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True, order=True)
class Hlc:
    wall_ms: int
    counter: int

    def business_day(self, tz: ZoneInfo) -> str:
        """The store-local calendar day this timestamp falls on (``YYYY-MM-DD``)."""
        return _day_of_minute(self.wall_ms // 60_000, tz)


@functools.lru_cache(maxsize=4096)
def _day_of_minute(minute: int, tz: ZoneInfo) -> str:
    # Every UTC offset in the tz database is a whole number of minutes, so a minute never spans
    # two local days: caching per minute is exact, and a reopen converts each minute once.
    return datetime.fromtimestamp(minute * 60, tz=UTC).astimezone(tz).date().isoformat()


ZERO = Hlc(0, 0)

# Lanes on one LAN normally agree within NTP accuracy (milliseconds); a minute tolerates a lane
# without NTP for a while, and bounds how far a wrong clock can push the others.
MAX_FORWARD_DRIFT_MS = 60_000


class HybridClock:
    """The clock of one terminal. Pure: the caller passes the physical time in."""

    __slots__ = ("_last",)

    def __init__(self, last: Hlc = ZERO) -> None:
        self._last = last

    @property
    def last(self) -> Hlc:
        return self._last

    def peek(self, now_ms: int) -> Hlc:
        """The timestamp ``tick`` would give now, without taking it (a write may be refused)."""
        if now_ms > self._last.wall_ms:
            return Hlc(now_ms, 0)
        return Hlc(self._last.wall_ms, self._last.counter + 1)

    def tick(self, now_ms: int) -> Hlc:
        """A timestamp for a new local event, strictly greater than every earlier one."""
        self._last = self.peek(now_ms)
        return self._last

    def adopt(self, own: Hlc) -> None:
        """Move past one of this terminal's own timestamps, however far ahead (after a restart
        with a clock that stepped back, the chain must still continue upwards)."""
        if own > self._last:
            self._last = own

    def observe(self, remote: Hlc, now_ms: int) -> None:
        """Move past a timestamp seen in a record received from elsewhere.

        A timestamp further ahead of our wall clock than ``MAX_FORWARD_DRIFT_MS`` is not adopted:
        one terminal with a clock set to next year must not drag every lane's records there.
        """
        if remote > self._last and remote.wall_ms <= now_ms + MAX_FORWARD_DRIFT_MS:
            self._last = remote
