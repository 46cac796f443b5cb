"""Whose turn it is to use the event loop, when one loop serves many stores.

asyncio runs every callback that is ready before it looks at the network again. A cloud process
serves hundreds of stores on one loop: when fifty leaders' uploads land in one iteration, fifty
stores' flushes (each a merge, a commit and a projection of up to ``MERGE_BUDGET_BYTES``) ran
back to back, 3-4 s with no ping answered and no API request read; the ingest benchmark's
uplinks were dropped by their keepalive (benchmarks/README.md, "cloud-ingest").

``Turns`` queues that work instead and runs about ``slice_s`` of it per iteration of the loop,
then lets the loop read and write the network before going on. Within an iteration, by kind
(``Turn``), each kind in arrival order:

* work that merges nothing (a handshake's next message, an acknowledgement, a timer) first: it
  takes a few milliseconds, and a connection waiting in the handshake behind a round of
  everyone's merges would be refused by the handshake limit (``shell.admission``);
* then the merges of what leaders just sent (a small store's sale, a large upload's first
  slice);
* then the next slices of large uploads: one every iteration whatever else waits, more while
  the iteration has time left. So a day's catch-up moves on every iteration, and a small
  store's sale waits for at most one of its slices, not for a queue of them.

A lane serves one store and needs none of this: its mesh makes its own callbacks.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("lanesync.cloud")

# Work run per iteration of the loop before it polls the network again: well under the 2 s a
# peer's keepalive waits for its pong (shell/mesh.py), and long enough for a few stores' small
# uploads (a few ms each) per iteration.
TURN_SLICE_S = 0.05


class Turn(enum.Enum):
    """What a piece of work does, which decides when it runs."""

    QUICK = "merges nothing"
    MERGE = "merges what a peer just sent"
    CATCH_UP = "merges the next slice of a large upload"


class Turns:
    """Work of many stores, about ``slice_s`` of it per iteration of the loop."""

    def __init__(self, slice_s: float = TURN_SLICE_S) -> None:
        self._slice_s = slice_s
        self._queues: dict[Turn, deque[Callable[[], None]]] = {turn: deque() for turn in Turn}
        self._pumping = False

    def soon(self, work: Callable[[], None], turn: Turn) -> None:
        """Run ``work`` on the loop, after the work of its kind already waiting."""
        self._queues[turn].append(work)
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        deadline = time.perf_counter() + self._slice_s
        ran = caught_up = False  # some work ran / a catch-up slice ran, in this iteration
        catch_up = self._queues[Turn.CATCH_UP]
        try:
            while any(self._queues.values()):
                if not ran or time.perf_counter() < deadline:
                    queue = next(q for q in self._queues.values() if q)  # in Turn's order
                elif catch_up and not caught_up:
                    queue = catch_up  # the iteration's one catch-up slice, whatever waits
                else:
                    break
                ran = True
                caught_up = caught_up or queue is catch_up
                work = queue.popleft()
                try:
                    work()
                except Exception:  # one store's failure must not stop every other store's turns
                    log.exception("turn.failed: a store's work raised")
        finally:
            if any(self._queues.values()):
                asyncio.get_running_loop().call_soon(self._pump)  # after the network's turn
            else:
                self._pumping = False
