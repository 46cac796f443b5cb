"""The report of ``lanesync bench cloud-ingest``: the table, one row per configuration, and each
configuration's figures for results.json."""

from __future__ import annotations

from collections import Counter

from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.cloud_ingest import NAME, IngestRun


def ratio(value: float, base: IngestRun | None) -> str:
    if base is None or not base.records_per_s or base.records_per_s != base.records_per_s:
        return "-"
    return f"{value / base.records_per_s:.2f}x"


def table(outcomes: list[IngestRun], reference_per_1k: float) -> str:
    sqlite1 = next((o for o in outcomes if o.backend == "sqlite"), None)
    pg1 = next((o for o in outcomes if o.backend == "postgresql" and o.processes == 1), None)
    head = (
        "| configuration | records/s | vs SQLite-1 | vs PG-1 | time (s) | store done p50 / p99 (s) "
        "| CPU s per 1k records: cloud / PostgreSQL / uploaders / all "
        "| cloud CPU / reference merge | cloud peak RSS (MB) | uplink drops (refused at the "
        "handshake limit) | exact |"
    )
    lines = [head, "|" + "---|" * head.count(" |")]
    for o in outcomes:
        per = o.cpu_s_per_1k_records
        total = per.get("cloud", 0) + per.get("postgresql", 0) + per.get("uploaders", 0)
        drops, refused = closes(o)
        pg_cpu = f"{per['postgresql']:.2f}" if o.backend == "postgresql" else "-"
        lines.append(
            f"| {o.name} ({o.processes} process{'es' if o.processes > 1 else ''}) "
            f"| {o.records_per_s:,.0f} | {ratio(o.records_per_s, sqlite1)} "
            f"| {ratio(o.records_per_s, pg1) if o.backend == 'postgresql' else '-'} "
            f"| {o.time_s:.1f} | {o.store_done_p50_s:.1f} / {o.store_done_p99_s:.1f} "
            f"| {per.get('cloud', 0):.2f} / {pg_cpu} / {per.get('uploaders', 0):.2f} / "
            f"{total:.2f} | {per.get('cloud', 0) / reference_per_1k:.1f}x "
            f"| {max(o.cloud_peak_rss_mb or [float('nan')]):.0f} "
            f"| {drops} ({refused}) | {'yes' if o.exact else 'NO'} |"
        )
    return "\n".join(lines)


def figures_of(run: IngestRun) -> Outcome:
    """One configuration's figures, as the scenarios report a system's."""
    out = Outcome(NAME, run.name, 0)
    out.converged = run.exact
    out.add("records/s", run.records_per_s, "records/s", "higher")
    out.add("time until every sale is in the tables", run.time_s, "s", "lower")
    out.add("store done p50", run.store_done_p50_s, "s", "lower")
    out.add("store done p99", run.store_done_p99_s, "s", "lower")
    for part in ("cloud", "postgresql", "uploaders"):
        if part in run.cpu_s_per_1k_records and (part != "postgresql" or run.processes):
            out.add(f"CPU s per 1k records, {part}", run.cpu_s_per_1k_records[part], "s", "lower")
    if run.cloud_peak_rss_mb:
        out.add("cloud peak RSS", max(run.cloud_peak_rss_mb), "MB", "lower")
    drops, refused = closes(run)
    out.add("uplink drops", drops, "count", "lower")
    out.add("uplinks refused at the handshake limit", refused, "count", "lower")
    return out


# How an uploader logs the cloud closing a connection with 1008 (policy violation). Every store
# of the benchmark is registered and --max-resident is far above their number, so that is the
# cloud's handshake limit (shell.admission: 64 connections in the handshake at once; one more
# closes the oldest): the benchmark dials every store at the same instant. The uplink dials
# again; nothing it had sent is lost.
HANDSHAKE_LIMIT_CLOSE = "transport closed (1008)"


def closes(run: IngestRun) -> tuple[int, int]:
    """Uplinks closed before the end: (dropped, refused at the cloud's handshake limit)."""
    closed: Counter[str] = Counter()
    for uploader in run.uploaders:
        closed.update(uploader["uplinks_closed"])
    refused = closed.pop(HANDSHAKE_LIMIT_CLOSE, 0)
    return sum(closed.values()), refused
