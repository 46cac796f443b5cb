"""How the CLI shows moments to people (cli/output.py ``when`` and ``age``)."""

from __future__ import annotations

from datetime import datetime

import pytest

from lanesync.cli.output import age, when

MINUTE_MS = 60_000
DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("elapsed_ms", "shown"),
    [
        (0, "0 s ago"),
        (59_999, "59 s ago"),
        (MINUTE_MS, "1 min ago"),
        (59 * MINUTE_MS + 59_000, "59 min ago"),
        (60 * MINUTE_MS, "1 h ago"),
        (DAY_MS - 1, "23 h ago"),
        (DAY_MS, "1 day ago"),
        (3 * DAY_MS + 5, "3 days ago"),
        (-1_000, "in the future (clocks differ)"),
    ],
)
def test_age_in_the_largest_readable_unit(elapsed_ms: int, shown: str) -> None:
    assert age(elapsed_ms) == shown


def test_when_is_local_time_with_the_date_unless_today() -> None:
    now = datetime(2026, 12, 7, 15, 30, 0).astimezone()
    now_ms = int(now.timestamp() * 1000)
    assert when(now_ms - 5_000, now_ms) == "15:29:55, 5 s ago"
    earlier = now_ms - 2 * DAY_MS
    assert when(earlier, now_ms) == "2026-12-05 15:30:00, 2 days ago"
