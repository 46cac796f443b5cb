"""The records of a large upload checked on a worker thread while the event loop merges it.

A store merges a large upload a slice per turn of the loop (``core.mergequeue``). As soon as one
arrives, the store's node hands it over (``Node.take_large_updates``) and one worker thread of
the process checks its records, in the order the slices are merged, handing verdicts back to the
loop as it goes (``Node.verified_ahead``, ``core.preverify`` for what is checked and why the
merge may rely on it). PyNaCl releases the GIL while libsodium verifies, so the checking runs on
the other core; the loop then spends its turns on the merge itself and on the other stores.

One worker for every store of the process: two catch-ups at once are checked one after the
other, and a slice the worker has not reached yet is checked by its merge, as before. A worker
stops checking an upload once its store merges nothing more (it was all merged, or the store
was closed).

A lane does not use it. It merges a catch-up answer with nothing to wait on between slices, and
a worker beside a loop busy in Python gets the GIL about once per switch interval (5 ms); checking
half of the records on the loop and half on a worker before a whole merge did not make the
lane's catch-up faster either (benchmarks/README.md, "Catch-up: a lane's signatures checked on a
worker thread").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor

from lanesync.core.crypto import Crypto
from lanesync.core.ids import TerminalId
from lanesync.core.node import Node
from lanesync.core.preverify import verified_in_chunks

log = logging.getLogger("lanesync.cloud")


class AheadVerifier:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lanesync-verify")
        self.records_checked = 0  # read by /metrics (cloud/metrics.py); written on the loop

    def start(self, node: Node) -> None:
        """Check, ahead of their merge, the records of the large updates ``node`` received
        since the last call."""
        updates = node.take_large_updates()
        if not updates:
            return
        keys = node.replica.views.signing_keys()
        loop = asyncio.get_running_loop()
        for update in updates:
            future = self._executor.submit(
                self._check, update, keys, node.replica.crypto, loop, node
            )
            future.add_done_callback(_report_failure)

    def _check(
        self,
        update: bytes,
        keys: Mapping[TerminalId, tuple[bytes, ...]],
        crypto: Crypto,
        loop: asyncio.AbstractEventLoop,
        node: Node,
    ) -> None:
        """On the worker thread: only ``update``, ``keys`` (a copy) and pure functions are
        used here; the verdicts go to the node on the loop."""
        for hashes in verified_in_chunks(update, keys, crypto):
            if not node.merging:  # a bool the loop sets: all merged, nothing left to help
                return
            try:
                loop.call_soon_threadsafe(self._deliver, node, hashes)
            except RuntimeError:  # the loop is closed: the process is stopping
                return

    def _deliver(self, node: Node, hashes: list[bytes]) -> None:
        self.records_checked += len(hashes)
        node.verified_ahead(hashes)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _report_failure(future: Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        # The merge checks whatever the worker did not: nothing is lost, only time.
        log.error("verify.failed reason=%s: records are checked as they are merged", exc)
