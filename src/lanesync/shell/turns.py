"""Whose turn it is to use the event loop, when one loop serves many stores.

asyncio runs every callback that is ready before it looks at the network again. A cloud process
serves hundreds of stores on one loop: when fifty leaders' uploads land in one iteration, fifty
stores' flushes (each a merge, a commit and a projection of up to ``MERGE_BUDGET_BYTES``) ran
back to back, 3-4 s with no ping answered and no API request read; the ingest benchmark's
uplinks were dropped by their keepalive (benchmarks/README.md, "cloud-ingest").

``Turns`` queues that work instead and runs it in arrival order for at most ``slice_s`` per
iteration of the loop, then lets the loop read and write the network before going on. Work
that merges nothing (a handshake's next message, an acknowledgement, a timer) goes before work
that merges: it takes a few milliseconds, and a connection waiting in the handshake behind a
round of everyone's merges would be refused by the handshake limit (``shell.admission``). A lane
serves one store and needs none of this: its mesh makes its own callbacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("lanesync.cloud")

# Work run per iteration of the loop before it polls the network again: well under the 2 s a
# peer's keepalive waits for its pong (shell/mesh.py), and long enough for a few stores' small
# uploads (a few ms each) per iteration.
TURN_SLICE_S = 0.05


class Turns:
    """Work of many stores, in arrival order, ``slice_s`` of it per iteration of the loop."""

    def __init__(self, slice_s: float = TURN_SLICE_S) -> None:
        self._slice_s = slice_s
        self._quick: deque[Callable[[], None]] = deque()
        self._waiting: deque[Callable[[], None]] = deque()
        self._pumping = False

    def soon(self, work: Callable[[], None], *, merges: bool = True) -> None:
        """Run ``work`` on the loop after what is already waiting; work that ``merges``
        nothing goes before all work that does."""
        (self._waiting if merges else self._quick).append(work)
        if not self._pumping:
            self._pumping = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        started = time.perf_counter()
        try:
            while self._quick or self._waiting:  # at least one piece, then up to the slice
                work = (self._quick or self._waiting).popleft()
                try:
                    work()
                except Exception:  # one store's failure must not stop every other store's turns
                    log.exception("turn.failed: a store's work raised")
                if time.perf_counter() - started >= self._slice_s:
                    break
        finally:
            if self._quick or self._waiting:
                asyncio.get_running_loop().call_soon(self._pump)  # after the network's turn
            else:
                self._pumping = False
