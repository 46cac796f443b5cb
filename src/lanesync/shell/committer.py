"""Group commit for concurrent writers on one terminal (the daemon's write path).

Guarantee: ``await committer.write(build)`` returns the record only after the SQLite
transaction holding it has committed durably. Writes that arrive while a commit is in flight
are staged together and made durable by the next single commit, so under load one fsync
acknowledges many sales, while an idle terminal commits a lone sale at once (no timer: a fixed
2 ms batching delay doubled latency with no CPU saving below ~1,200 sales/s, measured on an
8-lane mesh prototype on 2026-11-26).

``publish`` wraps each commit: it is called with the batch's changes and the commit itself,
and must run the commit before it hands the changes to anyone (the daemon passes ``Mesh.write``,
whose driver commits, then offers the records to peers: core.driver); callers are resumed
after it returns.

A storage failure never ends ``run``: the terminal reports it to its owner (``on_failure``),
which shuts down, and until then every write, pending or new, fails at once with the
``StorageError``, so no request waits for an answer that will not come.

``fence`` is held around signing a batch and committing it. A terminal needs none: its
directory's lock makes it the only signer of its chain. The cloud on a shared PostgreSQL
database does (``cloud.stores.StoreRuntime.signing``): every process signs as the cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from functools import partial

from lanesync.core.change import Change
from lanesync.core.headcheck import HeadCheck
from lanesync.core.records import Record
from lanesync.errors import LanesyncError, StorageError, UsageError
from lanesync.shell.storage import KeyedRequest
from lanesync.shell.terminal import BodyBuilder, Terminal

RequestKey = tuple[
    str, bytes
]  # an idempotency key and the digest of its request (api.request_digest)
# Runs a batch's commit (the second argument) and then makes its changes known (to peers).
Publish = Callable[[list[Change], Callable[[], None]], None]
# Held from before a batch is signed until its commit has returned (no await inside).
Fence = Callable[[], AbstractContextManager[object]]


class FirstWrite:
    """The daemon's side of ``core.headcheck.HeadCheck``: the committer waits on it before its
    first write, the mesh tells it when a peer's catch-up answer is merged (``answered``)."""

    def __init__(self, check: HeadCheck, clock: Callable[[], int]) -> None:
        self.check = check
        self._clock = clock
        self._answered = asyncio.Event()

    def answered(self) -> None:
        if not self._answered.is_set():
            self.check.answered()
            self._answered.set()

    async def wait(self) -> None:
        """Return once writes may go through: someone answered, or the wait ran out."""
        while (wait_ms := self.check.wait_ms(self._clock())) is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), max(wait_ms, 1) / 1000)

    def wrote(self) -> None:
        self.check.wrote(self._clock())


class GroupCommitter:
    def __init__(
        self,
        terminal: Terminal,
        publish: Publish | None = None,
        first_write: FirstWrite | None = None,
        fence: Fence = contextlib.nullcontext,
    ) -> None:
        """``first_write``: what the first write after opening waits for (the daemon's check of
        its own chain head, ``core.headcheck``); None: nothing. ``fence``: see the module."""
        self._terminal = terminal
        self._publish = publish
        self._first_write = first_write
        self._fence = fence
        self._pending: list[tuple[BodyBuilder, RequestKey | None, asyncio.Future[Record]]] = []
        self._wake = asyncio.Event()
        self.commits = 0
        self.records = 0

    async def write(self, build: BodyBuilder, key: RequestKey | None = None) -> Record:
        """``key``: the request's idempotency key and request digest, stored with the record in the
        same transaction (``Terminal.find_request`` finds it afterwards)."""
        if self._terminal.failure is not None:
            raise self._terminal.failure  # stopping: no commit will run for it
        # A revoked terminal says so at once, not after the first write's wait for a peer.
        self._terminal.replica.check_writable()
        future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        self._pending.append((build, key, future))
        self._wake.set()
        return await future

    async def close_days(self, until: str | None) -> list[Record]:
        """Sign and commit the day-ends of this terminal's open days up to ``until``
        (``Terminal.stage_close``), published like a batch; returns them once durable. Waits for
        the first write's check of the own chain head like any write (a lane restored from a
        backup must not close from an old head)."""
        if self._terminal.failure is not None:
            raise self._terminal.failure
        self._terminal.replica.check_writable()
        if self._first_write is not None:
            await self._first_write.wait()
        # Staged and committed with no await between, like a batch (see _commit_batch).
        with self._fence():
            records, change = self._terminal.stage_close(until)
            if not change:
                return records
            self._run_commit([change], [])
        self.commits += 1
        self.records += len(records)
        if self._first_write is not None:
            self._first_write.wrote()
        with contextlib.suppress(StorageError):  # the terminal has reported it (on_failure)
            self._terminal.compact_if_due()
        return records

    async def run(self) -> None:
        """Commit batches until cancelled; run it in the terminal's task group."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._first_write is not None:
                await self._first_write.wait()  # at once, after the first time
            batch, self._pending = self._pending, []
            if batch:
                await self._commit_batch(batch)

    async def _commit_batch(
        self, batch: list[tuple[BodyBuilder, RequestKey | None, asyncio.Future[Record]]]
    ) -> None:
        try:
            with self._fence():
                staged = self._stage_and_commit(batch)
        except StorageError as exc:
            # The commit failed (the terminal is stopped: it told its owner, who shuts down),
            # or the fence could not be taken (nothing was signed): every write of the batch
            # is answered with the failure, none waits forever.
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        if not staged:
            return
        self.commits += 1
        if self._first_write is not None:
            self._first_write.wrote()
        self.records += len(staged)
        for record, future in staged:
            if not future.done():  # the caller may have been cancelled; the record stays
                future.set_result(record)
        with contextlib.suppress(StorageError):  # the terminal has reported it (on_failure)
            self._terminal.compact_if_due()

    def _stage_and_commit(
        self, batch: list[tuple[BodyBuilder, RequestKey | None, asyncio.Future[Record]]]
    ) -> list[tuple[Record, asyncio.Future[Record]]]:
        """Sign each write of the batch and commit them together; a builder's error answers its
        own write. Returns the records committed, not yet answered."""
        staged: list[tuple[Record, asyncio.Future[Record]]] = []
        changes: list[Change] = []
        requests: list[KeyedRequest] = []
        for build, key, future in batch:
            try:
                record, change = self._terminal.stage(build)
            except LanesyncError as exc:
                future.set_exception(exc)
                continue
            except ValueError as exc:
                future.set_exception(UsageError(str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - the builder is the caller's code: its bug
                # belongs to its caller; the rest of the batch must still commit and answer.
                future.set_exception(exc)
                continue
            staged.append((record, future))
            changes.append(change)
            if key is not None:
                requests.append(KeyedRequest(*key, str(record.id), self._terminal.now_ms()))
        if changes:
            # Committed on the loop, with no await between staging and commit: nothing else
            # (a peer asking for a diff) may ever see a local record that is not durable yet,
            # or a crash could reuse its CRDT clock for different content.
            self._run_commit(changes, requests)
        return staged

    def _run_commit(self, changes: list[Change], requests: list[KeyedRequest]) -> None:
        commit = partial(self._terminal.commit, changes, requests)
        if self._publish is None:
            commit()
        else:
            self._publish(changes, commit)
