"""A large upload's signatures are checked on the worker thread, ahead of its merge."""

from __future__ import annotations

import asyncio
import threading

from core.helpers import NOW, Store
from core.node_network import NodeNetwork, seeded_bytes
from nacl.signing import SigningKey
from support import CountingCrypto

from lanesync.cloud.verifier import AheadVerifier
from lanesync.core.identity import LocalIdentity
from lanesync.core.ids import CONFIG_DOC
from lanesync.core.node import Node
from lanesync.core.records import Sale, SaleLine
from lanesync.core.replica import Replica

SALES = 1_200
BUDGET = 8 * 1024  # ~40 sales a turn


def test_a_large_uploads_signatures_are_checked_on_the_worker_not_on_the_loop() -> None:
    store = Store()
    lane = store.terminal("lane1")
    for n in range(SALES):
        lane.replica.append(Sale.of((SaleLine("A", 1, 100 + n),)), NOW + n)
    crypto = CountingCrypto()
    key = SigningKey.generate()
    cloud = Replica(
        store.identity, 4242, LocalIdentity(store.certificate("cloud", key), key), crypto=crypto
    )
    cloud.restore({}, set(), NOW)
    # The cloud knows the store's lanes before a day's catch-up comes (their certificates).
    cloud.merge_batch([(CONFIG_DOC, lane.replica.updates_since({})[CONFIG_DOC])], NOW)
    writer = Node(lane.replica, random_bytes=seeded_bytes(1))
    reader = Node(cloud, random_bytes=seeded_bytes(2), merge_budget_bytes=BUDGET)
    mesh = NodeNetwork([writer, reader])
    verifier = AheadVerifier()

    async def catch_up() -> None:
        mesh.connect(0, 1)
        while not reader.merging:  # the handshake, then the answer: its first slice merged
            mesh.turn()
        crypto.threads.clear()
        verifier.start(reader)
        for _ in range(3_000):  # the worker checks all but the first slice (at most 30 s)
            if verifier.records_checked >= SALES - BUDGET // 100:
                break
            await asyncio.sleep(0.01)
        while reader.merging or mesh.in_flight:
            mesh.turn()

    try:
        asyncio.run(catch_up())
    finally:
        verifier.close()

    loop_thread = threading.get_ident()
    on_worker = sum(thread != loop_thread for thread in crypto.threads)
    assert on_worker >= SALES - BUDGET // 100
    assert len(crypto.threads) - on_worker < 5  # the loop checked (almost) nothing again
    assert cloud.views.accepted_count() == lane.replica.views.accepted_count()
