"""The cloud seals a store's days in its own replica (``StoreRuntime.seal_due``, the rule
``core.sealdays.cloud_acknowledges``), in one process: real lanes sell and close a day, the
cloud's store runtime merges and commits what they hold as its mesh would, then seals. A
sealed day leaves the replica's memory and log, stays in the head-office tables, and is not
loaded by a store opened again. Lanes and the cloud exchanging state afterwards do not send
the day again. test_cloud_sealing is the lanes' side, end to end over the network."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from shell.helpers import sale  # tests/ is on sys.path, as for `support`

from lanesync.cloud import service as service_module
from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.pgstorage import store_head
from lanesync.cloud.service import CloudService
from lanesync.cloud.stores import Backend, StoreRuntime
from lanesync.core import sealdays
from lanesync.core.ids import ledger_doc
from lanesync.core.sealdays import PeerState
from lanesync.errors import StorageError
from lanesync.shell.terminal import Terminal
from lanesync.tools.procs import child_env

from .conftest import STORE_ID, World, open_runtime

T = TypeVar("T")


@dataclass
class Cloud:
    backend: Backend
    runtime: StoreRuntime
    failures: list[StorageError]

    @property
    def replica_docs(self) -> list[str]:
        return self.runtime.terminal.replica.doc_names()


def start(world: World, stack: ExitStack, path: Path | None = None) -> Cloud:
    """A cloud process's store runtime (``CloudService._open`` without the network)."""
    backend, runtime, failures = open_runtime(world, stack, path or world.cloud)
    runtime.refresh()  # the first projection of this process: the full rewrite
    return Cloud(backend, runtime, failures)


def deliver_here(lane: Terminal, cloud: Cloud) -> None:
    """What the mesh does with a leader's updates, on the running loop: merge, then commit
    (its ``on_persisted``)."""
    replica = cloud.runtime.terminal.replica
    # The cloud's state to this peer, as its node sends it: a sealed day the lane holds open
    # is named by its archived vector (``core.sealing``, the echo).
    theirs = replica.state_vectors(lane.replica.state_vectors())
    change = replica.merge(
        list(lane.replica.updates_since(theirs).items()),
        cloud.runtime.terminal.now_ms(),
    )
    cloud.runtime.terminal.commit([change])
    cloud.runtime.committed()


def deliver(lane: Terminal, cloud: Cloud) -> None:
    on_loop(lambda: deliver_here(lane, cloud))


def on_loop(call: Callable[[], T]) -> T:
    """``call`` on an event loop, as the service runs it (the mesh tells its peers of a seal,
    and a runtime relays what it pulled, soon after, on the loop)."""

    async def run() -> T:
        return call()

    return asyncio.run(run())


def seal(cloud: Cloud) -> list[str]:
    return on_loop(cloud.runtime.seal_due)


def follow(cloud: Cloud) -> None:
    """What a process's follower does when another one committed (``cloud.follow``)."""
    on_loop(cloud.runtime.refresh)


@pytest.fixture
def stack() -> Iterator[ExitStack]:
    with ExitStack() as opened:
        yield opened


def sell_and_close(world: World, stack: ExitStack, cloud: Cloud) -> tuple[list[Terminal], str]:
    """Two lanes sell two sales each; only the first closes the day. Everything is delivered."""
    lanes = [
        stack.enter_context(Terminal.open(world.enroll(name), lock_wait_s=0))
        for name in ("lane1", "lane2")
    ]
    for lane in lanes:
        lane.write(sale("milk:1:149"))
        lane.write(sale("bread:2:275"))
    (day_end,) = lanes[0].close_days(None)
    for lane in lanes:
        deliver(lane, cloud)
    return lanes, day_end.hlc.business_day(lanes[0].replica.tz)


def sales_rows(world: World, day: str) -> list[tuple[str, int]]:
    return sorted(
        (str(t), int(c))
        for t, c in world.rows(
            "SELECT terminal_id, total_cents FROM sales WHERE store_id = ? AND business_day = ?",
            STORE_ID,
            day,
        )
    )


EXPECTED_SALES = [("lane1", 149), ("lane1", 550), ("lane2", 149), ("lane2", 550)]
FROM_CHECKPOINT = "loaded stock and sales from the checkpoint, then "


def test_the_cloud_seals_a_complete_day_keeps_its_sales_and_a_reopened_store_loads_none_of_it(
    world: World, stack: ExitStack
) -> None:
    cloud = start(world, stack)
    lanes, day = sell_and_close(world, stack, cloud)
    doc = ledger_doc(day)

    # lane2 has not closed the day: incomplete, so not sealed.
    assert seal(cloud) == []
    assert cloud.runtime.may_seal_later()
    assert doc in cloud.replica_docs
    assert sales_rows(world, day) == EXPECTED_SALES

    lanes[1].close_days(day)
    deliver(lanes[1], cloud)
    assert seal(cloud) == [day]
    replica = cloud.runtime.terminal.replica
    assert doc not in cloud.replica_docs
    assert set(replica.sealed_days()) == {day}
    assert not cloud.runtime.may_seal_later()
    # Head office still has every sale of the day, through its tables and its API's query.
    assert sales_rows(world, day) == EXPECTED_SALES
    office = cloud.runtime.headoffice.sales(STORE_ID, day)
    assert (office["count"], office["total"]) == (4, 1398)
    cloud.runtime.terminal.close()

    # Another process (or a restart) opens the store: the day is not loaded, and its first
    # projection, a full rewrite of the store's rows, keeps the sealed day's sales.
    again = start(world, stack, world.copy_cloud("cloud2") if world.db else None)
    reopened = again.runtime.terminal.replica
    assert reopened.restored_from.startswith(FROM_CHECKPOINT)  # the one the seal wrote
    assert doc not in again.replica_docs
    assert set(reopened.sealed_days()) == {day}
    assert sales_rows(world, day) == EXPECTED_SALES
    assert again.runtime.headoffice.sales(STORE_ID, day)["count"] == 4
    assert [r.seq for _, _, r in reopened.records([doc])] != []  # read from the archive
    assert again.failures == cloud.failures == []


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)  # the storage is not under test
def test_lanes_hear_of_the_seal_and_do_not_send_the_day_again(
    world: World, stack: ExitStack
) -> None:
    cloud = start(world, stack)
    lanes, day = sell_and_close(world, stack, cloud)
    lanes[1].close_days(day)
    deliver(lanes[1], cloud)
    assert seal(cloud) == [day]
    replica = cloud.runtime.terminal.replica
    for lane in lanes:
        # The cloud's state to this lane (as its node sends it) names the day sealed: the lane
        # takes it for the cloud's acknowledgement and seals its own copy.
        theirs = lane.replica.state_vectors()
        to_lane = replica.state_vectors(theirs)
        assert sealdays.acknowledged(lane.replica, day, [PeerState(True, to_lane)], cloud=True)
        # What the lane sends the cloud for that state holds nothing of the day that the
        # cloud's archive lacks: merged, it leaves the day sealed.
        sent = lane.replica.updates_since(to_lane)
        change = replica.merge(list(sent.items()), cloud.runtime.terminal.now_ms())
        cloud.runtime.terminal.commit([change])
        assert set(replica.sealed_days()) == {day}
        assert ledger_doc(day) not in cloud.replica_docs
        assert lane.seal_due(lambda d: d == day) == [day]
    assert seal(cloud) == []


def held_records(cloud: Cloud, day: str) -> int:
    return sum(1 for _ in cloud.runtime.terminal.replica.records([ledger_doc(day)]))


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # SQLite: one process a store
@pytest.mark.parametrize("follows_the_seal", [True, False])
def test_another_process_unloads_a_day_sealed_by_the_first_and_a_late_record_reopens_it(
    world: World, stack: ExitStack, follows_the_seal: bool
) -> None:
    """``follows_the_seal`` false: the late record reaches the second process before it
    heard of the seal, and is committed to its open copy of the day."""
    first = start(world, stack)
    second = start(world, stack, world.copy_cloud("cloud2"))
    lanes, day = sell_and_close(world, stack, first)
    # lane3 sells that day and closes it, away from the leader: the cloud never hears of it
    # until after the seal.
    away = stack.enter_context(Terminal.open(world.enroll("lane3"), lock_wait_s=0))
    away.write(sale("eggs:1:320"))
    away.close_days(day)
    lanes[1].close_days(day)
    deliver(lanes[1], first)
    follow(second)  # as its follower does on the commit's notification
    assert ledger_doc(day) in second.replica_docs
    assert seal(first) == [day]

    # The seal is a commit the second process follows: it unloads the day, from memory.
    head = store_head(second.backend.sql, STORE_ID)
    assert second.runtime.is_behind(head)
    if follows_the_seal:
        follow(second)
        assert ledger_doc(day) not in second.replica_docs
        assert set(second.runtime.terminal.replica.sealed_days()) == {day}
    assert world.rows(
        "SELECT COUNT(*) FROM store_updates WHERE store_id = ? AND doc = ?",
        STORE_ID,
        ledger_doc(day),
    ) == [(0,)]

    # A late record of the day reaches the second process: the day opens again, in the
    # database and in both processes, and is sealed again once complete.
    deliver(away, second)
    assert ledger_doc(day) in second.replica_docs
    states = "SELECT day, state FROM store_archives WHERE store_id = ?"
    assert world.rows(states, STORE_ID) == [(day, "reopened")]
    # The stored checkpoint counts the day sealed: the process that reopened it writes the
    # next one at once (as its mesh does after the commit), which an open then loads.
    storage = second.runtime.shared_storage
    assert storage is not None
    assert storage.checkpoint_due()
    second.runtime.terminal.compact_if_due()
    assert not storage.checkpoint_due()
    fourth = start(world, stack, world.copy_cloud("cloud4"))
    assert fourth.runtime.terminal.replica.restored_from.startswith(FROM_CHECKPOINT)
    assert ledger_doc(day) in fourth.replica_docs
    assert fourth.runtime.terminal.digest() == second.runtime.terminal.digest()
    follow(first)
    assert ledger_doc(day) in first.replica_docs
    assert held_records(first, day) == held_records(second, day) == 8
    assert sales_rows(world, day) == sorted([*EXPECTED_SALES, ("lane3", 320)])
    assert seal(first) == [day]
    assert world.rows(states, STORE_ID) == [(day, "sealed")]
    follow(second)
    assert ledger_doc(day) not in second.replica_docs
    assert first.runtime.terminal.digest() == second.runtime.terminal.digest()

    # A third process opening the store loads no sealed day, yet counts it whole.
    third = start(world, stack, world.copy_cloud("cloud3"))
    assert third.runtime.terminal.replica.restored_from.startswith(FROM_CHECKPOINT)
    assert ledger_doc(day) not in third.replica_docs
    assert third.runtime.terminal.digest() == first.runtime.terminal.digest()
    assert held_records(third, day) == 8
    assert sales_rows(world, day) == sorted([*EXPECTED_SALES, ("lane3", 320)])
    assert first.failures == second.failures == third.failures == []


def test_the_service_seals_a_day_soon_after_the_commit_that_completed_it(
    world: World, stack: ExitStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CloudService`` checks a store after each projection (``SEAL_CHECK_AFTER_S`` later, a
    tenth of a second here) and again while a closed day stays open (``SEAL_RECHECK_S``): no
    one calls ``seal_due`` by hand."""
    monkeypatch.setattr(service_module, "SEAL_CHECK_AFTER_S", 0.1)
    monkeypatch.setattr(service_module, "SEAL_RECHECK_S", 0.2)
    lanes = [
        stack.enter_context(Terminal.open(world.enroll(name), lock_wait_s=0))
        for name in ("lane1", "lane2")
    ]
    for lane in lanes:
        lane.write(sale("milk:1:149"))

    async def serve() -> tuple[list[str], list[str]]:
        failures: list[StorageError] = []
        service = CloudService(CloudDirectory.open(world.cloud), world.db)
        service.start(failures.append)
        try:
            runtime = service.resident(STORE_ID)
            cloud = Cloud(service.backend, runtime, failures)
            (day_end,) = lanes[0].close_days(None)
            day = day_end.hlc.business_day(lanes[0].replica.tz)
            for lane in lanes:
                deliver_here(lane, cloud)
            await asyncio.sleep(0.5)  # checked, found incomplete, checked again: still open
            before = cloud.replica_docs
            lanes[1].close_days(day)
            deliver_here(lanes[1], cloud)
            for _ in range(100):
                if ledger_doc(day) not in cloud.replica_docs:
                    break
                await asyncio.sleep(0.05)
            assert failures == []
            return before, cloud.replica_docs
        finally:
            service.close()

    before, after = asyncio.run(serve())
    assert any(d.startswith("ledger/") for d in before)
    assert not any(d.startswith("ledger/") for d in after)


WORKER = Path(__file__).with_name("seal_worker.py")
WORKER_TIMEOUT_S = 30.0  # a process opening a store and folding a day on a busy machine


def kill_while_sealing(world: World, stop_at: str) -> None:
    """Run seal_worker.py on the cloud's store and SIGKILL it inside the seal's transaction,
    right after the statement ``stop_at`` names."""
    args = [str(world.cloud), STORE_ID, stop_at, *([world.db] if world.db else [])]
    with subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    ) as worker:
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline()  # the worker prints it inside the transaction
        finally:
            worker.send_signal(signal.SIGKILL)
            _, errors = worker.communicate(timeout=WORKER_TIMEOUT_S)
    assert line == "sealing\n", errors
    assert worker.returncode == -signal.SIGKILL


def test_a_cloud_killed_while_sealing_has_the_day_open_and_seals_it_after_a_restart(
    world: World, stack: ExitStack
) -> None:
    """SIGKILL inside the seal's transaction (the archive written, the day's log deleted, not
    committed): the store opened again holds the day open and whole, its sales in the tables,
    and seals it."""
    with ExitStack() as first:
        cloud = start(world, first)
        lanes, day = sell_and_close(world, first, cloud)
        lanes[1].close_days(day)
        deliver(lanes[1], cloud)
        records = held_records(cloud, day)
        digest = cloud.runtime.terminal.digest()
    kill_while_sealing(world, "snapshots")

    again = start(world, stack)
    assert ledger_doc(day) in again.replica_docs
    assert held_records(again, day) == records
    assert again.runtime.terminal.digest() == digest
    assert again.runtime.terminal.integrity()["ok"]
    assert sales_rows(world, day) == EXPECTED_SALES
    assert seal(again) == [day]
    assert ledger_doc(day) not in again.replica_docs
    assert again.failures == []


def stored_checkpoint(world: World) -> tuple[int, int, bytes] | None:
    rows = world.rows(
        "SELECT through, gen, data FROM store_checkpoints WHERE store_id = ?", STORE_ID
    )
    return (int(rows[0][0]), int(rows[0][1]), bytes(rows[0][2])) if rows else None


@pytest.mark.parametrize("world", ["postgresql"], indirect=True)  # its checkpoint is under test
def test_a_cloud_killed_after_the_seals_checkpoint_opens_from_the_one_before_exactly(
    world: World, stack: ExitStack
) -> None:
    """SIGKILL inside the seal's transaction on PostgreSQL, after its last write (the new
    checkpoint): the checkpoint before it is what the database holds, and the store opens
    from it with the day open and whole; the seal then writes the checkpoint the next open
    loads, the day sealed in it."""
    with ExitStack() as first:
        cloud = start(world, first)
        lanes, day = sell_and_close(world, first, cloud)
        lanes[1].close_days(day)
        deliver(lanes[1], cloud)
        assert cloud.runtime.shared_storage is not None
        cloud.runtime.shared_storage.write_checkpoint(cloud.runtime.terminal.replica)
        records = held_records(cloud, day)
        digest = cloud.runtime.terminal.digest()
    before = stored_checkpoint(world)
    assert before is not None
    kill_while_sealing(world, "checkpoint")
    assert stored_checkpoint(world) == before

    again = start(world, stack)
    assert again.runtime.terminal.replica.restored_from.startswith(FROM_CHECKPOINT)
    assert ledger_doc(day) in again.replica_docs
    assert held_records(again, day) == records
    assert again.runtime.terminal.digest() == digest
    assert again.runtime.terminal.integrity()["ok"]
    assert seal(again) == [day]
    after = stored_checkpoint(world)
    assert after is not None
    assert after[:2] == store_head(again.backend.sql, STORE_ID) != before[:2]

    third = start(world, stack, world.copy_cloud("cloud2"))
    assert third.runtime.terminal.replica.restored_from.startswith(FROM_CHECKPOINT)
    assert ledger_doc(day) not in third.replica_docs
    assert held_records(third, day) == records  # read from the archive
    assert third.runtime.terminal.digest() == again.runtime.terminal.digest()
    assert sales_rows(world, day) == EXPECTED_SALES
    assert again.failures == third.failures == []
