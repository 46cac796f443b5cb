"""The report of ``lanesync bench cloud-chain``: the table, one row per configuration, and each
configuration's figures for results.json."""

from __future__ import annotations

from lanesync.bench.outcome import Outcome
from lanesync.bench.studies.cloud_chain import NAME, ChainRun


def _ms(figures: dict[str, float]) -> str:
    if not figures.get("count"):
        return "-"
    return f"{figures['p50']:.0f} / {figures['p99']:.0f} / {figures['max']:.0f}"


def _restart(run: ChainRun, signal: str) -> str:
    for result in run.restarts:
        if result["signal"] == signal:
            steps = (
                result["spawn_to_ready_s"],
                result["spawn_to_first_hello_s"],
                result["spawn_to_first_upload_served_s"],
            )
            return " / ".join("none" if s is None else f"{s:.2f}" for s in steps)
    return "-"


def table(outcomes: list[ChainRun], reference_per_1k: float) -> str:
    head = (
        "| configuration | records/s | cloud CPU s per 1k records (/ reference merge) "
        "| ack ms p50 / p99 / max, during a catch-up | ack ms p50 / p99 / max, without "
        "| catch-up in tables (s) | cloud RSS MB idle / active / peak, per process "
        "| uplink drops (dials ended in the handshake) "
        "| restart to ready / first hello / first upload served (s): SIGTERM; SIGKILL | exact |"
    )
    lines = [head, "|" + "---|" * head.count(" |")]
    for o in outcomes:
        cloud = o.cpu_s_per_1k_records.get("cloud", float("nan"))
        rss = "; ".join(
            f"{a:.0f} / {b:.0f} / {c:.0f}"
            for a, b, c in zip(o.rss_idle_mb, o.rss_active_mb, o.rss_peak_mb, strict=False)
        )
        lines.append(
            f"| {o.name} ({o.processes} process{'es' if o.processes > 1 else ''}) "
            f"| {o.records_per_s:,.0f} | {cloud:.2f} ({cloud / reference_per_1k:.2f}x) "
            f"| {_ms(o.ack_during_catchup_ms)} | {_ms(o.ack_without_catchup_ms)} "
            f"| {o.catchup_s:.1f} | {rss or '-'} | {o.uplink_drops} ({o.handshake_failures}) "
            f"| {_restart(o, 'SIGTERM')}; {_restart(o, 'SIGKILL')} "
            f"| {'yes' if o.exact else 'NO'} |"
        )
    return "\n".join(lines)


def figures_of(run: ChainRun) -> Outcome:
    """One configuration's figures, as the scenarios report a system's."""
    out = Outcome(NAME, run.name, 0)
    out.converged = run.exact
    out.add("records/s into head-office tables", run.records_per_s, "records/s", "higher")
    out.add("catch-up: go -> its sales in the tables", run.catchup_s, "s", "lower")
    for part in ("cloud", "postgresql", "uploaders"):
        if part in run.cpu_s_per_1k_records:
            out.add(f"CPU s per 1k records, {part}", run.cpu_s_per_1k_records[part], "s", "lower")
    for label, figures in (
        ("during a catch-up", run.ack_during_catchup_ms),
        ("without a catch-up", run.ack_without_catchup_ms),
    ):
        for stat in ("p50", "p99", "max"):
            if stat in figures:
                out.add(f"ack latency {stat}, {label}", figures[stat], "ms", "lower")
    if run.rss_active_mb:
        out.add("cloud RSS per process, idle (max)", max(run.rss_idle_mb), "MB", "lower")
        out.add("cloud RSS per process, active (max)", max(run.rss_active_mb), "MB", "lower")
        out.add("cloud peak RSS per process (max)", max(run.rss_peak_mb), "MB", "lower")
    out.add("uplink drops", run.uplink_drops, "count", "lower")
    out.add("dials ended in the handshake", run.handshake_failures, "count", "lower")
    for result in run.restarts:
        served = result["spawn_to_first_upload_served_s"]
        if served is not None:
            name = f"restart ({result['signal']}) -> first upload served"
            out.add(name, served, "s", "lower")
    return out
