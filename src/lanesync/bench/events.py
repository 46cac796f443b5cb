"""The event log every benchmarked process keeps, and the orchestrator's view of all of them.

A member process (a lane, a baseline peer, the cloud) appends one text line per event to its
own file, stamped with ``time.time_ns()`` (one clock for every process on the machine)::

    S <t_ns> <pid>                         this incarnation started
    H <sender> <seq> <t_ns>                held at start: records 1..seq of sender (a restart)
    A <sender> <first> <last> <t_ns>       own sales first..last acknowledged (durable here)
    R <sender> <first> <last> <t_ns>       sales first..last of sender arrived (accepted here)

Lines are buffered and flushed every ``FLUSH_S``; a process killed with SIGKILL may lose its
last lines, which is why a restarted lane starts with ``H`` lines of what it durably holds and
the final lost-sale count is taken from the members' HTTP APIs, never from these logs.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

FLUSH_S = 0.05


class EventLog:
    """Writer side, inside a member process (single-threaded, on its event loop)."""

    def __init__(self, path: Path) -> None:
        self._file: TextIO = path.open("a", encoding="ascii")
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._lines.append(f"S {time.time_ns()} {os.getpid()}\n")

    def held(self, sender: str, seq: int, at_ns: int) -> None:
        self._lines.append(f"H {sender} {seq} {at_ns}\n")
        self._arm()

    def acked(self, sender: str, first: int, last: int, at_ns: int) -> None:
        self._lines.append(f"A {sender} {first} {last} {at_ns}\n")
        self._arm()

    def arrived(self, sender: str, first: int, last: int, at_ns: int) -> None:
        self._lines.append(f"R {sender} {first} {last} {at_ns}\n")
        self._arm()

    def _arm(self) -> None:
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._timer = loop.call_later(FLUSH_S, self.flush)

    def flush(self) -> None:
        self._timer = None
        if self._lines:
            self._file.write("".join(self._lines))
            self._lines = []
            self._file.flush()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()
        self._file.close()


class SeqSet:
    """A set of positive sequence numbers, compact when (as usual) they come in order."""

    __slots__ = ("extra", "high")

    def __init__(self) -> None:
        self.high = 0  # 1..high are all present
        self.extra: set[int] = set()

    def add_range(self, first: int, last: int) -> None:
        if first <= self.high + 1:
            self.high = max(self.high, last)
        else:
            self.extra.update(range(first, last + 1))
        while self.extra and (self.high + 1) in self.extra:
            self.high += 1
            self.extra.discard(self.high)
        if self.extra:
            self.extra = {s for s in self.extra if s > self.high}

    def __contains__(self, seq: object) -> bool:
        return isinstance(seq, int) and (seq <= self.high or seq in self.extra)

    def __len__(self) -> int:
        return self.high + len(self.extra)


@dataclass(slots=True)
class Arrival:
    receiver: str
    sender: str
    first: int
    last: int
    at_ns: int


@dataclass
class _Tail:
    path: Path
    offset: int = 0
    partial: bytes = b""


@dataclass
class Tracker:
    """Reads every member's event files incrementally and keeps who holds what."""

    tails: dict[str, list[_Tail]] = field(default_factory=dict)
    have: dict[str, dict[str, SeqSet]] = field(default_factory=dict)
    acks: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    arrivals: list[Arrival] = field(default_factory=list)
    starts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    sender_of: dict[str, str] = field(default_factory=dict)

    def watch(self, member: str, path: Path, sender: str) -> None:
        """Follow ``path`` as (one incarnation of) ``member``, which writes as ``sender``; a
        restart forgets what the member held in memory before (a durable lane says again what
        it holds with ``H`` lines)."""
        self.tails.setdefault(member, []).append(_Tail(path))
        self.have[member] = {}
        self.sender_of[member] = sender

    def poll(self) -> None:
        for member, tails in self.tails.items():
            for index, tail in enumerate(tails):
                current = index == len(tails) - 1
                self._read(member, tail, current)

    def _read(self, member: str, tail: _Tail, current: bool) -> None:
        try:
            with tail.path.open("rb") as handle:
                handle.seek(tail.offset)
                data = handle.read()
        except FileNotFoundError:
            return
        if not data:
            return
        tail.offset += len(data)
        data = tail.partial + data
        complete, _, tail.partial = data.rpartition(b"\n")
        if not complete:
            tail.partial = data
            return
        for line in complete.decode("ascii", "replace").split("\n"):
            self._apply(member, line.split(), current)

    def _apply(self, member: str, parts: list[str], current: bool) -> None:
        if not parts:
            return
        kind = parts[0]
        try:
            if kind == "S" and len(parts) == 3:
                self.starts[member].append(int(parts[1]))
            elif kind == "H" and len(parts) == 4:
                if current:
                    self._hold(member, parts[1], 1, int(parts[2]))
            elif kind == "A" and len(parts) == 5:
                sender, first, last, at = parts[1], int(parts[2]), int(parts[3]), int(parts[4])
                for seq in range(first, last + 1):
                    self.acks[sender].setdefault(seq, at)
                if current:
                    self._hold(member, sender, first, last)
            elif kind == "R" and len(parts) == 5:
                sender, first, last, at = parts[1], int(parts[2]), int(parts[3]), int(parts[4])
                self.arrivals.append(Arrival(member, sender, first, last, at))
                if current:
                    self._hold(member, sender, first, last)
        except ValueError:
            return  # a torn line of a killed process

    def _hold(self, member: str, sender: str, first: int, last: int) -> None:
        if last >= first:
            self.have[member].setdefault(sender, SeqSet()).add_range(first, last)

    def holds(self, member: str, sender: str, seq: int) -> bool:
        if self.sender_of.get(member) == sender:
            return True  # its own sale (a lane's own records are durable)
        held = self.have.get(member, {}).get(sender)
        return held is not None and seq in held

    def take_arrivals(self) -> list[Arrival]:
        out, self.arrivals = self.arrivals, []
        return out
