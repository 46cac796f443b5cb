"""The redial schedule of one peer (core/redial.py): the windows it answers after each kind of
attempt, the caps, the reset after a connection that was up, and a sign of life."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lanesync.core.redial import (
    BACKOFF_INITIAL_MS,
    BACKOFF_MAX_MS,
    UNREACHED_MAX_MS,
    WAS_UP_MS,
    Attempt,
    Redial,
)


def windows(redial: Redial, attempts: list[Attempt], *, lasting_ms: int = 5) -> list[int]:
    """Run ``attempts`` one after the other, each ``lasting_ms`` long; the windows answered."""
    now, answered = 1_000, []
    for attempt in attempts:
        redial.started(now)
        now += lasting_ms
        window = redial.ended(attempt, now)
        answered.append(window)
        now += window
    return answered


def test_a_peer_not_reached_is_redialled_within_the_short_cap_however_long_it_is_away() -> None:
    assert windows(Redial(), [Attempt.UNREACHED] * 40) == [200, 400] + [UNREACHED_MAX_MS] * 38


def test_a_peer_that_answers_and_ends_the_connection_backs_off_to_the_long_cap() -> None:
    assert windows(Redial(), [Attempt.ENDED] * 8) == [200, 400, 800, 1600, 3200] + [5000] * 3


def test_a_peer_that_refused_for_seconds_is_redialled_promptly_once_it_is_unreachable() -> None:
    """The heal of a link whose peer refused us until it dropped off the network: the long
    window it grew is not waited out when the next attempt does not reach it."""
    redial = Redial()
    windows(redial, [Attempt.ENDED] * 8)
    assert windows(redial, [Attempt.UNREACHED] * 3) == [UNREACHED_MAX_MS] * 3


def test_a_connection_that_was_up_for_a_while_is_redialled_from_the_first_window() -> None:
    redial = Redial()
    windows(redial, [Attempt.ENDED] * 8)
    assert windows(redial, [Attempt.ENDED], lasting_ms=WAS_UP_MS + 1) == [BACKOFF_INITIAL_MS]
    assert windows(redial, [Attempt.ENDED], lasting_ms=WAS_UP_MS) == [2 * BACKOFF_INITIAL_MS]


def test_the_cloud_uplink_keeps_the_long_cap_when_it_is_not_reached() -> None:
    assert windows(Redial.uplink(), [Attempt.UNREACHED] * 7)[-2:] == [BACKOFF_MAX_MS] * 2


def test_a_sign_of_life_starts_over_and_wakes_a_waiting_dialler_only() -> None:
    redial = Redial()
    windows(redial, [Attempt.ENDED] * 8)
    assert redial.sign_of_life()  # waiting: dial now
    assert redial.window_ms == BACKOFF_INITIAL_MS
    windows(redial, [Attempt.ENDED] * 8)
    redial.started(100_000)
    assert not redial.sign_of_life()  # an attempt is under way: it is not interrupted
    assert redial.ended(Attempt.ENDED, 100_010) == BACKOFF_INITIAL_MS


@given(st.lists(st.tuples(st.sampled_from(Attempt), st.integers(0, 3 * WAS_UP_MS))))
def test_every_window_is_within_the_caps_of_the_attempt_it_follows(
    attempts: list[tuple[Attempt, int]],
) -> None:
    redial, now = Redial(), 0
    for attempt, lasting_ms in attempts:
        redial.started(now)
        now += lasting_ms
        window = redial.ended(attempt, now)
        cap = UNREACHED_MAX_MS if attempt is Attempt.UNREACHED else BACKOFF_MAX_MS
        assert BACKOFF_INITIAL_MS <= window <= cap
