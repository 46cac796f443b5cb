"""Group commit: the async ``GroupCommitter`` over ``Terminal.stage`` and ``Terminal.commit``.

Concurrent writers share SQLite transactions, every acknowledged record is durable, and a
builder that refuses fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import TypeVar

import pytest

from lanesync.core.change import Change
from lanesync.core.headcheck import HeadCheck, HeadState
from lanesync.core.identity import Role
from lanesync.core.records import Body, Record, Sale
from lanesync.core.views import Views
from lanesync.errors import LanesyncError, NotFound, PermissionDenied, StorageError, UsageError
from lanesync.shell.committer import Fence, FirstWrite, GroupCommitter
from lanesync.shell.storage import REQUEST_KEEP_MS, EventRow, KeyedRequest
from lanesync.shell.terminal import BodyBuilder, Terminal, wall_clock_ms

from .conftest import Lanes
from .helpers import on_hand, price, receipt, sale, void

T = TypeVar("T")
WRITERS = 32
WRITES_EACH = 8
TIMEOUT_S = 20.0


def count_transactions(terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Spy on the storage: the number of changes in each SQLite transaction committed."""
    transactions: list[int] = []
    real = terminal.storage.commit

    def commit(
        changes: Iterable[Change],
        requests: Sequence[KeyedRequest] = (),
        events: Sequence[EventRow] = (),
    ) -> None:
        changes = list(changes)
        real(changes, requests, events)
        transactions.append(len(changes))

    monkeypatch.setattr(terminal.storage, "commit", commit)
    return transactions


def with_committer(
    terminal: Terminal,
    body: Callable[[GroupCommitter], Awaitable[T]],
    fence: Fence = contextlib.nullcontext,
) -> tuple[T, GroupCommitter]:
    """Run ``body`` against a committer whose loop runs beside it; stop the loop after. The
    loop is awaited only for its cancellation: if it crashed, ``body`` sees the consequences."""

    async def main() -> tuple[T, GroupCommitter]:
        committer = GroupCommitter(terminal, fence=fence)
        runner = asyncio.create_task(committer.run())
        try:
            async with asyncio.timeout(TIMEOUT_S):
                return await body(committer), committer
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await runner

    return asyncio.run(main())


@pytest.fixture
def lane(lanes: Lanes) -> Terminal:
    terminal = lanes.new("lane1")
    terminal.write(receipt("milk", 10_000))
    return terminal


def test_concurrent_writers_share_commits_and_every_record_is_durable(
    lanes: Lanes, lane: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    transactions = count_transactions(lane, monkeypatch)

    async def body(committer: GroupCommitter) -> list[Record]:
        async def writer(n: int) -> list[Record]:
            return [
                await committer.write(sale(f"milk:{1 + (n + i) % 3}:149"))
                for i in range(WRITES_EACH)
            ]

        batches = await asyncio.gather(*(writer(n) for n in range(WRITERS)))
        return [record for batch in batches for record in batch]

    records, committer = with_committer(lane, body)
    total = WRITERS * WRITES_EACH
    assert len(records) == total
    assert committer.records == total
    assert sum(transactions) == total
    # Group commit happened: fewer SQLite transactions than records.
    assert committer.commits == len(transactions) < total
    assert max(transactions) > 1
    # One chain, no gap, no duplicate.
    assert sorted(r.seq for r in records) == list(range(2, total + 2))
    sold = sum(line.qty for r in records if isinstance(r.body, Sale) for line in r.body.lines)

    lane = lanes.reopen(lane)
    views = lane.replica.views
    assert all(views.is_sale(str(r.id)) for r in records)
    assert lane.replica.find_record(records[-1].id) == records[-1]
    assert on_hand(lane, "milk") == 10_000 - sold
    assert lane.integrity()["ok"] is True


def failing(error: Exception) -> BodyBuilder:
    def build(_views: Views) -> Body:
        raise error

    return build


REFUSALS: list[tuple[BodyBuilder, type[Exception]]] = [
    (sale("nosuch:1"), UsageError),  # no catalog price known
    (sale("milk:0:149"), UsageError),
    (price("milk", 99, Role.CASHIER), PermissionDenied),  # a cashier may not set prices
    (void("lane1:999"), NotFound),  # 404 on the API, as reading it
    (failing(ValueError("bad input")), UsageError),
]


def test_refusing_builder_fails_only_its_own_write(lanes: Lanes, lane: Terminal) -> None:
    builders: list[BodyBuilder] = []
    for refusal, _ in REFUSALS:
        builders += [sale("milk:1:149"), refusal, sale("milk:2:149")]

    async def body(committer: GroupCommitter) -> list[Record | BaseException]:
        return await asyncio.gather(*(committer.write(b) for b in builders), return_exceptions=True)

    results, _ = with_committer(lane, body)
    good = [r for r in results if isinstance(r, Record)]
    assert len(good) == 2 * len(REFUSALS)
    for i, (_, error) in enumerate(REFUSALS):
        assert isinstance(results[3 * i], Record)
        assert type(results[3 * i + 1]) is error
        assert isinstance(results[3 * i + 2], Record)
    # Refusals consumed no sequence number.
    assert sorted(r.seq for r in good) == list(range(2, 2 + len(good)))

    lane = lanes.reopen(lane)
    assert all(lane.replica.views.is_sale(str(r.id)) for r in good)
    assert on_hand(lane, "milk") == 10_000 - 3 * len(REFUSALS)
    assert lane.integrity()["ok"] is True


def test_the_fence_is_held_from_before_signing_until_the_commit_and_may_refuse(
    lane: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the cloud's store lock relies on (cloud.stores.StoreRuntime.signing)."""
    transactions = count_transactions(lane, monkeypatch)
    spans: list[tuple[int, int]] = []  # (chain head, commits) on entering, then on leaving
    refusals = [StorageError("database unreachable")]

    @contextlib.contextmanager
    def fence() -> Iterator[None]:
        if refusals:
            raise refusals.pop()
        spans.append((lane.replica.views.head(lane.terminal_id).seq, len(transactions)))
        yield
        spans.append((lane.replica.views.head(lane.terminal_id).seq, len(transactions)))

    async def body(committer: GroupCommitter) -> tuple[BaseException | Record, ...]:
        refused = await asyncio.gather(committer.write(sale("milk:1:149")), return_exceptions=True)
        return (*refused, await committer.write(sale("milk:2:149")))

    (refused, record), _ = with_committer(lane, body, fence)
    assert isinstance(refused, StorageError)
    assert lane.failure is None  # nothing was signed: the terminal goes on
    assert isinstance(record, Record)
    assert record.seq == 2  # the refused write took no seq
    assert spans == [(1, 0), (2, 1)]  # signed and committed inside the fence
    assert on_hand(lane, "milk") == 10_000 - 2


def test_concurrent_voids_of_one_sale_credit_it_once(lanes: Lanes, lane: Terminal) -> None:
    target = lane.write(sale("milk:4:149"))
    assert on_hand(lane, "milk") == 10_000 - 4

    async def body(committer: GroupCommitter) -> list[Record | BaseException]:
        voids = [committer.write(void(str(target.id))) for _ in range(2)]
        return await asyncio.gather(*voids, return_exceptions=True)

    results, _ = with_committer(lane, body)
    records = [r for r in results if isinstance(r, Record)]
    errors = [r for r in results if not isinstance(r, Record)]
    assert len(records) == 1
    assert len(errors) == 1
    assert isinstance(errors[0], UsageError)
    assert "already voided" in str(errors[0])
    assert on_hand(lane, "milk") == 10_000
    lane = lanes.reopen(lane)
    assert lane.replica.views.is_voided(str(target.id))
    assert on_hand(lane, "milk") == 10_000
    assert lane.integrity()["ok"] is True


def test_builder_bug_in_the_committer_resolves_every_writer(lanes: Lanes, lane: Terminal) -> None:
    """A builder that fails unexpectedly (a programming error) must not leave records of the
    same batch signed in memory but never committed: the next acknowledged write would chain
    onto them, and after a restart it would wait forever behind a gap. Every writer of the
    batch gets an answer (no writer hangs), and whatever is acknowledged afterwards survives a
    restart."""

    async def body(committer: GroupCommitter) -> tuple[list[object], Record | None]:
        writes = [
            committer.write(sale("milk:1:149")),
            committer.write(failing(RuntimeError("builder bug"))),
            committer.write(sale("milk:1:149")),
        ]
        try:
            async with asyncio.timeout(3):
                results = await asyncio.gather(*writes, return_exceptions=True)
        except TimeoutError:
            return ["timed out"], None
        try:
            async with asyncio.timeout(3):
                later = await committer.write(sale("milk:2:149"))
        except (TimeoutError, LanesyncError):
            later = None
        return list(results), later

    (results, later), _ = with_committer(lane, body)
    assert results != ["timed out"], "writers of the batch were never answered"
    acknowledged = [r for r in [*results, later] if isinstance(r, Record)]
    lane = lanes.reopen(lane)
    assert [r for r in acknowledged if not lane.replica.views.is_sale(str(r.id))] == []
    assert lane.integrity()["ok"] is True


def peers_updates(source: Terminal, target: Terminal) -> Change:
    """Merge into ``target`` what ``source`` holds and it lacks, as the mesh does."""
    missing = source.replica.updates_since(target.replica.state_vectors())
    return target.replica.merge(list(missing.items()), target.now_ms())


def test_deferred_peers_updates_commit_with_the_next_local_write_before_it(
    lanes: Lanes, lane: Terminal, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = lanes.new("lane2")
    deferred = peers_updates(lane, other)
    other.defer([deferred])
    assert other.deferred == 1
    transactions = count_transactions(other, monkeypatch)

    async def one_sale(committer: GroupCommitter) -> Record:
        return await committer.write(sale("milk:3:149"))

    with_committer(other, one_sale)
    assert transactions == [2]  # the peers' change first, then the sale: the order of memory
    assert other.deferred == 0
    assert other.replica.unpersisted_updates == 0
    reopened = lanes.reopen(other)
    assert on_hand(reopened, "milk") == 10_000 - 3


def test_deferred_peers_updates_are_committed_on_close(lanes: Lanes, lane: Terminal) -> None:
    other = lanes.new("lane2")
    other.defer([peers_updates(lane, other)])
    assert on_hand(other, "milk") == 10_000  # visible before the commit
    assert on_hand(lanes.reopen(other), "milk") == 10_000


def test_idempotency_keys_commit_with_their_record_and_expire_after_a_week(
    lanes: Lanes, lane: Terminal
) -> None:
    async def keyed_sale(committer: GroupCommitter) -> Record:
        return await committer.write(sale("milk:1:149"), ("till-1/42", b"request digest"))

    record, _ = with_committer(lane, keyed_sale)
    found = lane.find_request("till-1/42")
    assert found is not None
    assert (found.request_digest, found.record_id) == (b"request digest", str(record.id))
    assert lane.find_request("till-1/43") is None
    path = lane.directory.path
    lanes.close(lane)
    with Terminal.open(path, clock=lambda: found.at_ms + REQUEST_KEEP_MS - 1) as reopened:
        assert reopened.find_request("till-1/42") == found
    with Terminal.open(path, clock=lambda: found.at_ms + REQUEST_KEEP_MS + 1) as reopened:
        assert reopened.find_request("till-1/42") is None


# -- the first write after opening (core.headcheck) ------------------------------------------------


def first_write_run(
    terminal: Terminal, first: FirstWrite, answer_after_s: float | None
) -> tuple[Record, bool]:
    """One write through a committer that waits on ``first``; the answer comes after
    ``answer_after_s`` (None: never). Returns the record and whether it was held meanwhile."""

    async def main() -> tuple[Record, bool]:
        committer = GroupCommitter(terminal, first_write=first)
        runner = asyncio.create_task(committer.run())
        try:
            writing = asyncio.create_task(committer.write(receipt("milk", 1)))
            await asyncio.sleep(0.05)
            held = not writing.done()
            if answer_after_s is not None:
                await asyncio.sleep(answer_after_s)
                first.answered()
            async with asyncio.timeout(TIMEOUT_S):
                return await writing, held
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner

    return asyncio.run(main())


def test_the_first_write_waits_for_a_peers_answer(lane: Terminal) -> None:
    now = [lane.now_ms()]
    first = FirstWrite(HeadCheck(now[0], 60_000), lambda: now[0])  # time stands still
    record, held = first_write_run(lane, first, answer_after_s=0.05)
    assert held
    assert record.seq == 2
    assert first.check.unheard_write_ms is None
    first.answered()  # again: nothing changes
    assert first.check.state is HeadState.CONFIRMED


def test_the_first_write_goes_through_unheard_once_the_wait_ran_out(lane: Terminal) -> None:
    started = wall_clock_ms()
    first = FirstWrite(HeadCheck(started, 200), wall_clock_ms)
    record, held = first_write_run(lane, first, answer_after_s=None)
    assert held
    assert record.seq == 2
    unheard = first.check.unheard_write_ms
    assert unheard is not None
    assert unheard >= started + 200
