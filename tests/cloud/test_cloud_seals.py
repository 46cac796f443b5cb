"""The cloud seals a store's days in its own replica (``StoreRuntime.seal_due``, the rule
``core.sealdays.cloud_acknowledges``), in one process: real lanes sell and close a day, the
cloud's store runtime merges and commits what they hold as its mesh would, then seals. A
sealed day leaves the replica's memory and log, stays in the head-office tables, and is not
loaded by a store opened again. Lanes and the cloud exchanging state afterwards do not send
the day again. test_cloud_sealing is the lanes' side, end to end over the network."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from shell.helpers import sale  # tests/ is on sys.path, as for `support`

from lanesync.cloud.directory import CloudDirectory
from lanesync.cloud.headoffice import HeadOffice
from lanesync.cloud.stores import Backend, StoreRuntime, open_store
from lanesync.core import sealdays
from lanesync.core.ids import ledger_doc
from lanesync.core.sealdays import PeerState
from lanesync.errors import StorageError
from lanesync.shell.admission import HandshakeGate
from lanesync.shell.terminal import Terminal

from .conftest import STORE_ID, World


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
    directory = CloudDirectory.open(path or world.cloud)
    backend = Backend.open(directory, world.db)
    stack.callback(backend.close)
    failures: list[StorageError] = []
    runtime = open_store(
        directory.store_directory(STORE_ID),
        backend,
        HeadOffice(backend.sql),
        failures.append,
        HandshakeGate(),
    )
    stack.callback(runtime.terminal.close)
    runtime.refresh()  # the first projection of this process: the full rewrite
    return Cloud(backend, runtime, failures)


def deliver(lane: Terminal, cloud: Cloud) -> None:
    """What the mesh does with a leader's updates: merge, commit, then the refresh."""
    replica = cloud.runtime.terminal.replica
    change = replica.merge(
        list(lane.replica.updates_since(replica.state_vectors()).items()),
        cloud.runtime.terminal.now_ms(),
    )
    cloud.runtime.terminal.commit([change])
    cloud.runtime.refresh()


def seal(cloud: Cloud) -> list[str]:
    """``StoreRuntime.seal_due`` on an event loop, as the service's check runs it (the mesh
    tells its peers of a seal on its next flush)."""

    async def sealing() -> list[str]:
        return cloud.runtime.seal_due()

    return asyncio.run(sealing())


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


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
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
    assert doc not in again.replica_docs
    assert set(reopened.sealed_days()) == {day}
    assert sales_rows(world, day) == EXPECTED_SALES
    assert again.runtime.headoffice.sales(STORE_ID, day)["count"] == 4
    assert [r.seq for _, _, r in reopened.records([doc])] != []  # read from the archive
    assert again.failures == cloud.failures == []


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
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
