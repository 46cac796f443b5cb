"""The invariants of DESIGN.md, checked on a simulated store after its quiet period.

Expected values come from the simulator's own log of ACKNOWLEDGED operations (records whose
append was committed), never from the replicas under test.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lanesync.core import dayclose, sealing, zreport
from lanesync.core.hlc import Hlc
from lanesync.core.identity import LocalIdentity
from lanesync.core.records import Adjustment, PriceChange, Receipt, Record, Sale, Void
from lanesync.core.replica import Replica
from lanesync.core.views import Views
from lanesync.sim.host import CLOUD, Host, restore_replica
from lanesync.sim.model import Invariant
from lanesync.sim.world import Simulator


@dataclass(frozen=True, slots=True)
class Expected:
    """What the acknowledged operations say every replica must show."""

    stock: dict[str, int]
    prices: dict[str, int]
    # sale id -> how many acknowledged sales carry it: two on two branches of a fork, each a
    # genuine sale the POS was told succeeded, each counted once.
    sales: Counter[str]
    heads: dict[str, int]  # unforked terminal -> number of acknowledged records (its head)
    # forked terminal -> (seq, hash) of the head of each branch of acknowledged records
    forks: dict[str, frozenset[tuple[int, bytes]]]


def expected_of(acked: list[Record], cuts: Mapping[str, int] | None = None) -> Expected:
    """``cuts``: revoked terminal -> the last seq of its chain the store accepts. What a revoked
    lane wrote past its cut (before it heard of its revocation) never counts."""
    if cuts:
        acked = [r for r in acked if r.seq <= cuts.get(r.terminal, r.seq)]
    stock: dict[str, int] = defaultdict(int)
    by_id: dict[str, list[Record]] = defaultdict(list)
    voided: set[str] = set()
    winners: dict[str, tuple[tuple[Hlc, str, bytes], int]] = {}
    chains: dict[str, list[Record]] = defaultdict(list)
    sales: Counter[str] = Counter()
    for record in acked:
        chains[record.terminal].append(record)
        by_id[str(record.id)].append(record)
        match record.body:
            case Sale(lines):
                sales[str(record.id)] += 1
                for line in lines:
                    stock[line.sku] -= line.qty
            case Void(sale_id):
                voided.add(str(sale_id))
            case Receipt(item, qty):
                stock[item] += qty
            case Adjustment(item, delta):
                stock[item] += delta
            case PriceChange(item, cents):
                rank = (record.hlc, str(record.terminal), record.hash)
                if item not in winners or rank > winners[item][0]:
                    winners[item] = (rank, cents)
    for voided_id in sorted(voided):  # credited once, however many voids name it
        named = by_id.get(voided_id, [])
        # An id two branches of a fork hold names no single sale: a void of it credits
        # nothing back (core.forks), whichever branch the voiding lane had seen.
        if len(named) == 1 and isinstance(named[0].body, Sale):
            for line in named[0].body.lines:
                stock[line.sku] += line.qty
    heads: dict[str, int] = {}
    forks: dict[str, frozenset[tuple[int, bytes]]] = {}
    for terminal, records in chains.items():
        linked = {r.prev_hash for r in records}
        tips = frozenset((r.seq, r.hash) for r in records if r.hash not in linked)
        if len(tips) == 1:
            heads[terminal] = len(records)
        else:
            forks[terminal] = tips
    return Expected(
        dict(stock),
        {item: cents for item, (_, cents) in winners.items()},
        sales,
        heads,
        forks,
    )


def _short(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def check(sim: Simulator) -> int:
    """Check every invariant; violations go to ``sim.violate``. Returns the checks made."""
    expected = expected_of(sim.acked, sim.revoked)
    checks = 0
    hosts = [h for h in sim.hosts.values() if h.replica is not None]
    down = [h.name for h in sim.hosts.values() if h.replica is None]
    if down:
        sim.violate(
            Invariant.CONVERGENCE, f"still down after the quiet period: {down}", tuple(down)
        )
    digests = {h.name: h.replica.digest() for h in hosts if h.replica is not None}
    lane_digests = Counter(d for name, d in digests.items() if name != CLOUD)
    checks += 2
    majority = lane_digests.most_common(1)[0][0] if lane_digests else ""
    if len(lane_digests) > 1:
        odd = sorted(n for n, d in digests.items() if n != CLOUD and d != majority)
        groups = "; ".join(
            f"{d[:12]}: {','.join(sorted(n for n, x in digests.items() if x == d and n != CLOUD))}"
            for d in sorted(lane_digests)
        )
        sim.violate(
            Invariant.CONVERGENCE,
            f"{len(lane_digests)} different digests among lanes ({groups})",
            tuple(odd),
        )
    if CLOUD in digests and digests[CLOUD] != majority:
        sim.violate(
            Invariant.CLOUD,
            f"cloud digest {digests[CLOUD][:12]} differs from the store's {majority[:12]}",
            (CLOUD,),
        )
    for host in hosts:
        checks += _check_replica(sim, host, expected)
    checks += _check_reports(sim, hosts)
    checks += _check_sealed(sim, hosts)
    checks += _check_leaders(sim)
    for host in hosts:
        checks += _check_durable(sim, host)
    return checks


def _check_sealed(sim: Simulator, hosts: list[Host]) -> int:
    """Each stored seal (``sealed_days`` rows) holds a complete report whose hash its
    description names; replicas that sealed a day with the same content sealed the same
    report."""
    by_content: dict[tuple[str, bytes], tuple[str, str]] = {}
    checks = 0
    for host in hosts:
        for day, stored in sorted(host.archives.items()):
            checks += 1
            meta = sealing.decode_meta(stored.meta)
            report = json.loads(stored.report)
            if not report["complete"] or report["report_hash"] != meta.report_hash:
                sim.violate(
                    Invariant.SEALING,
                    f"{host.name}: the stored seal of {day} holds report "
                    f"{str(report['report_hash'])[:12]} complete={report['complete']}, its "
                    f"description names {meta.report_hash[:12]}",
                    (host.name,),
                )
            if stored.reopened:
                continue
            # The earlier seals (``amended_from``) are each replica's own history: one that
            # heard of every record before its first seal names none.
            # A store decision that reached one sealer after its seal opened the day again
            # there (``Replica``), so a seal still in force counts what the other's does.
            seen = by_content.setdefault((day, meta.digest), (host.name, meta.report_hash))
            if seen[1] != meta.report_hash:
                sim.violate(
                    Invariant.SEALING,
                    f"{host.name} sealed {day} as report {meta.report_hash[:12]}, {seen[0]} "
                    f"sealed the same content as {seen[1][:12]}",
                    (host.name, seen[0]),
                )
    return checks


def _check_replica(sim: Simulator, host: Host, expected: Expected) -> int:
    replica = host.replica
    if replica is None:
        return 0
    views = replica.views
    name = host.name
    problems = {kind: rows for kind, rows in views.problems().items() if rows}
    # A revoked lane's records past its cut are held and refused, as they must be.
    refused = [
        row
        for row in problems.pop("revoked", [])
        if str(row["key"]).split(":")[0] not in sim.revoked
    ]
    if refused:
        problems["revoked"] = refused
    if problems:
        details = "; ".join(f"{kind}: {rows[0]}" for kind, rows in problems.items())
        sim.violate(Invariant.JOURNAL, f"{name}: {details}", (name,))
    short = [
        f"{terminal} head {views.head(terminal).seq} of {count} acknowledged"  # type: ignore[arg-type]
        for terminal, count in sorted(expected.heads.items())
        if views.head(terminal).seq != count  # type: ignore[arg-type]
    ]
    short += _fork_heads(views, expected)
    if short:
        subjects = (name, *(s.split()[0] for s in short))
        sim.violate(Invariant.JOURNAL, f"{name}: {_short(short)}", subjects)
    held = Counter(views.sale_ids())
    missing = sorted(rid for rid, n in expected.sales.items() if held[rid] < n)
    extra = sorted(rid for rid, n in held.items() if not expected.sales[rid])
    counted = sorted(rid for rid, n in held.items() if n > expected.sales[rid] > 0)
    copies = Counter(str(r.id) for _, _, r in replica.records() if isinstance(r.body, Sale))
    twice = sorted(rid for rid, n in copies.items() if n > max(1, expected.sales[rid]))
    if missing or extra or counted or twice:
        parts = []
        if missing:
            parts.append(f"missing acknowledged sales {_short(missing)}")
        if extra:
            parts.append(f"sales never acknowledged {_short(extra)}")
        if counted:
            parts.append(f"sales counted more often than acknowledged {_short(counted)}")
        if twice:
            parts.append(f"sales held twice {_short(twice)}")
        subjects = (name, *missing, *extra, *counted, *twice)
        sim.violate(Invariant.SALES, f"{name}: {'; '.join(parts)}", subjects)
    on_hand: dict[str, int] = (
        host.view.on_hand() if host.view else {str(k): n for k, n in views.on_hand().items()}
    )
    wrong = [
        f"{item}={on_hand.get(item, 0)} (expected {expected.stock.get(item, 0)})"
        for item in sorted(set(on_hand) | set(expected.stock))
        if on_hand.get(item, 0) != expected.stock.get(item, 0)
    ]
    if wrong:
        sim.violate(Invariant.STOCK, f"{name}: on hand {_short(wrong)}", (name,))
    bad_prices = [
        f"{item}={p.unit_cents if p else None} (expected {cents})"
        for item, cents in sorted(expected.prices.items())
        if (p := views.price_of(item)) is None or p.unit_cents != cents  # type: ignore[arg-type]
    ]
    if bad_prices:
        sim.violate(Invariant.PRICES, f"{name}: prices {_short(bad_prices)}", (name,))
    return 5


def _check_reports(sim: Simulator, hosts: list[Host]) -> int:
    """Replicas holding the same records (the same digest) print the same Z-report of every
    day, byte for byte; no replica finds a day-end that disagrees with its records, or a record
    written into a day its lane had closed."""
    reports: dict[str, dict[str, str]] = {}
    for host in hosts:
        replica = host.replica
        if replica is None:
            continue
        findings = {kind: rows for kind, rows in zreport.day_findings(replica).items() if rows}
        if findings:
            details = "; ".join(f"{kind}: {rows[0]}" for kind, rows in findings.items())
            sim.violate(Invariant.JOURNAL, f"{host.name}: {details}", (host.name,))
        days = (dayclose.day_of_doc(name) for name in replica.all_doc_names())
        full = {day: zreport.z_report(replica, day) for day in days if day}
        _check_standing(sim, host, replica, full)
        hashes = {day: str(report["report_hash"]) for day, report in full.items()}
        digest = replica.digest()
        first = reports.setdefault(digest, hashes)
        if first != hashes:
            differ = sorted(d for d in set(first) | set(hashes) if first.get(d) != hashes.get(d))
            sim.violate(
                Invariant.REPORT,
                f"{host.name}: the Z-report of {_short(differ)} differs from another replica's "
                f"with the same digest {digest[:12]}",
                (host.name,),
            )
    return 2 * len(hosts)


def _check_standing(
    sim: Simulator, host: Host, replica: Replica, reports: dict[str, dict[str, Any]]
) -> None:
    """What a lane's report says of where each day stands, against its stored seals: a sealed
    day's report is the one it was sealed with (``sealed``, the same hash, the same earlier
    seals); a day opened again (by a late record, or by a store decision that changed what it
    counts) is ``amended`` from every seal it had."""
    for day, stored in sorted(host.archives.items()):
        report = reports.get(day)
        if report is None:
            sim.violate(
                Invariant.SEALING, f"{host.name}: sealed {day} is held no more", (host.name,)
            )
            continue
        meta = sealing.decode_meta(stored.meta)
        earlier = list(meta.amended_from)
        want: tuple[bool, str | None, list[str]]
        if stored.reopened:
            want = (False, None, [*earlier, meta.report_hash])
        else:
            want = (True, meta.report_hash, earlier)
        got = (
            report["sealed"],
            None if stored.reopened else report["report_hash"],
            report.get("amended_from", []),
        )
        if got != want:
            sim.violate(
                Invariant.SEALING,
                f"{host.name}: the report of {day} says sealed={got[0]} hash "
                f"{str(got[1])[:12]} amended from {[h[:12] for h in got[2]]}, its stored seal "
                f"says sealed={want[0]} hash {str(want[1])[:12]} amended from "
                f"{[h[:12] for h in want[2]]}",
                (host.name,),
            )


def _fork_heads(views: Views, expected: Expected) -> list[str]:
    """Each forked terminal's fork is resolved, naming exactly the heads of the acknowledged
    branches, and every branch is counted up to its head."""
    wrong = []
    resolved = {str(fork["terminal"]): fork for fork in views.resolved_forks()}
    for terminal, tips in sorted(expected.forks.items()):
        fork = resolved.get(terminal)
        if fork is None:
            wrong.append(f"{terminal} forked and not resolved")
            continue
        branches: list[dict[str, Any]] = fork["branches"]  # type: ignore[assignment]
        named = frozenset((int(b["head_seq"]), bytes.fromhex(b["head_hash"])) for b in branches)
        if named != tips:
            heads = sorted(seq for seq, _ in tips)
            wrong.append(f"{terminal} resolution names heads other than acknowledged {heads}")
        wrong += [
            f"{terminal} branch {b['first_hash'][:8]} counted to {b['counted_to_seq']} of "
            f"{b['head_seq']}"
            for b in branches
            if b["counted_to_seq"] != b["head_seq"]
        ]
    return wrong


def _components(sim: Simulator) -> list[list[str]]:
    names = [h.name for h in sim.lanes if h.alive]
    seen: set[str] = set()
    parts: list[list[str]] = []
    for start in names:
        if start in seen:
            continue
        part, todo = [], [start]
        seen.add(start)
        while todo:
            current = todo.pop()
            part.append(current)
            for other in names:
                if other not in seen and sim.established(current, other):
                    seen.add(other)
                    todo.append(other)
        parts.append(sorted(part))
    return parts


def _check_leaders(sim: Simulator) -> int:
    checks = 0
    parts = _components(sim)
    leading = {h.name for h in sim.lanes if h.election is not None and h.election.is_leader}
    for part in parts:
        checks += 1
        leaders = [n for n in part if n in leading]
        if len(leaders) > 1:
            sim.violate(
                Invariant.LEADER,
                f"{len(leaders)} leaders in one connected component {part}: {leaders}",
                tuple(leaders),
            )
    if len(parts) != 1 or len(parts[0]) != len(sim.lanes):
        return checks
    checks += 1
    beliefs = {h.name: h.election.leader for h in sim.lanes if h.election is not None}
    if len(leading) != 1 or len(set(beliefs.values())) != 1:
        sim.violate(
            Invariant.LEADER,
            f"no single agreed leader after the quiet period: leading={sorted(leading)} "
            f"beliefs={beliefs}",
            tuple(sorted(beliefs)),
        )
        return checks
    (leader,) = leading
    uplinks = sorted(h.name for h in sim.lanes if sim.established(h.name, CLOUD))
    if uplinks != [leader]:
        sim.violate(
            Invariant.LEADER,
            f"leader {leader}, but the lanes linked to the cloud are {uplinks}",
            (leader, *uplinks),
        )
    return checks


def _check_durable(sim: Simulator, host: Host) -> int:
    """A restart now, from exactly what was committed, must rebuild the same replica."""
    replica = host.replica
    if replica is None:
        return 0
    # A restart builds the replica the host runs (a planted one included).
    again = sim._replica_cls(sim.store, 1, LocalIdentity(host.cert, host.key))
    restore_replica(again, host, sim.local_ms(host))
    # The digest of a sealed day is its description's: what the restart counted from the
    # archives is compared too.
    if (
        again.digest() != replica.digest()
        or again.views.on_hand() != replica.views.on_hand()
        or sorted(again.views.sale_ids()) != sorted(replica.views.sale_ids())
    ):
        sim.violate(
            Invariant.DURABILITY,
            f"{host.name}: a restart from its committed log and sealed days gives digest "
            f"{again.digest()[:12]} and on hand {dict(again.views.on_hand())}, memory holds "
            f"{replica.digest()[:12]} and {dict(replica.views.on_hand())} (something was "
            "acknowledged or forwarded before it was committed, or never committed)",
            (host.name,),
        )
    return 1
