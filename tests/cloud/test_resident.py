"""The stores a cloud process holds (cloud/service.py): a store's replica is opened when its
leader's hello names it, evicted once idle, and at most ``max_resident`` are held. In-process:
a real ``CloudService`` behind a loopback websocket server, and lanes whose own meshes dial it
as a leader's uplink does (``Mesh.add_uplink``)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from shell.helpers import receipt, write_together  # tests/ is on sys.path, as for `support`
from websockets.asyncio.server import serve

from lanesync.cloud import service as service_module
from lanesync.cloud.directory import CloudDirectory, read_cloud_identity
from lanesync.cloud.metrics import cloud_registry
from lanesync.cloud.registry import add_store_to_database
from lanesync.cloud.service import CloudService
from lanesync.core.identity import Role
from lanesync.core.ids import CLOUD_TERMINAL_ID
from lanesync.core.node import Node
from lanesync.errors import Busy, StorageError, UsageError
from lanesync.shell.dialing import PeerEntry
from lanesync.shell.directories import StoreDirectory
from lanesync.shell.mesh import Mesh, websocket_options
from lanesync.shell.terminal import Terminal, wall_clock_ms

from .conftest import STORE_ID, VALID_DAYS, World

IO_TIMEOUT_S = 10.0
OTHER_STORE = "s2"


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(IO_TIMEOUT_S):
        while not condition():  # noqa: ASYNC110 - the service has no event to wait on
            await asyncio.sleep(0.01)


class Leader:
    """A lane of a store whose mesh dials the cloud, as its uplink does once it leads."""

    def __init__(self, terminal: Terminal) -> None:
        self.terminal = terminal
        self.mesh = Mesh(Node(terminal.replica), terminal)
        self.uplink: PeerEntry | None = None

    def connect(self, url: str) -> None:
        self.uplink = self.mesh.add_uplink(url, CLOUD_TERMINAL_ID, Role.CLOUD)

    def disconnect(self) -> None:
        if self.uplink is not None:
            self.mesh.remove_uplink(self.uplink)
            self.uplink = None

    def connected(self) -> bool:
        return self.mesh.cloud_link_status() is not None


@asynccontextmanager
async def cloud_service(
    world: World, directory: Path | None = None, **limits: float
) -> AsyncIterator[tuple[CloudService, str]]:
    """A started ``CloudService`` on the world's cloud directory (or ``directory``, another
    process's copy of it), its idle sweeper running, and its uplink URL; everything closed on
    exit."""
    failures: list[StorageError] = []
    service = CloudService(CloudDirectory.open(directory or world.cloud), world.db, **limits)  # type: ignore[arg-type]
    service.start(failures.append)
    try:
        async with serve(service.route, "127.0.0.1", 0, **websocket_options()) as server:
            sweeper = asyncio.get_running_loop().create_task(service.evict_idle_forever())
            try:
                yield service, f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            finally:
                sweeper.cancel()
                for runtime in list(service.stores.values()):
                    runtime.mesh.close_all()
    finally:
        service.close()
    assert failures == []


@asynccontextmanager
async def leaders(paths: list[Path]) -> AsyncIterator[list[Leader]]:
    with ExitStack() as stack:
        opened = []
        for path in paths:
            terminal = stack.enter_context(Terminal.open(path, lock_wait_s=0))
            write_together(terminal, [receipt("milk", 5)])
            opened.append(Leader(terminal))
        try:
            yield opened
        finally:
            for leader in opened:
                leader.disconnect()
                leader.mesh.close_all()
            await asyncio.sleep(0)  # the dialers' cancellations run before the loop ends


def add_other_store(world: World) -> Path:
    """A second store the cloud serves (what ``store init``, ``store certify-cloud`` and
    ``cloud add-store`` do: on PostgreSQL ``cloud add-store --db``, which registers it in the
    database); returns a lane enrolled in it."""
    store = StoreDirectory.init(world.root / "store2", OTHER_STORE)
    cert = store.certify_cloud(
        read_cloud_identity(world.cloud / "cloud.json"), wall_clock_ms(), VALID_DAYS
    )
    (world.root / "cloud2.cert").write_bytes(cert.encoded)
    cloud = CloudDirectory.open(world.cloud)
    if world.db is None:
        cloud.add_store(store.identity_file, world.root / "cloud2.cert")
    else:
        add_store_to_database(cloud, world.db, store.identity_file, world.root / "cloud2.cert")
    return world.enroll("lane2", store=world.root / "store2")


def gauge(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def logged(caplog: pytest.LogCaptureFixture, prefix: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(prefix)]


def test_a_store_is_opened_by_its_leader_and_evicted_when_idle_with_its_state_kept(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lanesync.cloud")

    async def scenario() -> None:
        async with (
            cloud_service(world, idle_s=0.2) as (service, url),
            leaders([world.enroll("lane1")]) as (lane,),
        ):
            registry = cloud_registry(service)
            assert service.stores == {}  # a restarted process loads nothing before a hello
            assert gauge(registry, "lanesync_cloud_stores_resident") == 0
            assert gauge(registry, "lanesync_cloud_stores_registered") == 1

            lane.connect(url)
            await until(lambda: STORE_ID in service.stores and lane.connected())
            cloud = service.stores[STORE_ID].terminal
            await until(lambda: cloud.digest() == lane.terminal.digest())
            assert gauge(registry, "lanesync_cloud_stores_resident") == 1
            # Connected: never evicted, however long it stays idle.
            service.evict_idle(time.monotonic() + 3600)
            assert STORE_ID in service.stores

            lane.disconnect()
            await until(lambda: STORE_ID not in service.stores)
            assert gauge(registry, "lanesync_cloud_stores_resident") == 0
            assert gauge(registry, "lanesync_cloud_records", store=STORE_ID) is None

            # The lane records more while the cloud holds nothing of its store; its next
            # connection opens the store again from storage (the log below: the record it had,
            # before the lane sent anything), then the new record is merged and projected.
            write_together(lane.terminal, [receipt("milk", 3)])
            lane.connect(url)
            await until(lambda: STORE_ID in service.stores and lane.connected())
            cloud = service.stores[STORE_ID].terminal
            await until(lambda: cloud.digest() == lane.terminal.digest())
            assert service.headoffice.stock(STORE_ID)["items"] == [{"sku": "milk", "on_hand": 8}]

    asyncio.run(scenario())
    opened = logged(caplog, f"store.opened store={STORE_ID} ")
    # The second opening holds the record from storage, before the lane sent anything.
    assert [m.split()[2:4] for m in opened] == [
        ["reason=hello", "records=0"],
        ["reason=hello", "records=1"],
    ], opened
    assert logged(caplog, "store.evicted") == [
        f"store.evicted store={STORE_ID} reason=idle resident=0"
    ]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
def test_the_resident_bound_evicts_the_least_recently_used_idle_store_or_refuses(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lanesync.cloud")
    lane2_path = add_other_store(world)

    async def scenario() -> None:
        async with (
            cloud_service(world, max_resident=1) as (service, url),
            leaders([world.enroll("lane1"), lane2_path]) as (lane1, lane2),
        ):
            lane1.connect(url)
            await until(lambda: lane1.connected())
            # s1 is in use: no room for s2, whose leader is refused and told why.
            lane2.connect(url)
            await until(lambda: service.uplinks_refused >= 1)  # its dialler may retry at once
            lane2.disconnect()
            assert list(service.stores) == [STORE_ID]

            # Once s1 is idle (long before --idle-s), s2's leader takes its place.
            lane1.disconnect()
            await until(lambda: not service.in_use(STORE_ID))
            lane2.connect(url)
            await until(lambda: lane2.connected())
            assert list(service.stores) == [OTHER_STORE]
            # A head-office read that needs s1's replica finds s2 busy: 503, said plainly.
            with pytest.raises(Busy, match="none is idle"):
                service.resident(STORE_ID)

    asyncio.run(scenario())
    refused = set(logged(caplog, "uplink.refused"))
    assert refused == {
        "uplink.refused reason=1 stores resident, the most this process holds "
        "(--max-resident), and none is idle: a lane's uplink was refused"
    }
    assert logged(caplog, "store.evicted") == [
        f"store.evicted store={STORE_ID} reason=max_resident resident=0"
    ]


@pytest.mark.parametrize("world", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("limits", "said"),
    [
        ({"idle_s": float("nan")}, "--idle-s must be above 0 and at most 2592000 seconds"),
        ({"idle_s": 0.0}, "--idle-s must be above 0 and at most 2592000 seconds"),
        ({"max_resident": 0}, "--max-resident must be at least 1"),
    ],
)
def test_limits_that_hold_nothing_are_refused(
    world: World, limits: dict[str, float], said: str
) -> None:
    # click's ranges let nan through (every comparison with it is false): the service says so.
    with pytest.raises(UsageError) as refused:
        CloudService(CloudDirectory.open(world.cloud), **limits)  # type: ignore[arg-type]
    assert str(refused.value) == said


def test_a_store_added_while_the_process_runs_is_served_without_a_restart(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service_module, "RELIST_STORES_S", 0.0)  # not a second's wait here

    async def scenario() -> None:
        async with cloud_service(world) as (service, url):
            assert service.registered == {STORE_ID}
            lane2_path = add_other_store(world)  # `cloud add-store`, while it serves
            async with leaders([lane2_path]) as (lane2,):
                lane2.connect(url)
                await until(lambda: lane2.connected())
                cloud = service.stores[OTHER_STORE].terminal
                await until(lambda: cloud.digest() == lane2.terminal.digest())
            assert service.registered == {STORE_ID, OTHER_STORE}

    asyncio.run(scenario())
