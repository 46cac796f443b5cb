"""The handshake gate: how many strangers a process keeps, and which it lets go first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lanesync.shell.admission import HandshakeGate


class Clock:
    """Seconds the test sets (the gate reads time.monotonic in a process)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_past_the_limit_a_newcomer_is_refused_while_the_oldest_is_within_its_grace() -> None:
    refused: list[str] = []
    clock = Clock()
    gate = HandshakeGate(limit=2, grace_s=2.0, clock=clock)
    assert gate.admit("a", lambda: refused.append("a"))
    clock.now = 1.0
    assert gate.admit("b", lambda: refused.append("b"))
    clock.now = 1.9
    assert not gate.admit("c", lambda: refused.append("c"))
    assert refused == []  # the newcomer's callback is never called: the caller closes it
    assert len(gate) == 2
    clock.now = 2.0  # a has had its grace: the next newcomer takes its place
    assert gate.admit("d", lambda: refused.append("d"))
    assert refused == ["a"]
    assert not gate.admit("e", lambda: refused.append("e"))  # b is 1.0 s old
    gate.done("b")
    assert gate.admit("e", lambda: refused.append("e"))
    assert refused == ["a"]
    assert gate.refused == 3


def test_admitting_again_keeps_the_age_and_takes_the_new_refusal() -> None:
    refused: list[str] = []
    clock = Clock()
    gate = HandshakeGate(limit=2, grace_s=2.0, clock=clock)
    gate.admit("hello read", lambda: refused.append("by the router"))
    clock.now = 1.0
    gate.admit("younger", lambda: refused.append("younger"))
    clock.now = 2.5
    assert gate.admit("hello read", lambda: refused.append("by the mesh"))  # handed over
    assert gate.admit("youngest", lambda: refused.append("youngest"))
    assert refused == ["by the mesh"]


@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20), st.floats(0, 3)), max_size=200),
    st.integers(1, 8),
)
def test_never_more_than_the_limit_nobody_refused_twice_or_after_done_or_within_grace(
    steps: list[tuple[bool, int, float]], limit: int
) -> None:
    clock = Clock()
    gate = HandshakeGate(limit=limit, grace_s=2.0, clock=clock)
    refused: list[int] = []
    admitted_at: dict[int, float] = {}  # a key is one connection: admitted once
    done: set[int] = set()

    def refuse(key: int) -> None:
        assert key not in done, f"{key} refused after it was done"
        assert clock.now - admitted_at[key] >= 2.0, f"{key} refused within its grace"
        refused.append(key)
        done.add(key)

    for admit, key, elapsed in steps:
        clock.now += elapsed
        if admit and key not in admitted_at:
            admitted_at[key] = clock.now
            if not gate.admit(key, lambda key=key: refuse(key)):  # type: ignore[misc]
                done.add(key)  # refused at once: closed by the caller
        elif not admit and key in admitted_at:
            gate.done(key)
            done.add(key)
        assert len(gate) <= limit
    assert len(refused) == len(set(refused))
