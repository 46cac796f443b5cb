"""The handshake gate: how many strangers a process keeps, and which it lets go first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lanesync.shell.admission import HandshakeGate


def test_past_the_limit_the_oldest_is_refused_once() -> None:
    refused: list[str] = []
    gate = HandshakeGate(limit=2)
    for name in ("a", "b", "c"):
        gate.admit(name, lambda name=name: refused.append(name))  # type: ignore[misc]
    assert refused == ["a"]
    gate.done("b")
    gate.admit("d", lambda: refused.append("d"))
    assert refused == ["a"]
    assert len(gate) == 2


def test_admitting_again_keeps_the_age_and_takes_the_new_refusal() -> None:
    refused: list[str] = []
    gate = HandshakeGate(limit=2)
    gate.admit("hello read", lambda: refused.append("by the router"))
    gate.admit("younger", lambda: refused.append("younger"))
    gate.admit("hello read", lambda: refused.append("by the mesh"))  # handed over
    gate.admit("youngest", lambda: refused.append("youngest"))
    assert refused == ["by the mesh"]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=200), st.integers(1, 8))
def test_never_more_than_the_limit_and_nobody_refused_twice_or_after_done(
    steps: list[tuple[bool, int]], limit: int
) -> None:
    gate = HandshakeGate(limit=limit)
    refused: list[int] = []
    seen: set[int] = set()  # a key is one connection: admitted once
    done: set[int] = set()

    def refuse(key: int) -> None:
        assert key not in done, f"{key} refused after it was done"
        refused.append(key)

    for admit, key in steps:
        if admit and key not in seen:
            seen.add(key)
            gate.admit(key, lambda key=key: refuse(key))  # type: ignore[misc]
        elif not admit and key in seen:
            gate.done(key)
            done.add(key)
        assert len(gate) <= limit
    assert len(refused) == len(set(refused))
