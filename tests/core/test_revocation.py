"""Revocation cuts a terminal's chain at a position: its records up to the cut count whenever
they arrive, later ones never, whatever their timestamps and whatever order the revocation and
the records arrive in; only the store authority can revoke. Revocations of the first format
(by record time) that databases still hold are judged by time, as before.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from lanesync.core.configdoc import revocation_key
from lanesync.core.documents import CERTS_ROOT, RECORDS_ROOT
from lanesync.core.hlc import Hlc
from lanesync.core.identity import (
    DOMAIN_REVOCATION,
    Revocation,
    Role,
    TimeRevocation,
    issue_revocation,
    parse_revocation,
    public_key_of,
    sign,
)
from lanesync.core.ids import CATALOG_DOC, CLOUD_TERMINAL_ID, CONFIG_DOC, Sku, StoreId, TerminalId
from lanesync.core.records import Body, PriceChange, Receipt, Record, Sale, SaleLine, make_record
from lanesync.core.replica import Replica
from lanesync.core.trust import Cut
from lanesync.errors import ConfigError, RemoteError, TerminalRevoked

from .helpers import (
    HOUR_MS,
    NOW,
    TODAY_DOC,
    Store,
    config_update,
    crafted_update,
    enrolled_observer,
    keyed,
    no_problems,
    overwrite,
    put_records,
    record_chain,
    restarted,
    stored_value,
    sync,
    time_revocation,
)
from .node_network import NodeNetwork, make_nodes

LANE1 = TerminalId("lane1")
LANE_SKU = Sku("A")
RECORDS = 7
CUT = 3  # the revoking replica held lane1 up to seq 3
# Every record of lane1 is stamped within a few ms of the first: the ones past the cut are
# stamped "before the revocation" as a stolen key would stamp them, and still never count.
WALLS = [NOW + n for n in range(RECORDS)]


def lane_records(key: SigningKey) -> list[Record]:
    """lane1's chain: a receipt of 100, then sales of 1, 2, 3 ... units."""
    records: list[Record] = []
    prev = bytes(32)
    for seq, wall in enumerate(WALLS, start=1):
        body = Receipt(LANE_SKU, 100) if seq == 1 else Sale.of((SaleLine(LANE_SKU, seq - 1, 100),))
        record = make_record(key, LANE1, seq, prev, Hlc(wall, 0), body)
        records.append(record)
        prev = record.hash
    return records


def expected_stock(counted: int) -> dict[str, int]:
    """Stock of A once the first ``counted`` records of lane1 count."""
    if counted == 0:
        return {}
    return {LANE_SKU: 100 - sum(range(1, counted))}


class Setup:
    def __init__(self, cut: int = CUT) -> None:
        self.store = Store()
        self.key = SigningKey.generate()
        self.cert = self.store.certificate("lane1", self.key)
        self.records = lane_records(self.key)
        self.cut = cut
        self.revocation = self.revoke(cut)

    def revoke(self, seq: int, *, pinned: bool = True, key: bytes = b"") -> Revocation:
        digest = self.records[seq - 1].hash if pinned and seq else b""
        return issue_revocation(self.store.authority, self.store.store_id, LANE1, seq, digest, key)

    def observer(self) -> Replica:
        return enrolled_observer(self.store, self.cert)


def revocation_update(revocation: Revocation | TimeRevocation, client_id: int = 4_000) -> bytes:
    return config_update(revocation, client_id=client_id)


def assert_counted_up_to(replica: Replica, records: list[Record], cut: int = CUT) -> None:
    """lane1's records up to ``cut`` count, later ones are held, listed and never counted."""
    assert replica.views.is_revoked(LANE1, 0)
    assert replica.views.cut_of(LANE1) is not None
    assert replica.views.cut_of(LANE1).after_seq == cut  # type: ignore[union-attr]
    assert replica.views.on_hand() == expected_stock(cut)
    assert replica.views.head(LANE1).seq == cut
    for record in records:
        assert replica.views.is_accepted(record) == (record.seq <= cut)
    refused = {p["key"]: p["reason"] for p in replica.views.problems()["revoked"]}
    assert set(refused) == {r.key for r in records[cut:]}
    assert all(f"cut of lane1 at seq {cut}" in str(reason) for reason in refused.values())


# -- the rule ------------------------------------------------------------------------------------


def test_records_up_to_the_cut_count_and_later_ones_never_whatever_their_time() -> None:
    s = Setup()
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert_counted_up_to(replica, s.records)
    replica.rebuild(NOW)
    assert_counted_up_to(replica, s.records)
    assert_counted_up_to(restarted(replica), s.records)


def test_a_stolen_key_backdating_past_the_cut_is_refused() -> None:
    """The old limitation: a record made after the revocation but stamped before it counted.
    Now only the position matters: seq 4 stamped an hour before seq 3 would not even link, and
    stamped a millisecond after seq 3 (long before anyone revoked anything) is still refused."""
    s = Setup()
    replica = s.observer()
    put_records(replica, TODAY_DOC, keyed(*s.records[:CUT]), client_id=10)
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW + HOUR_MS)
    stolen = make_record(
        s.key, LANE1, CUT + 1, s.records[CUT - 1].hash, Hlc(WALLS[CUT - 1] + 1, 0),
        Receipt(LANE_SKU, 500),
    )  # fmt: skip
    put_records(replica, TODAY_DOC, keyed(stolen), client_id=11, now_ms=NOW + 2 * HOUR_MS)
    assert not replica.views.is_accepted(stolen)
    assert replica.views.on_hand() == expected_stock(CUT)


def test_records_up_to_the_cut_that_arrive_late_still_count() -> None:
    """The lane was offline: the store revoked it holding nothing past seq 1, and the operator
    read seq 3 off the lane's last receipt (``--after 3``). Its sales up to 3 arrive later and
    count; what it wrote after does not."""
    s = Setup()
    store_side = s.observer()
    put_records(store_side, TODAY_DOC, keyed(s.records[0]), client_id=10)
    unpinned = s.revoke(CUT, pinned=False)
    store_side.merge([(CONFIG_DOC, revocation_update(unpinned))], NOW)
    assert store_side.views.on_hand() == expected_stock(1)
    put_records(store_side, TODAY_DOC, keyed(*s.records[1:]), client_id=11)
    assert_counted_up_to(store_side, s.records)


def test_revocation_published_by_a_replica_spreads_and_applies_everywhere() -> None:
    s = Setup()
    manager = s.store.terminal("lane2")
    change = manager.replica.publish_revocation(s.revocation, NOW)
    assert change.updates
    assert stored_value(manager.replica, CONFIG_DOC, revocation_key(s.revocation)) == (
        s.revocation.encoded
    )
    assert manager.replica.publish_revocation(s.revocation, NOW).updates == []  # idempotent
    assert manager.replica.views.is_revoked(LANE1, NOW)
    replica = s.observer()
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    sync(manager.replica, replica)
    assert_counted_up_to(replica, s.records)


def test_a_new_certificate_of_the_revoked_terminal_is_no_way_past_the_cut() -> None:
    """A revocation without a key names the terminal, not one certificate: a second
    certificate (another key) of the same terminal is no way around it."""
    s = Setup()
    new_key = SigningKey.generate()
    new_cert = s.store.certificate("lane1", new_key)
    late = make_record(
        new_key, LANE1, CUT + 1, s.records[CUT - 1].hash, Hlc(WALLS[CUT] + 1, 0),
        Receipt(LANE_SKU, 7),
    )  # fmt: skip
    replica = s.observer()
    replica.merge([(CONFIG_DOC, config_update(new_cert, s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records[:CUT], late), client_id=10)
    assert replica.views.on_hand() == expected_stock(CUT)
    assert not replica.views.is_accepted(late)
    assert replica.views.revokes(new_cert, NOW)


def test_another_record_at_the_cut_seq_is_refused_and_breaks_nothing() -> None:
    """The cut names the hash of the record at its seq: a second record signed there (the
    stolen key, or a copy of the lane) is refused, so it is no fork, and the genuine one counts
    whichever arrives first."""
    s = Setup()
    other = make_record(
        s.key, LANE1, CUT, s.records[CUT - 2].hash, Hlc(WALLS[CUT - 1], 5), Receipt(LANE_SKU, 50)
    )
    for first, second in ((s.records[CUT - 1], other), (other, s.records[CUT - 1])):
        replica = s.observer()
        replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
        put_records(replica, TODAY_DOC, keyed(*s.records[: CUT - 1], first), client_id=10)
        put_records(replica, TODAY_DOC, keyed(second), client_id=11)
        assert replica.views.is_accepted(s.records[CUT - 1])
        assert not replica.views.is_accepted(other)
        assert replica.views.on_hand() == expected_stock(CUT)
        assert replica.views.is_broken(LANE1) is None
        (refused,) = replica.views.problems()["revoked"]
        assert refused["key"] == other.key
        assert "not the record at seq 3" in str(refused["reason"])


@pytest.mark.parametrize("cuts", [(CUT, 5), (5, CUT), (CUT, CUT), (CUT, 6, 5)])
def test_the_lowest_of_several_cuts_applies_whatever_their_order(cuts: tuple[int, ...]) -> None:
    s = Setup()
    replica = s.observer()
    for n, seq in enumerate(cuts):
        replica.merge([(CONFIG_DOC, revocation_update(s.revoke(seq), 4_000 + n))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert_counted_up_to(replica, s.records, min(cuts))


@pytest.mark.parametrize("order", ["pinned first", "unpinned first"])
def test_cuts_naming_different_records_at_one_seq_admit_neither(order: str) -> None:
    """Two replicas held different records at seq 3 (a copy of the lane signed there too): the
    revocations they issued disagree on the record at 3, so only what both admit counts."""
    s = Setup()
    genuine = s.revoke(CUT)
    elsewhere = issue_revocation(s.store.authority, s.store.store_id, LANE1, CUT, bytes(range(32)))
    unpinned = s.revoke(CUT, pinned=False)
    assert Cut(CUT, b"x" * 32).meet(Cut(CUT)) == Cut(CUT, b"x" * 32)
    assert Cut(CUT, b"x" * 32).meet(Cut(CUT, b"y" * 32)) == Cut(CUT - 1)
    revocations = [unpinned, genuine, elsewhere]
    if order == "pinned first":
        revocations.reverse()
    replica = s.observer()
    for n, revocation in enumerate(revocations):
        replica.merge([(CONFIG_DOC, revocation_update(revocation, 4_000 + n))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert replica.views.cut_of(LANE1) == Cut(CUT - 1)
    assert replica.views.head(LANE1).seq == CUT - 1


def test_a_cut_at_zero_counts_nothing_of_the_terminal() -> None:
    s = Setup()
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revoke(0)))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert_counted_up_to(replica, s.records, 0)


# -- any arrival order ---------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_arrival_order_gives_the_same_views(data: st.DataObject) -> None:
    """The revocation, the revoked lane's genuine records up to the cut (some arriving late:
    the lane was offline), its records past the cut, a second lane's sales and the certificates
    all arrive as separate updates (relayed by different peers) in any order. Whatever the
    order, no record past the cut ever counts, and the end state is the same: stock, sales
    counted, heads, problems and digest."""
    s = Setup(cut=data.draw(st.integers(0, RECORDS), label="cut"))
    pinned = data.draw(st.booleans(), label="cut pinned to a hash")
    revocation = s.revoke(s.cut, pinned=pinned)
    lane2_key = SigningKey.generate()
    lane2_cert = s.store.certificate("lane2", lane2_key)
    lane2 = record_chain(
        lane2_key, "lane2", [Receipt(LANE_SKU, 10), Sale.of((SaleLine(LANE_SKU, 2, 100),))]
    )
    updates: dict[str, tuple[str, bytes]] = {
        "certificates": (CONFIG_DOC, config_update(s.cert, lane2_cert, client_id=3_000)),
        "revocation": (CONFIG_DOC, revocation_update(revocation)),
    }
    for n, record in enumerate([*s.records, *lane2]):
        update = crafted_update(RECORDS_ROOT, keyed(record), client_id=5_000 + n)
        updates[str(record.id)] = (TODAY_DOC, update)
    schedule = data.draw(st.permutations(list(updates)), label="arrival order")
    replica = s.store.observer()
    for n, label in enumerate(schedule):
        replica.merge([updates[label]], NOW)
        if "revocation" in schedule[: n + 1]:
            for record in s.records[s.cut :]:
                assert not replica.views.is_accepted(record), (record.id, schedule[: n + 1])
            assert replica.views.head(LANE1).seq <= s.cut
    assert replica.views.on_hand() == {LANE_SKU: expected_stock(s.cut).get(LANE_SKU, 0) + 8}
    counted = {f"lane1:{seq}" for seq in range(2, s.cut + 1)} | {"lane2:2"}
    assert set(replica.views.sale_ids()) == counted

    reference = s.observer()
    reference.merge([(CONFIG_DOC, revocation_update(revocation))], NOW)
    for delivery in updates.values():
        reference.merge([delivery], NOW)
    for other in (reference, restarted(replica)):
        assert replica.digest() == other.digest()
        assert replica.views.on_hand() == other.views.on_hand()
        assert sorted(replica.views.sale_ids()) == sorted(other.views.sale_ids())
        assert replica.views.heads() == other.views.heads()
        assert replica.views.problems() == other.views.problems()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(st.tuples(st.integers(0, RECORDS), st.booleans()), min_size=1, max_size=4),
    data=st.data(),
)
def test_several_revocations_meet_whatever_their_order(
    cuts: list[tuple[int, bool]], data: st.DataObject
) -> None:
    s = Setup()
    revocations = [s.revoke(seq, pinned=pinned) for seq, pinned in cuts]
    order = data.draw(st.permutations(revocations), label="order")
    replica = s.observer()
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    for n, revocation in enumerate(order):
        replica.merge([(CONFIG_DOC, revocation_update(revocation, 4_000 + n))], NOW)
    lowest = min(seq for seq, _ in cuts)
    assert replica.views.head(LANE1).seq == lowest
    assert replica.views.on_hand() == expected_stock(lowest)


# Repeated entries are drawn more often: most of a store's traffic is sales and delivery.
ACTIONS = [*["lane3 sells"] * 3, "lane2 sells", "link", "cut a link", *["deliver"] * 3, "revoke"]
PAIRS = [(a, b) for a in range(4) for b in range(a + 1, 4)]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(PAIRS)), max_size=40))
def test_a_mesh_counts_the_revoked_lane_up_to_the_cut_whatever_the_order(
    actions: list[tuple[str, tuple[int, int]]],
) -> None:
    """Four lanes on the real protocol (``Node``): lane3 sells, links come and go, and lane1
    revokes lane3 at whatever point, cutting at the head it holds then. Afterwards lane3's
    whole store of records (its sales past the cut included) reaches lane4 by a bundle, and
    the other lanes sync. Every order ends the same: lane3 counts exactly up to the cut on
    every lane that was not revoked, with equal digests, stock and sales."""
    store = Store()
    terminals, nodes = make_nodes(store, ["lane1", "lane2", "lane3", "lane4"])
    mesh = NodeNetwork(nodes)
    for a, b in PAIRS:  # a store at work: every lane linked to every other
        mesh.connect(a, b)
    mesh.run()
    lane3 = TerminalId("lane3")
    sold_by_lane2 = 0
    cut: int | None = None

    def revoke() -> int:
        head = terminals[0].replica.views.head(lane3)
        digest = head.hash if head.seq else b""
        revocation = issue_revocation(store.authority, store.store_id, lane3, head.seq, digest)
        change = terminals[0].replica.publish_revocation(revocation, mesh.now)
        nodes[0].local_change(change, mesh.now)
        nodes[0].request_sync(mesh.now)
        mesh.collect()
        return head.seq

    for action, (a, b) in actions:
        if action == "lane3 sells" and terminals[2].replica.revoked():
            # lane3 learnt its revocation (lane1 sends it as it cuts lane3 off): it refuses
            with pytest.raises(TerminalRevoked):
                terminals[2].replica.append(Sale.of((SaleLine(LANE_SKU, 1, 100),)), mesh.now)
        elif action == "lane3 sells":
            mesh.append(2, Sale.of((SaleLine(LANE_SKU, 1, 100),)))
        elif action == "lane2 sells":
            mesh.append(1, Sale.of((SaleLine(LANE_SKU, 1, 100),)))
            sold_by_lane2 += 1
        elif action == "link" and not mesh.established(a, b):
            mesh.connect(a, b)
        elif action == "cut a link":
            for wire in mesh.live_wires():
                if wire.pair == frozenset((a, b)):
                    mesh.drop_transport(wire.conn_id)
        elif action == "deliver":
            mesh.run()
        elif action == "revoke" and cut is None:
            cut = revoke()
    if cut is None:
        cut = revoke()
    bundle = nodes[2].replica.updates_since(nodes[3].replica.state_vectors())
    change = nodes[3].replica.merge(list(bundle.items()), mesh.now)
    nodes[3].local_change(change, mesh.now)
    nodes[3].request_sync(mesh.now)
    mesh.collect()
    mesh.reconnect([(0, 1), (0, 3), (1, 3)])
    mesh.settle()

    past_cut = terminals[2].replica.views.head(lane3).seq > cut or any(
        r.terminal == lane3 and r.seq > cut for _, _, r in nodes[3].replica.records()
    )
    event(f"cut {min(cut, 3)}{'+' if cut > 3 else ''}, records past it: {past_cut}")
    kept = [nodes[n].replica for n in (0, 1, 3)]
    assert len({r.digest() for r in kept}) == 1
    for replica in kept:
        assert replica.views.head(lane3).seq == cut
        assert replica.views.on_hand() in ({}, {LANE_SKU: -cut - sold_by_lane2})
        counted = {s for s in replica.views.sale_ids() if s.startswith("lane3:")}
        assert counted == {f"lane3:{n}" for n in range(1, cut + 1)}
        assert replica.views.problems()["broken_chains"] == []


# -- withdrawal ----------------------------------------------------------------------------------


@pytest.mark.parametrize("counted_first", [RECORDS, CUT + 1, CUT])
def test_records_counted_before_the_revocation_arrived_are_withdrawn(counted_first: int) -> None:
    s = Setup()
    first = s.observer()  # got the revocation first
    first.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(first, TODAY_DOC, keyed(*s.records), client_id=10)

    late = s.observer()  # counted records before it heard of the revocation
    put_records(late, TODAY_DOC, keyed(*s.records[:counted_first]), client_id=10)
    assert late.views.on_hand() == expected_stock(counted_first)
    late.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW + 1)
    put_records(late, TODAY_DOC, keyed(*s.records[counted_first:]), client_id=11)

    assert_counted_up_to(late, s.records)
    sync(first, late)
    sync(late, first)
    assert late.digest() == first.digest()
    assert late.views.on_hand() == first.views.on_hand()
    assert late.views.heads() == first.views.heads()
    assert late.views.problems() == first.views.problems()
    assert sorted(late.views.sale_ids()) == sorted(first.views.sale_ids())


def test_withdrawal_spreads_through_sync() -> None:
    s = Setup()
    a, b = s.observer(), s.observer()
    put_records(a, TODAY_DOC, keyed(*s.records), client_id=10)
    sync(a, b)
    assert b.views.on_hand() == expected_stock(RECORDS)
    authority_replica = s.store.terminal("lane2").replica
    authority_replica.publish_revocation(s.revocation, NOW)
    sync(authority_replica, a)
    sync(a, b)
    for replica in (a, b):
        assert_counted_up_to(replica, s.records)
    assert a.digest() == b.digest()


def test_fork_past_the_cut_is_judged_alike_whichever_came_first() -> None:
    """Two records with one seq, both past the cut. A replica that saw them count (and found
    the fork) before the revocation arrived must end up reporting the same as one that had the
    revocation first, and as itself after a restart: equal digests, equal views."""
    s = Setup()
    fork = make_record(
        s.key, LANE1, CUT + 1, s.records[CUT - 1].hash, Hlc(WALLS[CUT] + 7, 0),
        Receipt(LANE_SKU, 9),
    )  # fmt: skip
    late = s.observer()
    put_records(late, TODAY_DOC, keyed(*s.records, fork), client_id=10)
    assert late.views.problems()["broken_chains"]  # the fork was seen while it counted
    late.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    first = s.observer()
    first.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(first, TODAY_DOC, keyed(*s.records, fork), client_id=10)
    sync(first, late)
    sync(late, first)
    assert late.digest() == first.digest()
    for replica in (late, restarted(late)):
        assert replica.views.on_hand() == first.views.on_hand() == expected_stock(CUT)
        assert replica.views.heads() == first.views.heads()
        assert replica.views.problems() == first.views.problems()
        assert not replica.views.problems()["broken_chains"]  # the fork is past the cut


# -- a key's certificates only (the cloud's) -----------------------------------------------------


def test_a_revoked_cloud_key_is_cut_and_a_cloud_certified_afterwards_is_not() -> None:
    """Every cloud of a store signs as ``cloud``: a revocation naming the old cloud's key cuts
    its chain and refuses its certificate, and leaves the next cloud's key alone."""
    store = Store()
    old_key, new_key = SigningKey.generate(), SigningKey.generate()
    old_cert = store.certificate(CLOUD_TERMINAL_ID, old_key, Role.CLOUD)
    new_cert = store.certificate(CLOUD_TERMINAL_ID, new_key, Role.CLOUD)
    prices: list[Body] = [PriceChange(LANE_SKU, 100 + n) for n in range(3)]
    old_chain = record_chain(old_key, CLOUD_TERMINAL_ID, prices)
    # The new cloud continues the chain from the cut (it holds what the store accepted).
    after_cut = make_record(
        new_key, CLOUD_TERMINAL_ID, 2, old_chain[0].hash, Hlc(NOW + 5, 0), PriceChange(LANE_SKU, 7)
    )
    revocation = issue_revocation(
        store.authority, store.store_id, CLOUD_TERMINAL_ID, 1, old_chain[0].hash,
        public_key_of(old_key),
    )  # fmt: skip
    replica = enrolled_observer(store, old_cert, new_cert)
    replica.merge([(CONFIG_DOC, revocation_update(revocation))], NOW)
    assert replica.views.revokes(old_cert, NOW)
    assert not replica.views.revokes(new_cert, NOW)
    assert not replica.views.is_revoked(CLOUD_TERMINAL_ID, NOW)
    put_records(replica, CATALOG_DOC, keyed(*old_chain, after_cut), client_id=10)
    assert replica.views.is_accepted(old_chain[0])
    assert not any(replica.views.is_accepted(r) for r in old_chain[1:])
    assert replica.views.is_accepted(after_cut)
    assert replica.views.price_of(LANE_SKU).unit_cents == 7  # type: ignore[union-attr]
    reasons = [str(p["reason"]) for p in replica.views.problems()["revoked"]]
    assert len(reasons) == 2  # seq 2 and 3 of the old key
    assert all("after the revocation cut of cloud key" in r for r in reasons)


def test_a_key_cut_meets_the_cut_of_its_whole_terminal() -> None:
    s = Setup()
    key = public_key_of(s.key)
    replica = s.observer()
    for n, revocation in enumerate((s.revoke(5, key=key), s.revoke(CUT))):
        replica.merge([(CONFIG_DOC, revocation_update(revocation, 4_000 + n))], NOW)
    assert replica.views.cut_of(LANE1) == Cut(CUT, s.records[CUT - 1].hash)
    assert replica.views.cut_of(LANE1, key) == Cut(CUT, s.records[CUT - 1].hash)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert_counted_up_to(replica, s.records)


def test_a_forgery_past_the_cut_is_unverified_not_revoked() -> None:
    """Only a record that a revoked certificate's key signed is reported as refused by the
    revocation; one no certificate verifies stays ``unverified``."""
    s = Setup()
    forged = make_record(
        SigningKey.generate(), LANE1, CUT + 1, s.records[CUT - 1].hash, Hlc(WALLS[CUT], 0),
        Receipt(LANE_SKU, 1),
    )  # fmt: skip
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records[:CUT], forged), client_id=10)
    problems = replica.views.problems()
    assert problems["revoked"] == []
    assert [p["key"] for p in problems["unverified"]] == [forged.key]


# -- revocations of the first format (by time) ---------------------------------------------------


def test_a_revocation_by_time_still_held_is_judged_by_time() -> None:
    """Databases written before revocations cut chains may hold one by time: it keeps refusing
    records stamped from its time on, alone or beside a cut (both apply)."""
    s = Setup()
    legacy = time_revocation(s.store.authority, s.store.store_id, LANE1, WALLS[5])
    assert parse_revocation(legacy.encoded, s.store.identity) == legacy
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(legacy))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert replica.views.head(LANE1).seq == 5
    assert replica.views.is_revoked(LANE1, WALLS[5])
    assert not replica.views.is_revoked(LANE1, WALLS[5] - 1)
    assert replica.views.cut_of(LANE1) is None
    reasons = [str(p["reason"]) for p in replica.views.problems()["revoked"]]
    assert len(reasons) == RECORDS - 5
    assert all(f"revoked from {WALLS[5]} ms on" in r for r in reasons)
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation, 4_001))], NOW)
    assert_counted_up_to(replica, s.records)
    assert_counted_up_to(restarted(replica), s.records)


def test_the_earliest_of_two_revocations_by_time_applies_whatever_their_order() -> None:
    s = Setup()
    early, late = (
        time_revocation(s.store.authority, s.store.store_id, LANE1, WALLS[n]) for n in (2, 5)
    )
    for order in ((early, late), (late, early)):
        replica = s.observer()
        for n, revocation in enumerate(order):
            replica.merge([(CONFIG_DOC, revocation_update(revocation, 4_000 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
        assert replica.views.head(LANE1).seq == 2
        assert replica.views.revocations()[1] == {LANE1: WALLS[2]}


REVOCATIONS = 9  # where export_views lists the revocations in force (format 4)


def test_a_checkpoint_lists_revocations_by_time_as_it_did_before_cuts() -> None:
    """Checkpoints compare the revocations they were made under (the tenth element of the
    views; the eleventh is the fork resolutions and closures): format-1 ones as ``[terminal, ms]``,
    then the cuts."""
    s = Setup()
    legacy = time_revocation(s.store.authority, s.store.store_id, LANE1, WALLS[5])
    replica = s.observer()
    assert replica.views.export_views()[REVOCATIONS] == []
    replica.merge([(CONFIG_DOC, revocation_update(legacy))], NOW)
    assert replica.views.export_views()[REVOCATIONS] == [["lane1", WALLS[5]]]
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation, 4_001))], NOW)
    cut = ["lane1", b"", CUT, s.records[CUT - 1].hash]
    assert replica.views.export_views()[REVOCATIONS] == [["lane1", WALLS[5]], cut]


# -- forged or misfiled revocations --------------------------------------------------------------


def test_revocation_signed_by_another_authority_changes_nothing() -> None:
    s = Setup()
    forged = issue_revocation(SigningKey.generate(), s.store.store_id, LANE1, 0)
    with pytest.raises(RemoteError):
        parse_revocation(forged.encoded, s.store.identity)
    replica = s.observer()
    digest = replica.digest()
    with pytest.raises(RemoteError):
        replica.publish_revocation(forged, NOW)  # refuses to spread it
    assert replica.digest() == digest
    # delivered by a peer anyway, under its own key
    replica.merge([(CONFIG_DOC, revocation_update(forged))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    assert replica.views.cut_of(LANE1) is None
    assert not replica.views.is_revoked(LANE1, NOW + HOUR_MS)
    assert replica.views.on_hand() == expected_stock(RECORDS)
    assert all(replica.views.is_accepted(r) for r in s.records)
    assert no_problems(replica), replica.views.problems()


def test_revocation_for_another_store_or_misfiled_changes_nothing() -> None:
    s = Setup()
    other_store = issue_revocation(s.store.authority, StoreId("shop2"), LANE1, 0)
    genuine = s.revocation
    entries: dict[str, object] = {
        revocation_key(other_store): other_store.encoded,
        revocation_key(genuine).replace("lane1", "lane2"): genuine.encoded,
        f"revoke:lane1:{CUT}": genuine.encoded,
        "cert:lane1:" + revocation_key(genuine).rsplit(":", 1)[1]: genuine.encoded,
        revocation_key(genuine) + "x": genuine.encoded,
    }
    for n, (key, value) in enumerate(entries.items()):
        replica = s.observer()
        replica.merge([(CONFIG_DOC, crafted_update(CERTS_ROOT, {key: value}, 4_100 + n))], NOW)
        put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
        assert replica.views.cut_of(LANE1) is None, key
        assert replica.views.on_hand() == expected_stock(RECORDS), key


def signed(store: Store, fields: list[object]) -> bytes:
    payload = bytes(msgpack.packb(fields, use_bin_type=True))
    return payload + sign(store.authority, DOMAIN_REVOCATION, payload)


def test_revocation_round_trip_and_garbage() -> None:
    s = Setup()
    parsed = parse_revocation(s.revocation.encoded, s.store.identity)
    assert parsed == s.revocation
    assert revocation_key(parsed) == revocation_key(s.revocation)
    assert revocation_key(s.revocation).startswith("revoke:lane1:")
    for length in range(len(s.revocation.encoded)):
        with pytest.raises(RemoteError):
            parse_revocation(s.revocation.encoded[:length], s.store.identity)
    for i in range(len(s.revocation.encoded)):
        tampered = bytearray(s.revocation.encoded)
        tampered[i] ^= 0x01
        with pytest.raises(RemoteError):
            parse_revocation(bytes(tampered), s.store.identity)
    for value in (None, 5, "revoke", [b"x"]):
        with pytest.raises(RemoteError):
            parse_revocation(value, s.store.identity)
    # store-signed, but malformed: a negative seq, a short hash or key, a missing field
    for fields in (
        [2, "shop1", "lane1", -1, b"", b""],
        [2, "shop1", "lane1", 3, b"x" * 31, b""],
        [2, "shop1", "lane1", 3, b"", b"k" * 31],
        [2, "shop1", "lane1", 3, b""],
        [3, "shop1", "lane1", 3, b"", b""],
        [1, "shop1", "lane1", -5],
    ):
        with pytest.raises(RemoteError):
            parse_revocation(signed(s.store, fields), s.store.identity)
    for seq, digest, key in ((-1, b"", b""), (1, b"x", b""), (1, b"", b"k")):
        with pytest.raises(ConfigError):
            issue_revocation(s.store.authority, s.store.store_id, LANE1, seq, digest, key)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_revocation_raises_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteError):
        parse_revocation(data, Store().identity)


# -- revocations are immutable entries -----------------------------------------------------------


@pytest.mark.parametrize("replacement", ["junk", "deleted", "a later cut"])
def test_overwritten_or_deleted_revocation_is_written_back(replacement: str) -> None:
    s = Setup()
    replica = s.observer()
    replica.merge([(CONFIG_DOC, revocation_update(s.revocation))], NOW)
    put_records(replica, TODAY_DOC, keyed(*s.records), client_id=10)
    key = revocation_key(s.revocation)
    value = {
        "junk": b"junk",
        "deleted": None,
        "a later cut": s.revoke(RECORDS).encoded,
    }[replacement]
    update = overwrite(replica, CONFIG_DOC, key, value, client_id=666)
    change = replica.merge([(CONFIG_DOC, update)], NOW + 1)
    assert len(change.updates) >= 2
    assert stored_value(replica, CONFIG_DOC, key) == s.revocation.encoded
    assert_counted_up_to(replica, s.records)
    assert_counted_up_to(restarted(replica, now_ms=NOW + 2), s.records)
    fresh = s.store.observer()
    fresh.merge([(CONFIG_DOC, update)], NOW + 2)
    sync(replica, fresh, NOW + 2)
    assert fresh.digest() == replica.digest()
    assert_counted_up_to(fresh, s.records)
